"""The one path from stored pixels to model pixels, shared by training and inference.

openpi's ``preprocess_observation(..., train=...)`` is the model: one function, with augmentation behind the
``train`` flag, so training and deployment cannot drift apart. For a camera frame ``(H, W, 3)`` uint8:

1. **resize** to the model's square input with PIL bicubic (PIL antialiases when downscaling) — the kernel of
   OpenVLA's ``PrismaticImageProcessor`` (``resize-naive``), so the paper's checkpoints see their own pixels.
   Training applies the same function once per frame when the dataset is loaded (a deterministic resize cached
   is the same resize); inference applies it per call. There is no second kernel anywhere in ``oft``.
2. **crop**: ``train=True`` takes the paper's random crop of ``crop_scale`` of the area inside the colour
   augmentation (:mod:`oft.data.augment`, run by the loader); ``train=False`` takes the centred box of the
   same area, resized back — only for policies trained with that random crop (``center_crop``), as the paper's
   ``--center_crop True`` evaluation does. The reference does it with TensorFlow's ``crop_and_resize``;
   :func:`center_crop` reproduces its sampling grid in torch.
3. **normalize** last: uint8 -> float on the model's device, /255, then one mean/std per ViT stacked on the
   channel axis (ImageNet mean/std for DINOv2, 0.5/0.5 for SigLIP).

Images stay uint8 through steps 1-2 (a quarter of float32's bytes when they travel to a device).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oft.model.vision import ViTConfig

# OpenVLA-OFT's random-crop augmentation keeps 90% of the area (finetune.py: ``image_aug`` crop scale 0.9),
# and its evaluation scripts center-crop the same area (``experiments/robot/openvla_utils.py``).
DEFAULT_CROP_SCALE = 0.9


def resize_uint8(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 with PIL bicubic (a no-op at the right size).

    ``size`` is the side of a square or (h, w). This is the only resize kernel of ``oft``.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if image.shape[0] == h and image.shape[1] == w:
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BICUBIC))


def resize_images(frames: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize uint8 frames (..., H, W, 3) to ``size`` with :func:`resize_uint8`, image by image.

    Returns ``frames`` itself when the size already matches (no copy).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(frames.shape[-3:-1]) == (h, w):
        return frames
    if frames.dtype != torch.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (..., H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:]).cpu().numpy()
    out = np.empty((flat.shape[0], h, w, 3), np.uint8)
    for i, im in enumerate(flat):
        out[i] = resize_uint8(im, (h, w))
    return torch.from_numpy(out).reshape(*lead, h, w, 3).to(frames.device)


def center_crop(images: torch.Tensor, crop_scale: float = DEFAULT_CROP_SCALE) -> torch.Tensor:
    """Crop the central ``crop_scale`` of the area and resize back, bilinear, like the reference's TF code.

    images: (..., H, W, 3) uint8. TF's ``crop_and_resize`` samples the box corners exactly (an
    align-corners grid over the central sqrt(scale) box); ``convert_image_dtype`` returns to uint8 as
    floor(x * 255.5) of the [0, 1] floats.
    """
    shape = images.shape
    x = images.reshape(-1, *shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # (M, 3, H, W)
    H, W = x.shape[-2:]
    side = math.sqrt(crop_scale)
    lo, hi = (1 - side) / 2, (1 + side) / 2
    ys = torch.linspace(lo, hi, H, device=x.device) * 2 - 1  # normalized coords (align_corners: ±1 = edges)
    xs = torch.linspace(lo, hi, W, device=x.device) * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # (H, W, 2) as (x, y)
    out = F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear", align_corners=True)
    out = torch.clamp(out * 255.5, 0, 255).floor().to(torch.uint8)
    return out.permute(0, 2, 3, 1).reshape(shape)


def normalize_pixels(images: torch.Tensor, vits: list[ViTConfig]) -> torch.Tensor:
    """(B, N, S, S, 3) uint8 -> (B, N, 3 * len(vits), S, S) float32, one mean/std per ViT."""
    x = images.permute(0, 1, 4, 2, 3).float() / 255.0  # (B, N, 3, S, S)
    outs = []
    for v in vits:
        mean = torch.tensor(v.mean, device=x.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(v.std, device=x.device).view(1, 1, 3, 1, 1)
        outs.append((x - mean) / std)
    return torch.cat(outs, dim=2)


@dataclass(frozen=True)
class ImagePipeline:
    """What a policy does to a camera frame before its vision backbone (see the module docstring).

    size: the model's input side in pixels. center_crop: the policy was trained with the random crop of
    ``crop_scale`` of the area, so inference takes the centred box of that area. A policy's pipeline comes
    from its config (:attr:`oft.model.policy.Policy.image_pipeline`); nothing else re-declares these numbers.
    """

    size: int
    center_crop: bool = False
    crop_scale: float = DEFAULT_CROP_SCALE

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"ImagePipeline.size must be a positive int, got {self.size!r}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"ImagePipeline.crop_scale must be in (0, 1], got {self.crop_scale!r}")

    @property
    def train_crop_scale(self) -> float:
        """The random crop's area in training: ``crop_scale`` when inference center-crops, else none (1.0)."""
        return self.crop_scale if self.center_crop else 1.0

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., H, W, 3) uint8 -> (..., S, S, 3): step 1, shared by the loader's cache and inference."""
        return resize_images(frames, self.size)

    def resize_cameras(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """One observation's camera frames (each (H, W, 3) uint8, any size) -> (N, S, S, 3) uint8."""
        return np.stack([resize_uint8(np.asarray(im), self.size) for im in images])

    def __call__(
        self,
        images: torch.Tensor,
        *,
        train: bool,
        augment=None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, N, H, W, 3) uint8 -> (B, N, S, S, 3) uint8, steps 1-2.

        train=False: resize, then the center crop when ``center_crop``. train=True: resize, then — when an
        :class:`oft.data.augment.AugmentConfig` is given — the augmentation with *this* pipeline's crop area
        (so the random crop always matches the center crop the policy will see). Without ``augment`` the
        training pixels equal the inference pixels of a policy without center crop, exactly.
        """
        if images.dtype != torch.uint8 or images.ndim != 5 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be a (B, N, H, W, 3) uint8 tensor, got {tuple(images.shape)} {images.dtype}"
            )
        images = self.resize(images)
        if not train:
            return center_crop(images, self.crop_scale) if self.center_crop else images
        if augment is None:
            return images
        from oft.data.augment import augment_images

        cfg = dataclasses.replace(augment, crop_scale=self.train_crop_scale)
        return augment_images(images, generator or torch.Generator().manual_seed(0), cfg)
