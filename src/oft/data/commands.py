"""``oft stats DATASET [--out FILE]``: normalization statistics of a dataset, saved with it."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from oft.cli import COUNT, POSITIVE
from oft.data.formats import open_dataset
from oft.data.stats import dataset_stats, save_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        help="LeRobot v3 directory, HDF5 file or folder, RLDS directory, or Hub dataset id (org/name)",
    )
    parser.add_argument(
        "--out", default=None, help="write NormStats JSON here instead of next to the dataset"
    )
    parser.add_argument(
        "--memory-mb",
        type=POSITIVE,
        default=256,
        help="memory for exact quantiles; beyond it a histogram is used (default 256)",
    )
    parser.add_argument(
        "--bins", type=COUNT, default=65536, help="histogram bins when over the memory budget"
    )


def _table(name: str, stats: dict[str, np.ndarray]) -> str:
    cols = ("mean", "std", "min", "max", "q01", "q99")
    lines = [f"{name} ({int(stats['count'][0])} frames)", "  dim " + "".join(f"{c:>11}" for c in cols)]
    for d in range(len(stats["mean"])):
        lines.append(f"  {d:>3} " + "".join(f"{stats[c][d]:>11.4g}" for c in cols))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from oft.hub import resolve

    dataset = open_dataset(resolve(args.dataset, "dataset"))
    stats = dataset_stats(dataset, memory_mb=args.memory_mb, num_bins=args.bins)
    path = save_stats(dataset, stats, args.out)
    for name, s in stats.items():
        print(_table(name, s))
    print(f"{dataset.num_episodes} episodes; statistics saved to {path}", file=sys.stderr)
    return 0
