"""``max_minutes`` is the run's budget, like ``max_steps``: a run stopped and resumed with ``--resume`` spends
what is left of it, and ``decay_at`` of it falls at the same point of the run as without the stop.

Each checkpoint records the run's wall seconds so far (``resume_state.json``: ``train_seconds``). Before,
every resumed process started the budget and the decay's clock from zero: a 60-minute run stopped at 40
trained 60 more, and a decay not yet taken came 75% of the budget after the resume.

The clock is the training loop's ``time`` module, replaced by one that ticks one second per reading.
"""

from __future__ import annotations

import json

import pytest

from oft.train.checkpoint import CheckpointManager

from .conftest import make_episodes, tiny_config


class Killed(Exception):
    """The process stopped from outside, between two checkpoints."""


class Clock:
    """``time.perf_counter`` that moves one second each time it is read; raises :class:`Killed` at
    ``kill_at`` (a kill mid-run)."""

    now = 0.0
    kill_at: float | None = None

    @classmethod
    def perf_counter(cls):
        cls.now += 1.0
        if cls.kill_at is not None and cls.now >= cls.kill_at:
            cls.kill_at = None
            raise Killed
        return cls.now


@pytest.fixture
def clock(monkeypatch):
    import oft.train.loop as loop

    Clock.now, Clock.kill_at = 0.0, None
    monkeypatch.setattr(loop, "time", Clock)
    return Clock


@pytest.fixture(scope="module")
def data():
    from oft.data.dataset import ListDataset

    return ListDataset(make_episodes())


def _lr_by_step(out):
    from oft.train.feedback import read_metrics

    return {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl")}


def _decay_step(out, lr):
    lrs = _lr_by_step(out)
    return min(s for s, v in lrs.items() if v < lr)


def _recorded_seconds(out):
    return json.loads((CheckpointManager(out).latest() / "resume_state.json").read_text())["train_seconds"]


BUDGET = dict(max_steps=10_000, max_minutes=1.0, decay_at=0.5, save_every=2, lr=1e-3)


def test_a_resumed_run_spends_what_is_left_of_its_minutes(clock, data, tmp_path):
    from oft.train.loop import train

    cfg = tiny_config(**BUDGET)
    whole = train(cfg, tmp_path / "whole", dataset=data)
    assert whole.stopped_by == "max_minutes"

    clock.now, clock.kill_at = 0.0, 25.0  # killed before the decay (30 s), well inside the budget
    with pytest.raises(Killed):
        train(cfg, tmp_path / "split", dataset=data)
    stopped = CheckpointManager(tmp_path / "split").latest()
    assert stopped is not None and 0 < _recorded_seconds(tmp_path / "split") < 25
    assert max(_lr_by_step(tmp_path / "split").values()) == min(_lr_by_step(tmp_path / "split").values())
    resumed = train(cfg, tmp_path / "split", resume=True, dataset=data)

    assert resumed.stopped_by == "max_minutes" and resumed.start_step > 0
    # the segments together run about as long as the uninterrupted run (the steps lost after the last
    # checkpoint and a few clock readings of start-up differ), not a whole budget more
    assert resumed.run_s == pytest.approx(whole.run_s, abs=4)
    assert abs(resumed.step - whole.step) <= 2, (resumed.step, whole.step)
    assert _recorded_seconds(tmp_path / "split") == pytest.approx(resumed.run_s, abs=2)
    # and the decay at half the budget falls where it fell without the stop
    assert abs(_decay_step(tmp_path / "split", 1e-3) - _decay_step(tmp_path / "whole", 1e-3)) <= 1


def test_resuming_a_run_whose_minutes_are_spent_trains_nothing(clock, data, tmp_path):
    from oft.train.loop import train

    cfg = tiny_config(**BUDGET)
    done = train(cfg, tmp_path, dataset=data)
    rows = (tmp_path / "metrics.jsonl").read_text()
    again = train(cfg, tmp_path, resume=True, dataset=data)
    assert (again.start_step, again.step, again.stopped_by) == (done.step, done.step, "max_minutes")
    assert again.checkpoint == CheckpointManager(tmp_path).latest()
    assert (tmp_path / "metrics.jsonl").read_text() == rows, "a spent run trained again"


def test_a_checkpoint_without_recorded_seconds_reads_them_from_the_metrics(tmp_path):
    """Checkpoints written before ``train_seconds`` was recorded: the run's metrics.jsonl stands in
    (each row's steps at its samples/s)."""
    from oft.train import distributed as D
    from oft.train.loop import _seconds_before

    rows = [{"step": s, "samples_per_s": r} for s, r in ((5, 2.0), (10, 4.0), (15, 1.0))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config(batch_size=4)
    # steps 1-5 at 2 samples/s (10 s), 6-10 at 4 (5 s); step 15 is past the checkpoint
    old = {"step": 10, "world_size": 1, "ranks": []}  # a checkpoint's resume_state.json
    assert _seconds_before(old, tmp_path, cfg, D.DistInfo()) == pytest.approx(15.0)
    assert _seconds_before({**old, "train_seconds": 42.5}, tmp_path, cfg, D.DistInfo()) == 42.5


def test_set_up_longer_than_the_budget_does_not_spend_it(clock, data, tmp_path, monkeypatch):
    """The budget counts the training loop, not the set-up before it. On an H200 a 1,100-episode MT10
    dataset took 40 s to decode into memory, and a 30 s budget (``oft study --budget-minutes 0.5``) then
    trained one step and evaluated it; every resumed segment pays the set-up again too."""
    import oft.train.loop as loop
    from oft.train.loop import train

    cfg = tiny_config(**BUDGET)
    quick = train(cfg, tmp_path / "quick", dataset=data)

    make_state = loop._make_state

    def slow_make_state(*args, **kwargs):  # decoding a large dataset: two budgets' worth of seconds
        state = make_state(*args, **kwargs)
        clock.now += 2 * 60.0 * cfg.max_minutes
        return state

    monkeypatch.setattr(loop, "_make_state", slow_make_state)
    clock.now = 0.0
    slow = train(cfg, tmp_path / "slow", dataset=data)

    assert slow.stopped_by == "max_minutes"
    assert abs(slow.step - quick.step) <= 2, (slow.step, quick.step)
    assert slow.run_s == pytest.approx(quick.run_s, abs=4)
    assert slow.wall_s >= slow.run_s + 2 * 60.0 * cfg.max_minutes  # the set-up is still in the wall time
    assert _recorded_seconds(tmp_path / "slow") == pytest.approx(slow.run_s, abs=2)
    # the decay at half the budget falls at half of the training, not during the set-up
    assert abs(_decay_step(tmp_path / "slow", 1e-3) - _decay_step(tmp_path / "quick", 1e-3)) <= 1
