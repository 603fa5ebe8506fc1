"""Issue 11, item 7: what a new user met training OFT+ on ALOHA — the CPU preset, the robot a dataset records,
a decay that follows the run's real length, an ETA that respects the time budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oft.data.episode import Episode
from oft.spec import get_spec
from oft.train.config import TrainConfig, resume_changes
from oft.train.presets import check_dataset_robot, default_preset, get_preset, recorded_robot

from .conftest import tiny_config

ALOHA_CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def _aloha_dataset(root, robot_type="aloha", fps=50, n=2, length=30):
    from oft.data.lerobot import LeRobotDataset, LeRobotWriter

    writer = LeRobotWriter(root, fps=fps, cameras=list(ALOHA_CAMS), image_shape=(16, 16), action_dim=14,
                           proprio_dim=14, robot_type=robot_type, video=False,
                           conventions="aloha")  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(n):
        images = {c: rng.integers(0, 255, (length, 16, 16, 3), dtype=np.uint8) for c in ALOHA_CAMS}
        acts = rng.uniform(-1, 1, (length, 14)).astype(np.float32)
        writer.add_episode(Episode(images, acts.copy(), acts, f"transfer the {('red', 'blue')[i % 2]} cube"))
    writer.finalize()
    return LeRobotDataset(root)


# ------------------------------------------------------------------------------------------- the preset
def test_aloha_preset_is_oft_plus_for_this_cpu():
    cfg = get_preset("aloha").validate(check_paths=False)
    spec = get_spec(cfg.robot)
    assert (cfg.base, cfg.device, cfg.bf16, cfg.lora_rank) == ("small", "cpu", False, 0)
    assert (cfg.head, cfg.decode, cfg.film, cfg.proprio) == ("l1", "parallel", True, True)
    assert cfg.cameras in (None, ALOHA_CAMS) and spec.cameras == ALOHA_CAMS
    assert (spec.chunk_len, spec.action_dim, spec.proprio_dim, spec.normalization) == (25, 14, 14, "bounds")
    assert cfg.decay_at is not None and cfg.decay_step is None  # follows a run stopped by max_minutes
    assert get_preset("aloha-openvla").base == "openvla/openvla-7b"  # the paper's 7B GPU recipe, kept


def test_small_base_never_stops_on_missing_cuda(monkeypatch):
    from oft.train.loop import train_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_preset("aloha-openvla").replace(base="small")  # `--preset aloha-openvla --base small`
    assert train_device(cfg) == "cpu"
    assert train_device(cfg.replace(base="openvla/openvla-7b")) == "cuda"  # a 7B stays a clear error


# ----------------------------------------------------------------------------- the robot a dataset records
def test_dataset_robot_decides_and_errors_name_the_fix(tmp_path):
    ds = _aloha_dataset(tmp_path / "aloha_sim")
    assert recorded_robot(ds) == "aloha" and default_preset([str(tmp_path / "aloha_sim")]) == "aloha"
    assert default_preset([str(tmp_path / "nothing")]) == "metaworld-tiny"
    cfg = get_preset("metaworld-tiny")
    with pytest.raises(ValueError, match="--set robot=aloha"):
        check_dataset_robot(cfg, get_spec("metaworld"), ds)
    spec = check_dataset_robot(cfg.replace(robot="aloha"), get_spec("aloha"), ds)
    assert spec.name == "aloha" and spec.control_hz == 50.0  # the dataset's recorded rate
    unrecorded = _aloha_dataset(tmp_path / "anon", robot_type=None)
    with pytest.raises(ValueError, match=r"14-D actions.*--set robot=aloha"):
        check_dataset_robot(cfg, get_spec("metaworld"), unrecorded)


def test_train_cli_without_preset_trains_an_aloha_dataset(tmp_path):
    """``oft train --dataset <aloha data>`` (no --preset, no --set robot=aloha) used to stop on "action norm
    stats have 14 dims, spec.action_dim=4"."""
    import argparse

    from oft.train.commands import add_arguments, config_from_args
    from oft.train.loop import train

    _aloha_dataset(tmp_path / "aloha_sim")
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--dataset", str(tmp_path / "aloha_sim"), "--out", str(tmp_path / "run"),
                         "--steps", "2", "--base", "tiny", "--set", "batch_size=2", "--set", "num_threads=1",
                         "--set", "data_loader=memory", "--set", "augment=false"])  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.robot == "aloha" and cfg.film
    result = train(cfg, args.out)
    assert result.step == 2
    saved = json.loads((result.checkpoint / "oft_config.json").read_text())
    assert '"name": "aloha"' in json.dumps(saved) and '"control_hz": 50.0' in json.dumps(saved)


# --------------------------------------------------------------------------- decay follows the run's length
def test_decay_at_fraction_rules():
    from oft.train.schedule import DecayAtFraction

    steps_only = DecayAtFraction(0.75, max_steps=100)
    assert not steps_only.due(74, 1e9) and steps_only.due(75, 0.0)
    timed = DecayAtFraction(0.5, max_steps=100_000, budget_s=60.0)
    assert not timed.due(10, 29.9) and timed.due(10, 30.0)
    with pytest.raises(ValueError, match="decay_at"):
        DecayAtFraction(0.0, 10)
    with pytest.raises(ValueError, match="decay_at"):
        TrainConfig(decay_at=1.5).validate(check_paths=False)
    with pytest.raises(ValueError, match="one decay rule"):
        TrainConfig(decay_at=0.5, decay_step=10).validate(check_paths=False)


def _lrs(out):
    from oft.train.feedback import read_metrics

    return {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl")}


def test_decay_is_reached_under_a_time_budget(tmp_path, monkeypatch):
    """max_steps far away, a 60 s budget on a clock that ticks 1 s per reading: the lr drops once half the
    budget has passed, before the budget ends the run (a fixed decay_step would never be reached)."""
    import oft.train.loop as loop
    from oft.data.dataset import ListDataset
    from oft.train.feedback import read_metrics

    from .conftest import make_episodes

    class Clock:
        now = 0.0

        @classmethod
        def perf_counter(cls):
            cls.now += 1.0
            return cls.now

    monkeypatch.setattr(loop, "time", Clock)
    cfg = tiny_config(max_steps=10_000, max_minutes=1.0, decay_at=0.5, save_every=10_000, lr=1e-3)
    result = loop.train(cfg, tmp_path / "run", dataset=ListDataset(make_episodes()))
    assert result.stopped_by == "max_minutes" and result.step < 10_000
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)


def test_decay_step_decided_once_survives_resume(tmp_path):
    """The step the decay happened at is saved with the schedule; a resumed run (even with another
    max_steps, which would move a fraction-of-steps decay) keeps it."""
    from oft.data.dataset import ListDataset
    from oft.train.checkpoint import CheckpointManager, read_trainer_state
    from oft.train.loop import train

    from .conftest import make_episodes

    data = ListDataset(make_episodes())
    cfg = tiny_config(max_steps=8, decay_at=0.5, save_every=6, lr=1e-3)
    train(cfg.replace(max_steps=6), tmp_path, dataset=data)  # decays at 0.5 * 6 = step 3
    state, _ = read_trainer_state(CheckpointManager(tmp_path).latest())
    assert state["scheduler"]["lr_lambdas"][0]["decay_step"] == 3
    assert resume_changes(cfg.replace(max_steps=6), cfg) == {"max_steps": (6, 8)}
    train(cfg, tmp_path, resume=True, dataset=data)
    lrs = _lrs(tmp_path)
    assert lrs[3] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1e-4)  # step 4 = update index 3
    assert lrs[7] == pytest.approx(1e-4) and lrs[8] == pytest.approx(1e-4)  # not moved to 0.5 * 8 = 4


# ------------------------------------------------------------------------------ the ETA and the time budget
def test_progress_total_follows_the_time_budget():
    from oft.train.feedback import budget_total

    # 100 steps in 50 s, 30 s left: the run ends near step 160, not at max_steps 10 000
    assert budget_total(100, 100, 50.0, 30.0, 10_000) == 160
    assert budget_total(100, 100, 50.0, 1e9, 400) == 400  # max_steps first
    assert budget_total(100, 100, 50.0, -5.0, 400) == 100  # past the deadline: ends where it is
    assert budget_total(0, 0, 0.0, 30.0, 400) == 400  # no pace yet
