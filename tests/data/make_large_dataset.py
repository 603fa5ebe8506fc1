"""Write a LeRobot v3 dataset larger than RAM once decoded, fast (issue 9: the larger-than-RAM run).

Not collected by pytest (no ``test_`` prefix). The defaults: 500 episodes x 200 frames = 100k frames, two
cameras at 224 px stored as H.264 MP4 (LeRobot's layout: many episodes back to back per file, a key frame
every 2 frames) = 2 x 100k x 224 x 224 x 3 bytes = 30.1 GB decoded, ~1 GB on disk. Synthetic but valid
frames: a gradient background and two shapes that move with the episode and the frame.

``LeRobotWriter`` appends episode by episode (re-muxing the growing MP4 and re-hashing it each time, the
right trade for ``oft collect``, quadratic here); this writes each MP4 in one encoding pass and each parquet
once, with the writer's own feature, schema, task-table and statistics helpers, so the files are the
writer's. Then the exact action/state statistics (``oft stats``) and the checksum record.

  flock /work/notes/bench.lock .venv/bin/python tests/data/make_large_dataset.py /tmp/oft_large \
      [--episodes 500] [--length 200] [--size 224] [--per-file 100]
"""

from __future__ import annotations

import argparse
import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa

from oft.data import lerobot as L
from oft.data.video import VideoSettings, video_info

log = logging.getLogger(__name__)

CAMS = ("corner", "gripperPOV")  # the metaworld spec's cameras: `oft train --preset metaworld-tiny` reads it
TASKS = tuple(f"move the block to spot {k}" for k in range(5))
# LeRobot's key-frame interval (fast seeking); lossy yuv420p like LeRobot's default, x264 for speed
SETTINGS = VideoSettings(codec="libx264", pix_fmt="yuv420p", crf=23, gop=2, preset="ultrafast")


def frames_of(episode: int, length: int, size: int, camera: int) -> np.ndarray:
    """(T, S, S, 3) uint8: a gradient that drifts, a square and a bar moving with the frame index."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([(xx + 40 * camera) % 256, (yy + 13 * episode) % 256, np.full_like(xx, 96)], -1)
    out = np.empty((length, size, size, 3), np.uint8)
    s = size // 8
    for t in range(length):
        f = np.roll(base, t, axis=1).astype(np.uint8)
        x = (5 * t + 17 * episode) % (size - s)
        y = (3 * t + 29 * episode + 50 * camera) % (size - s)
        f[y : y + s, x : x + s] = (230, 40, 40 + 100 * camera)
        f[:, (7 * t) % size] = 255
        out[t] = f
    return out


def numeric(episode: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (T, 4) actions (the gripper +-1) and (T, 4) proprio: their running sum."""
    rng = np.random.default_rng(episode)
    t = np.arange(length)[:, None]
    actions = 0.5 * np.sin(t / 15.0 + rng.uniform(0, 6, (1, 4))) + 0.05 * rng.normal(size=(length, 4))
    actions[:, 3] = np.where(np.sin(t[:, 0] / 25.0 + episode) > 0, 1.0, -1.0)
    proprio = np.cumsum(actions, 0) * 0.1
    return actions.astype(np.float32), proprio.astype(np.float32)


class _Mp4:
    """One MP4 per camera and file, episodes encoded back to back: frame ``i`` of the file at ``i / fps``."""

    def __init__(self, path: Path, size: int, fps: int, threads: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.count = path, fps, 0
        self.out = av.open(str(path), "w", format="mp4")
        self.stream = self.out.add_stream(SETTINGS.codec, rate=fps, options=SETTINGS.options())
        self.stream.width = self.stream.height = size
        self.stream.pix_fmt = SETTINGS.pix_fmt
        self.stream.codec_context.max_b_frames = 0
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.stream.codec_context.thread_count = threads

    def add(self, frames: np.ndarray) -> tuple[float, float]:
        """Append (T, S, S, 3) frames; (from_timestamp, to_timestamp) of them in the file."""
        start = self.count
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = self.count, Fraction(1, self.fps)
            self.out.mux(self.stream.encode(vf))
            self.count += 1
        return start / self.fps, self.count / self.fps

    def close(self) -> None:
        self.out.mux(self.stream.encode(None))
        self.out.close()


def write(root: Path, episodes: int, length: int, size: int, per_file: int, fps: int = 10, threads: int = 2):
    """Write the dataset at ``root`` (which must not exist); returns its directory."""
    if (root / L.INFO_PATH).exists():
        raise FileExistsError(f"{root} already holds a dataset; remove it first")
    features = L.LeRobotWriter._features(CAMS, (size, size), 4, 4, True, None, None)
    keys = [L.IMAGE_PREFIX + c for c in CAMS]
    rows, tables, stats, total = [], [], {}, 0
    t0 = time.perf_counter()
    for first in range(0, episodes, per_file):
        file = first // per_file
        mp4 = {k: _Mp4(root / L.VIDEO_PATH.format(video_key=k, chunk_index=0, file_index=file), size, fps,
                       threads) for k in keys}  # fmt: skip
        for e in range(first, min(first + per_file, episodes)):
            actions, proprio = numeric(e, length)
            task = e % len(TASKS)
            row = {"episode_index": e, "tasks": [TASKS[task]], "length": length, "data/chunk_index": 0,
                   "data/file_index": 0, "dataset_from_index": total,
                   "dataset_to_index": total + length}  # fmt: skip
            ep_stats = {L.ACTION_KEY: L.vector_stats(actions), L.STATE_KEY: L.vector_stats(proprio)}
            for k, key in enumerate(keys):
                frames = frames_of(e, length, size, k)
                start, end = mp4[key].add(frames)
                row |= {f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end}  # fmt: skip
                ep_stats[key] = L.image_stats(frames, max_samples=10)
            tables.append(_frame_table(features, actions, proprio, e, task, total, fps))
            ep_stats |= _index_stats(e, task, total, length, fps)
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            row |= {f"stats/{f}/{k}": np.asarray(v, np.int64 if k == "count" else np.float64).tolist()
                    for f, s in ep_stats.items() for k, v in s.items()}  # fmt: skip
            stats = {f: L.merge_stats(stats.get(f), s) for f, s in ep_stats.items()}
            rows.append(row)
            total += length
        for m in mp4.values():
            m.close()
        done = min(first + per_file, episodes)
        log.info("%d/%d episodes, %d frames, %.0f s", done, episodes, total, time.perf_counter() - t0)
    for key in keys:
        first_file = root / L.VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
        features[key]["info"] = video_info(first_file, fps, SETTINGS)
    _write_meta(root, features, rows, tables, stats, total, fps)
    return root


def _frame_table(features, actions, proprio, e: int, task: int, before: int, fps: int) -> pa.Table:
    t = len(actions)
    cols = {
        L.ACTION_KEY: L._fixed_list(actions),
        L.STATE_KEY: L._fixed_list(proprio),
        "timestamp": pa.array((np.arange(t) / fps).astype(np.float32)),
        "frame_index": pa.array(np.arange(t, dtype=np.int64)),
        "episode_index": pa.array(np.full(t, e, np.int64)),
        "index": pa.array(np.arange(before, before + t, dtype=np.int64)),
        "task_index": pa.array(np.full(t, task, np.int64)),
    }
    return pa.table(cols).replace_schema_metadata(L._hf_metadata(features))


def _index_stats(e: int, task: int, before: int, t: int, fps: int) -> dict:
    return {
        "timestamp": L.vector_stats(np.arange(t) / fps),
        "frame_index": L.vector_stats(np.arange(t)),
        "episode_index": L.vector_stats(np.full(t, e)),
        "index": L.vector_stats(np.arange(before, before + t)),
        "task_index": L.vector_stats(np.full(t, task)),
    }


def _write_meta(root: Path, features, rows, tables, stats, total: int, fps: int) -> None:
    """Data, episode table, tasks, stats, then info.json last (the commit point), as the writer orders them;
    then exact action/state quantiles and the checksum record."""
    from oft.checksums import update_checksums
    from oft.data.stats import dataset_stats, save_stats

    L._write_parquet(pa.concat_tables(tables), root / L.DATA_PATH.format(chunk_index=0, file_index=0))
    L._write_parquet(pa.Table.from_pylist(rows), root / L.EPISODES_PATH.format(chunk_index=0, file_index=0))
    L._write_parquet(L._tasks_table(list(TASKS)), root / L.TASKS_PATH)
    L._write_json(L._jsonable(stats), root / L.STATS_PATH)
    info = {
        "codebase_version": L.CODEBASE_VERSION, "robot_type": None, "total_episodes": len(rows),
        "total_frames": total, "total_tasks": len(TASKS), "chunks_size": 1000, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500, "fps": fps, "splits": {"train": f"0:{len(rows)}"},
        "data_path": L.DATA_PATH, "video_path": L.VIDEO_PATH, "features": features,
    }  # fmt: skip
    L._write_json(info, root / L.INFO_PATH)
    dataset = L.LeRobotDataset(root)
    save_stats(dataset, dataset_stats(dataset))
    update_checksums(root, None, total_episodes=len(rows))


def check(root: Path, cameras: tuple[str, ...] = CAMS) -> dict:
    """Open it as training does and read what the checks read: every episode's numeric rows, the first and
    last episode decoded in full (frame counts and video times checked against the tables), and a few frames
    of random episodes through the streaming loader's frame source."""
    from oft.checksums import verify_dataset
    from oft.data import open_dataset
    from oft.data.frames import FrameSource

    verify_dataset(root)
    ds = open_dataset(root)
    lengths = ds.episode_lengths()
    for i in (0, ds.num_episodes - 1):
        ep = ds.episode(i)
        assert all(ep.images[c].shape == (lengths[i], *ep.images[c].shape[1:]) for c in cameras)
    src = FrameSource(ds, list(cameras))
    rng = np.random.default_rng(0)
    for i in rng.integers(0, ds.num_episodes, 8):
        src.read(int(i), np.sort(rng.choice(lengths[i], 4, replace=False)))
    src.close()
    frames = int(lengths.sum())
    h, w = ep.images[cameras[0]].shape[1:3]
    disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    decoded = frames * len(cameras) * h * w * 3
    return {"episodes": ds.num_episodes, "frames": frames, "decoded_gb": round(decoded / 1e9, 2),
            "disk_gb": round(disk / 1e9, 3), "has_stats": ds.stats is not None}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--per-file", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check-only", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    if not a.check_only:
        write(a.out, a.episodes, a.length, a.size, a.per_file, threads=a.threads)
        log.info("written in %.0f s", time.perf_counter() - t0)
    log.info("check: %s (%.0f s)", check(a.out), time.perf_counter() - t0)
