"""Issue 13: corrupt or inconsistent dataset files are named, and silent corruption is found by checksums.

Each fails on main 4f85ac9: a truncated MP4 gave PyAV's error without the file, frame counts and timestamps
disagreeing with what the dataset records were ignored or unnamed, and flipped bytes decoded silently wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oft.checksums import DATASET_CHECKSUMS, ChecksumError, verify, verify_dataset
from oft.data.lerobot import LeRobotDataset, LeRobotWriter
from oft.files import CorruptFileError

VIDEO = "videos/observation.images.corner/chunk-000/file-000.mp4"
DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture
def ds(tmp_path, make_episode) -> Path:
    """4 episodes of 20 frames at 10 fps, one camera as MP4."""
    root = tmp_path / "ds"
    with LeRobotWriter(
        root, fps=10, cameras=["corner"], image_shape=(32, 32), action_dim=4, proprio_dim=3
    ) as w:
        for i in range(4):
            w.add_episode(make_episode(20, cameras=("corner",), seed=i))
    return root


def _read_all(root: Path) -> None:
    d = LeRobotDataset(root)
    for i in range(d.num_episodes):
        d.episode(i)


def test_writer_records_checksums_that_verify(ds):
    record = json.loads((ds / DATASET_CHECKSUMS).read_text())
    assert record["total_episodes"] == 4 and VIDEO in record["files"] and "meta/stats.json" in record["files"]
    report = verify(ds)
    assert report.ok and report.checked == len(record["files"]) and not report.unlisted
    _read_all(ds)


def test_flipped_bytes_in_an_mp4_are_found_by_checksums(ds):
    """16 flipped bytes in the middle of the video decode without any error; the checksum names the file."""
    path = ds / VIDEO
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for k in range(16):
        data[mid + k] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify(ds)
    assert [p for p, _ in report.problems] == [VIDEO] and "contents changed" in report.problems[0][1]
    with pytest.raises(ChecksumError, match=r"file-000\.mp4"):
        verify_dataset(ds)


def test_cli_verify_reports_every_bad_file_and_exits_nonzero(ds, capsys):
    from oft.cli import main

    assert main(["verify", str(ds)]) == 0
    (ds / DATA).write_bytes(b"garbage")
    (ds / "meta/tasks.parquet").unlink()
    assert main(["verify", str(ds)]) == 1
    out = capsys.readouterr().out
    assert f"{ds / DATA}: size" in out and f"{ds / 'meta/tasks.parquet'}: missing" in out


def test_truncated_mp4_names_the_file(ds):
    path = ds / VIDEO
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError) as e:
        _read_all(ds)
    assert e.value.path == path and "\n" not in str(e.value)


def _edit_episodes(root: Path, episode: int, **values) -> None:
    path = root / EPISODES
    rows = pq.read_table(path).to_pylist()
    rows[episode].update(values)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_video_frame_count_disagreeing_with_the_dataset_names_file_and_episode(ds):
    rows = pq.read_table(ds / EPISODES).to_pylist()
    to = rows[1]["videos/observation.images.corner/to_timestamp"]
    _edit_episodes(ds, 1, **{"videos/observation.images.corner/to_timestamp": to + 0.5})  # 5 more frames
    d = LeRobotDataset(ds)
    d.episode(0)
    with pytest.raises(CorruptFileError, match=r"episode 1: 25 video frames decode .* records 20") as e:
        d.episode(1)
    assert e.value.path == ds / VIDEO


def test_timestamps_out_of_step_name_file_and_episode(ds):
    table = pq.read_table(ds / DATA)
    ts = table["timestamp"].to_numpy().copy()
    ts[25] += 0.05  # episode 1, frame 5: half a frame late
    pq.write_table(
        table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts)), ds / DATA
    )
    with pytest.raises(CorruptFileError, match=r"episode 1: timestamp steps by") as e:
        LeRobotDataset(ds).episode_arrays(1)
    assert e.value.path == ds / DATA


def test_parquet_frame_count_and_garbage_are_named(ds):
    _edit_episodes(ds, 3, length=19)
    with pytest.raises(CorruptFileError, match="episode 3 has 20 frames, meta/episodes says 19"):
        LeRobotDataset(ds).episode_arrays(3)
    (ds / DATA).write_bytes(os.urandom(500))
    with pytest.raises(CorruptFileError, match="unreadable parquet") as e:
        LeRobotDataset(ds).episode_arrays(0)
    assert e.value.path == ds / DATA


def test_wrongly_typed_info_json_is_named(ds):
    info = json.loads((ds / "meta/info.json").read_text())
    info["fps"] = "ten"
    (ds / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(CorruptFileError, match="fps is 'ten'") as e:
        LeRobotDataset(ds)
    assert e.value.path == ds / "meta/info.json"


def test_truncated_hdf5_names_the_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    from oft.data.hdf5 import open_hdf5

    path = tmp_path / "demo.hdf5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((50, 7), np.float32)
        g["obs/agentview_rgb"] = np.zeros((50, 16, 16, 3), np.uint8)
        g["obs/robot_states"] = np.zeros((50, 9), np.float32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as e:
        d = open_hdf5(path)
        d.episode(0)
    assert e.value.path == path and "\n" not in str(e.value)


def test_training_refuses_a_corrupted_dataset(ds):
    from oft.train.loop import open_datasets

    assert open_datasets((str(ds),)).num_episodes == 4
    data = bytearray((ds / VIDEO).read_bytes())
    data[len(data) // 2] ^= 1
    (ds / VIDEO).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"file-000\.mp4: sha256"):
        open_datasets((str(ds),))
