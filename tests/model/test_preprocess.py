"""Image preprocessing vs the reference processor and its TensorFlow center crop."""

from __future__ import annotations

import pytest
import torch

from oft.model.preprocess import ImagePipeline, center_crop, normalize_pixels
from oft.model.vision import timm_vit_config


def preprocess(images, vits, size):
    """Inference pixels: the policy's one path, without a center crop (as the goldens were made)."""
    return normalize_pixels(ImagePipeline(size)(images, train=False), vits)


@pytest.fixture(scope="module")
def case(shared_fixtures):
    from safetensors.torch import load_file

    return load_file(str(shared_fixtures / "openvla-oft-tiny-libero" / "case.safetensors"))


VITS = [
    timm_vit_config("vit_large_patch14_reg4_dinov2.lvd142m"),
    timm_vit_config("vit_so400m_patch14_siglip_224"),
]


def test_pixel_values_match_reference(case):
    pv = preprocess(case["images_224_uint8"][None], VITS, 224)  # (1, 2, 6, 224, 224)
    assert torch.equal(pv.reshape(1, 12, 224, 224), case["pixel_values"])


def test_resize_from_256_matches_reference(case):
    pv = preprocess(case["images_256_uint8"][None], VITS, 224)
    assert (pv.reshape(1, 6, 224, 224) - case["pixel_values_from_256"]).abs().max() < 1e-6


def test_center_crop_close_to_tensorflow(case):
    ours = center_crop(case["images_224_uint8"][0]).int()
    diff = (ours - case["tf.center_crop_image_224_uint8"].int()).abs()
    assert diff.max() <= 1  # measured: max 1 grey level on 0.006% of the values
    assert (diff > 0).float().mean() < 1e-3
