"""The 7B OpenVLA architecture on the meta device, and ``oft info``."""

from __future__ import annotations

import pytest

from oft.cli import main
from oft.model.arch import openvla_7b_meta


def test_openvla_7b_on_meta_device():
    policy = openvla_7b_meta()
    trunk = {k: v for k, v in policy.vla.state_dict().items() if not k.startswith("proprio_projector.")}
    n = sum(v.numel() for v in trunk.values())
    assert abs(n - 7.541e9) / 7.541e9 < 0.01, n  # OpenVLA-7B: 7,541,237,184 parameters
    assert all(v.device.type == "meta" for v in trunk.values())
    expected = {
        "vision_backbone.featurizer.pos_embed": (1, 256, 1024),
        "vision_backbone.featurizer.reg_token": (1, 4, 1024),
        "vision_backbone.featurizer.blocks.23.ls2.scale_factor": (1024,),
        "vision_backbone.fused_featurizer.patch_embed.proj.weight": (1152, 3, 14, 14),
        "vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight": (4304, 1152),
        "vision_backbone.fused_featurizer.attn_pool.latent": (1, 1, 1152),
        "projector.fc1.weight": (8704, 2176),
        "projector.fc3.weight": (4096, 4096),
        "language_model.model.embed_tokens.weight": (32064, 4096),
        "language_model.model.layers.31.mlp.down_proj.weight": (4096, 11008),
        "language_model.lm_head.weight": (32064, 4096),
    }
    for key, shape in expected.items():
        assert tuple(trunk[key].shape) == shape, key
    assert "vision_backbone.featurizer.cls_token" in trunk
    assert "vision_backbone.fused_featurizer.cls_token" not in trunk


def test_oft_info_7b(capsys):
    assert main(["info", "--arch", "openvla-7b"]) == 0
    out = capsys.readouterr().out
    assert "hidden_size=4096" in out and "num_hidden_layers=32" in out


def test_oft_info_fixture(shared_fixtures, capsys):
    d = shared_fixtures / "openvla-oft-tiny-libero"
    assert main(["info", str(d)]) == 0
    out = capsys.readouterr().out
    assert "libero_spatial_no_noops" in out and "chunk_len=8" in out and "head: l1" in out


def test_oft_info_missing_dir(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, refused",
    [(["CKPT", "--arch", "openvla-7b"], "give a checkpoint (CKPT) or --arch openvla-7b, not both"),
     (["--arch", "openvla-7b", "--dtype", "bfloat16"], "--dtype: options of a loaded checkpoint; --arch"),
     (["--arch", "openvla-7b", "--no-center-crop"], "--no-center-crop: options of a loaded checkpoint")],
)  # fmt: skip
def test_oft_info_refuses_what_it_would_not_describe(argv, refused, capsys):
    """`oft info CKPT --arch openvla-7b` described OpenVLA-7B under CKPT's name."""
    assert main(["info", *argv]) == 2
    assert refused in capsys.readouterr().err
