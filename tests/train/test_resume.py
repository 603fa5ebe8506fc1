"""A training process killed with SIGKILL and resumed ends with the same weights as an uninterrupted run.

Bit-exact on the CPU: the checkpoint restores the weights (safetensors, exact), AdamW moments and step, the
scheduler, every RNG (python, numpy, torch) and the data loader's (epoch, batch) position, and both runs use
one thread (so reductions happen in the same order).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from oft.train.checkpoint import CheckpointManager
from oft.train.loop import train

STEPS, SAVE_EVERY = 40, 5


def _cmd(dataset, out, resume=False, loader="memory"):
    cmd = [sys.executable, "-m", "oft.cli", "train", "--preset", "metaworld-tiny", "--base", "tiny",
           "--dataset", str(dataset), "--out", str(out), "--steps", str(STEPS),
           "--set", "batch_size=4", "--set", f"save_every={SAVE_EVERY}", "--set", "keep_last=2",
           "--set", "num_threads=1", "--set", "device=cpu", "--set", "decay_step=20",
           "--set", f"data_loader={loader}", "--set", "num_workers=1"]  # fmt: skip
    return [*cmd, "--resume"] if resume else cmd


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_kill_9_then_resume_equals_uninterrupted(tiny_dataset_dir, tmp_path, loader):
    from oft.train.commands import add_arguments, config_from_args

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(tiny_dataset_dir, out, loader=loader), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    mgr = CheckpointManager(out)
    deadline = time.time() + 120
    while mgr.latest() is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = CheckpointManager(out).checkpoints()[-1][0]
    assert killed_at < STEPS, "the run finished before it could be killed; make it longer"

    resume_cmd = _cmd(tiny_dataset_dir, out, resume=True, loader=loader)
    done = subprocess.run(resume_cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr and f"at step {killed_at}" in done.stderr

    # the same run, uninterrupted, in this process
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(_cmd(tiny_dataset_dir, tmp_path / "straight", loader=loader)[4:])
    torch.set_num_threads(1)
    straight = train(config_from_args(args), args.out)

    resumed, reference = _weights(CheckpointManager(out).latest()), _weights(straight.checkpoint)
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), f"{name} differs after resume"


# --------------------------------------------------------------------------- a resume with changed settings
# Every TrainConfig field is either refused on resume (RESUME_FIXED) or applied from the resumed step on
# (RESUME_APPLIED) or free (budgets); the recorded config must equal what ran.
BASE_STEPS, RESUMED_STEPS = 4, 8

# field -> (settings of the original run, the value the resume asks for)
REFUSED = {
    "base": ({}, "small"),
    "datasets": ({}, ("elsewhere",)),
    "robot": ({}, "libero"),
    "head": ({}, "diffusion"),
    "decode": ({"head": "discrete"}, "autoregressive"),
    "chunk_len": ({}, 4),
    "cameras": ({}, ("corner",)),
    "proprio": ({}, False),
    "film": ({}, True),
    "action_slots": ({}, "per_step"),
    "film_input": ({"film": True}, "mean_rms"),
    "lora_rank": ({}, 2),
    "freeze_token_embeddings": ({}, True),
    "augment": ({}, False),
    "crop_jitter": ({}, 0.5),
    "pad_chunks": ({}, False),
    "batch_size": ({}, 2),
    "bf16": ({}, False),
    "seed": ({}, 1),
    "dataset_weights": ({}, (1.0,)),
    "start_repeat": ({}, 2),
    "start_frames": ({"start_repeat": 2}, 1),
    "mixture_stats": ({}, "merged"),
    "base_stats": ({}, "dataset"),
}
APPLIED = {
    "lr": ({}, 1e-4),
    "weight_decay": ({}, 0.5),
    "decay_step": ({"decay_step": 3}, 6),
    "decay_factor": ({"decay_step": 3}, 0.5),
    "decay_at": ({}, 0.75),  # not reached in the first run: the new fraction decides (0.75 * 8 = update 6)
    "warmup_steps": ({}, 7),
    "grad_clip": ({}, 0.5),
    "grad_accum": ({}, 2),
    "lora_dropout": ({"lora_rank": 2}, 0.25),
    "ema_decay": ({}, 0.9),  # the average starts at the resumed weights (tests/train/test_ema.py)
}


def _data():
    from oft.data.dataset import ListDataset

    from .conftest import make_episodes

    return ListDataset(make_episodes(n=4, length=16))


def _first_run(tmp_path, **settings):
    from .conftest import tiny_config

    cfg = tiny_config(max_steps=BASE_STEPS, save_every=BASE_STEPS, log_every=1, **settings)
    data = _data()
    train(cfg, tmp_path, dataset=data)
    return cfg, data


def test_every_field_has_a_resume_rule():
    from oft.train.config import RESUME_APPLIED, RESUME_FIXED, RESUME_FREE, TrainConfig

    assert set(REFUSED) == set(RESUME_FIXED) and set(APPLIED) == set(RESUME_APPLIED)
    groups = [*RESUME_FIXED, *RESUME_APPLIED, *RESUME_FREE]
    assert sorted(groups) == sorted(TrainConfig.__dataclass_fields__), "each field in exactly one group"


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_resume_refuses_a_changed_fixed_setting_before_any_work(field, tmp_path, monkeypatch):
    import oft.train.loop as loop

    settings, new = REFUSED[field]
    cfg, data = _first_run(tmp_path, **settings)
    recorded = (tmp_path / "train_config.json").read_text()

    def no_work(*args, **kwargs):
        raise AssertionError("the resume was not refused before building the policy")

    monkeypatch.setattr(loop, "make_policy", no_work)
    monkeypatch.setattr(loop, "open_datasets", no_work)
    changed = cfg.replace(max_steps=RESUMED_STEPS, **{field: new})
    old = getattr(cfg, field)
    with pytest.raises(ValueError, match=re.escape(f"TrainConfig.{field}: {old!r} -> {new!r}")):
        train(changed, tmp_path, resume=True, dataset=data)
    assert (tmp_path / "train_config.json").read_text() == recorded, "a refused resume rewrote the config"
    assert [s for s, _ in CheckpointManager(tmp_path).checkpoints()] == [BASE_STEPS]


def _expected_lr(cfg, update: int) -> float:
    import math

    from oft.train.schedule import StepDecayWithWarmup

    # decay_at without a time budget: the first update at or past that fraction of max_steps
    decay_step = cfg.decay_step if cfg.decay_at is None else math.ceil(cfg.decay_at * cfg.max_steps)
    return cfg.lr * StepDecayWithWarmup(decay_step, cfg.decay_factor, cfg.warmup_steps)(update)


@pytest.mark.parametrize("field", sorted(APPLIED))
def test_resume_applies_and_logs_a_changed_optimizer_setting(field, tmp_path, caplog):
    import json

    from oft.train.config import TrainConfig

    settings, new = APPLIED[field]
    cfg, data = _first_run(tmp_path, **settings)
    changed = cfg.replace(max_steps=RESUMED_STEPS, **{field: new})
    with caplog.at_level(logging.INFO, logger="oft.train.loop"):
        result = train(changed, tmp_path, resume=True, dataset=data)
    assert (result.start_step, result.step) == (BASE_STEPS, RESUMED_STEPS)
    ckpt = CheckpointManager(tmp_path).latest()

    # what ran: the lr of every resumed update and the optimizer's settings follow the new values
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if r["step"] > BASE_STEPS]
    assert [r["step"] for r in resumed] == list(range(BASE_STEPS + 1, RESUMED_STEPS + 1))
    for r in resumed:
        assert r["lr"] == pytest.approx(_expected_lr(changed, r["step"] - 1), rel=1e-12), r
        assert ("grad_norm" in r) == (changed.grad_clip is not None)
    groups = torch.load(ckpt / "trainer_state.pt", weights_only=True)["optimizer"]["param_groups"]
    for group in groups:
        assert group["lr"] == pytest.approx(_expected_lr(changed, RESUMED_STEPS), rel=1e-12)
        assert group["weight_decay"] == changed.weight_decay
    # one micro-batch per accumulation step (64 padded samples / batch 4: no epoch ends within 12 batches)
    loader = json.loads((ckpt / "resume_state.json").read_text())["ranks"][0]["loader"]
    consumed = BASE_STEPS * cfg.grad_accum + (RESUMED_STEPS - BASE_STEPS) * changed.grad_accum
    assert (loader["epoch"], loader["batch"]) == (0, consumed)

    # the recorded config is the one that ran from the resumed step on; the change is logged and on record
    assert TrainConfig.load(tmp_path / "train_config.json") == changed
    assert TrainConfig.load(ckpt / "train_config.json") == changed
    assert f"TrainConfig.{field} changed {getattr(cfg, field)!r} -> {new!r}" in caplog.text
    record = json.loads((tmp_path / "resumes.jsonl").read_text().splitlines()[-1])
    assert record["step"] == BASE_STEPS and record["changed"][field] == [getattr(cfg, field), new]


def test_resume_keeps_the_lora_dropout_of_the_config(tmp_path):
    """The saved policy does not record LoRA dropout: a resumed run must not silently train without it."""
    from oft.train.build import build_from_config
    from oft.train.loop import robot_spec_for

    cfg, data = _first_run(tmp_path, lora_rank=2, lora_dropout=0.25)
    policy = build_from_config(cfg, robot_spec_for(cfg), data, CheckpointManager(tmp_path).latest())
    dropouts = [m for n, m in policy.named_modules() if n.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Dropout) and m.p == 0.25 for m in dropouts)


def test_resume_keeps_the_dtype_the_run_trained_in(tmp_path):
    """A bf16 run (as ``oft train`` writes one from OpenVLA on a GPU: bf16 weights) resumes in bf16.

    The first run's checkpoint is converted to bf16 on disk: on the CPU no config trains in bf16.
    """
    from safetensors.torch import save_file

    from oft.checksums import write_checksums

    cfg, data = _first_run(tmp_path)
    ckpt = CheckpointManager(tmp_path).latest()
    as_bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in _weights(ckpt).items()}
    save_file(as_bf16, str(ckpt / "model.safetensors"), metadata={"format": "oft-policy"})
    write_checksums(ckpt)  # a deliberate change: record it, or the resume refuses the checkpoint

    result = train(cfg.replace(max_steps=BASE_STEPS + 2), tmp_path, resume=True, dataset=data)
    assert result.step == BASE_STEPS + 2
    resumed = _weights(result.checkpoint)
    floating = {k: v.dtype for k, v in resumed.items() if v.is_floating_point()}
    assert floating and set(floating.values()) == {torch.bfloat16}, set(floating.values())
    changed = [k for k in floating if not torch.equal(resumed[k], as_bf16[k])]
    assert changed, "the resumed bf16 run did not train"


def _one_camera(data):
    """``data``'s episodes with only their corner camera: data the metaworld spec's cameras do not fit."""
    from dataclasses import replace

    from oft.data.dataset import ListDataset

    return ListDataset(
        [
            replace(ep, images={"corner": ep.images["corner"]})
            for ep in map(data.episode, range(data.num_episodes))
        ]
    )


def test_a_run_refused_by_its_data_writes_nothing(tmp_path):
    """Refused before any work: a new run whose data lack a camera leaves no run directory behind."""
    from .conftest import tiny_config

    out = tmp_path / "new"
    with pytest.raises(ValueError, match="lacks"):
        train(tiny_config(), out, dataset=_one_camera(_data()))
    assert not out.exists()
    with pytest.raises(ValueError, match="too few for batch_size=1000"):  # refused by the loader
        train(tiny_config(batch_size=1000), out, dataset=_data())
    assert not out.exists()


def test_a_resume_refused_by_its_data_keeps_the_recorded_config(tmp_path):
    """A resume that changes the learning rate (applied on resume) but is then refused by its data: the run's
    train_config.json still holds the values in force, so the next plain --resume does not pick up a change
    that never ran."""
    cfg, data = _first_run(tmp_path)
    recorded = (tmp_path / "train_config.json").read_text()
    with pytest.raises(ValueError, match="lacks"):
        train(
            cfg.replace(max_steps=RESUMED_STEPS, lr=cfg.lr / 7),
            tmp_path,
            resume=True,
            dataset=_one_camera(data),
        )
    assert (tmp_path / "train_config.json").read_text() == recorded
