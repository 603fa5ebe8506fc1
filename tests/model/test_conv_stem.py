"""The convolutional ViT stem (``stem="conv"``, arch ``small-128-conv``): tokens, checkpoints, bad sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.vision import ConvStem, VisionTransformer, ViTConfig
from oft.observation import Observation
from oft.spec import RobotSpec

SPEC = RobotSpec("toy", action_dim=3, proprio_dim=4, chunk_len=2, cameras=("a",))


def _stats(dim):
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


@pytest.mark.parametrize(("patch", "widths"), [(8, [32, 64, 128]), (16, [16, 32, 64, 128])])
def test_conv_stem_makes_the_same_token_grid_as_the_linear_patch_projection(patch, widths):
    assert ConvStem.widths(patch, 128) == widths
    torch.manual_seed(0)
    size = dict(img_size=64, patch_size=patch, embed_dim=128, depth=2, num_heads=4)
    linear, conv = (VisionTransformer(ViTConfig(**size, stem=stem)) for stem in ("patch", "conv"))
    x = torch.randn(2, 3, 64, 64)
    assert linear(x).shape == conv(x).shape == (2, (64 // patch) ** 2, 128)
    assert not hasattr(conv.patch_embed, "proj")  # no unused linear projection in the checkpoint


def test_conv_stem_tokens_do_not_depend_on_the_rest_of_the_batch():
    cfg = ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, stem="conv")
    vit = VisionTransformer(cfg)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(vit(x)[:1], vit(x[:1]))  # GroupNorm, not BatchNorm: train and serve agree


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(stem="cnn"), "stem must be one of \\['patch', 'conv'\\], got 'cnn'"),
     (dict(stem="conv", patch_size=14), "power-of-two patch size >= 2, got 14")],
)  # fmt: skip
def test_bad_stem_settings_are_refused_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**kwargs)


def test_configs_saved_before_the_stem_existed_load_with_the_linear_projection():
    saved = ViTConfig(img_size=64, patch_size=8).to_dict()
    saved.pop("stem")
    assert ViTConfig.from_dict(saved).stem == "patch"


def test_small_128_conv_policy_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    policy = build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch="small-128-conv").eval()
    assert policy.vla.vision_backbone.num_patches == 64
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    obs = Observation([image], np.zeros(4), "x")
    expected = policy.predict_action_chunk(obs)
    loaded = load_policy(policy.save(tmp_path / "p")).eval()
    np.testing.assert_allclose(loaded.predict_action_chunk(obs), expected, rtol=1e-5, atol=1e-6)
