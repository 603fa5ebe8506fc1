"""The spatial-softmax keypoint token (``ViTConfig.keypoints``, arch ``small-keypoints``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.safety import fixed_sequence_tokens
from oft.model.vision import SpatialSoftmax, VisionTransformer, ViTConfig
from oft.observation import Observation
from oft.spec import RobotSpec

SPEC = RobotSpec("toy", action_dim=3, proprio_dim=4, chunk_len=2, cameras=("a", "b"))


def _stats(dim):
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def test_a_keypoint_is_the_expected_patch_coordinate_and_moves_between_patch_centres():
    ssm = SpatialSoftmax(grid=4, dim=2, keypoints=1)
    with torch.no_grad():
        ssm.score.weight.copy_(torch.tensor([[50.0, 0.0]]))  # scores patches by feature 0
        ssm.score.bias.zero_()
        ssm.proj.weight.copy_(torch.eye(2))  # the token is the keypoint itself
        ssm.proj.bias.zero_()
    patches = torch.zeros(1, 16, 2)
    patches[0, 4 * 1 + 3, 0] = 1.0  # row 1, column 3 of the 4x4 grid
    torch.testing.assert_close(ssm(patches), torch.tensor([[1.0, -1 / 3]]), atol=1e-4, rtol=0)
    patches[0, 4 * 1 + 2, 0] = 1.0  # and row 1, column 2 alike: halfway between their centres
    torch.testing.assert_close(ssm(patches), torch.tensor([[2 / 3, -1 / 3]]), atol=1e-4, rtol=0)


def test_the_vit_returns_its_patches_then_one_keypoint_token():
    torch.manual_seed(0)
    size = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    plain, kp = VisionTransformer(ViTConfig(**size)), VisionTransformer(ViTConfig(**size, keypoints=8))
    kp.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    out = kp(x)
    assert out.shape == (2, 17, 32) and kp.cfg.num_tokens == 17 and plain.cfg.num_tokens == 16
    torch.testing.assert_close(out[:, :16], plain(x))  # the patch tokens are unchanged
    torch.testing.assert_close(kp(x[:1]), out[:1])  # nothing depends on the rest of the batch


def test_bad_keypoints_are_refused_and_old_configs_load_without_them():
    with pytest.raises(ValueError, match=r"keypoints must be >= 0 .*got -1"):
        ViTConfig(keypoints=-1)
    saved = ViTConfig(img_size=64, patch_size=8).to_dict()
    saved.pop("keypoints")
    assert ViTConfig.from_dict(saved).keypoints == 0


def test_small_keypoints_policy_counts_its_tokens_and_round_trips(tmp_path):
    torch.manual_seed(0)
    policy = build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch="small-keypoints").eval()
    plain = build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch="small").eval()
    assert policy.vla.vision_backbone.num_tokens == 65
    assert fixed_sequence_tokens(policy) == fixed_sequence_tokens(plain) + 2  # one token per camera
    rng = np.random.default_rng(0)
    obs = Observation([rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)], np.zeros(4), "x")
    expected = policy.predict_action_chunk(obs)
    loaded = load_policy(policy.save(tmp_path / "p")).eval()
    assert loaded.vla.vision_backbone.configs[0].keypoints == 32
    np.testing.assert_allclose(loaded.predict_action_chunk(obs), expected, rtol=1e-5, atol=1e-6)
