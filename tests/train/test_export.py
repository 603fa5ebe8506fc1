"""Export to the paper's on-disk layout, read back by `oft.load_policy`: the same actions come out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import oft
from oft.data.dataset import ListDataset
from oft.model.loading import EXPORT_SIDECAR
from oft.observation import Observation
from oft.train.build import build_from_config
from oft.train.export import export_reference
from oft.train.loop import robot_spec_for, seed_everything

from .conftest import make_episodes, tiny_config


def _policy(**changes):
    seed_everything(0)
    cfg = tiny_config(**changes)
    policy = build_from_config(cfg, robot_spec_for(cfg), ListDataset(make_episodes()), None)
    with torch.no_grad():  # move every weight off its init (zero LoRA B, zero FiLM) so the test can fail
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return policy.eval()


def _observations(n=3):
    rng = np.random.default_rng(2)
    return [
        Observation(
            [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2)],
            rng.normal(size=4).astype(np.float32),
            f"open the drawer number {i % 2}",
        )
        for i in range(n)
    ]


CASES = {
    "l1-crop": ({"augment": True}, "merged"),
    "l1-nocrop-noproprio": ({"augment": False, "proprio": False}, "merged"),
    "film-lora-merged": ({"film": True, "lora_rank": 4}, "merged"),
    "film-lora-adapter": ({"film": True, "lora_rank": 4}, "adapter"),
    "film-lora-adapter-nocrop": ({"film": True, "lora_rank": 4, "augment": False}, "adapter"),
    "diffusion": ({"head": "diffusion"}, "merged"),
    "diffusion-lora-adapter-nocrop": ({"head": "diffusion", "lora_rank": 4, "augment": False}, "adapter"),
}


def _predict(policy, obs):
    torch.manual_seed(5)  # the diffusion head's initial noise
    return policy.predict_action_chunk(obs)


@pytest.mark.parametrize(("changes", "mode"), list(CASES.values()), ids=list(CASES))
def test_export_round_trip_predicts_the_same_actions(tmp_path, changes, mode):
    """Everything the policy does with an observation survives export -> load_policy: center crop (and the
    rest of the preprocessing), proprio and its normalization rule, FiLM, LoRA (merged or adapter), head."""
    policy = _policy(**changes)
    if policy.uses_proprio:  # a q01 == q99 dim: oft feeds 0, the paper's rule would feed +-1
        policy.norm_stats.proprio.q99[0] = policy.norm_stats.proprio.q01[0]
    if changes.get("head") == "diffusion":
        policy.head.num_inference_steps = 7  # not the reference default (50): only the record keeps it
    out = export_reference(policy, tmp_path / "export", step=7, unnorm_key="metaworld_tiny", mode=mode)
    files = {p.name for p in out.iterdir()}
    assert {
        "action_head--7_checkpoint.pt",
        "dataset_statistics.json",
        "tokenizer.json",
        EXPORT_SIDECAR,
    } <= files
    assert ("proprio_projector--7_checkpoint.pt" in files) == changes.get("proprio", True)
    assert ("noisy_action_projector--7_checkpoint.pt" in files) == (changes.get("head") == "diffusion")
    assert ("vision_backbone--7_checkpoint.pt" in files) == bool(changes.get("film"))
    assert ("lora_adapter" in files and "base" in files) == (mode == "adapter")
    assert "metaworld_tiny" in json.loads((out / "dataset_statistics.json").read_text())
    sd = torch.load(out / "action_head--7_checkpoint.pt", weights_only=True)
    assert all(k.startswith("module.") for k in sd)

    loaded = oft.load_policy(out)  # nothing but the path: the record carries spec, crop, head settings
    assert loaded.config.center_crop == policy.config.center_crop == changes.get("augment", True)
    assert loaded.spec == policy.spec
    assert loaded.head.config() == policy.head.config()
    for f in ("crop_scale", "frame_sizes"):
        assert getattr(loaded.config, f, None) == getattr(policy.config, f, None)
    obs = _observations()
    np.testing.assert_allclose(_predict(loaded, obs), _predict(policy, obs), rtol=1e-4, atol=1e-5)
    for crop in (True, False):  # the caller's choice still wins
        assert oft.load_policy(out, center_crop=crop).config.center_crop is crop


def test_film_export_uses_the_papers_key_layout(tmp_path):
    """vision_backbone--*.pt as ``vla.module.vision_backbone.state_dict()`` (FiLM wrapper keys, LoRA
    unmerged, no DDP prefix: the paper's loader reads it without stripping one); adapter vision keys on the
    wrapper path."""
    from safetensors import safe_open

    out = export_reference(_policy(film=True, lora_rank=4), tmp_path / "e", step=3, mode="adapter")
    sd = torch.load(out / "vision_backbone--3_checkpoint.pt", weights_only=True)
    assert "vision_backbone.featurizer.blocks.0.block.attn.qkv.base_layer.weight" in sd
    assert "vision_backbone.featurizer.blocks.0.block.attn.qkv.lora_A.default.weight" in sd
    assert "vision_backbone.featurizer.blocks.0.scale.weight" in sd
    assert not any(k.startswith("module.") for k in sd)
    with safe_open(str(out / "lora_adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    vision = [k for k in keys if ".vision_backbone." in k]
    assert vision and all(k.startswith("base_model.model.vision_backbone.vision_backbone.") for k in vision)
    assert (
        "base_model.model.vision_backbone.vision_backbone.featurizer.blocks.0.block.attn.qkv.lora_A.weight"
        in keys
    )


def test_export_refuses_adapter_mode_without_lora(tmp_path):
    with pytest.raises(ValueError, match="adapter"):
        export_reference(_policy(), tmp_path / "x", mode="adapter")


def test_export_refuses_one_slot_per_chunk_step_and_writes_nothing(tmp_path):
    """The paper's code reads K*D action slots: a per-step policy would load there and read garbage."""
    policy = _policy(action_slots="per_step")
    with pytest.raises(ValueError, match=r"action_slots='per_step'.*K\*D"):
        export_reference(policy, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("film_input", ["mean_rms", "mean_centered"])
def test_export_refuses_a_film_input_the_papers_code_does_not_compute(tmp_path, film_input):
    """The layout has no place for the FiLM input: the export would load (here and in the paper's code)
    with the plain mean and give other actions than the policy that was trained."""
    policy = _policy(film=True, film_input=film_input)
    with pytest.raises(ValueError, match=rf"film_input='{film_input}'.*plain mean prompt embedding"):
        export_reference(policy, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_a_mixtures_export_refuses_an_unnorm_key_it_does_not_have(tmp_path):
    """A misspelled key used to fall back silently to the policy's own dataset's statistics."""
    policy = _policy()
    stats = policy.norm_stats
    policy.set_dataset_stats({"drawer_data": stats, "faucet_data": stats}, "drawer_data")
    with pytest.raises(KeyError, match=r"'faucet_dta' is not one of the policy's datasets \['drawer_data'"):
        export_reference(policy, tmp_path / "x", unnorm_key="faucet_dta")
    assert list(tmp_path.iterdir()) == []
    out = export_reference(policy, tmp_path / "ok", unnorm_key="faucet_data")
    assert json.loads((out / EXPORT_SIDECAR).read_text())["unnorm_key"] == "faucet_data"
