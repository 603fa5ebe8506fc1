"""Action / proprio statistics and the [-1, 1] normalization OpenVLA trains on.

The formulas follow OpenVLA's data pipeline exactly, because a fine-tuned checkpoint is only usable with the
normalization it was trained with:

* ``bounds_q99``: ``clip(2 (x - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)``; robust to the outliers teleoperation
  data is full of. ``bounds``: the same with min/max.
* dims whose mask is False pass through untouched (LIBERO's gripper is already binary);
* dims whose bounds are equal (``lo == hi``) follow the statistics' ``flat_dims`` rule (see below);
* the inverse ``0.5 (n + 1) (hi - lo + 1e-8) + lo`` is applied to masked dims only.

``flat_dims`` — what a dimension with equal bounds becomes. Two rules exist because two codebases disagree:

* ``"zero"`` (oft's policies): 0. With ``lo == hi`` the formula divides by 1e-8, so float noise of 1e-9 in
  the input swings it across the whole [-1, 1] range; 0 keeps such a dimension silent. Training and inference
  of an oft policy both call :func:`normalize` on the same :class:`Stats`, so they always agree.
* ``"clip"`` (the paper's checkpoints): no special case, the formula is clipped — -1 at ``x == lo``, ±1 by
  the sign of ``x - lo`` elsewhere. This is the paper's deployment (``normalize_proprio`` in
  ``experiments/robot/openvla_utils.py``); its training pipeline zeroes only ``min == max`` dims, so on a
  ``q01 == q99``, ``min < max`` dimension its training and deployment both feed ±1. ``load_policy`` sets it
  on the proprio statistics of the paper's checkpoints (and it is saved with them).

The rule is part of the statistics (saved by ``to_dict``; absent = ``"zero"``, what older checkpoints used),
so a saved, exported or reloaded policy normalizes exactly as the one that was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
FLAT_DIM_RULES = ("zero", "clip")


@dataclass
class Stats:
    """Per-dimension statistics of one vector quantity (actions or proprio). Arrays are float64 (D,)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray | None = None  # bool (D,); None = all True
    flat_dims: str = "zero"  # dims with equal bounds: "zero" (oft) or "clip" (the paper's deployment)

    def __post_init__(self) -> None:
        if self.flat_dims not in FLAT_DIM_RULES:
            raise ValueError(f"Stats.flat_dims must be one of {FLAT_DIM_RULES}, got {self.flat_dims!r}")
        for name in STAT_NAMES:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
        dims = {name: getattr(self, name).shape[0] for name in STAT_NAMES}
        if len(set(dims.values())) != 1:
            raise ValueError(f"Stats arrays have different lengths: {dims}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool).reshape(-1)
            if self.mask.shape[0] != self.dim:
                raise ValueError(f"Stats.mask has {self.mask.shape[0]} entries, expected {self.dim}")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def bounds(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind == "bounds_q99":
            return self.q01, self.q99
        if kind == "bounds":
            return self.min, self.max
        raise ValueError(f"normalization kind {kind!r} has no bounds; expected 'bounds_q99' or 'bounds'")

    def to_dict(self) -> dict:
        d = {name: getattr(self, name).tolist() for name in STAT_NAMES}
        if self.mask is not None:
            d["mask"] = self.mask.tolist()
        if self.flat_dims != "zero":  # written only when it differs from what older files mean
            d["flat_dims"] = self.flat_dims
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "stats") -> Stats:
        missing = [n for n in STAT_NAMES if n not in d]
        if missing:
            raise ValueError(f"{where} is missing {missing}; expected {list(STAT_NAMES)} (+ optional 'mask')")
        return cls(**{n: d[n] for n in STAT_NAMES}, mask=d.get("mask"), flat_dims=d.get("flat_dims", "zero"))


@dataclass
class NormStats:
    """Statistics a policy needs: actions and (optionally) proprio."""

    action: Stats
    proprio: Stats | None = None

    def to_dict(self) -> dict:
        d = {"action": self.action.to_dict()}
        if self.proprio is not None:
            d["proprio"] = self.proprio.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "norm stats") -> NormStats:
        if "action" not in d:
            raise ValueError(f"{where} has no 'action' entry; keys are {sorted(d)}")
        proprio = d.get("proprio")
        return cls(
            action=Stats.from_dict(d["action"], f"{where}['action']"),
            proprio=None if proprio is None else Stats.from_dict(proprio, f"{where}['proprio']"),
        )


def _as_mask(mask, dim: int) -> np.ndarray:
    return np.ones(dim, bool) if mask is None else np.asarray(mask, dtype=bool)


def normalize(x, stats: Stats, kind: str, mask=None):
    """Map raw values to [-1, 1]. Works on numpy arrays and torch tensors of shape (..., D).

    ``flat_dims="zero"``: masked-off dims pass through, dims with equal bounds become 0.
    ``flat_dims="clip"``: the paper's ``normalize_proprio`` verbatim, ``clip(where(mask, n, x), -1, 1)``
    (no equal-bounds case; masked-off dims are clipped too, as there).
    """
    if kind == "none":
        return x
    lo, hi = stats.bounds(kind)
    m = _as_mask(mask if mask is not None else stats.mask, stats.dim)
    zero_range = (lo == hi) & (stats.flat_dims == "zero")  # (D,) dims fed as 0
    if isinstance(x, torch.Tensor):
        lo_t, hi_t = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (lo, hi))
        m_t = torch.as_tensor(m, device=x.device)
        z_t = torch.as_tensor(zero_range, device=x.device)
        raw = 2 * (x - lo_t) / (hi_t - lo_t + 1e-8) - 1
        if stats.flat_dims == "clip":
            return torch.clamp(torch.where(m_t, raw, x), -1, 1)
        n = torch.where(m_t, torch.clamp(raw, -1, 1), x)
        return torch.where(z_t & m_t, torch.zeros_like(n), n)
    x = np.asarray(x)
    out_dtype = x.dtype if x.dtype.kind == "f" else np.float64
    raw = 2 * (x - lo) / (hi - lo + 1e-8) - 1
    if stats.flat_dims == "clip":
        return np.clip(np.where(m, raw, x), -1, 1).astype(out_dtype)
    n = np.where(m, np.clip(raw, -1, 1), x)
    return np.where(zero_range & m, 0.0, n).astype(out_dtype)


def unnormalize(n, stats: Stats, kind: str, mask=None):
    """Inverse of :func:`normalize` on masked dims (values clipped to [-1, 1] come back at the bounds)."""
    if kind == "none":
        return n
    lo, hi = stats.bounds(kind)
    m = _as_mask(mask if mask is not None else stats.mask, stats.dim)
    if isinstance(n, torch.Tensor):
        lo_t, hi_t = (torch.as_tensor(v, dtype=n.dtype, device=n.device) for v in (lo, hi))
        a = 0.5 * (n + 1) * (hi_t - lo_t + 1e-8) + lo_t
        return torch.where(torch.as_tensor(m, device=n.device), a, n)
    n64 = np.asarray(n, dtype=np.float64)
    a = 0.5 * (n64 + 1) * (hi - lo + 1e-8) + lo
    return np.where(m, a, n64)
