"""LeRobot v3: our writer -> our reader, a dataset built by hand to the v3 spec, resumption, corrupt files."""

from __future__ import annotations

import io
import json
from fractions import Fraction

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from oft.data import open_dataset
from oft.data.lerobot import LeRobotDataset, LeRobotWriter

# libx264 crf 0 in yuv444p is lossless in YUV; what is left is RGB <-> YUV rounding.
VIDEO_TOLERANCE = 3


def _write(root, episodes, video=True, like=None, **kw):
    first = like or episodes[0]
    w = LeRobotWriter(
        root,
        fps=10,
        cameras=first.cameras,
        image_shape=first.images[first.cameras[0]].shape[1:3],
        action_dim=first.actions.shape[1],
        proprio_dim=first.proprio.shape[1],
        robot_type="test",
        video=video,
        **kw,
    )
    for ep in episodes:
        w.add_episode(ep)
    return w


@pytest.mark.parametrize("video", [True, False])
def test_round_trip(tmp_path, make_episode, video):
    eps = [
        make_episode(9, seed=0, instruction="a"),
        make_episode(5, seed=1, instruction="b"),
        make_episode(7, seed=2, instruction="a"),
    ]
    _write(tmp_path / "ds", eps, video=video).finalize()
    ds = open_dataset(tmp_path / "ds")
    assert isinstance(ds, LeRobotDataset)
    assert (ds.num_episodes, ds.fps, ds.cameras, ds.action_dim, ds.proprio_dim) == (
        3,
        10,
        ["corner", "wrist"],
        4,
        3,
    )
    assert ds.instructions == ["a", "b", "a"]
    for i, ep in enumerate(eps):
        got = ds.episode(i)
        assert got.instruction == ep.instruction and len(got) == len(ep)
        np.testing.assert_array_equal(got.actions, ep.actions)
        np.testing.assert_array_equal(got.proprio, ep.proprio)
        for cam in ep.cameras:
            diff = np.abs(got.images[cam].astype(int) - ep.images[cam].astype(int)).max()
            assert diff <= (VIDEO_TOLERANCE if video else 0), (cam, diff)
    with pytest.raises(IndexError, match="out of range"):
        ds.episode(3)


def test_layout_matches_lerobot(tmp_path, make_episode):
    _write(tmp_path / "ds", [make_episode(6), make_episode(4, seed=1)]).finalize()
    root = tmp_path / "ds"
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 10, 1)
    assert info["splits"] == {"train": "0:2"}
    assert info["features"]["observation.images.corner"]["dtype"] == "video"
    assert info["features"]["observation.images.corner"]["info"]["video.codec"] == "h264"
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert data.schema.field("action").type == pa.list_(pa.float32(), 4)
    assert data.schema.field("timestamp").type == pa.float32()
    assert data["index"].to_pylist() == list(range(10))
    assert json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]["action"]["length"] == 4
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 6), (6, 10)]
    key = "videos/observation.images.corner/"
    assert [(e[key + "from_timestamp"], e[key + "to_timestamp"]) for e in episodes] == [
        (0.0, 0.6),
        (0.6, 1.0),
    ]
    assert len(episodes[0]["stats/action/q01"]) == 4
    assert np.asarray(episodes[0]["stats/observation.images.corner/mean"]).shape == (3, 1, 1)
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert {"mean", "std", "min", "max", "count", "q01", "q10", "q50", "q90", "q99"} <= set(stats["action"])


def test_resume_and_crash_recovery(tmp_path, make_episode):
    root = tmp_path / "ds"
    eps = [make_episode(6, seed=s, instruction=f"task {s % 2}") for s in range(4)]
    _write(root, eps[:2])
    # a crash after the data and video of episode 2 were written, before its metadata was committed
    crashed = make_episode(8, seed=9)
    w = _write(root, [], like=crashed)
    w._write_data(crashed, 2, 0, 12)
    for cam in crashed.cameras:
        w._write_video("observation.images." + cam, crashed.images[cam], 2)
    ds = open_dataset(root)
    assert ds.num_episodes == 2  # the uncommitted episode is invisible
    (root / "data/chunk-000/file-000.parquet.tmp-999").write_bytes(b"half a file")  # killed mid-write
    w = _write(root, eps[2:])  # reopening drops the leftovers and appends
    assert not list(root.rglob("*.tmp-*"))
    ds = open_dataset(root)
    assert ds.num_episodes == 4 and ds.instructions == ["task 0", "task 1", "task 0", "task 1"]
    for i, ep in enumerate(eps):
        got = ds.episode(i)
        np.testing.assert_array_equal(got.actions, ep.actions)
        assert np.abs(got.images["wrist"].astype(int) - ep.images["wrist"]).max() <= VIDEO_TOLERANCE
    # another camera set is refused naming what differs (not two full feature dicts), and the fix
    changed = r"observation.images.wrist: \('video', \[32, 32, 3\]\) -> absent.*or write to another directory"
    with pytest.raises(ValueError, match=changed):
        LeRobotWriter(root, fps=10, cameras=["corner"], image_shape=(32, 32), action_dim=4, proprio_dim=3)


# ---------------------------------------------------------------------------- a dataset built to the v3 spec


def _spec_dataset(root):
    """Built with pyarrow + PyAV the way LeRobot v3 lays a dataset out, without our writer: tasks.parquet as
    pandas writes an unnamed index, variable-length list columns, one MP4 (yuv420p, B-frames allowed) holding
    all episodes back to back, a second camera stored as PNG structs in the data parquet."""
    fps, lengths, tasks_of = 10, [5, 7, 4], ["stack the cups", "open the drawer", "stack the cups"]
    tasks = ["stack the cups", "open the drawer"]
    total = sum(lengths)
    top = np.stack([np.full((64, 64, 3), 20 + 12 * i, np.uint8) for i in range(total)])  # level = frame id
    (root / "videos/observation.images.top/chunk-000").mkdir(parents=True)
    with av.open(str(root / "videos/observation.images.top/chunk-000/file-000.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i, f in enumerate(top):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    rng = np.random.default_rng(0)
    action, state = rng.normal(size=(total, 2)), rng.normal(size=(total, 3))
    wrist = rng.integers(0, 255, (total, 8, 8, 3), dtype=np.uint8)

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="png")
        return buf.getvalue()

    ep_index = np.repeat(np.arange(3), lengths)
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    data = pa.table(
        {
            "action": pa.array(action.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "observation.state": pa.array(state.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "observation.images.wrist": pa.array([{"bytes": png(w), "path": None} for w in wrist]),
            "timestamp": pa.array((frame_index / fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(ep_index),
            "index": pa.array(np.arange(total)),
            "task_index": pa.array([tasks.index(tasks_of[e]) for e in ep_index]),
        }
    )
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(data, root / "data/chunk-000/file-000.parquet")
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    key = "videos/observation.images.top/"
    episodes = pa.Table.from_pylist(
        [
            {
                "episode_index": e,
                "tasks": [tasks_of[e]],
                "length": lengths[e],
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": int(bounds[e]),
                "dataset_to_index": int(bounds[e + 1]),
                key + "chunk_index": 0,
                key + "file_index": 0,
                key + "from_timestamp": bounds[e] / fps,
                key + "to_timestamp": bounds[e + 1] / fps,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "stats/action/mean": action[bounds[e] : bounds[e + 1]].mean(0).tolist(),
            }
            for e in range(3)
        ]
    )
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(episodes, root / "meta/episodes/chunk-000/file-000.parquet")
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64"},
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
            },
        ],
    }
    t = pa.table({"task_index": [0, 1], "__index_level_0__": tasks})
    pq.write_table(
        t.replace_schema_metadata({b"pandas": json.dumps(pandas_meta)}), root / "meta/tasks.parquet"
    )
    vec = {"dtype": "float32", "names": None}
    info = {
        "codebase_version": "v3.0",
        "robot_type": "so100",
        "total_episodes": 3,
        "total_frames": total,
        "total_tasks": 2,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": "0:3"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "action": {**vec, "shape": [2]},
            "observation.state": {**vec, "shape": [3]},
            "observation.images.top": {
                "dtype": "video",
                "shape": [64, 64, 3],
                "names": ["height", "width", "channels"],
            },
            "observation.images.wrist": {
                "dtype": "image",
                "shape": [8, 8, 3],
                "names": ["height", "width", "channels"],
            },
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return lengths, tasks_of, action, state, wrist


def test_reads_a_v3_spec_dataset(tmp_path):
    lengths, tasks_of, action, state, wrist = _spec_dataset(tmp_path)
    ds = open_dataset(tmp_path)
    assert (ds.num_episodes, ds.cameras, ds.fps) == (3, ["top", "wrist"], 10)
    assert ds.instructions == tasks_of
    assert ds.stats is None  # no stats.json: `oft stats` computes it
    start = 0
    for e, n in enumerate(lengths):
        ep = ds.episode(e)
        assert len(ep) == n and ep.instruction == tasks_of[e]
        np.testing.assert_allclose(ep.actions, action[start : start + n], atol=1e-6)
        np.testing.assert_allclose(ep.proprio, state[start : start + n], atol=1e-6)
        np.testing.assert_array_equal(ep.images["wrist"], wrist[start : start + n])
        levels = ep.images["top"].reshape(n, -1).mean(1)  # each frame's grey level names its global index
        np.testing.assert_allclose(levels, 20 + 12 * np.arange(start, start + n), atol=3)
        start += n


# ---------------------------------------------------------------------------- corrupt and missing files


def test_corrupt_files_are_named(tmp_path, make_episode):
    root = tmp_path / "ds"
    _write(root, [make_episode(5), make_episode(5, seed=1)]).finalize()
    info = root / "meta/info.json"
    good = info.read_text()
    info.write_text("{not json")
    with pytest.raises(ValueError, match=r"info\.json: not valid JSON"):
        open_dataset(root)
    info.write_text(good)

    tasks = root / "meta/tasks.parquet"
    tasks.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"tasks\.parquet: unreadable parquet"):
        open_dataset(root)
    tasks.unlink()
    with pytest.raises(FileNotFoundError, match=r"tasks\.parquet: missing"):
        open_dataset(root)


def test_missing_columns_and_video(tmp_path, make_episode):
    root = tmp_path / "ds"
    _write(root, [make_episode(5)]).finalize()
    data = root / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(data).drop_columns(["action"]), data)
    with pytest.raises(ValueError, match=r"file-000\.parquet: missing columns \['action'\]"):
        open_dataset(root).episode(0)
    _write(tmp_path / "ds2", [make_episode(5)]).finalize()
    video = tmp_path / "ds2/videos/observation.images.wrist/chunk-000/file-000.mp4"
    video.unlink()
    with pytest.raises(FileNotFoundError, match=r"file-000\.mp4"):
        open_dataset(tmp_path / "ds2").episode(0)


def test_not_a_dataset(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"meta/info\.json"):
        open_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a dataset file"):
        open_dataset(tmp_path / "notes.txt")


# ---------------------------------------------------------------------------- interruption points (issue 13)


def test_kill_right_after_stats_json_does_not_count_an_episode_twice(tmp_path, make_episode, monkeypatch):
    """Killed after meta/stats.json counted episode 2 but before info.json committed it: the resumed writer
    rebuilds its running statistics from the committed episodes, so the dataset equals an uninterrupted one
    (on main the image/timestamp/index statistics counted episode 2 twice)."""
    eps = [make_episode(6 + s, seed=s, instruction=f"task {s % 2}") for s in range(4)]
    _write(tmp_path / "whole", eps).finalize()

    root = tmp_path / "ds"
    _write(root, eps[:2])
    real_commit = LeRobotWriter._commit

    def killed(self, n, length):
        raise KeyboardInterrupt("kill -9 right after stats.json")

    monkeypatch.setattr(LeRobotWriter, "_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        _write(root, [eps[2]])
    monkeypatch.setattr(LeRobotWriter, "_commit", real_commit)
    assert json.loads((root / "meta/stats.json").read_text())["timestamp"]["count"] == [6 + 7 + 8]
    assert open_dataset(root).num_episodes == 2
    _write(root, eps[2:]).finalize()

    whole = json.loads((tmp_path / "whole/meta/stats.json").read_text())
    resumed = json.loads((root / "meta/stats.json").read_text())
    assert resumed["timestamp"]["count"] == [6 + 7 + 8 + 9]
    assert resumed == whole
    from oft.checksums import verify

    assert verify(root).ok  # the checksums were brought up to date on resume


def test_checksums_follow_every_append_and_resume(tmp_path, make_episode):
    from oft.checksums import DATASET_CHECKSUMS, verify

    root = tmp_path / "ds"
    _write(root, [make_episode(5, seed=0)])
    assert verify(root).ok
    _write(root, [make_episode(5, seed=1), make_episode(4, seed=2)]).finalize()  # reopened, finalized
    report = verify(root)
    assert report.ok and not report.unlisted and not report.notes
    assert json.loads((root / DATASET_CHECKSUMS).read_text())["total_episodes"] == 3
