"""Random access to stored frames: the images of a few (episode, frame) pairs, without decoding the rest.

The streaming loader (:mod:`oft.data.stream`) needs one frame per camera per sample. Each format gives it the
cheapest way it can (LeRobot's own ``LeRobotDataset`` does the same with ``decode_video_frames``):

* LeRobot v3 video: seek to the frame's key frame and decode up to the frame (``oft`` writes a key frame every
  2 frames, LeRobot's default too); open containers are kept per process, a few at a time;
* LeRobot v3 images in parquet: the episode's rows of that column, decoded only at the frames asked;
* HDF5 (robomimic / LIBERO / ALOHA): an h5py slice of the frames asked (h5py reads only those chunks);
* anything else (RLDS, in-memory lists): the whole episode, decoded once and kept until another is asked.

Nothing is opened at construction: a :class:`FrameSource` built in the main process and copied into
``DataLoader`` workers (fork) opens its files in the process that reads, and drops what it inherited.
"""

from __future__ import annotations

import io
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 8  # containers / HDF5 files kept open per process


class _Lru(OrderedDict):
    """Open files by path; the least recently used one is closed past ``size``."""

    def __init__(self, size: int, close) -> None:
        super().__init__()
        self.size, self._close = size, close

    def get_or_open(self, key, opener):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = opener()
        while len(self) > self.size:
            _, old = self.popitem(last=False)
            self._close(old)
        return value

    def close_all(self) -> None:
        while self:
            self._close(self.popitem()[1])


class VideoFrames:
    """Decode the frames at given times of MP4 files, keeping a few containers open.

    ``read(path, times, fps)``: (n, H, W, 3) uint8 RGB of the frames presented at ``times`` (seconds, sorted
    ascending), each within half a frame; else a :class:`~oft.files.CorruptFileError` naming the file.
    """

    def __init__(self, max_open: int = MAX_OPEN_FILES) -> None:
        self._open = _Lru(max_open, lambda c: c.close())

    def read(self, path: Path, times: np.ndarray, fps: float) -> np.ndarray:
        import av

        from oft.files import CorruptFileError

        container = self._open.get_or_open(str(path), lambda: av.open(str(path)))
        stream = container.streams.video[0]
        half = 0.5 / fps
        out, frames_iter, last = [], None, None
        for t in np.asarray(times, np.float64):
            # continue decoding when the target is a little ahead of the last frame; seek otherwise
            if frames_iter is None or last is None or not (last < t - half < last + 1.0):
                container.seek(int(max(t - half, 0.0) / stream.time_base), stream=stream, backward=True)
                frames_iter = container.decode(stream)
            frame = None
            for f in frames_iter:
                ft = f.time if f.time is not None else 0.0
                last = ft
                if ft >= t - half:
                    frame = f
                    break
            if frame is None or abs(frame.time - t) >= half:
                got = "the end of the file" if frame is None else f"a frame at {frame.time:.4f} s"
                raise CorruptFileError(path, f"no video frame at {t:.4f} s (decoding reached {got})")
            out.append(frame.to_ndarray(format="rgb24"))
        return np.stack(out)

    def close(self) -> None:
        self._open.close_all()


class FrameSource:
    """The frames of ``dataset``'s ``cameras`` at some frames of one episode, read as cheaply as the format
    allows (see the module docstring). Safe to copy into worker processes before first use."""

    def __init__(self, dataset, cameras: list[str]) -> None:
        self.dataset, self.cameras = dataset, list(cameras)
        self._pid: int | None = None
        self._episode_cache: tuple[int, dict] | None = None

    # -- per process state
    def _fresh(self) -> None:
        """Drop files opened by another process (a forked worker inherits the parent's objects)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._videos = VideoFrames()
            self._h5 = _Lru(MAX_OPEN_FILES, lambda f: f.close())
            self._episode_cache = None

    def close(self) -> None:
        if self._pid == os.getpid():
            self._videos.close()
            self._h5.close_all()
        self._pid = None

    def __getstate__(self) -> dict:  # spawn-started workers: nothing open travels
        return {"dataset": self.dataset, "cameras": self.cameras, "_pid": None, "_episode_cache": None}

    # -- reading
    def read(self, episode: int, frames: np.ndarray) -> list[np.ndarray]:
        """Per camera, (n, H, W, 3) uint8 of episode ``episode``'s ``frames`` (episode-local indices)."""
        self._fresh()
        frames = np.asarray(frames, np.int64)
        dataset, local = _locate(self.dataset, episode)
        kind = type(dataset).__name__
        if kind == "LeRobotDataset":
            return self._lerobot(dataset, local, frames)
        if kind == "RobomimicDataset":
            return self._robomimic(dataset, local, frames)
        if kind == "AlohaDataset":
            return self._aloha(dataset, local, frames)
        return self._whole_episode(dataset, local, frames)

    def _whole_episode(self, dataset, i: int, frames: np.ndarray) -> list[np.ndarray]:
        key = (id(dataset), i)
        if self._episode_cache is None or self._episode_cache[0] != key:
            from oft.data.loader import _check_frame_counts

            ep = dataset.episode(i)
            _check_cameras(ep.images, self.cameras, dataset.where(i))
            _check_frame_counts({c: ep.images[c] for c in self.cameras}, len(ep), dataset.where(i))
            self._episode_cache = (key, ep.images)
        images = self._episode_cache[1]
        return [np.ascontiguousarray(images[c][frames]) for c in self.cameras]

    def _lerobot(self, ds, i: int, frames: np.ndarray) -> list[np.ndarray]:
        row = ds._rows[i]
        episode = row["episode_index"]
        out = []
        for cam in self.cameras:
            key = _lerobot_key(ds, cam, episode)
            if ds.info["features"][key]["dtype"] == "video":
                prefix = f"videos/{key}/"
                path = ds.path / ds.info["video_path"].format(
                    video_key=key,
                    chunk_index=row[prefix + "chunk_index"],
                    file_index=row[prefix + "file_index"],
                )
                if not path.exists():
                    raise FileNotFoundError(f"{path}: missing video for episode {episode} (camera {cam!r})")
                times = float(row[prefix + "from_timestamp"]) + frames / float(ds.fps)
                out.append(self._videos.read(path, times, ds.fps))
            else:
                out.append(_parquet_images(ds, i, key, frames))
        return out

    def _robomimic(self, ds, i: int, frames: np.ndarray) -> list[np.ndarray]:
        from oft.files import reading

        file, demo = ds.index[i]
        f = self._h5.get_or_open(str(file), lambda: _h5_open(file))
        uniq, inverse = np.unique(frames, return_inverse=True)
        out = []
        with reading(file, "HDF5 data"):
            obs = f["data"][demo]["obs"]
            for cam in self.cameras:
                key = _hdf5_key(ds.obs_cameras, ds.cameras, cam, f"{file}: data/{demo}/obs")
                _check_stored(obs[key].shape[0], uniq, f"{file}: data/{demo}/obs/{key}")
                x = np.asarray(obs[key][uniq], np.uint8)[inverse]
                out.append(np.ascontiguousarray(x[:, ::-1, ::-1]) if ds.flip else x)
        return out

    def _aloha(self, ds, i: int, frames: np.ndarray) -> list[np.ndarray]:
        from oft.data.hdf5 import _decode_jpeg_frames
        from oft.files import reading

        file = ds.files[i]
        f = self._h5.get_or_open(str(file), lambda: _h5_open(file))
        uniq, inverse = np.unique(frames, return_inverse=True)
        out = []
        with reading(file, "HDF5 data"):
            group = f["observations"]["images"]
            for cam in self.cameras:
                if cam not in group:
                    raise ValueError(
                        f"{file}: no camera {cam!r} in /observations/images; has {sorted(group)}"
                    )
                _check_stored(group[cam].shape[0], uniq, f"{file}: /observations/images/{cam}")
                x = np.asarray(group[cam][uniq])
                x = _decode_jpeg_frames(x) if x.ndim == 2 else x.astype(np.uint8)
                out.append(x[inverse])
        return out


def _locate(dataset, i: int):
    """(reader, index in it) of episode ``i``, through any :class:`~oft.train._concat.ConcatDataset`."""
    while hasattr(dataset, "datasets") and hasattr(dataset, "_locate"):
        dataset, i = dataset._locate(i)
    return dataset, i


def _check_cameras(images: dict, cameras: list[str], where: str) -> None:
    missing = [c for c in cameras if c not in images]
    if missing:
        raise ValueError(f"{where} has no camera {missing}; it has {sorted(images)}")


def _check_stored(stored: int, frames: np.ndarray, where: str) -> None:
    if len(frames) and frames[-1] >= stored:
        raise ValueError(f"{where} holds {stored} frames; frame {int(frames[-1])} was asked (the "
                         "episode's actions are longer than this camera's frames)")  # fmt: skip


def _lerobot_key(ds, cam: str, episode: int) -> str:
    if cam not in ds.cameras:
        raise ValueError(f"{ds.path}: episode {episode} has no camera {cam!r}; the dataset has {ds.cameras}")
    return ds.camera_keys[ds.cameras.index(cam)]


def _hdf5_key(obs_keys: list[str], cams: list[str], cam: str, where: str) -> str:
    if cam not in cams:
        raise ValueError(f"{where}: no camera {cam!r}; has {cams}")
    return obs_keys[cams.index(cam)]


def _h5_open(file: Path):
    from oft.data.hdf5 import _open

    return _open(file)


def _parquet_images(ds, i: int, key: str, frames: np.ndarray) -> np.ndarray:
    """Decode only the asked rows of an image column (the reader caches the file's table)."""
    from oft.files import CorruptFileError

    table = ds._frames(i)  # the episode's rows, sorted by frame_index (checked against meta/episodes)
    column = table[key]
    out = []
    for j in frames:
        item = column[int(j)].as_py()
        data = item.get("bytes") if isinstance(item, dict) else item
        source = ds._data_file(ds._rows[i])
        if data is None and isinstance(item, dict) and item.get("path"):
            source = ds.path / item["path"]
            data = source.read_bytes()
        if data is None:
            raise CorruptFileError(source, f"episode {ds._rows[i]['episode_index']} {key} image {j} is empty")
        try:
            out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        except (OSError, ValueError, SyntaxError) as e:
            raise CorruptFileError(source, f"episode {ds._rows[i]['episode_index']} {key} image {j} does "
                                   f"not decode ({e})") from e  # fmt: skip
    return np.stack(out)


__all__ = ["FrameSource", "VideoFrames"]
