"""Streaming vs in-memory loader, and peak RSS of `oft train` on datasets of two sizes (issue 9 acceptance).

Run under the machine lock (not collected by pytest):
  flock /work/notes/bench.lock .venv/bin/python tests/data/bench_stream.py loader OUT_DIR
  flock /work/notes/bench.lock .venv/bin/python tests/data/bench_stream.py rss OUT_DIR
  flock /work/notes/bench.lock .venv/bin/python tests/data/bench_stream.py large OUT_DIR   (larger than RAM)
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CAMS = ("corner", "gripperPOV")


def make_dataset(root: Path, episodes: int, length: int, size: int, video: bool) -> Path:
    """Smooth moving synthetic frames (cheap to encode), the metaworld layout: 4-D actions and proprio."""
    from oft.data.episode import Episode
    from oft.data.lerobot import LeRobotWriter

    if (root / "meta" / "info.json").exists():
        return root
    w = LeRobotWriter(root, fps=10, cameras=CAMS, image_shape=(size, size), action_dim=4, proprio_dim=4,
                      video=video)  # fmt: skip
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    for e in range(episodes):
        t = np.arange(length)[:, None, None]
        base = ((xx[None] + 3 * t + 11 * e) % 256).astype(np.uint8)
        frames = np.stack(
            [base, np.broadcast_to(yy[None] % 256, base.shape).astype(np.uint8), 255 - base], -1
        )
        images = {c: np.ascontiguousarray(np.roll(frames, 7 * k, axis=2)) for k, c in enumerate(CAMS)}
        actions = rng.uniform(-1, 1, (length, 4)).astype(np.float32)
        w.add_episode(
            Episode(images, rng.normal(size=(length, 4)).astype(np.float32), actions, f"task {e % 5}")
        )
    w.finalize()
    return root


def loader_rates(out: Path) -> dict:
    """samples/s of ChunkLoader and StreamLoader (0, 1, 2 workers) at the quickstart's size."""
    import torch

    from oft.data.lerobot import LeRobotDataset
    from oft.data.loader import ChunkLoader
    from oft.data.stream import StreamLoader
    from oft.model.preprocess import ImagePipeline

    torch.set_num_threads(1)
    results = {}
    for video in (False, True):
        ds = LeRobotDataset(make_dataset(out / f"qs_{'mp4' if video else 'png'}", 100, 100, 64, video))
        kw = dict(chunk_len=8, batch_size=32, pipeline=ImagePipeline(64, crop_scale=0.9), pad=True)
        t0 = time.perf_counter()
        mem = ChunkLoader(ds, **kw)
        setup = time.perf_counter() - t0
        runs = [("memory", mem, setup)] + [
            (f"stream_{n}w", StreamLoader(ds, num_workers=n, **kw), 0.0) for n in (0, 1, 2)
        ]
        for name, ld, setup in runs:
            next(ld)  # workers started, first batch
            t0 = time.perf_counter()
            n = 30
            for _ in range(n):
                next(ld)
            rate = n * 32 / (time.perf_counter() - t0)
            results[f"{'mp4' if video else 'png'}/{name}"] = {
                "samples_per_s": round(rate, 1),
                "setup_s": round(setup, 2),
            }
            print(name, video, results[f"{'mp4' if video else 'png'}/{name}"], flush=True)
            if hasattr(ld, "close"):
                ld.close()
    return results


def peak_rss(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(peak MB of the summed RSS of the process tree, wall s, return code), sampled every 50 ms."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, stop = 0, False

    def sample():
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop:
            try:
                total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    stop = True
    th.join()
    if proc.returncode:
        print(err.decode()[-3000:], file=sys.stderr)
    return peak / 2**20, time.perf_counter() - t0, proc.returncode


def rss_ratio(out: Path, steps: int = 30) -> dict:
    small = make_dataset(out / "rss_small", 20, 100, 128, True)
    large = make_dataset(out / "rss_large", 200, 100, 128, True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {}
    for loader in ("stream", "auto"):
        for name, ds in (("small", small), ("large", large)):
            cmd = [sys.executable, "-m", "oft.cli", "train", "--preset", "metaworld-tiny",
                   "--dataset", str(ds), "--out", str(out / f"run_{loader}_{name}"), "--steps", str(steps),
                   "--set", "device=cpu", "--set", "num_threads=1", "--set", f"data_loader={loader}",
                   "--set", "num_workers=1", "--set", f"save_every={steps}"]  # fmt: skip
            mb, wall, rc = peak_rss(cmd, env)
            results[f"{loader}/{name}"] = {"peak_rss_mb": round(mb, 1), "wall_s": round(wall, 1), "rc": rc}
            print(loader, name, results[f"{loader}/{name}"], flush=True)
    return results


def tree_memory(cmd: list[str], env: dict) -> dict:
    """Peak summed RSS and PSS (MB) of the process tree of ``cmd`` (RSS counts pages shared by the forked
    workers once per process, so it overstates; PSS splits them), sampled every 0.1 s / 1 s, and wall s."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = {"rss": 0, "pss": 0, "procs": 0}
    stop = False

    def sample():
        p, k = psutil.Process(proc.pid), 0
        while not stop:
            try:
                tree = [p, *p.children(recursive=True)]
                peak["rss"] = max(peak["rss"], sum(q.memory_info().rss for q in tree))
                peak["procs"] = max(peak["procs"], len(tree))
                if k % 10 == 0:
                    peak["pss"] = max(peak["pss"], sum(q.memory_full_info().pss for q in tree))
            except psutil.Error:
                pass
            k += 1
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop = True
    th.join()
    text = out.decode(errors="replace")
    maxrss = [line for line in text.splitlines() if "Maximum resident set size" in line]
    return {
        "peak_tree_rss_mb": round(peak["rss"] / 2**20, 1),
        "peak_tree_pss_mb": round(peak["pss"] / 2**20, 1),
        "max_processes": peak["procs"],
        "time_v_max_rss_mb": round(int(maxrss[0].split()[-1]) / 1024, 1) if maxrss else None,
        "wall_s": round(time.perf_counter() - t0, 1),
        "rc": proc.returncode,
        "tail": text[-2500:],
    }


def larger_than_ram(out: Path, steps: int = 200) -> dict:
    """100k frames x 2 cameras at 224 px (30 GB decoded, more than this machine's RAM) as MP4, then
    ``oft train`` (the quickstart's small model) streaming it for ``steps`` steps at batch 8, 2 workers."""
    from make_large_dataset import check, write

    root = out / "large"
    if not (root / "meta" / "info.json").exists():
        t0 = time.perf_counter()
        write(root, episodes=500, length=200, size=224, per_file=100)
        print(f"generated in {time.perf_counter() - t0:.0f} s", flush=True)
    info = check(root)
    print(info, flush=True)
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "oft.cli", "train", "--preset", "metaworld-tiny",
           "--dataset", str(root), "--out", str(out / "run_large"), "--steps", str(steps),
           "--set", "batch_size=8", "--set", "data_loader=stream", "--set", "num_workers=2",
           "--set", "device=cpu", "--set", "num_threads=1", "--set", f"save_every={steps}",
           "--set", "log_every=20"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = {"dataset": info, "command": " ".join(cmd), **tree_memory(cmd, env)}
    print({k: v for k, v in res.items() if k != "tail"}, flush=True)
    return res


if __name__ == "__main__":
    what, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if what == "large":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = {"loader": loader_rates, "rss": rss_ratio, "large": larger_than_ram}
    res = runs[what](out)
    (out / f"{what}.json").write_text(json.dumps(res, indent=2))
