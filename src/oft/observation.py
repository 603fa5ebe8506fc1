"""What a policy sees at one control step, and what training feeds it.

Keys are dataclass fields, never string literals: a typo is an AttributeError at the first call, not a silent
``KeyError`` three files away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Observation:
    """One observation from a robot or simulator.

    images: uint8 arrays (H, W, 3), RGB, one per camera, in the order of the policy's ``spec.cameras``.
        Any size: the policy resizes to its own input size.
    proprio: (P,) raw (un-normalized) robot state, or None for policies trained without proprio.
    instruction: the task in natural language.
    """

    images: list[np.ndarray]
    proprio: np.ndarray | None
    instruction: str

    def validate(self, num_cameras: int | None = None, proprio_dim: int | None = None) -> None:
        """Raise ValueError naming the bad value and what was expected."""
        if not isinstance(self.images, (list, tuple)):
            raise ValueError(f"Observation.images must be a list of arrays, got {type(self.images)!r}")
        if num_cameras is not None and len(self.images) != num_cameras:
            raise ValueError(f"Observation.images has {len(self.images)} images, expected {num_cameras}")
        for i, img in enumerate(self.images):
            if not isinstance(img, np.ndarray):
                raise ValueError(f"Observation.images[{i}] must be a numpy array, got {type(img).__name__}")
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"Observation.images[{i}] has shape {img.shape}, expected (H, W, 3)")
            if img.dtype != np.uint8:
                raise ValueError(f"Observation.images[{i}] has dtype {img.dtype}, expected uint8")
            if img.shape[0] < 1 or img.shape[1] < 1:
                raise ValueError(f"Observation.images[{i}] is empty: shape {img.shape}")
        if proprio_dim is not None and proprio_dim > 0:
            if self.proprio is None:
                raise ValueError(f"Observation.proprio is None, expected a ({proprio_dim},) array")
            p = np.asarray(self.proprio)
            if p.shape != (proprio_dim,):
                raise ValueError(f"Observation.proprio has shape {p.shape}, expected ({proprio_dim},)")
            if not np.all(np.isfinite(p)):
                raise ValueError(f"Observation.proprio contains NaN or inf: {p.tolist()}")
        if not isinstance(self.instruction, str):
            raise ValueError(f"Observation.instruction must be a str, got {type(self.instruction).__name__}")


@dataclass
class Batch:
    """A training batch, still in robot units: the policy normalizes and preprocesses inside ``forward``.

    images: (B, N, H, W, 3) uint8, cameras in ``spec.cameras`` order (already augmented by the loader).
    proprio: (B, P) float32 raw proprio, or None.
    instructions: B strings.
    actions: (B, K, D) float32 raw action chunks, actions t..t+K-1.
    action_is_pad: (B, K) bool, True where the chunk ran past the episode end (LeRobot-style), or None.
    norm_keys: B keys of the policy's ``dataset_stats`` whose statistics normalize each sample: dataset names
        (a mixture with per-dataset statistics) or instructions (per-task statistics); None: the policy's
        ``norm_stats`` for all.
    """

    images: torch.Tensor
    proprio: torch.Tensor | None
    instructions: list[str]
    actions: torch.Tensor
    action_is_pad: torch.Tensor | None = None
    norm_keys: list[str] | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            images=self.images.to(device, non_blocking=True),
            proprio=None if self.proprio is None else self.proprio.to(device, non_blocking=True),
            instructions=self.instructions,
            actions=self.actions.to(device, non_blocking=True),
            action_is_pad=None if self.action_is_pad is None else self.action_is_pad.to(device),
            norm_keys=self.norm_keys,
        )


def check_finite(name: str, x: np.ndarray | torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds NaN or inf; ``name`` says which input it was."""
    bad = (~torch.isfinite(x)).any().item() if isinstance(x, torch.Tensor) else not np.all(np.isfinite(x))
    if bad:
        raise ValueError(f"{name} contains NaN or inf values; expected finite numbers")


__all__ = ["Batch", "Observation", "check_finite"]
