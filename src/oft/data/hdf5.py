"""HDF5 demonstrations: the robomimic / LIBERO layout and the ALOHA layout.

robomimic / LIBERO: one file holds many demos::

    data/demo_N/actions                       (T, D)
    data/demo_N/obs/<camera>                  (T, H, W, 3) uint8: agentview_rgb, eye_in_hand_rgb (LIBERO),
                                              agentview_image, robot0_eye_in_hand_image (robomimic)
    data/demo_N/obs/ee_states|ee_pos|ee_ori|gripper_states|robot_states   (LIBERO)
    data/demo_N/obs/robot0_eef_pos|robot0_eef_quat|robot0_gripper_qpos    (robomimic)
    data.attrs["problem_info"]                JSON with "language_instruction" (LIBERO)

Proprio follows OpenVLA-OFT's LIBERO state (8-D): end-effector position + axis-angle + 2 gripper joints —
``ee_states`` (6) + ``gripper_states`` (2), or ``ee_pos`` + ``ee_ori`` + ``gripper_states``, or robomimic's
``robot0_eef_pos`` + axis-angle of ``robot0_eef_quat`` + ``robot0_gripper_qpos``; ``robot_states`` otherwise.
LIBERO renders its cameras upside down; like OpenVLA-OFT's RLDS conversion (and our LIBERO adapter) the
reader turns ``*_rgb`` images by 180° (``flip=False`` keeps them as stored). Actions are kept as recorded —
robosuite's delta EEF actions with the gripper -1 = open / +1 = close — and the dataset says so:
``conventions`` is :data:`~oft.conventions.CONVENTIONS` ``["libero"]`` (proprio layout ``None`` when it falls
back to ``robot_states``). A policy trained on it keeps that convention; it is not OpenVLA's RLDS one
(1 = open, 0 = close), which only OpenVLA's own loader produces.

ALOHA (ACT's ``record_sim_episodes.py``): one file per episode, a folder of them::

    /observations/images/<cam>   (T, H, W, 3) uint8, or JPEG bytes per frame when attrs["compress"]
    /observations/qpos           (T, 14)   -> proprio
    /action                      (T, 14)   -> actions

ALOHA actions are absolute joint targets with each gripper a normalized opening (0 closed, 1 open; ACT's
``record_sim_episodes.py``): ``conventions`` is ``CONVENTIONS["aloha"]``.

Either reader takes ``conventions=`` (a registered name or a :class:`~oft.conventions.Conventions`) for a
file whose actions were stored otherwise.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from oft.conventions import Conventions, get_conventions
from oft.data.dataset import EpisodeDataset
from oft.data.episode import Episode
from oft.files import CorruptFileError, detail, reading

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".hdf5", ".h5", ".he5")
CAMERA_ALIASES = {
    "agentview_rgb": "full_image",
    "eye_in_hand_rgb": "wrist_image",
    "agentview_image": "full_image",
    "robot0_eye_in_hand_image": "wrist_image",
}
PROPRIO_LAYOUTS = (
    ("ee_states", "gripper_states"),
    ("ee_pos", "ee_ori", "gripper_states"),
    ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"),
    ("robot_states",),
)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CorruptFileError(path, f"unreadable HDF5 ({detail(e)})") from e


def _get(group, key: str, where: str):
    if key not in group:
        raise CorruptFileError(where, f"missing key {key!r}; has {sorted(group.keys())}")
    return group[key]


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """(T, 4) quaternions (x, y, z, w), robosuite's order -> (T, 3) axis-angle (robosuite quat2axisangle)."""
    q = np.asarray(quat, np.float64)
    w = np.clip(q[:, 3], -1.0, 1.0)
    den = np.sqrt(1.0 - w * w)
    angle = 2.0 * np.arccos(w)
    out = np.where(den[:, None] > 1e-8, q[:, :3] * (angle / np.where(den > 1e-8, den, 1.0))[:, None], 0.0)
    return out.astype(np.float32)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def detect_layout(path: Path) -> str:
    """ "robomimic" or "aloha" for one HDF5 file."""
    with _open(path) as f:
        if "data" in f:
            return "robomimic"
        if "observations" in f and "action" in f:
            return "aloha"
        raise ValueError(
            f"{path}: unknown HDF5 layout with top-level keys {sorted(f.keys())}; expected 'data' "
            "(robomimic / LIBERO) or 'observations' + 'action' (ALOHA)"
        )


def open_hdf5(path: str | Path, **kwargs) -> EpisodeDataset:
    """One HDF5 file or a directory of them, in either layout."""
    path = Path(path)
    files = (
        [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
    )
    if not files:
        raise FileNotFoundError(f"{path}: no HDF5 files ({', '.join(HDF5_SUFFIXES)})")
    layout = detect_layout(files[0])
    if layout == "robomimic":
        return RobomimicDataset(files, root=path, **kwargs)
    return AlohaDataset(files, root=path, **kwargs)


def instruction_from_filename(path: Path) -> str:
    """LIBERO names files ``[SCENE_]the_task_in_words_demo.hdf5``; drop the upper-case scene prefix."""
    words = path.stem.removesuffix("_demo").split("_")
    while words and (words[0].isupper() or words[0].isdigit()) and len(words) > 1:
        words = words[1:]
    return " ".join(words)


class RobomimicDataset(EpisodeDataset):
    """robomimic / LIBERO demos from one or more files (a LIBERO suite folder is one dataset)."""

    def __init__(
        self,
        files: list[Path],
        root: Path | None = None,
        instruction: str | None = None,
        fps: float = 20.0,
        flip: bool | None = None,
        camera_names: dict[str, str] | None = None,
        conventions: Conventions | str | None = None,
    ):
        self.path = Path(root) if root is not None else Path(files[0])
        self.fps = fps
        self.aliases = CAMERA_ALIASES | (camera_names or {})
        self.index: list[tuple[Path, str]] = []
        self.file_instruction: dict[Path, str] = {}
        for file in files:
            with _open(file) as f:
                data = _get(f, "data", str(file))
                demos = sorted((k for k in data if k.startswith("demo")), key=_natural_key)
                if not demos:
                    raise ValueError(f"{file}: 'data' holds no demo_N groups; has {sorted(data.keys())}")
                self.index += [(file, d) for d in demos]
                self.file_instruction[file] = instruction or self._instruction(file, data)
        first, demo = self.index[0]
        with _open(first) as f:
            obs = _get(f["data"][demo], "obs", f"{first}: data/{demo}")
            self.obs_cameras = [k for k in obs if obs[k].ndim == 4 and obs[k].shape[-1] == 3]
            self.proprio_layout = next((lay for lay in PROPRIO_LAYOUTS if all(k in obs for k in lay)), ())
            self.action_dim = int(_get(f["data"][demo], "actions", f"{first}: data/{demo}").shape[1])
        self.cameras = [self.aliases.get(k, k) for k in self.obs_cameras]
        self.flip = any(k.endswith("_rgb") for k in self.obs_cameras) if flip is None else flip
        self.proprio_dim = int(self.episode_arrays(0)[1].shape[1])
        self.conventions = self._conventions(conventions)

    def _conventions(self, given: Conventions | str | None) -> Conventions | None:
        """As given, else LIBERO/robomimic's as recorded (robosuite's 7-D OSC_POSE action; None for other
        sizes), with the proprio layout only when it is the 8-D eef + axis-angle + fingers one."""
        if given is not None:
            return Conventions.from_dict(given)
        if self.action_dim != 7:
            return None
        libero = get_conventions("libero")
        return libero if self.proprio_layout in PROPRIO_LAYOUTS[:3] else libero.replace(proprio=None)

    @staticmethod
    def _instruction(file: Path, data) -> str:
        raw = data.attrs.get("problem_info")
        if raw is not None:
            try:
                info = json.loads(raw if isinstance(raw, str) else raw.decode())
                if info.get("language_instruction"):
                    return str(info["language_instruction"]).strip()
            except (json.JSONDecodeError, AttributeError):
                log.warning("%s: problem_info is not JSON; instruction taken from the file name", file)
        return instruction_from_filename(file)

    @property
    def num_episodes(self) -> int:
        return len(self.index)

    @property
    def instructions(self) -> list[str]:
        return [self.file_instruction[f] for f, _ in self.index]

    @property
    def stats_path(self) -> Path:
        return self.path / "stats.json" if self.path.is_dir() else self.path.with_suffix(".stats.json")

    def _arrays(self, group, where: str) -> tuple[np.ndarray, np.ndarray]:
        actions = np.asarray(_get(group, "actions", where), np.float32)
        obs = _get(group, "obs", where)
        parts = []
        for key in self.proprio_layout:
            x = np.asarray(_get(obs, key, f"{where}/obs"), np.float32).reshape(len(actions), -1)
            parts.append(quat_to_axis_angle(x) if key == "robot0_eef_quat" else x)
        proprio = np.concatenate(parts, 1) if parts else np.zeros((len(actions), 0), np.float32)
        return actions, proprio

    def episode_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        file, demo = self.index[self._check_index(i)]
        with _open(file) as f, reading(file, "HDF5 data"):  # a truncated file fails on read, not open
            return self._arrays(f["data"][demo], f"{file}: data/{demo}")

    def _episode(self, i: int) -> Episode:
        file, demo = self.index[i]
        where = f"{file}: data/{demo}"
        with _open(file) as f, reading(file, "HDF5 data"):
            group = f["data"][demo]
            actions, proprio = self._arrays(group, where)
            images = {}
            for key, cam in zip(self.obs_cameras, self.cameras, strict=True):
                frames = np.asarray(_get(group["obs"], key, f"{where}/obs"), np.uint8)
                images[cam] = np.ascontiguousarray(frames[:, ::-1, ::-1]) if self.flip else frames
        meta = {"file": str(file), "demo": demo}
        return Episode(images, proprio, actions, self.file_instruction[file], meta)


def _decode_jpeg_frames(frames: np.ndarray) -> np.ndarray:
    """ACT stores ``cv2.imencode('.jpg', rgb)`` (cv2 takes the array for BGR), so PIL's decode has the
    channels reversed; flip them back."""
    return np.stack([np.asarray(Image.open(io.BytesIO(bytes(f))).convert("RGB"))[..., ::-1] for f in frames])


class AlohaDataset(EpisodeDataset):
    """ALOHA episodes, one HDF5 file each."""

    def __init__(
        self,
        files: list[Path],
        root: Path | None = None,
        instruction: str | None = None,
        fps: float = 50.0,
        conventions: Conventions | str | None = None,
    ):
        self.files = sorted(files, key=lambda p: _natural_key(p.name))
        self.path = Path(root) if root is not None else self.files[0]
        self.fps = fps
        folder = self.path if self.path.is_dir() else self.path.parent
        with _open(self.files[0]) as f:
            where = str(self.files[0])
            cams = _get(_get(f, "observations", where), "images", f"{where}: /observations")
            self.cameras = sorted(cams.keys())
            self.action_dim = int(_get(f, "action", where).shape[1])
            self.proprio_dim = int(_get(f["observations"], "qpos", f"{where}: /observations").shape[1])
            attr = next(
                (f.attrs[k] for k in ("instruction", "language_instruction", "task") if k in f.attrs), None
            )
        self.conventions = Conventions.from_dict(conventions) if conventions else get_conventions("aloha")
        if self.action_dim != 14 and conventions is None:
            self.conventions = None  # not the bimanual 14-D layout the ALOHA conventions describe
        default = folder.name.removeprefix("sim_").removesuffix("_scripted").removesuffix("_human")
        self.instruction = instruction or (str(attr) if attr is not None else default.replace("_", " "))

    @property
    def num_episodes(self) -> int:
        return len(self.files)

    @property
    def instructions(self) -> list[str]:
        return [self.instruction] * len(self.files)

    @property
    def stats_path(self) -> Path:
        return self.path / "stats.json" if self.path.is_dir() else self.path.with_suffix(".stats.json")

    def _arrays(self, f, where: str) -> tuple[np.ndarray, np.ndarray]:
        actions = np.asarray(_get(f, "action", where), np.float32)
        qpos = np.asarray(_get(_get(f, "observations", where), "qpos", f"{where}: /observations"), np.float32)
        return actions, qpos

    def episode_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        file = self.files[self._check_index(i)]
        with _open(file) as f, reading(file, "HDF5 data"):
            return self._arrays(f, str(file))

    def _episode(self, i: int) -> Episode:
        file = self.files[i]
        where = str(file)
        with _open(file) as f, reading(file, "HDF5 data"):
            actions, qpos = self._arrays(f, where)
            group = _get(f["observations"], "images", f"{where}: /observations")
            images = {}
            for cam in self.cameras:
                frames = np.asarray(_get(group, cam, f"{where}: /observations/images"))
                images[cam] = _decode_jpeg_frames(frames) if frames.ndim == 2 else frames.astype(np.uint8)
        return Episode(images, qpos, actions, self.instruction, {"file": str(file)})
