"""Wall-clock timing of a callable: warmup, N timed calls, median / p90, device-synchronized."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class BenchRow:
    """One measured variant; ``throughput_hz`` is actions per second (actions per call / median latency)."""

    name: str
    latency_median_s: float
    latency_p90_s: float
    throughput_hz: float
    actions_per_call: int

    def to_json(self) -> dict:
        row = asdict(self)
        row.pop("actions_per_call")
        return row


def _sync(device: torch.device) -> None:
    # asynchronous backends return before the kernels finish; without this the timer measures the launch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_calls(fn: Callable[[], object], warmup: int, iters: int, device: torch.device) -> list[float]:
    """Seconds per call of ``fn`` for ``iters`` calls after ``warmup`` untimed calls."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
    return times


def summarize(name: str, times: list[float], actions_per_call: int) -> BenchRow:
    median = statistics.median(times)
    return BenchRow(
        name=name,
        latency_median_s=median,
        latency_p90_s=percentile(times, 90),
        throughput_hz=actions_per_call / median,
        actions_per_call=actions_per_call,
    )


def format_table(rows: list[BenchRow], reference: str | None = None) -> str:
    """Aligned text table; ``reference`` names the row the last column divides latency by."""
    ref = next((r for r in rows if r.name == reference), None)
    header = f"{'variant':<24} {'median ms':>10} {'p90 ms':>10} {'actions':>8} {'actions/s':>10}"
    if ref is not None:
        header += f" {'x ' + reference:>18}"
    lines = [header, "-" * len(header)]
    for r in rows:
        line = (
            f"{r.name:<24} {r.latency_median_s * 1e3:>10.2f} {r.latency_p90_s * 1e3:>10.2f} "
            f"{r.actions_per_call:>8d} {r.throughput_hz:>10.1f}"
        )
        if ref is not None:
            line += f" {r.latency_median_s / ref.latency_median_s:>18.3f}"
        lines.append(line)
    return "\n".join(lines)


def write_json(rows: list[BenchRow], path: str | Path, source: str | None = None) -> None:
    """One JSON object per row; with ``source`` (what was benched: a checkpoint's step directory, or the
    named architecture), each row records it as ``"source"``."""
    extra = {} if source is None else {"source": source}
    Path(path).write_text(json.dumps([{**r.to_json(), **extra} for r in rows], indent=2) + "\n")
