"""LeRobotDataset v3.0: read what LeRobot writes, write what LeRobot reads.

Layout (LeRobot ``src/lerobot/datasets/utils.py`` and ``lerobot_dataset.py``, codebase_version "v3.0")::

    meta/info.json                      fps, features {dtype, shape, names}, path templates, totals, splits
    meta/stats.json                     per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                  task_index, indexed by the task string
    meta/episodes/chunk-000/file-000.parquet
                                        one row per episode: episode_index, tasks, length, data/chunk_index,
                                        data/file_index, dataset_from_index, dataset_to_index,
                                        videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp},
                                        meta/episodes/{chunk_index,file_index}, stats/<feature>/<stat>
    data/chunk-000/file-000.parquet     one row per frame: action, observation.state, [image features],
                                        timestamp, frame_index, episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4 many episodes back to back, located by from/to timestamps

Mapping to :class:`Episode`: ``observation.images.<cam>`` -> ``images[cam]``, ``observation.state`` ->
``proprio``, ``action`` -> ``actions``, the task string -> ``instruction``. What the actions mean (gripper
scale, delta or absolute: :mod:`oft.conventions`) is stored in info.json inside the action feature, as
``features["action"]["oft_conventions"]``; LeRobot's own reader ignores keys it does not know.

Crash safety of :class:`LeRobotWriter`: every file is written under a temporary name and renamed into place;
data and videos first, then the episode table, tasks, stats, and ``meta/info.json`` last.
``total_episodes`` in info.json is the commit point: a reader ignores rows and video frames past it, and
a writer reopening the dataset drops them before appending, and rebuilds the running statistics from the
per-episode ones of the committed rows (``stats/<feature>/<stat>``), never from a stats.json that may already
count an uncommitted episode. After each commit the writer records the sha256 of the files it wrote in
``meta/oft_checksums.json`` (:mod:`oft.checksums`).

Reading checks what the dataset records against what is decoded: frame counts of the parquet and of every
video segment against ``meta/episodes`` ``length``, ``frame_index`` = 0..length-1, ``timestamp`` spaced
1/fps, and video frame times against the ``timestamp`` column; a disagreement, an unreadable file or a
wrongly typed value raises :class:`~oft.files.CorruptFileError` naming the file (and the episode).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from oft.checksums import read_checksums, update_checksums
from oft.conventions import Conventions
from oft.data.dataset import EpisodeDataset
from oft.data.episode import Episode
from oft.data.normalize import STAT_NAMES, NormStats, Stats
from oft.data.video import VideoSettings, append_video, decode_segment_timed, encode_video, video_info
from oft.files import CorruptFileError, detail, read_json_object

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
CONVENTIONS_KEY = "oft_conventions"  # inside features[ACTION_KEY]
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
TMP_MARK = ".tmp-"
TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobot's check_timestamps_sync default


# ----------------------------------------------------------------------------------------------- reading


def is_lerobot_dir(path: Path) -> bool:
    return (Path(path) / INFO_PATH).exists()


def load_info(root: Path) -> dict:
    path = Path(root) / INFO_PATH
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; a LeRobot v3 dataset needs meta/info.json")
    info = read_json_object(path, "JSON")
    missing = [k for k in ("fps", "features", "data_path", "total_episodes") if k not in info]
    if missing:
        raise CorruptFileError(path, f"missing keys {missing}; expected a LeRobot v3.0 info.json")
    types = {"fps": (int, float), "features": dict, "data_path": str, "total_episodes": int}
    for key, kind in types.items():
        if not isinstance(info[key], kind) or isinstance(info[key], bool):
            raise CorruptFileError(
                path,
                f"{key} is {info[key]!r} ({type(info[key]).__name__}), expected "
                f"{' or '.join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))}",
            )
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise ValueError(
            f"{path}: codebase_version {version!r}; only LeRobot v3.x datasets are supported "
            "(convert v2.1 with lerobot's convert_dataset_v21_to_v30)"
        )
    return info


def read_parquet(path: Path, columns: list[str] | None = None, only: list[str] | None = None) -> pa.Table:
    """Read a parquet file, naming the file and the problem when it fails. ``columns`` must be present;
    ``only`` restricts the read to those (when present), so statistics never load image columns."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing")
    try:
        names = pq.read_schema(path).names
        missing = [c for c in columns or [] if c not in names]
        table = (
            None
            if missing
            else pq.read_table(path, columns=[c for c in only if c in names] if only else None)
        )
    except (pa.ArrowException, OSError) as e:
        raise CorruptFileError(path, f"unreadable parquet ({detail(e)})") from e
    if missing:
        raise CorruptFileError(path, f"missing columns {missing}; has {names}")
    return table


def load_tasks(root: Path) -> list[str]:
    """Task strings by task_index. LeRobot writes a pandas frame indexed by the task (named 'task' or not)."""
    path = Path(root) / TASKS_PATH
    table = read_parquet(path, ["task_index"])
    task_col = next(
        (c for c in ("task", "__index_level_0__") if c in table.column_names),
        next((c for c in table.column_names if pa.types.is_string(table.schema.field(c).type)), None),
    )
    if task_col is None:
        raise ValueError(f"{path}: no task string column; has {table.column_names}")
    tasks = dict(zip(table["task_index"].to_pylist(), table[task_col].to_pylist(), strict=True))
    return [tasks[i] for i in sorted(tasks)]


def load_episode_rows(root: Path, total: int | None = None) -> list[dict]:
    """One dict per episode from every ``meta/episodes`` file, ordered by episode_index, truncated to
    ``total`` (the committed count in info.json)."""
    files = sorted((Path(root) / EPISODES_DIR).glob("*/*.parquet"))
    files = [f for f in files if TMP_MARK not in f.name]
    if not files:
        raise FileNotFoundError(f"{Path(root) / EPISODES_DIR}: no episode parquet files")
    rows = []
    need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for f in files:
        rows.extend(read_parquet(f, need).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    if total is not None:
        rows = [r for r in rows if r["episode_index"] < total]
    return rows


def _vectors(column: pa.ChunkedArray, n: int) -> np.ndarray:
    """A list / fixed-size-list / scalar column as an (n, d) float32 array."""
    arr = column.combine_chunks()
    if (
        pa.types.is_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
        or pa.types.is_large_list(arr.type)
    ):
        flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
        return np.asarray(flat, np.float32).reshape(n, -1)
    return np.asarray(arr.to_numpy(zero_copy_only=False), np.float32).reshape(n, -1)


def _decode_images(column: pa.ChunkedArray, root: Path, file: Path, where: str) -> np.ndarray:
    arr = column.combine_chunks()
    out = []
    for k, item in enumerate(arr.to_pylist()):
        data = item.get("bytes") if isinstance(item, dict) else item
        source = file
        if data is None and isinstance(item, dict) and item.get("path"):
            source = root / item["path"]
            data = source.read_bytes()
        if data is None:
            raise CorruptFileError(file, f"{where} image {k} has neither bytes nor a path")
        try:
            out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated data
            raise CorruptFileError(source, f"{where} image {k} does not decode ({detail(e)})") from e
    return np.stack(out)


class LeRobotDataset(EpisodeDataset):
    """A LeRobot v3.0 dataset directory (ours or LeRobot's)."""

    def __init__(self, root: str | Path, state_key: str = STATE_KEY, action_key: str = ACTION_KEY):
        self.path = Path(root)
        self.info = load_info(self.path)
        feats = self.info["features"]
        if action_key not in feats:
            raise ValueError(f"{self.path / INFO_PATH}: no {action_key!r} feature; features: {sorted(feats)}")
        self.action_key, self.state_key = action_key, state_key
        self.fps = self.info["fps"]
        self.robot_type = self.info.get("robot_type")  # "aloha", "metaworld", ... (None when unrecorded)
        self.camera_keys = [k for k, ft in feats.items() if ft.get("dtype") in ("video", "image")]
        self.cameras = [k.removeprefix(IMAGE_PREFIX) for k in self.camera_keys]
        self.action_dim = int(np.prod(feats[action_key]["shape"]))
        self.conventions = Conventions.from_dict(feats[action_key].get(CONVENTIONS_KEY))
        self.proprio_dim = int(np.prod(feats[state_key]["shape"])) if state_key in feats else 0
        self.tasks = load_tasks(self.path)
        self._rows = load_episode_rows(self.path, int(self.info["total_episodes"]))
        self._cache: tuple[tuple[Path, bool], pa.Table] | None = None

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    @property
    def instructions(self) -> list[str]:
        return [self._row_task(r) for r in self._rows]

    def _row_task(self, row: dict) -> str:
        tasks = row.get("tasks")
        return tasks[0] if tasks else ""

    @property
    def stats_path(self) -> Path:
        return self.path / STATS_PATH

    @property
    def stats(self) -> NormStats | None:
        """action / observation.state statistics, or None when stats.json lacks them or their quantiles."""
        path = self.stats_path
        if not path.exists():
            return None
        raw = read_json_object(path, "JSON")
        action = _feature_stats(raw.get(self.action_key), path)
        if action is None:
            log.info("%s has no q01/q99 for %r; run `oft stats %s`", path, self.action_key, self.path)
            return None
        return NormStats(action=action, proprio=_feature_stats(raw.get(self.state_key), path))

    def _data_file(self, row: dict) -> Path:
        return self.path / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )

    def _frames(self, i: int, numeric_only: bool = False) -> pa.Table:
        row = self._rows[i]
        path = self._data_file(row)
        key = (path, numeric_only)
        if self._cache is None or self._cache[0] != key:
            only = ["episode_index", "frame_index", "timestamp", self.action_key, self.state_key]
            only = only if numeric_only else None
            self._cache = (key, read_parquet(path, ["episode_index", self.action_key], only))
        table = self._cache[1]
        frames = table.filter(pc.equal(table["episode_index"], row["episode_index"]))
        if "frame_index" in frames.column_names:
            frames = frames.sort_by("frame_index")
        if frames.num_rows != row["length"]:
            raise CorruptFileError(
                path,
                f"episode {row['episode_index']} has {frames.num_rows} frames, "
                f"meta/episodes says {row['length']}",
            )
        self._check_frame_times(frames, path, row["episode_index"])
        return frames

    def _check_frame_times(self, frames: pa.Table, path: Path, episode: int) -> None:
        """``frame_index`` must be 0..T-1 and ``timestamp`` step by 1/fps (LeRobot's own
        ``check_timestamps_sync`` tolerance, 1e-4 s): a gap or a repeat is a corrupt episode."""
        n = frames.num_rows
        if "frame_index" in frames.column_names:
            index = frames["frame_index"].to_numpy()
            if not np.array_equal(index, np.arange(n)):
                bad = int(np.flatnonzero(index != np.arange(n))[0])
                raise CorruptFileError(
                    path, f"episode {episode}: frame_index {int(index[bad])} at row {bad}, expected {bad}"
                )
        if "timestamp" in frames.column_names and n > 1:
            steps = np.diff(frames["timestamp"].to_numpy().astype(np.float64))
            off = np.abs(steps - 1.0 / self.fps) > TIMESTAMP_TOLERANCE_S
            if off.any():
                j = int(np.flatnonzero(off)[0])
                raise CorruptFileError(path, f"episode {episode}: timestamp steps by {steps[j]:.6f} s after "
                                       f"frame {j}, expected 1/fps = {1.0 / self.fps:.6f} s")  # fmt: skip

    def episode_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        frames = self._frames(self._check_index(i), numeric_only=True)
        return self._numeric(frames)

    def _numeric(self, frames: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        n = frames.num_rows
        actions = _vectors(frames[self.action_key], n)
        if self.state_key in frames.column_names:
            proprio = _vectors(frames[self.state_key], n)
        else:
            proprio = np.zeros((n, 0), np.float32)
        return actions, proprio

    def _episode(self, i: int) -> Episode:
        row = self._rows[i]
        frames = self._frames(i)
        actions, proprio = self._numeric(frames)
        images = {}
        for key, cam in zip(self.camera_keys, self.cameras, strict=True):
            if self.info["features"][key]["dtype"] == "video":
                images[cam] = self._video_frames(row, key, frames)
            else:
                file = self._data_file(row)
                images[cam] = _decode_images(
                    frames[key], self.path, file, f"episode {row['episode_index']} {key}"
                )
        instruction = self._row_task(row)
        if "task_index" in frames.column_names and frames.num_rows:
            t = frames["task_index"][0].as_py()
            instruction = self.tasks[t] if 0 <= t < len(self.tasks) else instruction
        meta = {"episode_index": row["episode_index"], "source": str(self.path)}
        return Episode(images=images, proprio=proprio, actions=actions, instruction=instruction, meta=meta)

    def _video_frames(self, row: dict, key: str, table: pa.Table) -> np.ndarray:
        """The episode's frames of video feature ``key``: exactly one per parquet row, each at
        ``from_timestamp + timestamp`` (half a frame of tolerance), else a CorruptFileError naming it."""
        prefix = f"videos/{key}/"
        episode, length = row["episode_index"], table.num_rows
        path = self.path / self.info["video_path"].format(
            video_key=key, chunk_index=row[prefix + "chunk_index"], file_index=row[prefix + "file_index"]
        )
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing video for episode {episode}")
        from_s, to_s = row[prefix + "from_timestamp"], row[prefix + "to_timestamp"]
        frames, times = decode_segment_timed(path, from_s, to_s, self.fps)
        if len(frames) != length:
            raise CorruptFileError(
                path,
                f"episode {episode}: {len(frames)} video frames decode between {from_s:.3f} s and "
                f"{to_s:.3f} s, the dataset records {length}",
            )
        want = (
            table["timestamp"].to_numpy().astype(np.float64)
            if "timestamp" in table.column_names
            else np.arange(length) / self.fps
        )
        off = np.abs(times - from_s - want) >= 0.5 / self.fps
        if off.any():
            j = int(np.flatnonzero(off)[0])
            raise CorruptFileError(
                path,
                f"episode {episode}: video frame {j} is at {times[j] - from_s:.4f} s of the episode, "
                f"its timestamp is {want[j]:.4f} s",
            )
        return frames


def _feature_stats(d: dict | None, path: Path) -> Stats | None:
    if not d or "q01" not in d or "q99" not in d:
        return None
    try:
        return Stats(**{k: np.asarray(d[k], np.float64).reshape(-1) for k in STAT_NAMES})
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(path, f"wrongly typed or missing statistic ({detail(e)})") from e


# ----------------------------------------------------------------------------------------------- writing


def _write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_MARK + str(os.getpid()))
    tmp.write_text(json.dumps(obj, indent=4, ensure_ascii=False))
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_MARK + str(os.getpid()))
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def _hf_metadata(features: dict) -> dict[bytes, bytes]:
    """The schema metadata Hugging Face ``datasets`` reads to type columns (images decode as Image)."""
    out = {}
    for key, ft in features.items():
        if ft["dtype"] == "video":
            continue
        if ft["dtype"] == "image":
            out[key] = {"_type": "Image"}
        elif list(ft["shape"]) == [1]:
            out[key] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            value = {"dtype": ft["dtype"], "_type": "Value"}
            out[key] = {"feature": value, "length": int(ft["shape"][0]), "_type": "Sequence"}
    return {b"huggingface": json.dumps({"info": {"features": out}}).encode()}


def _tasks_table(tasks: list[str]) -> pa.Table:
    """What ``pd.DataFrame({"task_index": ...}, index=pd.Index(tasks, name="task")).to_parquet`` writes."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())}
    )
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics of an (N, d) array (exact quantiles)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    out = {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([len(x)]),
    }
    qs = np.quantile(x, QUANTILES, axis=0)
    for q, v in zip(QUANTILES, qs, strict=True):
        out[f"q{round(q * 100):02d}"] = v
    return out


def image_stats(frames: np.ndarray, max_samples: int = 100) -> dict[str, np.ndarray]:
    """Per-channel statistics in [0, 1] with shape (3, 1, 1), over at most ``max_samples`` frames, as
    LeRobot's ``compute_episode_stats`` does for images — and over a pixel grid of at most 64 x 64 per frame
    (LeRobot downsamples too, above 300 px): exact quantiles of every pixel cost more than encoding the video.
    """
    idx = np.round(np.linspace(0, len(frames) - 1, min(len(frames), max_samples))).astype(int)
    step = max(1, -(-max(frames.shape[1:3]) // 64))
    x = frames[idx, ::step, ::step].reshape(-1, 3).astype(np.float64) / 255.0
    s = vector_stats(x)
    return {k: v if k == "count" else v.reshape(3, 1, 1) for k, v in s.items()} | {
        "count": np.array([len(idx)])
    }


def merge_stats(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Combine two feature statistics: exact for count/min/max/mean/std (parallel variance); quantiles as the
    count-weighted mean (LeRobot's approximation — :meth:`LeRobotWriter.finalize` replaces it with exact
    values for action and state)."""
    if a is None:
        return {k: np.asarray(v) for k, v in b.items()}
    na, nb = float(a["count"][0]), float(b["count"][0])
    n = na + nb
    mean = (a["mean"] * na + b["mean"] * nb) / n
    var = (
        (a["std"] ** 2 + (a["mean"] - mean) ** 2) * na + (b["std"] ** 2 + (b["mean"] - mean) ** 2) * nb
    ) / n
    out = {
        "min": np.minimum(a["min"], b["min"]),
        "max": np.maximum(a["max"], b["max"]),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(n)]),
    }
    for k in a:
        if k.startswith("q") and k in b:
            out[k] = (a[k] * na + b[k] * nb) / n
    return out


def _row_stats(row: dict) -> dict[str, dict[str, np.ndarray]]:
    """A ``meta/episodes`` row's per-episode statistics (``stats/<feature>/<stat>`` columns)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, value in row.items():
        if name.startswith("stats/") and value is not None:
            feature, stat = name.removeprefix("stats/").rsplit("/", 1)
            out.setdefault(feature, {})[stat] = np.asarray(value, np.int64 if stat == "count" else np.float64)
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="png", compress_level=1)
    return buf.getvalue()


def encode_frames(frames: np.ndarray) -> list[bytes]:
    """The PNG bytes a PNG dataset (``LeRobotWriter(video=False)``) stores for each frame of ``frames``
    ((T, H, W, 3) uint8; zlib level 1)."""
    return [_png(f) for f in frames]


@dataclass(frozen=True)
class PreparedFrames:
    """What :meth:`LeRobotWriter.add_episode` computes from an episode's frames alone, made beside the one
    writing process (``oft collect``'s workers) and handed to it: the writer's share caps the collection
    whatever the number of workers (2.9 episodes/s with its own PNG encoding and image statistics, 5.3
    without, ``tests/data/bench_writer.py``).

    png: {camera: PNG bytes per frame} (:func:`encode_frames`) for a PNG dataset, None for a video one.
    image_stats: {camera: the frames' statistics} (:func:`image_stats`).
    """

    png: dict[str, list[bytes]] | None
    image_stats: dict[str, dict[str, np.ndarray]]


def prepare_frames(ep: Episode, png: bool) -> PreparedFrames:
    """``ep``'s :class:`PreparedFrames`; ``png``: encode the frames (for a PNG dataset)."""
    return PreparedFrames(
        png={cam: encode_frames(x) for cam, x in ep.images.items()} if png else None,
        image_stats={cam: image_stats(x) for cam, x in ep.images.items()},
    )


# Data file sizes before a new file is started. Each append rewrites and re-hashes the current data file, so
# a PNG dataset's writer pays for its images on every episode: 200 MetaWorld-sized episodes (2 x 64 px
# cameras, ~1 MB each) cost 189 ms per episode with 100 MB files and 76 ms with 20 MB files, the frames
# prepared by the workers (tests/data/bench_writer.py --data-mb 100|20), bounding collection at 5.3 and
# 13.1 episodes/s.
LEROBOT_DATA_FILES_SIZE_IN_MB = 100  # LeRobot v3.0's default
PNG_DATA_FILES_SIZE_IN_MB = 20


def _fixed_list(x: np.ndarray) -> pa.Array:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])


class LeRobotWriter:
    """Append episodes to a LeRobot v3.0 dataset; reopening an existing one continues it.

    One writer per dataset at a time (parallel collectors hand their episodes to one writer). Each
    ``add_episode`` rewrites the current data parquet and appends to the current MP4 by packet copy, so its
    cost grows with the file, bounded by ``data_files_size_in_mb`` / ``video_files_size_in_mb``.

    ``image_shape`` is (H, W) of every camera. ``video=True`` stores cameras as MP4 (see
    :mod:`oft.data.video` for the codec), ``False`` as PNG images inside the data parquet (lossless, larger).

    ``data_files_size_in_mb`` (None: 100 for a video dataset, LeRobot's default, whose parquet holds only
    numbers; :data:`PNG_DATA_FILES_SIZE_IN_MB` for a PNG one, whose parquet holds the images). A reopened
    dataset keeps the size its ``info.json`` records.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        cameras: list[str] | tuple[str, ...],
        image_shape: tuple[int, int] | tuple[int, int, int],
        action_dim: int,
        proprio_dim: int,
        robot_type: str | None = None,
        video: bool = True,
        video_settings: VideoSettings | None = None,
        action_names: list[str] | None = None,
        state_names: list[str] | None = None,
        conventions: Conventions | str | None = None,
        chunks_size: int = 1000,
        data_files_size_in_mb: int | None = None,
        video_files_size_in_mb: int = 500,
    ):
        self.root = Path(root)
        self.video_settings = video_settings or VideoSettings()
        h, w = int(image_shape[0]), int(image_shape[1])
        features = self._features(cameras, (h, w), action_dim, proprio_dim, video, action_names, state_names)
        self.conventions = Conventions.from_dict(conventions)
        if self.conventions is not None:
            features[ACTION_KEY][CONVENTIONS_KEY] = self.conventions.to_dict()
        if data_files_size_in_mb is None:
            data_files_size_in_mb = LEROBOT_DATA_FILES_SIZE_IN_MB if video else PNG_DATA_FILES_SIZE_IN_MB
        if (self.root / INFO_PATH).exists():
            self._resume(features, fps)
        else:
            self._create(
                features, fps, robot_type, video, chunks_size, data_files_size_in_mb, video_files_size_in_mb
            )
        self.cameras = list(cameras)
        self.image_shape = (h, w)
        self.video = video
        self.action_dim, self.proprio_dim = action_dim, proprio_dim

    # -- setup

    @staticmethod
    def _features(cameras, hw, action_dim, proprio_dim, video, action_names, state_names) -> dict:
        if not cameras and action_dim < 1:
            raise ValueError(f"LeRobotWriter needs action_dim >= 1, got {action_dim}")
        feats = {
            ACTION_KEY: {
                "dtype": "float32",
                "shape": [action_dim],
                "names": action_names or [f"action_{i}" for i in range(action_dim)],
            }
        }
        if proprio_dim > 0:
            feats[STATE_KEY] = {
                "dtype": "float32",
                "shape": [proprio_dim],
                "names": state_names or [f"state_{i}" for i in range(proprio_dim)],
            }
        for cam in cameras:
            feats[IMAGE_PREFIX + cam] = {
                "dtype": "video" if video else "image",
                "shape": [hw[0], hw[1], 3],
                "names": ["height", "width", "channels"],
            }
        return feats | {k: dict(v) for k, v in DEFAULT_FEATURES.items()}

    def _create(self, features, fps, robot_type, video, chunks_size, data_mb, video_mb) -> None:
        self.info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_mb,
            "video_files_size_in_mb": video_mb,
            "fps": int(fps),
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if video else None,
            "features": features,
        }
        self.tasks: list[str] = []
        self.rows: list[dict] = []
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        self._rehash_all = True
        _write_json(self.info, self.root / INFO_PATH)

    def _resume(self, features: dict, fps: int) -> None:
        self.info = load_info(self.root)
        old = {k: (v["dtype"], list(v["shape"])) for k, v in self.info["features"].items()}
        new = {k: (v["dtype"], list(v["shape"])) for k, v in features.items()}
        if old != new or int(self.info["fps"]) != int(fps):
            differ = [f"{k}: {old.get(k, 'absent')} -> {new.get(k, 'absent')}" for k in sorted({*old, *new})
                      if old.get(k) != new.get(k)]  # fmt: skip
            if int(self.info["fps"]) != int(fps):
                differ.append(f"fps: {self.info['fps']} -> {fps}")
            raise ValueError(
                f"{self.root}: cannot append episodes unlike the existing dataset's ({'; '.join(differ)}): "
                "record them with its cameras, image size and rate, or write to another directory"
            )
        had = Conventions.from_dict(self.info["features"][ACTION_KEY].get(CONVENTIONS_KEY))
        if None not in (had, self.conventions) and had != self.conventions:
            raise ValueError(
                f"{self.root}: existing episodes have action conventions {had.to_dict()}; cannot append "
                f"episodes with {self.conventions.to_dict()}"
            )
        self.conventions = had or self.conventions
        if self.conventions is not None:  # recorded from now on (a dataset from before conventions existed)
            self.info["features"][ACTION_KEY][CONVENTIONS_KEY] = self.conventions.to_dict()
        n = int(self.info["total_episodes"])
        self.tasks = load_tasks(self.root) if n else []
        self.rows = load_episode_rows(self.root, n) if n else []
        episode_files = [f for f in (self.root / EPISODES_DIR).glob("*/*.parquet") if TMP_MARK not in f.name]
        if len(episode_files) > 1:
            raise ValueError(
                f"{self.root / EPISODES_DIR}: the episode table spans {len(episode_files)} files; "
                "appending keeps it in one file, so this dataset cannot be continued here"
            )
        self.stats = self._committed_stats()
        for tmp in self.root.rglob(f"*{TMP_MARK}*"):
            tmp.unlink()
        record = read_checksums(self.root)
        # no record yet, or one from before the last commit (killed in between): hash all at the next one
        self._rehash_all = record is None or record.get("total_episodes") != n
        log.info("resuming %s at episode %d", self.root, n)

    def _committed_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The running statistics of the committed episodes, merged from their rows' per-episode statistics
        in episode order, as :meth:`add_episode` merged them: stats.json may already count an episode that was
        never committed (a kill after it was written), so it is not read back."""
        stats: dict[str, dict[str, np.ndarray]] = {}
        for row in self.rows:
            episode = _row_stats(row)
            if not episode:  # a dataset whose rows carry no per-episode statistics: trust its stats.json
                path = self.root / STATS_PATH
                log.warning("%s: episode rows hold no stats/ columns; continuing from %s", self.root, path)
                raw = read_json_object(path, "JSON") if path.exists() else {}
                return {f: {k: np.asarray(v) for k, v in s.items()} for f, s in raw.items()}
            stats = {f: merge_stats(stats.get(f), s) for f, s in episode.items()}
        return stats

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    # -- appending

    def add_episode(
        self, ep: Episode, sidecars: tuple[Path, ...] = (), prepared: PreparedFrames | None = None
    ) -> int:
        """Append ``ep``; returns its episode index. The dataset is valid again when this returns.

        sidecars: files inside the dataset the caller rewrote for this episode (``oft collect``'s seeds),
        hashed again with the files written here when the checksums are recorded after the commit.
        prepared: ``prepare_frames(ep, png=not video)`` made elsewhere (stored and counted as given; the
        frames' statistics and PNG bytes are not computed again). Raises ValueError, before anything is
        written, when its cameras or frame counts do not match ``ep``, or it holds PNG bytes for a video
        dataset.
        """
        self._check(ep)
        self._check_prepared(ep, prepared)
        n, length = self.num_episodes, len(ep)
        new_task = ep.instruction not in self.tasks
        if new_task:
            self.tasks.append(ep.instruction)
        row = {"episode_index": n, "tasks": [ep.instruction], "length": length}
        frames_before = int(self.info["total_frames"])
        row |= self._write_data(ep, n, self.tasks.index(ep.instruction), frames_before, prepared)
        if self.video:
            for cam in self.cameras:
                row |= self._write_video(IMAGE_PREFIX + cam, ep.images[cam], n)
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        ep_stats = self._episode_stats(ep, n, frames_before, prepared)
        row |= {
            f"stats/{f}/{k}": np.asarray(v, np.int64 if k == "count" else np.float64).tolist()
            for f, s in ep_stats.items()
            for k, v in s.items()
        }
        self.rows.append(row)
        _write_parquet(
            pa.Table.from_pylist(self.rows), self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        )
        if new_task or n == 0:
            _write_parquet(_tasks_table(self.tasks), self.root / TASKS_PATH)
        self.stats = {f: merge_stats(self.stats.get(f), s) for f, s in ep_stats.items()}
        _write_json(_jsonable(self.stats), self.root / STATS_PATH)
        self._commit(n, length)
        self._record_checksums(row, sidecars)
        return n

    def _record_checksums(self, row: dict, sidecars: tuple[Path, ...]) -> None:
        """sha256 of what this episode rewrote (the rest keeps its recorded hash), after the commit."""
        data = DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        changed = [
            self.root / data,
            self.root / EPISODES_PATH.format(chunk_index=0, file_index=0),
            self.root / TASKS_PATH,
            self.root / STATS_PATH,
            self.root / INFO_PATH,
            *sidecars,
        ]
        for cam in self.cameras if self.video else ():
            key = IMAGE_PREFIX + cam
            changed.append(self.root / VIDEO_PATH.format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"]))  # fmt: skip
        total = self.num_episodes
        update_checksums(self.root, None if self._rehash_all else changed, total_episodes=total)
        self._rehash_all = False

    def _check_prepared(self, ep: Episode, prepared: PreparedFrames | None) -> None:
        if prepared is None:
            return
        if prepared.png is not None and self.video:
            raise ValueError(f"{self.root}: PNG frames given for a video dataset (video=True)")
        for what, per_camera in (("image_stats", prepared.image_stats), ("png", prepared.png)):
            if per_camera is not None and sorted(per_camera) != sorted(self.cameras):
                raise ValueError(
                    f"prepared {what} for cameras {sorted(per_camera)}, expected {sorted(self.cameras)}"
                )
        for cam, frames in (prepared.png or {}).items():
            if len(frames) != len(ep):
                raise ValueError(
                    f"prepared PNG frames of {cam!r}: {len(frames)}, expected {len(ep)} (the episode's)"
                )

    def _check(self, ep: Episode) -> None:
        if sorted(ep.cameras) != sorted(self.cameras):
            raise ValueError(f"episode has cameras {ep.cameras}, the dataset expects {self.cameras}")
        for cam in self.cameras:
            if ep.images[cam].shape[1:3] != self.image_shape:
                raise ValueError(
                    f"episode camera {cam!r} frames are {ep.images[cam].shape[1:3]}, "
                    f"the dataset expects {self.image_shape}"
                )
        if ep.actions.shape[1] != self.action_dim or ep.proprio.shape[1] != self.proprio_dim:
            raise ValueError(
                f"episode has action dim {ep.actions.shape[1]} and proprio dim "
                f"{ep.proprio.shape[1]}, the dataset expects {self.action_dim} and {self.proprio_dim}"
            )
        if len(ep) < 1:
            raise ValueError("cannot write an empty episode")

    def _next_file(self, chunk: int, file: int) -> tuple[int, int]:
        return (chunk + 1, 0) if file + 1 >= self.info["chunks_size"] else (chunk, file + 1)

    def _write_data(
        self, ep: Episode, n: int, task_index: int, frames_before: int, prepared: PreparedFrames | None = None
    ) -> dict:
        table = self._frame_table(ep, n, task_index, frames_before, prepared)
        chunk, file = (
            (self.rows[-1]["data/chunk_index"], self.rows[-1]["data/file_index"]) if self.rows else (0, 0)
        )
        path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        if path.exists() and self.rows:
            old = pq.read_table(path)
            old = old.filter(pc.less(old["episode_index"], n))  # drop rows of an uncommitted episode
            if path.stat().st_size / 2**20 >= self.info["data_files_size_in_mb"]:
                chunk, file = self._next_file(chunk, file)
                path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
            else:
                table = pa.concat_tables([old, table.cast(old.schema)])
        _write_parquet(table, path)
        return {
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": frames_before,
            "dataset_to_index": frames_before + len(ep),
        }

    def _frame_table(
        self, ep: Episode, n: int, task_index: int, frames_before: int, prepared: PreparedFrames | None = None
    ) -> pa.Table:
        t = len(ep)
        cols: dict[str, pa.Array] = {ACTION_KEY: _fixed_list(ep.actions)}
        if self.proprio_dim:
            cols[STATE_KEY] = _fixed_list(ep.proprio)
        if not self.video:
            for cam in self.cameras:
                given = prepared.png if prepared is not None else None
                frames = given[cam] if given is not None else encode_frames(ep.images[cam])
                png = pa.array(frames, pa.binary())
                cols[IMAGE_PREFIX + cam] = pa.StructArray.from_arrays(
                    [png, pa.array([None] * t, pa.string())], names=["bytes", "path"]
                )
        cols["timestamp"] = pa.array((np.arange(t) / self.info["fps"]).astype(np.float32))
        cols["frame_index"] = pa.array(np.arange(t, dtype=np.int64))
        cols["episode_index"] = pa.array(np.full(t, n, np.int64))
        cols["index"] = pa.array(np.arange(frames_before, frames_before + t, dtype=np.int64))
        cols["task_index"] = pa.array(np.full(t, task_index, np.int64))
        return pa.table(cols).replace_schema_metadata(_hf_metadata(self.info["features"]))

    def _write_video(self, key: str, frames: np.ndarray, n: int) -> dict:
        fps = self.info["fps"]
        chunk, file, start = 0, 0, 0
        if self.rows:
            last = self.rows[-1]
            chunk, file = last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"]
            start = round(last[f"videos/{key}/to_timestamp"] * fps)
        path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        if start and path.exists() and path.stat().st_size / 2**20 >= self.info["video_files_size_in_mb"]:
            chunk, file = self._next_file(chunk, file)
            start = 0
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = path.with_name(f"{path.stem}{TMP_MARK}ep{n}.mp4")
        out = path.with_name(f"{path.stem}{TMP_MARK}out.mp4")
        encode_video(frames, new, fps, self.video_settings)
        append_video(path, new, start / fps, out)
        os.replace(out, path)
        new.unlink()
        return {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": start / fps,
            f"videos/{key}/to_timestamp": (start + len(frames)) / fps,
        }

    def _episode_stats(
        self, ep: Episode, n: int, frames_before: int, prepared: PreparedFrames | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        t = len(ep)
        out = {ACTION_KEY: vector_stats(ep.actions)}
        if self.proprio_dim:
            out[STATE_KEY] = vector_stats(ep.proprio)
        for cam in self.cameras:
            out[IMAGE_PREFIX + cam] = prepared.image_stats[cam] if prepared else image_stats(ep.images[cam])
        out["timestamp"] = vector_stats(np.arange(t) / self.info["fps"])
        out["frame_index"] = vector_stats(np.arange(t))
        out["episode_index"] = vector_stats(np.full(t, n))
        out["index"] = vector_stats(np.arange(frames_before, frames_before + t))
        out["task_index"] = vector_stats(np.full(t, self.tasks.index(ep.instruction)))
        return out

    def _commit(self, n: int, length: int) -> None:
        info = self.info
        if n == 0 and self.video:
            for cam in self.cameras:
                key = IMAGE_PREFIX + cam
                path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
                info["features"][key]["info"] = video_info(path, info["fps"], self.video_settings)
        info["total_episodes"] = n + 1
        info["total_frames"] = int(info["total_frames"]) + length
        info["total_tasks"] = len(self.tasks)
        info["splits"] = {"train": f"0:{n + 1}"}
        _write_json(info, self.root / INFO_PATH)

    def finalize(self) -> NormStats | None:
        """Replace the approximate aggregated quantiles of action and state with exact ones."""
        if self.num_episodes == 0:
            return None
        from oft.data.stats import dataset_stats, save_stats, to_norm_stats

        dataset = LeRobotDataset(self.root)
        full = dataset_stats(dataset)
        save_stats(dataset, full)
        self.stats = {
            f: {k: np.asarray(v) for k, v in s.items()}
            for f, s in json.loads((self.root / STATS_PATH).read_text()).items()
        }
        return to_norm_stats(full)

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
