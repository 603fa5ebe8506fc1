"""Image augmentation of the OpenVLA-OFT recipe, vectorized in torch (no torchvision).

The paper trains with dlimp's ``augment`` (``dlimp/augmentations.py``) configured in OpenVLA-OFT's
``finetune.py``: in this fixed order, each followed by a clip to [0, 1],

1. random resized crop with scale 0.9 and ratio 1 — a square-proportioned crop covering 90% of the area
   (each side sqrt(0.9) ≈ 0.949), at a random position, resized back bilinearly (``tf.image.crop_and_resize``
   samples with aligned corners, as ``grid_sample(align_corners=True)`` does);
2. brightness: add U(-0.2, 0.2);
3. contrast: ``(x - mean) * U(0.8, 1.2) + mean``, mean per image and channel;
4. saturation: multiply HSV saturation by U(0.8, 1.2);
5. hue: shift HSV hue by U(-0.05, 0.05) of a turn.

Every image of every camera draws its own parameters (dlimp seeds each camera differently). Differences from
the reference, on purpose: the float -> uint8 conversion rounds (TF truncates, darkening by half a level), and
the crop's x/y offsets are independent draws (dlimp reuses one seed for both). At evaluation a policy trained
this way sees a *center* crop of the same area (:func:`oft.model.preprocess.center_crop`), which is the
random crop at ``crop_jitter=0`` (``oft train --set crop_jitter=0``: colour jitter only); the crop area
is the policy's own (:class:`oft.model.preprocess.ImagePipeline` passes it), so the two cannot disagree.
Resizing is not done here: :func:`oft.model.preprocess.resize_images` is the one resize kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_SLICE = 8


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: float = 0.9  # area fraction kept by the random crop; 1.0 disables it
    # the share of the free range the crop's position is drawn from, about the centre: 1.0 the whole range
    # (the paper's), 0.0 always the centred box the policy evaluates on (colour jitter only)
    crop_jitter: float = 1.0
    brightness: float = 0.2
    contrast: tuple[float, float] = (0.8, 1.2)
    saturation: tuple[float, float] = (0.8, 1.2)
    hue: float = 0.05


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _axis_weights(n: int, side: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Bilinear sampling of the box [offset, offset + side] (relative) of an axis of n pixels at n points with
    aligned corners — ``tf.image.crop_and_resize`` along one axis: (lo, hi) indices and hi weight, (M, n)."""
    pos = offset[:, None] * (n - 1) + side[:, None] * torch.arange(n, dtype=torch.float32)[None]
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long()
    return lo, (lo + 1).clamp(max=n - 1), pos - lo


def _crop_resize(x: torch.Tensor, side: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
    """Crop boxes (relative side, top-left offsets in [0, 1]) from (M, 3, H, W) and resize back to H x W,
    as two separable 1-D interpolations (gathers), much cheaper on a CPU than ``grid_sample``."""
    m, c, h, w = x.shape
    lo, hi, wt = _axis_weights(h, side, oy)
    idx = (m, c, h, w)
    rows_lo = x.gather(2, lo.view(m, 1, h, 1).expand(idx))
    rows = torch.lerp(rows_lo, x.gather(2, hi.view(m, 1, h, 1).expand(idx)), wt.view(m, 1, h, 1))
    lo, hi, wt = _axis_weights(w, side, ox)
    cols_lo = rows.gather(3, lo.view(m, 1, 1, w).expand(idx))
    return torch.lerp(cols_lo, rows.gather(3, hi.view(m, 1, 1, w).expand(idx)), wt.view(m, 1, 1, w))


def _saturation_hue(x: torch.Tensor, sat: torch.Tensor, dhue: torch.Tensor) -> torch.Tensor:
    """HSV saturation scale and hue shift of (M, 3, H, W) in [0, 1], without materialising HSV.

    In HSV every channel is ``v - C * w_n(h)`` with value v = max, chroma C = max - min = v s and
    ``w_n(h) = clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 h) mod 6`` for n = 5, 3, 1 (R, G, B). Scaling s by f
    (clipped at 1) scales C to ``min(C f, v)``; shifting the hue shifts ``6 h``.
    """
    r, g, b = x.unbind(1)
    v = x.amax(1)
    chroma = v - x.amin(1)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    h6 = torch.where(v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h6 += dhue.view(-1, 1, 1) * 6
    chroma = torch.minimum(chroma * sat.view(-1, 1, 1), v)
    out = torch.empty_like(x)
    for c, n in enumerate((5.0, 3.0, 1.0)):
        k = torch.remainder(h6 + n, 6.0)
        wgt = torch.minimum(k, 4 - k).clamp_(0, 1)
        torch.sub(v, wgt.mul_(chroma), out=out[:, c])
    return out


def augment_float(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Augment (M, 3, H, W) float images in [0, 1]; returns the same shape, clipped to [0, 1]."""
    m = x.shape[0]
    if cfg.crop_scale < 1.0:
        side = torch.full((m,), math.sqrt(cfg.crop_scale))
        oy, ox = torch.rand(m, generator=g) * (1 - side), torch.rand(m, generator=g) * (1 - side)
        if cfg.crop_jitter != 1.0:  # about the centre (1 - side) / 2, scaled; 1.0 keeps the paper's draw
            oy = (1 - side) / 2 + (oy - (1 - side) / 2) * cfg.crop_jitter
            ox = (1 - side) / 2 + (ox - (1 - side) / 2) * cfg.crop_jitter
        x = _crop_resize(x, side, oy, ox)
        x = x.clamp_(0, 1)
    x = x.add_(_uniform(m, -cfg.brightness, cfg.brightness, g).view(m, 1, 1, 1)).clamp_(0, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = x.sub_(mean).mul_(_uniform(m, *cfg.contrast, g).view(m, 1, 1, 1)).add_(mean).clamp_(0, 1)
    sat, dhue = _uniform(m, *cfg.saturation, g), _uniform(m, -cfg.hue, cfg.hue, g)
    return _saturation_hue(x, sat, dhue).clamp_(0, 1)


def augment_images(
    images: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> torch.Tensor:
    """Augment uint8 images (..., H, W, 3) — e.g. a batch (B, N, H, W, 3) — each image independently."""
    if images.dtype != torch.uint8 or images.shape[-1] != 3:
        raise ValueError(
            f"augment_images expects uint8 (..., H, W, 3), got {tuple(images.shape)} {images.dtype}"
        )
    lead, (h, w) = images.shape[:-3], images.shape[-3:-1]
    flat = images.reshape(-1, h, w, 3)
    out = torch.empty_like(flat)
    # slices of a few images keep every temporary in the CPU cache: ~2x faster than one big pass
    for part, dst in zip(flat.split(_SLICE), out.split(_SLICE), strict=True):
        x = augment_float(part.permute(0, 3, 1, 2).float().div_(255), g, cfg)
        dst.copy_(x.mul_(255).round_().permute(0, 2, 3, 1))
    return out.reshape(*lead, h, w, 3)
