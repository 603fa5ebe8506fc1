"""Augmentation: shapes, dtype, range, the identity settings, and HSV math against colorsys."""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from oft.data.augment import AugmentConfig, _saturation_hue, augment_images
from oft.model.preprocess import center_crop


def _images(b=3, n=2, h=24, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, n, h, w, 3), generator=g, dtype=torch.uint8)


def test_shape_dtype_range_and_randomness():
    x = _images()
    y = augment_images(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert not torch.equal(y[0, 0], x[0, 0])
    assert not torch.equal(y[0, 0], y[0, 1])  # each camera draws its own parameters
    assert torch.equal(y, augment_images(x, torch.Generator().manual_seed(0)))  # reproducible
    assert not torch.equal(y, augment_images(x, torch.Generator().manual_seed(1)))


def test_identity_settings_keep_images():
    x = _images()
    off = AugmentConfig(crop_scale=1.0, brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)
    y = augment_images(x, torch.Generator().manual_seed(0), off)
    assert (y.int() - x.int()).abs().max() <= 1


def test_crop_of_constant_image_is_constant():
    x = torch.full((2, 1, 16, 16, 3), 77, dtype=torch.uint8)
    only_crop = AugmentConfig(brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)
    y = augment_images(x, torch.Generator().manual_seed(0), only_crop)
    assert (y.int() - 77).abs().max() <= 1
    ramp = torch.arange(16, dtype=torch.uint8).repeat(16, 1)[None, :, :, None].expand(1, 16, 16, 3) * 10
    c = center_crop(ramp.contiguous())
    assert c.shape == ramp.shape and c[0, 0, 0, 0] > ramp[0, 0, 0, 0] and c[0, 0, -1, 0] < ramp[0, 0, -1, 0]


def test_random_crop_at_the_centre_is_the_inference_center_crop():
    """The training crop and the inference crop sample the same box the same way (differences: rounding)."""
    import math

    from oft.data.augment import _crop_resize

    x = torch.randint(0, 256, (3, 24, 24, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    side = torch.full((3,), math.sqrt(0.9))
    off = (1 - side) / 2
    train = _crop_resize(x.permute(0, 3, 1, 2).float() / 255, side, off, off).mul(255).round()
    infer = center_crop(x, 0.9).permute(0, 3, 1, 2).float()
    assert (train - infer).abs().max() <= 1


def test_crop_jitter_scales_the_crops_range_about_the_centre():
    """`--set crop_jitter=0`: the training crop is always the centred box evaluation takes (colour jitter
    only); 0.5 draws its position from the middle half of the range; 1.0 is the paper's draw, unchanged."""
    x = _images(b=4, n=2, h=32, w=32)
    no_colour = dict(brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)
    infer = center_crop(x.reshape(-1, 32, 32, 3), 0.9).reshape(x.shape).int()
    centred = augment_images(x, torch.Generator().manual_seed(0), AugmentConfig(crop_jitter=0.0, **no_colour))
    assert (centred.int() - infer).abs().max() <= 1
    paper = augment_images(x, torch.Generator().manual_seed(0), AugmentConfig(**no_colour))
    assert (paper.int() - infer).abs().max() > 20  # the paper's crop moves the image
    assert torch.equal(
        paper,
        augment_images(x, torch.Generator().manual_seed(0), AugmentConfig(crop_jitter=1.0, **no_colour)),
    )
    half = augment_images(x, torch.Generator().manual_seed(0), AugmentConfig(crop_jitter=0.5, **no_colour))
    d_half, d_paper = (half.int() - infer).abs().float().mean(), (paper.int() - infer).abs().float().mean()
    assert 0 < d_half < d_paper
    coloured = augment_images(x, torch.Generator().manual_seed(0), AugmentConfig(crop_jitter=0.0))
    assert (coloured.int() - infer).abs().max() > 20  # the colour jitter stays


def test_saturation_hue_match_colorsys():
    rng = np.random.default_rng(0)
    px = rng.random((50, 3))
    sat, dh = 1.15, 0.04
    x = torch.tensor(px, dtype=torch.float32).T.reshape(1, 3, 50, 1)
    out = _saturation_hue(x, torch.tensor([sat]), torch.tensor([dh])).reshape(3, 50).T.numpy()
    for p, o in zip(px, out, strict=True):
        h, s, v = colorsys.rgb_to_hsv(*p)
        ref = colorsys.hsv_to_rgb((h + dh) % 1.0, min(s * sat, 1.0), v)
        np.testing.assert_allclose(o, ref, atol=1e-5)
