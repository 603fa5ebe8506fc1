"""Action / proprio statistics over a dataset in bounded memory.

One streaming pass gives count, min, max and mean/std exactly (Chan's parallel update per episode, float64).
Quantiles (q01 q10 q50 q90 q99, LeRobot's set) are exact — ``np.quantile`` with linear interpolation — while
the values fit ``memory_mb``. Past that, a second pass fills a fixed ``num_bins`` histogram per dimension
between the exact min and max, and each order statistic is placed inside its bin by its rank. Every such
estimate lies in the same bin as the true order statistic, so

    |q_estimated - q_exact| <= (max - min) / num_bins      per dimension

(with the default 65536 bins, 0.0015% of the range). Only actions and proprio are read
(``dataset.episode_arrays``), so video is never decoded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from oft.data.normalize import NormStats, Stats

log = logging.getLogger(__name__)

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def quantile_key(q: float) -> str:
    return f"q{round(q * 100):02d}"


class RunningStats:
    """Streaming statistics of (N, D) batches; keeps the values for exact quantiles up to ``budget`` bytes."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.count = 0
        self.mean = self.m2 = self.min = self.max = None
        self.values: list[np.ndarray] | None = []
        self.kept = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        if len(x) == 0:
            return
        n, mean = len(x), x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if self.count == 0:
            self.mean, self.m2, self.min, self.max = mean, m2, x.min(0), x.max(0)
        else:
            if x.shape[1] != self.mean.shape[0]:
                raise ValueError(f"batch has {x.shape[1]} dims, earlier batches had {self.mean.shape[0]}")
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * n / total
            self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
            self.min, self.max = np.minimum(self.min, x.min(0)), np.maximum(self.max, x.max(0))
        self.count += n
        if self.values is not None:
            self.kept += x.nbytes
            if self.kept > self.budget:
                log.info("statistics exceed the %d MB budget: quantiles from a histogram", self.budget >> 20)
                self.values = None
            else:
                self.values.append(x)

    @property
    def exact(self) -> bool:
        return self.values is not None

    def result(self, quantiles: dict[float, np.ndarray]) -> dict[str, np.ndarray]:
        out = {
            "mean": self.mean,
            "std": np.sqrt(self.m2 / self.count),
            "min": self.min,
            "max": self.max,
            "count": np.array([self.count]),
        }
        return out | {quantile_key(q): v for q, v in quantiles.items()}

    def exact_quantiles(self) -> dict[float, np.ndarray]:
        x = np.concatenate(self.values)
        return dict(zip(QUANTILES, np.quantile(x, QUANTILES, axis=0), strict=True))


class HistogramQuantiles:
    """Fixed bins between known per-dimension min and max; order statistics placed by rank in their bin."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, num_bins: int):
        self.lo, self.hi, self.bins = lo, hi, num_bins
        self.width = (hi - lo) / num_bins
        self.hist = np.zeros((lo.shape[0], num_bins), np.int64)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        scale = np.where(self.width > 0, 1.0 / np.where(self.width > 0, self.width, 1), 0.0)
        idx = np.clip(((x - self.lo) * scale).astype(np.int64), 0, self.bins - 1)
        flat = (idx + np.arange(x.shape[1]) * self.bins).reshape(-1)
        self.hist += np.bincount(flat, minlength=self.hist.size).reshape(self.hist.shape)

    def _order_stat(self, k: np.ndarray) -> np.ndarray:
        """Estimate of the k-th smallest value (0-based) per dimension."""
        cum = np.cumsum(self.hist, axis=1)
        b = np.array([np.searchsorted(cum[d], k[d] + 1) for d in range(len(k))])
        before = np.where(b > 0, cum[np.arange(len(k)), np.maximum(b - 1, 0)], 0)
        in_bin = self.hist[np.arange(len(k)), b]
        frac = (k - before + 0.5) / np.maximum(in_bin, 1)
        return self.lo + (b + frac) * self.width

    def quantiles(self, count: int) -> dict[float, np.ndarray]:
        out = {}
        d = self.lo.shape[0]
        for q in QUANTILES:
            r = q * (count - 1)
            j = int(np.floor(r))
            a = self._order_stat(np.full(d, j))
            b = self._order_stat(np.full(d, min(j + 1, count - 1)))
            out[q] = np.clip(a + (r - j) * (b - a), self.lo, self.hi)
        return out


def dataset_stats(dataset, memory_mb: float = 256, num_bins: int = 65536) -> dict[str, dict[str, np.ndarray]]:
    """{"action": {...}, "proprio": {...}} with mean std min max count q01 q10 q50 q90 q99 per dimension."""
    n = dataset.num_episodes
    if n == 0:
        raise ValueError(f"{getattr(dataset, 'path', dataset)}: no episodes to compute statistics over")
    budget = int(memory_mb * 2**20) // 2
    acc = {"action": RunningStats(budget), "proprio": RunningStats(budget)}
    for i in range(n):
        actions, proprio = dataset.episode_arrays(i)
        acc["action"].update(actions)
        if proprio.shape[1]:
            acc["proprio"].update(proprio)
    out = {}
    for name, a in acc.items():
        if a.count == 0:
            continue
        if a.exact:
            out[name] = a.result(a.exact_quantiles())
            continue
        hist = HistogramQuantiles(a.min, a.max, num_bins)
        for i in range(n):
            arrays = dict(zip(("action", "proprio"), dataset.episode_arrays(i), strict=True))
            hist.update(arrays[name])
        out[name] = a.result(hist.quantiles(a.count))
    return out


def to_norm_stats(full: dict[str, dict[str, np.ndarray]]) -> NormStats:
    def one(d):
        return Stats(mean=d["mean"], std=d["std"], min=d["min"], max=d["max"], q01=d["q01"], q99=d["q99"])

    return NormStats(action=one(full["action"]), proprio=one(full["proprio"]) if "proprio" in full else None)


def compute_stats(dataset, memory_mb: float = 256, num_bins: int = 65536) -> NormStats:
    """Normalization statistics of ``dataset`` (see the module docstring for exactness)."""
    return to_norm_stats(dataset_stats(dataset, memory_mb, num_bins))


def save_stats(dataset, stats: NormStats | dict, out: str | Path | None = None) -> Path:
    """Save next to the data: LeRobot -> ``meta/stats.json`` (action / observation.state entries replaced,
    the rest kept); other formats -> ``dataset.stats_path``; ``out`` -> that file, as ``NormStats`` JSON."""
    from oft.data.lerobot import STATS_PATH, LeRobotDataset, _write_json

    full = stats if isinstance(stats, dict) else None
    norm = to_norm_stats(stats) if full is not None else stats
    if out is None and isinstance(dataset, LeRobotDataset):
        path = dataset.path / STATS_PATH
        current = json.loads(path.read_text()) if path.exists() else {}
        entries = full or {
            k: v.to_dict() for k, v in (("action", norm.action), ("proprio", norm.proprio)) if v
        }
        keys = {"action": dataset.action_key, "proprio": dataset.state_key}
        for name, d in entries.items():
            current[keys[name]] = {k: np.asarray(v).tolist() for k, v in d.items() if k != "mask"}
        _write_json(current, path)
        from oft.checksums import refresh_checksums

        refresh_checksums(dataset.path, [path])  # a dataset oft checksums stays verifiable
        return path
    path = Path(out) if out is not None else dataset.stats_path
    if path is None:
        raise ValueError(f"{dataset!r} has no place to save statistics; pass an output file")
    _write_json(norm.to_dict(), path)
    return path
