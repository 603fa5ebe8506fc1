"""The writing process's share of ``oft collect``, per episode: with the frames prepared by the workers
(``PreparedFrames``: PNG bytes, image statistics) or by the writer itself.

    python tests/data/bench_writer.py --episodes 200 --data-mb 100   # LeRobot's file size
    python tests/data/bench_writer.py --episodes 200 --data-mb 20    # a PNG dataset's (oft.data.lerobot)

Episodes of 71 frames with two 64 x 64 cameras (MT10's mean length and cameras), noisy gradients of
~7.7 KB per PNG frame, appended to a PNG dataset. The writer's time per episode bounds the collection at
``1 / time`` episodes per second whatever the number of workers. Prints the mean and the first/last ten
episodes' means (the data file is rewritten and re-hashed on every append, so its cost grows with the file
up to ``--data-mb``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from oft.data.episode import Episode
from oft.data.lerobot import LeRobotWriter, prepare_frames

CAMERAS = ("corner", "gripperPOV")


def episodes(n: int, length: int = 71, size: int = 64) -> list[Episode]:
    rng = np.random.default_rng(0)
    base = (np.indices((size, size)).sum(0)[..., None] * np.array([1, 2, 3])).astype(np.uint8)

    def frames():
        return np.stack([base + rng.integers(0, 12, (size, size, 3), dtype=np.uint8) for _ in range(length)])

    return [
        Episode(
            images={cam: frames() for cam in CAMERAS},
            proprio=rng.normal(size=(length, 4)).astype(np.float32),
            actions=rng.normal(size=(length, 4)).astype(np.float32),
            instruction="push the puck to the goal",
            meta={},
        )
        for _ in range(n)
    ]


def run(root: Path, eps: list[Episode], total: int, data_mb: int, prepared: bool) -> np.ndarray:
    shutil.rmtree(root, ignore_errors=True)
    writer = LeRobotWriter(root, fps=80, cameras=list(CAMERAS), image_shape=(64, 64), action_dim=4,
                           proprio_dim=4, video=False, data_files_size_in_mb=data_mb)  # fmt: skip
    times = []
    for i in range(total):
        ep = eps[i % len(eps)]
        prep = prepare_frames(ep, png=True) if prepared else None  # a worker's part: not timed
        t = time.perf_counter()
        writer.add_episode(ep, prepared=prep)
        times.append(time.perf_counter() - t)
    return np.array(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument(
        "--data-mb",
        type=int,
        default=100,
        help="data file size before a new file (LeRobot: 100; oft's PNG datasets: 20)",
    )
    args = p.parse_args()
    eps = episodes(8)
    with tempfile.TemporaryDirectory() as tmp:
        for prepared in (False, True):
            t = run(Path(tmp) / "ds", eps, args.episodes, args.data_mb, prepared) * 1e3
            who = "workers prepare" if prepared else "writer prepares"
            print(f"{who}: mean {t.mean():.0f} ms/episode (first 10: {t[:10].mean():.0f}, last 10: "
                  f"{t[-10:].mean():.0f}); bound {1e3 / t.mean():.1f} episodes/s")  # fmt: skip


if __name__ == "__main__":
    main()
