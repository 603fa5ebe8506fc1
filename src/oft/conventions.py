"""What the numbers of an action (and proprio) vector mean, where the numbers alone are ambiguous.

A 7-D LIBERO action ``[..., 1.0]`` means "open" to a policy trained through OpenVLA's RLDS loader and "close"
to the LIBERO simulator. Nothing in the array says which, so the meaning is data: every dataset reader records
the :class:`Conventions` of its source, training copies it into the policy's :class:`~oft.spec.RobotSpec`
(saved in every checkpoint), every simulator adapter declares its own, and the rollout converts the policy's
actions into the simulator's with :func:`action_converter` before ``env.step``.

Sources of the registered conventions (OpenVLA-OFT = ``moojink/openvla-oft``):

* ``libero`` — LIBERO / robomimic HDF5 ``actions`` as recorded, LIBERO's RLDS files as stored (the
  ``modified_libero_rlds`` builders copy ``data/demo_N/actions`` unchanged into ``action`` and
  ``ee_states`` + ``gripper_states`` into ``state``), and the LIBERO simulator (robosuite's OSC_POSE delta
  controller): gripper -1 = open, +1 = close.
* ``openvla_libero`` — what OpenVLA's RLDS loader makes of LIBERO, i.e. what the paper's LIBERO checkpoints
  were trained on: ``prismatic/vla/datasets/rlds/oxe/transforms.py`` ``libero_dataset_transform`` clips the
  gripper to [0, 1] and inverts it ("+1 = open, 0 = close"). The paper's evaluation undoes it in
  ``experiments/robot/libero/run_libero_eval.py`` ``process_action``:
  ``normalize_gripper_action(binarize=True)`` (``2x - 1``, then the sign) and ``invert_gripper_action``
  (negate), both in ``experiments/robot/robot_utils.py``. :func:`action_converter` then
  :func:`binarize_gripper` compute exactly that.
* ``openvla`` — the same gripper convention without a known proprio layout (Bridge: ``bridge_orig`` stores
  the gripper 1 = open, 0 = close; the loader binarizes it).
* ``metaworld`` — MetaWorld v3: xyz delta and a gripper *effort* in [-1, 1], -1 = open, +1 = close.
* ``aloha`` — ALOHA (ACT's ``constants.py`` / ``record_sim_episodes.py``, gym-aloha): absolute joint
  targets, each gripper an absolute normalized opening, 0 = closed, 1 = open.

``None`` (a spec or dataset that declares nothing, e.g. a checkpoint saved before conventions existed) means
"native to the simulator it runs in": no conversion, which is how ``oft`` acted before.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

ARM_KINDS = ("delta", "absolute")


@dataclass(frozen=True)
class GripperScale:
    """A gripper value's meaning: the value for fully open and the one for fully closed.

    kind: ``"command"`` (the controller's open/close target or effort) or ``"position"`` (an absolute
    normalized opening). Two scales convert linearly by mapping open to open and closed to closed.
    """

    name: str
    open: float
    closed: float
    kind: str
    source: str


GRIPPERS: dict[str, GripperScale] = {
    "openvla": GripperScale(
        "openvla", 1.0, 0.0, "command", "OpenVLA RLDS loader (transforms.py): +1 = open, 0 = close"
    ),
    "robosuite": GripperScale(
        "robosuite",
        -1.0,
        1.0,
        "command",
        "robosuite gripper controller (LIBERO, robomimic): -1 open, +1 close",
    ),
    "metaworld": GripperScale("metaworld", -1.0, 1.0, "command", "MetaWorld effort: -1 open, +1 close"),
    "aloha": GripperScale(
        "aloha", 1.0, 0.0, "position", "ACT/gym-aloha normalized gripper position: 0 closed, 1 open"
    ),
}

# Named proprio layouts (not converted: a policy and a simulator must agree on them).
PROPRIO_LAYOUTS: dict[str, str] = {
    "libero": "eef position (3, m) + axis-angle of the eef quaternion (3, rad) + finger qpos (2, m; "
    "robosuite robot0_gripper_qpos = LIBERO gripper_states, both 0 when closed)",
    "metaworld": "hand xyz (3, m) + gripper opening (1, 1 = open, 0 = closed; obs[:4])",
    "aloha": "per arm (left, right) 6 joint angles (rad) + normalized gripper opening (0 closed, 1 open)",
}


@dataclass(frozen=True)
class Conventions:
    """The meaning of a robot's action vector (and proprio layout).

    arm: ``"delta"`` or ``"absolute"`` — every non-gripper action dimension.
    gripper: a :data:`GRIPPERS` name, the scale of the action dimensions ``gripper_dims``.
    proprio: a :data:`PROPRIO_LAYOUTS` name, or None when unknown.
    """

    name: str
    arm: str
    gripper: str | None
    gripper_dims: tuple[int, ...] = ()
    proprio: str | None = None

    def __post_init__(self) -> None:
        if self.arm not in ARM_KINDS:
            raise ValueError(f"Conventions.arm must be one of {ARM_KINDS}, got {self.arm!r}")
        if self.gripper is not None and self.gripper not in GRIPPERS:
            raise ValueError(
                f"Conventions.gripper must be one of {sorted(GRIPPERS)} or None, got {self.gripper!r}"
            )
        dims = tuple(int(d) for d in self.gripper_dims)
        if any(d < 0 for d in dims) or len(set(dims)) != len(dims):
            raise ValueError(
                f"Conventions.gripper_dims must be distinct indices >= 0, got {self.gripper_dims!r}"
            )
        if bool(dims) != (self.gripper is not None):
            raise ValueError(
                f"Conventions {self.name!r}: gripper {self.gripper!r} and gripper_dims {dims} must be "
                "given together"
            )
        if self.proprio is not None and self.proprio not in PROPRIO_LAYOUTS:
            raise ValueError(
                f"Conventions.proprio must be one of {sorted(PROPRIO_LAYOUTS)} or None, got {self.proprio!r}"
            )
        object.__setattr__(self, "gripper_dims", dims)

    def replace(self, **changes) -> Conventions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The full description, not just the name: a checkpoint keeps its meaning if the registry changes."""
        return {
            "name": self.name,
            "arm": self.arm,
            "gripper": self.gripper,
            "gripper_dims": list(self.gripper_dims),
            "proprio": self.proprio,
        }

    @classmethod
    def from_dict(cls, d: dict | str | None) -> Conventions | None:
        """A :meth:`to_dict` dict, a registered name, or None."""
        if d is None or isinstance(d, Conventions):
            return d
        if isinstance(d, str):
            return get_conventions(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"Conventions got unknown fields {sorted(unknown)}; known fields: {sorted(known)}"
            )
        return cls(**d)


CONVENTIONS: dict[str, Conventions] = {
    "libero": Conventions("libero", "delta", "robosuite", (6,), "libero"),
    "openvla_libero": Conventions("openvla_libero", "delta", "openvla", (6,), "libero"),
    "openvla": Conventions("openvla", "delta", "openvla", (6,), None),
    "metaworld": Conventions("metaworld", "delta", "metaworld", (3,), "metaworld"),
    "aloha": Conventions("aloha", "absolute", "aloha", (6, 13), "aloha"),
}


def get_conventions(name: str) -> Conventions:
    """The registered conventions ``name``, or KeyError with a "did you mean" hint."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        from oft.spec import unknown_name_message

        raise KeyError(unknown_name_message("conventions", name, CONVENTIONS)) from None


# What the paper's released checkpoints speak, by the preset ``oft.model.loading.infer_spec`` picks: they were
# trained through OpenVLA's RLDS loader, whose LIBERO transform flips the gripper to 1 = open / 0 = close
# (transforms.py libero_dataset_transform) and whose ALOHA transform keeps the absolute joints.
PAPER_CONVENTIONS = {"libero": "openvla_libero", "bridge": "openvla", "aloha": "aloha"}


def paper_conventions(preset: str, action_dim: int) -> Conventions | None:
    """The conventions of a paper checkpoint of ``preset`` with ``action_dim`` actions (None if unknown)."""
    name = PAPER_CONVENTIONS.get(preset)
    expected_dim = 14 if preset == "aloha" else 7  # the paper's ALOHA and 7-D EEF action spaces
    return CONVENTIONS[name] if name and action_dim == expected_dim else None


# ----------------------------------------------------------------------------------------- conversion


class ActionConverter:
    """Maps (..., D) actions from a policy's conventions to a simulator's; ``identity`` when nothing changes.

    Each gripper dimension is mapped linearly, open to open and closed to closed:
    ``y = t.closed + (x - s.closed) * (t.open - t.closed) / (s.open - s.closed)``. From OpenVLA's
    [0 = close, 1 = open] to robosuite's [-1 = open, +1 = close] that is ``1 - 2x`` = the reference's
    ``invert_gripper_action(normalize_gripper_action(x))`` before its sign.
    """

    def __init__(self, source: Conventions | None, target: Conventions | None) -> None:
        self.source, self.target = source, target
        self.dims: tuple[int, ...] = ()
        self.scale, self.offset = 1.0, 0.0
        if source is None or target is None or source.gripper is None or target.gripper is None:
            return
        s, t = GRIPPERS[source.gripper], GRIPPERS[target.gripper]
        scale = (t.open - t.closed) / (s.open - s.closed)
        offset = t.closed - s.closed * scale
        if (scale, offset) != (1.0, 0.0):
            self.dims, self.scale, self.offset = source.gripper_dims, scale, offset

    @property
    def identity(self) -> bool:
        return not self.dims

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., D) float32; a copy when anything changes."""
        actions = np.asarray(actions, dtype=np.float32)
        if self.identity:
            return actions
        out = actions.copy()
        idx = list(self.dims)
        out[..., idx] = self.offset + out[..., idx] * self.scale
        return out

    def __repr__(self) -> str:
        names = [c.name if c is not None else None for c in (self.source, self.target)]
        return f"ActionConverter({names[0]!r} -> {names[1]!r}, dims={self.dims})"


def action_converter(
    source: Conventions | None, target: Conventions | None, uses_proprio: bool = True
) -> ActionConverter:
    """The converter from a policy's conventions ``source`` to a simulator's ``target``.

    None on either side means "native": no conversion. Raises ValueError when no conversion exists: delta vs
    absolute arm actions, gripper commands in different dimensions, or (when the policy reads proprio)
    different proprio layouts.
    """
    if source is None or target is None:
        return ActionConverter(None, None)
    where = f"policy conventions {source.name!r} -> simulator conventions {target.name!r}"
    if source.arm != target.arm:
        raise ValueError(
            f"{where}: the policy emits {source.arm} arm actions, the simulator expects {target.arm}; "
            "no conversion exists"
        )
    if source.gripper_dims != target.gripper_dims:
        raise ValueError(
            f"{where}: gripper in action dims {source.gripper_dims}, the simulator has it in "
            f"{target.gripper_dims}"
        )
    if uses_proprio and None not in (source.proprio, target.proprio) and source.proprio != target.proprio:
        raise ValueError(
            f"{where}: the policy reads proprio laid out as {source.proprio!r}, the simulator gives "
            f"{target.proprio!r}"
        )
    return ActionConverter(source, target)


def converter_for(policy, env) -> ActionConverter:
    """:func:`action_converter` from ``policy.spec.conventions`` (a policy without a spec, like the scripted
    expert, speaks the simulator's own) to ``env.spec.conventions``. A serving client
    (``oft.serve.client.WebsocketClientPolicy``) has no spec of its own: the server's metadata carries it."""
    spec = getattr(policy, "spec", None)
    metadata = getattr(policy, "get_server_metadata", None)
    if spec is None and callable(metadata) and isinstance((metadata() or {}).get("spec"), dict):
        from oft.spec import RobotSpec

        spec = RobotSpec.from_dict(metadata()["spec"])
    source = getattr(spec, "conventions", None)
    uses_proprio = bool(getattr(policy, "uses_proprio", True)) and getattr(spec, "proprio_dim", 1) > 0
    conv = action_converter(source, getattr(env.spec, "conventions", None), uses_proprio)
    if not conv.identity:
        log.info("%s", conv)
    return conv


def binarize_gripper(actions: np.ndarray, conventions: Conventions | None) -> np.ndarray:
    """Snap the gripper dims of (..., D) ``actions`` to fully open or fully closed (the midpoint stays).

    The paper commands LIBERO's gripper this way (``normalize_gripper_action(binarize=True)``: the sign).
    """
    actions = np.asarray(actions, dtype=np.float32)
    if conventions is None or conventions.gripper is None:
        return actions
    g = GRIPPERS[conventions.gripper]
    mid, half = (g.open + g.closed) / 2, (g.closed - g.open) / 2
    out = actions.copy()
    idx = list(conventions.gripper_dims)
    out[..., idx] = mid + half * np.sign((out[..., idx] - mid) / half)
    return out


def merge_conventions(named: Sequence[tuple[str, Conventions | None]]) -> Conventions | None:
    """The one conventions of several datasets (``(name, conventions)`` pairs) trained together.

    Datasets that declare none are assumed to agree (with a warning when others do declare); two that declare
    different conventions raise, naming both.
    """
    known = [(n, c) for n, c in named if c is not None]
    if not known:
        return None
    first_name, first = known[0]
    for n, c in known[1:]:
        if c != first:
            raise ValueError(
                f"datasets disagree on action conventions: {first_name} is {first.to_dict()}, {n} is "
                f"{c.to_dict()}; convert one of them or train them separately"
            )
    unknown = [n for n, c in named if c is None]
    if unknown:
        log.warning(
            "datasets %s declare no action conventions; assuming %r like %s", unknown, first.name, first_name
        )
    return first


__all__ = [
    "ARM_KINDS",
    "CONVENTIONS",
    "GRIPPERS",
    "PAPER_CONVENTIONS",
    "PROPRIO_LAYOUTS",
    "ActionConverter",
    "Conventions",
    "GripperScale",
    "action_converter",
    "binarize_gripper",
    "converter_for",
    "get_conventions",
    "merge_conventions",
    "paper_conventions",
]
