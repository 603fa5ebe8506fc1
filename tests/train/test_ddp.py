"""DDP on the CPU (gloo, 2 processes under torchrun): one update equals one process with the doubled batch.

Why they must agree: rank r of 2 takes every 2nd sample of the epoch's permutation, so the two ranks' first
batches of B together are exactly the single process's first batch of 2B; DDP averages the two per-rank mean
gradients, which is the mean gradient over 2B. Augmentation is off (its random draws are per rank), and so
is chunk padding: the L1 loss is a mean over the *valid* chunk steps of a batch, so with padded chunks the
average of two per-rank means weighs samples differently from the mean over 2B (measured: gradients differ
by 5e-2; without padding by 4e-7). What remains is float summation order: the weights after one AdamW step
agree to 1e-5 absolute, while training on only half of the batch moves them by ~lr = 5e-4.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from oft.train.checkpoint import CheckpointManager
from oft.train.feedback import read_metrics
from oft.train.loop import train

from .conftest import tiny_config

TOL = 1e-5


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_two_gloo_ranks_equal_one_process_with_doubled_batch(tiny_dataset_dir, tmp_path, loader):
    """Each rank sees its own half of the doubled batch (the same samples on both ranks would give the
    half-batch update, which the last assertion tells apart), on the in-memory and the streaming path."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "oft.cli", "train", "--preset", "metaworld-tiny", "--base", "tiny",
           "--dataset", str(tiny_dataset_dir), "--out", str(out), "--steps", "1",
           "--set", "batch_size=2", "--set", "augment=false", "--set", "pad_chunks=false",
           "--set", "num_threads=1", "--set", "device=cpu", "--set", "save_every=1",
           "--set", f"data_loader={loader}", "--set", "num_workers=1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpts = CheckpointManager(out).checkpoints()
    assert [s for s, _ in ckpts] == [1]  # rank 0 alone wrote, once
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    ddp = load_file(str(ckpts[0][1] / "model.safetensors"))

    torch.set_num_threads(1)
    # the preset's model, FiLM included (its weights are compared too)
    common = dict(datasets=(str(tiny_dataset_dir),), max_steps=1, augment=False, pad_chunks=False,
                  save_every=1, lr=5e-4, weight_decay=0.01, batch_size=4, data_loader=loader,
                  film=True)  # fmt: skip
    single = train(tiny_config(**common), tmp_path / "single")
    diff = _max_diff(ddp, load_file(str(single.checkpoint / "model.safetensors")))
    assert diff < TOL, f"DDP and single-process weights differ by {diff:.3g}"
    # the loss of each task counts both ranks' samples (summed over ranks), as one process's doubled batch
    ddp_log, single_log = (read_metrics(run / "metrics.jsonl")[-1] for run in (out, single.out_dir))
    tasks = sorted(k for k in single_log if k.startswith("task_loss/"))
    assert tasks and tasks == sorted(k for k in ddp_log if k.startswith("task_loss/"))
    assert [ddp_log[k] for k in tasks] == pytest.approx([single_log[k] for k in tasks], rel=1e-4)

    half = train(tiny_config(**{**common, "batch_size": 2}), tmp_path / "half")  # the test can fail
    assert _max_diff(ddp, load_file(str(half.checkpoint / "model.safetensors"))) > 10 * TOL
