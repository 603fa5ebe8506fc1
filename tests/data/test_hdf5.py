"""HDF5 readers: LIBERO / robomimic and ALOHA layouts, built here with h5py."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from oft.cli import main
from oft.data import open_dataset
from oft.data.hdf5 import AlohaDataset, RobomimicDataset, instruction_from_filename, quat_to_axis_angle


def _libero_file(path, lengths=(6, 4), instruction="put the bowl on the plate"):
    rng = np.random.default_rng(0)
    demos = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": instruction})
        for k, t in enumerate(lengths):
            g = data.create_group(f"demo_{k}")
            d = {
                "actions": rng.normal(size=(t, 7)).astype(np.float32),
                "agentview_rgb": rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
                "eye_in_hand_rgb": rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
                "ee_states": rng.normal(size=(t, 6)),
                "gripper_states": rng.normal(size=(t, 2)),
                "joint_states": rng.normal(size=(t, 7)),
            }
            g["actions"] = d["actions"]
            for key in ("agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states"):
                g[f"obs/{key}"] = d[key]
            demos[k] = d
    return demos


def test_libero_layout(tmp_path):
    path = tmp_path / "KITCHEN_SCENE3_put_the_bowl_on_the_plate_demo.hdf5"
    demos = _libero_file(path)
    ds = open_dataset(path)
    assert isinstance(ds, RobomimicDataset)
    assert (ds.num_episodes, ds.cameras, ds.action_dim, ds.proprio_dim) == (
        2,
        ["full_image", "wrist_image"],
        7,
        8,
    )
    ep = ds.episode(1)
    d = demos[1]
    assert ep.instruction == "put the bowl on the plate" and len(ep) == 4
    np.testing.assert_array_equal(ep.actions, d["actions"])
    np.testing.assert_allclose(
        ep.proprio, np.concatenate([d["ee_states"], d["gripper_states"]], 1), rtol=1e-6
    )
    np.testing.assert_array_equal(ep.images["full_image"], d["agentview_rgb"][:, ::-1, ::-1])  # turned 180°
    np.testing.assert_array_equal(
        RobomimicDataset([path], flip=False).episode(1).images["wrist_image"], d["eye_in_hand_rgb"]
    )


def test_libero_folder_and_filename_instruction(tmp_path):
    _libero_file(
        tmp_path / "LIVING_ROOM_SCENE2_pick_up_the_soup_demo.hdf5", (3,), instruction="pick up the soup"
    )
    with h5py.File(tmp_path / "KITCHEN_SCENE1_open_the_drawer_demo.hdf5", "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((5, 7), np.float32)
        for key, shape in (("agentview_rgb", (5, 16, 16, 3)), ("eye_in_hand_rgb", (5, 16, 16, 3))):
            g[f"obs/{key}"] = np.zeros(shape, np.uint8)
        g["obs/ee_states"], g["obs/gripper_states"] = np.zeros((5, 6)), np.zeros((5, 2))
    ds = open_dataset(tmp_path)
    assert ds.num_episodes == 2
    assert sorted(ds.instructions) == ["open the drawer", "pick up the soup"]
    assert (
        instruction_from_filename(tmp_path / "KITCHEN_SCENE10_turn_on_the_stove_demo.hdf5")
        == "turn on the stove"
    )


def test_robomimic_quaternion_proprio(tmp_path):
    path = tmp_path / "lift.hdf5"
    angle = np.pi / 3
    quat = np.array([[0, 0, np.sin(angle / 2), np.cos(angle / 2)]] * 3)  # (x, y, z, w): pi/3 about z
    with h5py.File(path, "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.ones((3, 7), np.float32)
        g["obs/agentview_image"] = np.zeros((3, 8, 8, 3), np.uint8)
        g["obs/robot0_eef_pos"] = np.ones((3, 3))
        g["obs/robot0_eef_quat"] = quat
        g["obs/robot0_gripper_qpos"] = np.full((3, 2), 0.5)
    ds = open_dataset(path, instruction="lift the cube")
    ep = ds.episode(0)
    assert ds.cameras == ["full_image"] and ep.instruction == "lift the cube"
    np.testing.assert_allclose(ep.proprio[0], [1, 1, 1, 0, 0, angle, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(quat_to_axis_angle(np.array([[0, 0, 0, 1.0]])), [[0, 0, 0]])
    assert not ep.images["full_image"].any()  # robomimic images are not turned


def _aloha_file(path, t, seed):
    rng = np.random.default_rng(seed)
    d = {
        "qpos": rng.normal(size=(t, 14)),
        "action": rng.normal(size=(t, 14)),
        "top": rng.integers(0, 255, (t, 12, 16, 3), dtype=np.uint8),
    }
    with h5py.File(path, "w") as f:
        f["observations/qpos"] = d["qpos"]
        f["observations/images/top"] = d["top"]
        f["observations/images/left_wrist"] = d["top"][:, ::-1]
        f["action"] = d["action"]
    return d


def test_aloha_folder(tmp_path):
    folder = tmp_path / "sim_transfer_cube_scripted"
    folder.mkdir()
    eps = [_aloha_file(folder / f"episode_{k}.hdf5", 5 + k, k) for k in range(3)]
    ds = open_dataset(folder)
    assert isinstance(ds, AlohaDataset)
    assert (ds.num_episodes, ds.cameras, ds.action_dim, ds.proprio_dim) == (3, ["left_wrist", "top"], 14, 14)
    ep = ds.episode(2)
    assert ep.instruction == "transfer cube" and len(ep) == 7
    np.testing.assert_allclose(ep.proprio, eps[2]["qpos"], rtol=1e-6)
    np.testing.assert_allclose(ep.actions, eps[2]["action"], rtol=1e-6)
    np.testing.assert_array_equal(ep.images["top"], eps[2]["top"])
    assert isinstance(open_dataset(folder / "episode_1.hdf5"), AlohaDataset)
    assert ds.stats is None
    assert main(["stats", str(folder)]) == 0  # saved beside the episodes, read back as NormStats
    qpos = np.concatenate([e["qpos"] for e in eps])
    np.testing.assert_allclose(
        open_dataset(folder).stats.proprio.q99, np.quantile(qpos, 0.99, axis=0), rtol=1e-6
    )


def test_hdf5_errors_name_file_and_key(tmp_path):
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        f["data/demo_0/obs/agentview_rgb"] = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"broken\.hdf5: data/demo_0: missing key 'actions'"):
        open_dataset(path)
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"other\.hdf5: unknown HDF5 layout"):
        open_dataset(tmp_path / "other.hdf5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"junk\.h5: unreadable HDF5"):
        open_dataset(tmp_path / "junk.h5")
    _aloha_file(tmp_path / "ep.hdf5", 4, 0)
    with pytest.raises(IndexError, match="out of range"):
        open_dataset(tmp_path / "ep.hdf5").episode(1)


def test_aloha_jpeg_compressed_frames(tmp_path):
    """ACT's compressed episodes: cv2.imencode of RGB arrays (taken as BGR), padded to one length."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8), 8, 1), 8, 2)
    blobs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(f[..., ::-1])).save(
            buf, format="jpeg", quality=95
        )  # what cv2 does
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    width = max(len(b) for b in blobs)
    padded = np.stack([np.pad(b, (0, width - len(b))) for b in blobs])
    with h5py.File(tmp_path / "episode_0.hdf5", "w") as f:
        f.attrs["compress"] = True
        f["observations/qpos"] = np.zeros((3, 14))
        f["observations/images/top"] = padded
        f["action"] = np.zeros((3, 14))
    ep = open_dataset(tmp_path / "episode_0.hdf5").episode(0)
    assert ep.images["top"].shape == (3, 32, 32, 3)
    err = np.abs(ep.images["top"].astype(int) - frames).mean()
    swapped = np.abs(ep.images["top"][..., ::-1].astype(int) - frames).mean()
    assert err < 12 and err < swapped / 4, (err, swapped)  # JPEG-close, channels in the right order


def test_readers_record_the_convention_of_their_source(tmp_path):
    """LIBERO / robomimic actions are kept as recorded (robosuite: -1 open / +1 close) and say so; ALOHA files
    hold absolute joints with normalized grippers. A file stored otherwise is declared by the caller."""
    from oft.conventions import CONVENTIONS

    _libero_file(tmp_path / "a_demo.hdf5")
    assert open_dataset(tmp_path / "a_demo.hdf5").conventions == CONVENTIONS["libero"]
    given = RobomimicDataset([tmp_path / "a_demo.hdf5"], conventions="openvla_libero")
    assert given.conventions == CONVENTIONS["openvla_libero"]
    with h5py.File(tmp_path / "joints.hdf5", "w") as f:  # proprio from robot_states: layout unknown
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((3, 7), np.float32)
        g["obs/agentview_rgb"] = np.zeros((3, 8, 8, 3), np.uint8)
        g["obs/robot_states"] = np.zeros((3, 9))
    assert open_dataset(tmp_path / "joints.hdf5").conventions == CONVENTIONS["libero"].replace(proprio=None)
    aloha_dir = tmp_path / "aloha"
    aloha_dir.mkdir()
    with h5py.File(aloha_dir / "episode_0.hdf5", "w") as f:
        f["action"] = np.zeros((3, 14), np.float32)
        f["observations/qpos"] = np.zeros((3, 14), np.float32)
        f["observations/images/top"] = np.zeros((3, 8, 8, 3), np.uint8)
    assert open_dataset(aloha_dir).conventions == CONVENTIONS["aloha"]
