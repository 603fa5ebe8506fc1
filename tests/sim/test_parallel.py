"""``oft.sim.parallel``: what reaches the caller when a worker fails."""

from __future__ import annotations

from multiprocessing import Pipe

import pytest

from oft.sim.parallel import _serve


def test_episodes_finished_on_other_workers_survive_a_failing_worker():
    """Worker A has sent two finished episodes when worker B reports an error: both still reach the caller
    (which writes them to results_partial.json) before B's exception. They used to be dropped with the
    pipe's unread messages, whichever worker was read first."""
    a_parent, a_child = Pipe()
    b_parent, b_child = Pipe()
    a_child.send(("done", "job 0", {"success": True}))
    a_child.send(("done", "job 1", {"success": False}))
    b_child.send(("error", ValueError("bad option"), "Traceback (in worker B)"))
    got = []
    with pytest.raises(ValueError, match="bad option"):
        for job, record in _serve(policy=None, conns=[b_parent, a_parent], batch=False):
            got.append((job, record["success"]))
    assert sorted(got) == [("job 0", True), ("job 1", False)]


def test_episodes_finished_on_other_workers_survive_a_worker_that_died():
    a_parent, a_child = Pipe()
    b_parent, b_child = Pipe()
    a_child.send(("done", "job 0", {"success": True}))
    a_child.send(("done", "job 1", {"success": True}))
    b_child.close()  # a worker killed without reporting
    got = []
    with pytest.raises(RuntimeError, match="died without reporting"):
        for job, _ in _serve(policy=None, conns=[b_parent, a_parent], batch=False):
            got.append(job)
    assert sorted(got) == ["job 0", "job 1"]
