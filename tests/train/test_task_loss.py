"""The loss of each task of a multi-task run: each head gives each sample's loss, the loop logs it by task."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from oft.model.heads import SAMPLE_LOSS
from oft.train import distributed as D
from oft.train.loop import MAX_LOGGED_TASKS, logged_tasks, task_losses, task_sums

INSTRUCTIONS = ["open the drawer", "press the red button now please", "open the drawer"]
HEADS = [("l1", {}), ("discrete", {"decode": "parallel"}), ("discrete", {"decode": "autoregressive"}),
         ("diffusion", {})]  # fmt: skip


def _policy_and_batch(head: str, kwargs: dict):
    from oft.bench.latency import neutral_stats
    from oft.data.normalize import NormStats
    from oft.model.build import build_policy
    from oft.spec import get_spec

    if head == "diffusion":
        pytest.importorskip("diffusers", reason="the diffusion head's DDIM scheduler comes from diffusers")
    spec = get_spec("libero").replace(chunk_len=3)
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim))
    torch.manual_seed(0)
    policy = build_policy(spec, stats, sorted(set(INSTRUCTIONS)), arch="tiny", head=head, head_kwargs=kwargs)
    g = torch.Generator().manual_seed(1)
    B, H = len(INSTRUCTIONS), policy.image_pipeline.size
    images = torch.randint(0, 255, (B, len(spec.cameras), H, H, 3), generator=g, dtype=torch.uint8)
    proprio = torch.rand(B, spec.proprio_dim, generator=g) * 2 - 1
    target = torch.rand(B, 3, spec.action_dim, generator=g) * 2 - 1
    is_pad = torch.tensor([[False, False, False], [False, False, True], [False, True, True]])
    return policy.eval(), (images, proprio, target, is_pad)


@pytest.mark.parametrize("head, kwargs", HEADS)
def test_each_head_gives_each_samples_loss_whose_weighted_mean_is_the_batch_loss(head, kwargs):
    policy, (images, proprio, target, is_pad) = _policy_and_batch(head, kwargs)
    loss, metrics = policy.forward_normalized(images, proprio, INSTRUCTIONS, target, is_pad)
    sample = metrics[SAMPLE_LOSS]
    assert sample.shape == (len(INSTRUCTIONS),) and not sample.requires_grad
    steps = (
        (~is_pad).sum(1).float()
    )  # the batch loss weighs each sample by its chunk steps that are not padding
    torch.testing.assert_close(loss.detach(), (sample * steps).sum() / steps.sum())
    if head == "diffusion":
        return  # its noise is drawn for the whole batch: a sample alone gets another draw
    for b in range(len(INSTRUCTIONS)):  # each sample's loss is the loss of that sample alone
        alone, _ = policy.forward_normalized(
            images[b : b + 1],
            proprio[b : b + 1],
            INSTRUCTIONS[b : b + 1],
            target[b : b + 1],
            is_pad[b : b + 1],
        )
        torch.testing.assert_close(sample[b], alone.detach(), rtol=1e-4, atol=1e-5)


def test_task_sums_and_losses_group_samples_by_instruction():
    tasks = logged_tasks(["b", "a", "c", "a"])
    assert tasks == {"a": 0, "b": 1, "c": 2}
    sums = task_sums(torch.tensor([1.0, 2.0, 3.0, 4.0]), ["a", "b", "a", "a"], tasks)
    torch.testing.assert_close(sums, torch.tensor([[8.0, 2.0, 0.0], [3.0, 1.0, 0.0]]))
    info = D.DistInfo()
    # two steps of one interval add up; a task not drawn in the interval is not logged
    more = task_sums(torch.tensor([6.0]), ["b"], tasks)
    assert task_losses(sums + more, tasks, info) == pytest.approx({"task_loss/a": 8 / 3, "task_loss/b": 4.0})
    assert task_losses(None, tasks, info) == {}


def test_one_task_or_too_many_are_not_logged_per_task():
    assert logged_tasks(["open the drawer"] * 5) == {}
    assert logged_tasks([f"task {i}" for i in range(MAX_LOGGED_TASKS + 1)]) == {}
    assert len(logged_tasks([f"task {i}" for i in range(MAX_LOGGED_TASKS)])) == MAX_LOGGED_TASKS


def test_training_logs_each_tasks_loss(tmp_path):
    from oft.data.dataset import ListDataset
    from oft.train.feedback import read_metrics
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    episodes = make_episodes(n=4)  # two instructions, "open the drawer number 0" and "... 1"
    run = train(tiny_config(max_steps=4, log_every=2), tmp_path / "two", dataset=ListDataset(episodes))
    rows = read_metrics(run.out_dir / "metrics.jsonl")
    names = {f"task_loss/open the drawer number {i}" for i in (0, 1)}
    assert rows
    for row in rows:
        assert {k for k in row if k.startswith("task_loss/")} <= names
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in row if k.startswith("task_loss/"))
    assert names == {k for row in rows for k in row if k.startswith("task_loss/")}
    assert (run.out_dir / "loss_curve.png").is_file()
    for ep in episodes:
        ep.instruction = "open the drawer"
    run = train(tiny_config(max_steps=2, log_every=1), tmp_path / "one", dataset=ListDataset(episodes))
    lines = (run.out_dir / "metrics.jsonl").read_text().splitlines()
    assert lines and not any(k.startswith("task_loss/") for line in lines for k in json.loads(line))
    assert np.isfinite([json.loads(line)["loss"] for line in lines]).all()


def _stats(lo, hi):
    from oft.data.normalize import Stats

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Stats(mean=(lo + hi) / 2, std=hi - lo, min=lo, max=hi, q01=lo, q99=hi)


def test_squeezed_dims_are_those_a_task_fills_less_than_half_of():
    from oft.train.build import squeezed_dims

    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-0.4, 0.4, 5000), rng.uniform(-1, 1, 5000), np.zeros(5000)], axis=1)
    squeezed = squeezed_dims(actions, _stats([-1, -1, -1], [1, 1, 1]), "bounds_q99")
    assert list(squeezed) == [0] and squeezed[0] == pytest.approx(
        0.4, abs=0.02
    )  # a constant dim is not scaled
    assert (
        squeezed_dims(actions, _stats([-0.4, -1, 0], [0.4, 1, 0]), "bounds_q99") == {}
    )  # its own statistics
    masked = _stats([-1, -1, -1], [1, 1, 1])
    masked.mask = np.array([False, True, True])
    assert squeezed_dims(actions, masked, "bounds_q99") == {}


def test_a_task_squeezed_by_shared_statistics_is_warned_about_and_not_with_its_own(tmp_path, caplog):
    """One set of statistics over two tasks, one with small actions: training names that task; normalized
    per dataset (one dataset per task), nothing to warn about."""
    from types import SimpleNamespace

    from oft.data.dataset import ListDataset
    from oft.train.build import warn_squeezed_tasks
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    episodes = make_episodes(n=4)
    for ep in episodes[1::2]:  # "open the drawer number 1": a fifth of the others' motion in x
        ep.actions[:, 0] *= 0.2
    with caplog.at_level("WARNING", logger="oft.train.build"):
        train(tiny_config(max_steps=1), tmp_path / "merged", dataset=ListDataset(episodes))
    warned = [r.getMessage() for r in caplog.records if "its actions span only part" in r.getMessage()]
    assert len(warned) == 1 and "'open the drawer number 1'" in warned[0] and "dim 0" in warned[0]

    actions = torch.from_numpy(np.concatenate([ep.actions for ep in episodes]))
    loader = SimpleNamespace(actions=actions, frame_episode=np.repeat(np.arange(4), 16),
                             instructions=[ep.instruction for ep in episodes],
                             episode_norm_key=[f"task{i % 2}" for i in range(4)])  # fmt: skip
    own = {f"task{k}": np.concatenate([ep.actions for ep in episodes[k::2]]) for k in (0, 1)}
    stats = {
        k: SimpleNamespace(action=_stats(np.quantile(a, 0.01, 0), np.quantile(a, 0.99, 0)))
        for k, a in own.items()
    }
    policy = SimpleNamespace(spec=SimpleNamespace(normalization="bounds_q99"), dataset_stats=stats,
                             norm_stats=stats["task0"], unnorm_key="task0")  # fmt: skip
    assert warn_squeezed_tasks(loader, policy) == []
    loader.episode_norm_key = None  # the same data under task0's statistics alone: task 1 is squeezed
    assert len(warn_squeezed_tasks(loader, policy)) == 1
    assert warn_squeezed_tasks(loader, policy, max_tasks=1) == []  # an instruction per episode: not checked
