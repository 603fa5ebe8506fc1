"""``oft verify PATH [--rewrite]``: check a dataset's or checkpoint's files against their recorded sha256.

Prints one line per missing or differing file and exits 1 when there is any (0 when all match). ``--rewrite``
records the files as they are now (after a deliberate change, or for a dataset written before checksums).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oft.checksums import checksum_path, verify, write_checksums


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a LeRobot dataset or checkpoint directory written by oft")
    parser.add_argument(
        "--rewrite", action="store_true", help="record the current files' checksums instead of verifying"
    )


def run(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    if args.rewrite:
        print(f"recorded the checksums of {root} in {write_checksums(root)}")
        return 0
    t0 = time.perf_counter()
    report = verify(root)
    for rel, problem in report.problems:
        print(f"{root / rel}: {problem}")
    for note in report.notes:
        print(f"note: {note}")
    if report.unlisted:
        shown = ", ".join(report.unlisted[:5]) + (" ..." if len(report.unlisted) > 5 else "")
        print(f"note: {len(report.unlisted)} files not in {checksum_path(root).name} (not checked): {shown}")
    dt = time.perf_counter() - t0
    summary = f"{report.checked} files ({report.bytes / 1e6:.1f} MB) checked in {dt:.2f} s"
    if report.ok:
        print(f"{root}: OK, {summary}")
        return 0
    print(f"{root}: {len(report.problems)} of {summary} are missing or differ", file=sys.stderr)
    return 1
