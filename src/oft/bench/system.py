"""What a user plans with besides Table II: training step, data loader, simulator, and the machine's limit.

* ``matmul``: a 1024x1024 fp32 matmul, the yardstick: its rate is what this machine's BLAS does at best, and
  the time of the same matmul on another machine converts latencies between machines (the paper's bench
  numbers, :data:`REFERENCE`, were measured when it took 11.2 ms).
* ``flops``: the FLOPs of one chunk prediction, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls, convolutions and attention; elementwise work is not counted), divided by its latency, as a
  fraction of the matmul rate: how close inference runs to the hardware's limit.
* ``train_step``: one optimizer update (forward, backward, AdamW) on a synthetic batch, samples/s.
* ``loader``: the in-memory :class:`~oft.data.loader.ChunkLoader` with augmentation, samples/s.
* ``sim``: MetaWorld steps/s with and without rendering the policy's cameras.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from oft.observation import Batch

log = logging.getLogger(__name__)

SYSTEM_ROWS = ("flops", "train_step", "loader", "sim")
# The paper's own code on its "bench" architecture, measured on a 2-core CPU when MATMUL_S was the time of a
# 1024x1024 fp32 matmul (issue 12): latency of a chunk, of a LoRA r=32 all-linear training step of batch 4
# (fp32), of one autoregressive action.
REFERENCE = {"matmul_s": 0.0112, "chunk_s": 0.180, "train_step_s": 2.06, "ar_action_s": 0.215}


@dataclass(frozen=True)
class SystemRow:
    name: str
    seconds: float  # median seconds per call (per step / batch / env step)
    rate: float  # per second: samples, env steps or FLOPs
    unit: str
    note: str = ""


def median_seconds(fn: Callable[[], object], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, iters)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_seconds(n: int = 1024, iters: int = 20) -> float:
    """Median seconds of one (n, n) @ (n, n) fp32 matmul on the CPU with the current torch threads."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    return median_seconds(lambda: a @ b, 3, iters)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as ``FlopCounterMode`` counts them (a multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def synthetic_batch(policy, batch_size: int, seed: int = 0) -> Batch:
    """A training batch at the model's input size: random frames, proprio and in-range actions."""
    g = torch.Generator().manual_seed(seed)
    spec, size = policy.spec, policy.image_size
    images = torch.randint(
        0, 256, (batch_size, spec.num_cameras, size, size, 3), dtype=torch.uint8, generator=g
    )
    lo, hi = (
        torch.as_tensor(v, dtype=torch.float32) for v in policy.norm_stats.action.bounds(spec.normalization)
    )
    actions = lo + (hi - lo) * torch.rand(batch_size, spec.chunk_len, spec.action_dim, generator=g)
    proprio = None
    if spec.proprio_dim:
        plo, phi = policy.norm_stats.proprio.bounds(spec.normalization)
        plo, phi = torch.as_tensor(plo, dtype=torch.float32), torch.as_tensor(phi, dtype=torch.float32)
        proprio = plo + (phi - plo) * torch.rand(batch_size, spec.proprio_dim, generator=g)
    pad = torch.zeros(batch_size, spec.chunk_len, dtype=torch.bool)
    return Batch(images, proprio, ["open the drawer"] * batch_size, actions, pad)


def train_step_row(
    policy, batch_size: int, lora_rank: int, warmup: int, iters: int, compile: bool = False
) -> SystemRow:
    """Median seconds of one full update (forward, backward, AdamW step) on a copy of ``policy``.

    lora_rank > 0: LoRA adapters of that rank (alpha = rank) on every linear layer of the trunk, only they
    and the head train (the paper's fine-tuning); 0 trains every weight.
    """
    from oft.model.assemble import add_lora
    from oft.train.build import set_trainable
    from oft.train.config import TrainConfig

    model = copy.deepcopy(policy)
    if lora_rank > 0:
        add_lora(model, {"rank": lora_rank, "alpha": float(lora_rank)})
    set_trainable(model, TrainConfig())  # under LoRA: adapters + the head and projectors, as training does
    model.train()
    if compile:
        from oft.bench.latency import compile_trunk

        compile_trunk(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = synthetic_batch(model, batch_size)

    def step() -> None:
        loss, _ = model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = median_seconds(step, warmup, iters)
    what = f"batch {batch_size}, " + (f"LoRA r={lora_rank}" if lora_rank else "full fine-tuning")
    return SystemRow("train_step", seconds, batch_size / seconds, "samples/s", what)


def loader_row(policy, batch_size: int, iters: int) -> SystemRow:
    """Samples/s of the in-memory loader (resize by the policy's pipeline, augmentation on)."""
    from oft.data.episode import Episode
    from oft.data.loader import ChunkLoader

    spec, size = policy.spec, policy.image_size
    rng = np.random.default_rng(0)
    length = max(4 * spec.chunk_len, 32)
    episodes = [
        Episode(
            {c: rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8) for c in spec.cameras},
            rng.normal(size=(length, spec.proprio_dim)).astype(np.float32),
            rng.uniform(-1, 1, (length, spec.action_dim)).astype(np.float32),
            "open the drawer",
        )
        for _ in range(4)
    ]
    loader = ChunkLoader(
        episodes, spec.chunk_len, list(spec.cameras), batch_size, pipeline=policy.image_pipeline, pad=True
    )
    it = iter(loader)
    seconds = median_seconds(lambda: next(it), 2, iters)
    return SystemRow("loader", seconds, batch_size / seconds, "samples/s", f"batch {batch_size}, augmented")


def sim_rows(policy, task: str = "drawer-open-v3", steps: int = 100) -> list[SystemRow]:
    """MetaWorld env steps/s rendering the policy's cameras at its render size, and without rendering."""
    from oft.sim.base import make_env
    from oft.sim.evaluate import render_size_arg

    sizes = policy.render_sizes
    cameras = tuple(c for c in policy.spec.cameras if c in _metaworld_cameras()) or ("corner",)
    size = render_size_arg({c: sizes.get(c, (policy.image_size,) * 2) for c in cameras})
    rows = []
    with make_env("metaworld", task=task, cameras=cameras, image_size=size) as env:
        env.reset(0)
        action = np.zeros(env.spec.action_dim, np.float32)
        for render in (True, False):
            seconds = median_seconds(lambda r=render: env.step(action, render=r), 3, steps)
            what = f"{task}, {len(cameras)} camera(s) at {size}" if render else task
            rows.append(SystemRow(f"sim_{'render' if render else 'no_render'}", seconds, 1 / seconds,
                                  "steps/s", what))  # fmt: skip
    return rows


def _metaworld_cameras() -> tuple[str, ...]:
    from oft.sim.metaworld import CAMERAS

    return CAMERAS


def format_system(rows: list[SystemRow]) -> str:
    lines = [f"{'measure':<24} {'median ms':>10} {'rate':>14}  unit / setting", "-" * 78]
    for r in rows:
        rate = f"{r.rate / 1e9:.2f} G" if r.unit == "FLOP/s" else f"{r.rate:.1f}"
        lines.append(f"{r.name:<24} {r.seconds * 1e3:>10.2f} {rate:>14}  {r.unit}  {r.note}")
    return "\n".join(lines)


__all__ = [
    "REFERENCE",
    "SYSTEM_ROWS",
    "SystemRow",
    "count_flops",
    "format_system",
    "loader_row",
    "matmul_seconds",
    "sim_rows",
    "synthetic_batch",
    "train_step_row",
]
