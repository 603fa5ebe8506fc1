"""RobotSpec: the one home of a robot's sizes.

Everything that depends on how many action dimensions, proprio dimensions, cameras or chunk steps a robot has
receives a :class:`RobotSpec` (or the sizes taken from one) as an argument. There are no module-level
``ACTION_DIM`` constants anywhere in ``oft``: the paper's code picks its constants by grepping ``sys.argv``,
which is how a LIBERO model ends up evaluated with ALOHA sizes.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from oft.conventions import Conventions, get_conventions

NORMALIZATION_KINDS = ("bounds_q99", "bounds", "none")


@dataclass(frozen=True)
class RobotSpec:
    """Sizes and conventions of one robot (or simulated robot).

    ``normalization`` chooses the bounds used to map actions and proprio to [-1, 1]:
    ``bounds_q99`` uses the 1st/99th percentiles (OpenVLA's default, robust to outliers), ``bounds`` the
    min/max (used for ALOHA, whose joint targets have no outliers worth clipping). ``action_norm_mask``
    marks the dimensions that are normalized; a ``False`` dimension (LIBERO's gripper, already in [0, 1])
    passes through untouched. ``None`` means every dimension is normalized.

    ``conventions`` says what the action numbers mean where they alone are ambiguous — gripper scale and sign,
    delta or absolute arm actions, proprio layout (:mod:`oft.conventions`). A trained policy carries its
    dataset's; a simulator adapter its own, and the rollout converts between the two. None (checkpoints saved
    before the field existed) means "native to the simulator": no conversion.
    """

    name: str
    action_dim: int
    proprio_dim: int
    chunk_len: int
    cameras: tuple[str, ...]
    normalization: str = "bounds_q99"
    action_norm_mask: tuple[bool, ...] | None = None
    control_hz: float = 10.0
    conventions: Conventions | None = None

    def __post_init__(self) -> None:
        for fname in ("action_dim", "chunk_len"):
            value = getattr(self, fname)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RobotSpec.{fname} must be a positive int, got {value!r}")
        if not isinstance(self.proprio_dim, int) or self.proprio_dim < 0:
            raise ValueError(f"RobotSpec.proprio_dim must be an int >= 0, got {self.proprio_dim!r}")
        if len(self.cameras) < 1:
            raise ValueError(f"RobotSpec.cameras must name at least one camera, got {self.cameras!r}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"RobotSpec.cameras has duplicate names: {self.cameras!r}")
        if self.normalization not in NORMALIZATION_KINDS:
            raise ValueError(
                f"RobotSpec.normalization must be one of {NORMALIZATION_KINDS}, got {self.normalization!r}"
            )
        if self.action_norm_mask is not None and len(self.action_norm_mask) != self.action_dim:
            raise ValueError(
                f"RobotSpec.action_norm_mask has {len(self.action_norm_mask)} entries, "
                f"expected action_dim={self.action_dim}"
            )
        if self.control_hz <= 0:
            raise ValueError(f"RobotSpec.control_hz must be > 0, got {self.control_hz!r}")
        object.__setattr__(self, "conventions", Conventions.from_dict(self.conventions))
        if self.conventions is not None and any(d >= self.action_dim for d in self.conventions.gripper_dims):
            raise ValueError(
                f"RobotSpec.conventions {self.conventions.name!r} has its gripper in action dims "
                f"{self.conventions.gripper_dims}, outside action_dim={self.action_dim}"
            )
        # tuples keep the dataclass hashable and frozen even when built from JSON lists
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if self.action_norm_mask is not None:
            object.__setattr__(self, "action_norm_mask", tuple(bool(m) for m in self.action_norm_mask))

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def mask(self) -> tuple[bool, ...]:
        """The action normalization mask with ``None`` expanded to all-True."""
        return self.action_norm_mask if self.action_norm_mask is not None else (True,) * self.action_dim

    def replace(self, **changes) -> RobotSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        d["action_norm_mask"] = None if self.action_norm_mask is None else list(self.action_norm_mask)
        d["conventions"] = None if self.conventions is None else self.conventions.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RobotSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"RobotSpec got unknown fields {sorted(unknown)}; known fields: {sorted(known)}")
        return cls(**d)


# Presets. Numbers from the OpenVLA-OFT code (prismatic/vla/constants.py) and paper, Sec. V/VI:
# LIBERO chunk 8, 7-D EEF delta actions, 8-D proprio (eef pos 3 + axis-angle 3 + gripper qpos 2), 20 Hz;
# ALOHA chunk 25, 14-D absolute joint targets, 14-D joint proprio, 3 cameras, min/max bounds, 25 Hz (the
# paper's real robot; the ALOHA *simulator* steps at 50 Hz, DT = 0.02 s in ACT's and gym-aloha's constants.py,
# and its adapter's spec and `oft collect aloha` datasets say so: oft.sim.aloha.CONTROL_HZ);
# Bridge chunk 5, 7-D, single third-person camera, 5 Hz.
# conventions: what a dataset of that robot holds as stored (LIBERO HDF5 / RLDS: robosuite's gripper, -1 open,
# +1 close); training replaces them with the dataset's own when its reader records them.
PRESETS: dict[str, RobotSpec] = {
    "libero": RobotSpec(
        name="libero",
        action_dim=7,
        proprio_dim=8,
        chunk_len=8,
        cameras=("full_image", "wrist_image"),
        normalization="bounds_q99",
        action_norm_mask=(True, True, True, True, True, True, False),
        control_hz=20.0,
        conventions=get_conventions("libero"),
    ),
    "aloha": RobotSpec(
        name="aloha",
        action_dim=14,
        proprio_dim=14,
        chunk_len=25,
        cameras=("cam_high", "cam_left_wrist", "cam_right_wrist"),
        normalization="bounds",
        action_norm_mask=None,
        control_hz=25.0,
        conventions=get_conventions("aloha"),
    ),
    "bridge": RobotSpec(
        name="bridge",
        action_dim=7,
        proprio_dim=7,
        chunk_len=5,
        cameras=("image_0",),
        normalization="bounds_q99",
        action_norm_mask=(True, True, True, True, True, True, False),
        control_hz=5.0,
        conventions=get_conventions("openvla"),
    ),
    # MetaWorld: 4-D action (xyz delta, gripper effort in [-1, 1]), proprio = hand xyz + gripper opening.
    # MuJoCo timestep 0.0025 s x frame_skip 5 = 80 Hz.
    "metaworld": RobotSpec(
        name="metaworld",
        action_dim=4,
        proprio_dim=4,
        chunk_len=8,
        cameras=("corner", "gripperPOV"),
        normalization="bounds_q99",
        action_norm_mask=(True, True, True, False),
        control_hz=80.0,
        conventions=get_conventions("metaworld"),
    ),
}


def get_spec(name: str) -> RobotSpec:
    """Return the preset ``name``, or raise with a "did you mean" hint."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(unknown_name_message("robot spec", name, PRESETS)) from None


def with_dataset_conventions(spec: RobotSpec, dataset) -> RobotSpec:
    """``spec`` with the conventions ``dataset`` records (its reader's ``conventions``), so the trained policy
    says what its actions mean; the preset's are kept when the dataset records none."""
    conventions = getattr(dataset, "conventions", None)
    if conventions is None or conventions == spec.conventions:
        return spec
    return spec.replace(conventions=conventions)


def unknown_name_message(kind: str, name: str, known) -> str:
    """Error text for an unknown registered name, with the closest known name as a hint."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}; known: {', '.join(known)}.{hint}"


__all__ = [
    "NORMALIZATION_KINDS",
    "PRESETS",
    "RobotSpec",
    "get_spec",
    "unknown_name_message",
    "with_dataset_conventions",
]
