"""RLDS (TFDS) datasets, as OpenVLA / OpenVLA-OFT train on. Needs the optional ``rlds`` extra
(``pip install 'oft[rlds]'``: tensorflow-datasets + tensorflow-cpu), imported only when such a dataset is
opened.

Each RLDS episode is a sequence of steps ``{observation: {...}, action, language_instruction}``. Images are
the observation entries of rank 3 with 3 channels (``image``, ``wrist_image``, ...); proprio is ``state``
(or ``proprio``, ``joint_state``) when present. RLDS gives no random access, so episodes are decoded once,
at open, and kept in memory — fine for fine-tuning-sized datasets.

Actions are read as stored, *not* through OpenVLA's standardization transforms
(``prismatic/vla/datasets/rlds/oxe/transforms.py``), so their conventions are those of the stored files, which
:func:`rlds_conventions` names from the dataset's name:

* ``libero_*`` (``openvla/modified_libero_rlds``): the builders copy LIBERO's HDF5 ``actions`` unchanged, so
  the gripper is robosuite's -1 = open / +1 = close (``CONVENTIONS["libero"]``). OpenVLA's loader flips it to
  1 = open / 0 = close (``libero_dataset_transform``) — that is what the paper's checkpoints speak
  (``openvla_libero``), not what this reader yields.
* ``bridge*``: the stored gripper is already 1 = open, 0 = close (``bridge_orig_dataset_transform`` only
  binarizes it): ``CONVENTIONS["openvla"]``.
* ``aloha*`` with 14-D actions: absolute joints, normalized grippers (``CONVENTIONS["aloha"]``).
* anything else: unknown (None). ``RLDSDataset(..., conventions=...)`` says it explicitly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from oft.conventions import Conventions, get_conventions
from oft.data.dataset import EpisodeDataset
from oft.data.episode import Episode

log = logging.getLogger(__name__)

STATE_KEYS = ("state", "proprio", "joint_state", "joint_states")


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is missing; the message names the extra to install."""


def import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise MissingExtraError(
            f"reading RLDS datasets needs the optional 'rlds' extra: pip install 'oft[rlds]' "
            f"(tensorflow-datasets, tensorflow-cpu); import failed with: {e}"
        ) from None
    return tfds


def _builder_dir(path: Path) -> Path:
    if (path / "dataset_info.json").exists():
        return path
    found = sorted(p.parent for p in path.rglob("dataset_info.json"))
    if not found:
        raise FileNotFoundError(f"{path}: no dataset_info.json; not an RLDS (TFDS) dataset directory")
    return found[-1]  # the newest version directory


def rlds_conventions(name: str, action_dim: int) -> Conventions | None:
    """The conventions of an RLDS dataset's stored actions, from its name (see the module docstring)."""
    name = name.lower()
    if "libero" in name and action_dim == 7:
        return get_conventions("libero")
    if "bridge" in name and action_dim == 7:
        return get_conventions("openvla")
    if "aloha" in name and action_dim == 14:
        return get_conventions("aloha")
    return None


class RLDSDataset(EpisodeDataset):
    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        fps: float = 10.0,
        max_episodes: int | None = None,
        conventions: Conventions | str | None = None,
    ):
        tfds = import_tfds()
        self.path = Path(path)
        builder = tfds.builder_from_directory(str(_builder_dir(self.path)))
        self.fps = fps
        self._episodes = []
        for k, ep in enumerate(tfds.as_numpy(builder.as_dataset(split=split))):
            if max_episodes is not None and k >= max_episodes:
                break
            self._episodes.append(self._convert(ep, k))
        if not self._episodes:
            raise ValueError(f"{self.path}: split {split!r} has no episodes")
        first = self._episodes[0]
        self.cameras = first.cameras
        self.action_dim, self.proprio_dim = first.actions.shape[1], first.proprio.shape[1]
        self.name = str(getattr(builder.info, "name", "") or self.path.name)
        self.conventions = (
            Conventions.from_dict(conventions)
            if conventions is not None
            else rlds_conventions(f"{self.name} {self.path.name}", self.action_dim)
        )

    def _convert(self, ep: dict, k: int) -> Episode:
        steps = list(ep["steps"])
        if not steps:
            raise ValueError(f"{self.path}: episode {k} has no steps")
        obs = [s["observation"] for s in steps]
        cams = [key for key, v in obs[0].items() if np.ndim(v) == 3 and np.shape(v)[-1] == 3]
        images = {c: np.stack([o[c] for o in obs]).astype(np.uint8) for c in cams}
        state_key = next((s for s in STATE_KEYS if s in obs[0]), None)
        proprio = np.stack([o[state_key] for o in obs]) if state_key else np.zeros((len(steps), 0))
        actions = np.stack([s["action"] for s in steps])
        raw = steps[0].get("language_instruction", b"")
        instruction = raw.decode() if isinstance(raw, bytes) else str(raw)
        return Episode(images, proprio, actions, instruction, {"episode": k})

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def _episode(self, i: int) -> Episode:
        return self._episodes[i]

    @property
    def stats_path(self) -> Path:
        return self.path / "oft_stats.json"
