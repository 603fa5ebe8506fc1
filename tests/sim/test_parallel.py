"""``oft.sim.parallel``: what reaches the caller when a worker fails."""

from __future__ import annotations

import json
import queue
import signal
import sys
from multiprocessing import Pipe
from types import SimpleNamespace

import pytest

from oft.sim import parallel
from oft.sim.parallel import _serve, _worker


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


def test_a_worker_whose_evaluating_process_is_gone_ends_quietly(monkeypatch):
    """The evaluating process stopped (Ctrl-C, an error, a kill) and closed its pipes: the worker, asking for
    a chunk, ends without a word and closes its env. It used to raise BrokenPipeError twice over (once
    asking, once reporting the failure to nobody), two tracebacks per worker under the real error."""
    closed = []
    env = SimpleNamespace(close=lambda: closed.append(True))
    monkeypatch.setattr(parallel, "make_env", lambda name, task, **kw: env)
    monkeypatch.setattr(parallel, "run_episode", lambda policy, *_: policy.predict_action_chunk(0))
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the worker's SIGINT rule is not for pytest
    jobs = queue.Queue()
    for item in (SimpleNamespace(task="reach-v3"), None):
        jobs.put(item)
    evaluator, child = Pipe()
    evaluator.close()
    _worker(child, jobs, SimpleNamespace(env_name="metaworld", env_kwargs={}), (None, (None, True, True)))
    assert closed == [True]


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_evaluation_with_one_line_and_keeps_the_finished_episodes(
    tmp_path, interrupt_when
):
    """Ctrl-C in a terminal reaches every process of the group: the evaluating process keeps the finished
    episodes (results_partial.json) and says it was interrupted in one line, exit status 130; the workers say
    nothing. Each used to print a traceback (``Process SpawnProcess-N: ... KeyboardInterrupt``), the
    evaluating process a third."""
    pytest.importorskip("metaworld")
    out = tmp_path / "eval"
    rc, stderr = interrupt_when(
        [sys.executable, "-m", "oft.cli", "eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert",
         "--episodes", "40", "--workers", "2", "--video-episodes", "0", "--out", str(out)],
        ready="success=",  # the progress bar after the first finished episode
    )  # fmt: skip
    assert rc == 130 and "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith("oft eval: interrupted"), stderr
    kept = json.loads((out / "results_partial.json").read_text())
    assert kept["episodes_finished"] >= 1 and "KeyboardInterrupt" in kept["error"]
