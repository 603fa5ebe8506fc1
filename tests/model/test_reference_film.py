"""FiLM fine-tunes saved the way the paper's code saves them load in both of its layouts.

The weights are our own tiny random ones written in the reference's key layout, on top of the shared fixture's
base model (``../shared/fixtures/openvla-oft-tiny-libero``):

* ``vision_backbone--*_checkpoint.pt`` = ``vla.module.vision_backbone.state_dict()`` of the FiLM-wrapped,
  LoRA model (``finetune.py``): keys ``vision_backbone.featurizer.blocks.N.block.<timm name>``, LoRA'd layers
  as ``base_layer`` / ``lora_A.default`` / ``lora_B.default``, FiLM ``blocks.N.scale`` / ``.shift``; no DDP
  prefix.
* layout (a): the merged model (the adapter merged into the *unwrapped* base, where the adapter's vision keys
  match nothing, so its vision stays the base's) + the .pt.
* layout (b): ``base/`` + ``lora_adapter/`` (vision keys on the FiLM path
  ``base_model.model.vision_backbone.vision_backbone.featurizer.blocks.N.block.…``) + the .pt.

The expected actions come from a third directory the test assembles itself: every LoRA folded here
(W + alpha/r · B A), FiLM-wrapper names written as plain weights; the loader then only copies tensors.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from oft import load_policy
from oft.observation import Observation

TOL = 2e-4
RANK, ALPHA = 4, 4  # the paper's LoraConfig: lora_alpha = min(r, 16)
LLM_LORA = re.compile(
    r"^(language_model\.model\.layers\.\d+\.(self_attn\.q_proj|mlp\.down_proj)|projector\.fc1)$"
)
VIT_LORA = re.compile(r"^vision_backbone\.(fused_)?featurizer\.blocks\.\d+\.(attn\.qkv|mlp\.fc1)$")


def _wrapper_name(key: str) -> str:
    """``vision_backbone.featurizer.blocks.3.attn.qkv`` -> ``….blocks.3.block.attn.qkv`` (FiLM wrapper)."""
    return re.sub(r"(featurizer\.blocks\.\d+)\.", r"\1.block.", key, count=1)


def _lora(g, out_dim, in_dim):
    return torch.randn(RANK, in_dim, generator=g) * 0.3, torch.randn(out_dim, RANK, generator=g) * 0.05


@pytest.fixture(scope="module")
def layouts(fixture_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("film")
    base = {k: v.float() for k, v in load_file(str(fixture_dir / "base" / "model.safetensors")).items()}
    g = torch.Generator().manual_seed(0)
    llm_dim = base["language_model.model.embed_tokens.weight"].shape[1]
    modules = sorted({k.rsplit(".", 1)[0] for k in base if k.endswith(".weight")})
    lora = {
        m: _lora(g, *base[f"{m}.weight"].shape) for m in modules if LLM_LORA.match(m) or VIT_LORA.match(m)
    }
    assert (
        sum(bool(VIT_LORA.match(m)) for m in lora) == 12 and sum(bool(LLM_LORA.match(m)) for m in lora) == 5
    )
    film = {}
    for m in modules:
        blk = re.match(r"^(vision_backbone\.(fused_)?featurizer\.blocks\.\d+)\.norm1$", m)
        if blk:
            dim = base[f"{m}.weight"].shape[0]
            for name in ("scale", "shift"):
                film[f"{blk.group(1)}.{name}.weight"] = torch.randn(dim, llm_dim, generator=g) * 0.05
                film[f"{blk.group(1)}.{name}.bias"] = torch.randn(dim, generator=g) * 0.1

    def folded(m):
        a, b = lora[m]
        return base[f"{m}.weight"] + (ALPHA / RANK) * b @ a

    # vision_backbone--*.pt as the paper's training saves it
    pt = {}
    for k, v in base.items():
        if not k.startswith("vision_backbone."):
            continue
        m, leaf = k.rsplit(".", 1)
        if m in lora:
            pt[_wrapper_name(f"{m}.base_layer.{leaf}")] = v
            if leaf == "weight":
                pt[_wrapper_name(f"{m}.lora_A.default.weight")] = lora[m][0]
                pt[_wrapper_name(f"{m}.lora_B.default.weight")] = lora[m][1]
        else:
            pt[_wrapper_name(k)] = v
    pt.update(film)
    # the expected: everything folded by this test, plain weights under the wrapper's names
    pt_plain = {_wrapper_name(k): v for k, v in base.items() if k.startswith("vision_backbone.")}
    pt_plain.update({_wrapper_name(f"{m}.weight"): folded(m) for m in lora if VIT_LORA.match(m)})
    pt_plain.update(film)
    merged_llm = dict(base, **{f"{m}.weight": folded(m) for m in lora if LLM_LORA.match(m)})

    def common(d, vision_pt):
        d.mkdir()
        for f in fixture_dir.iterdir():
            if f.is_file() and not f.name.startswith("case."):
                shutil.copy(f, d / f.name)
        torch.save(vision_pt, d / "vision_backbone--100_checkpoint.pt")
        return d

    a = common(root / "merged", pt)  # layout (a): vision in the merged model is the base's
    shutil.copy(fixture_dir / "base" / "config.json", a / "config.json")
    save_file({k: v.contiguous() for k, v in merged_llm.items()}, str(a / "model.safetensors"))

    b = common(root / "adapter", pt)  # layout (b)
    shutil.copytree(fixture_dir / "base", b / "base")
    (b / "lora_adapter").mkdir()
    adapter = {}
    for m, (wa, wb) in lora.items():
        path = (
            m.replace("vision_backbone.", "vision_backbone.vision_backbone.", 1) if VIT_LORA.match(m) else m
        )
        path = _wrapper_name(path) if VIT_LORA.match(m) else path
        adapter[f"base_model.model.{path}.lora_A.weight"] = wa.contiguous()
        adapter[f"base_model.model.{path}.lora_B.weight"] = wb.contiguous()
    save_file(adapter, str(b / "lora_adapter" / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": ["qkv", "fc1", "q_proj"]}
    (b / "lora_adapter" / "adapter_config.json").write_text(json.dumps(config))

    e = common(root / "expected", pt_plain)
    shutil.copy(fixture_dir / "base" / "config.json", e / "config.json")
    save_file({k: v.contiguous() for k, v in merged_llm.items()}, str(e / "model.safetensors"))
    nofilm = common(root / "nofilm", {**pt_plain, **{k: torch.zeros_like(v) for k, v in film.items()}})
    shutil.copy(e / "config.json", nofilm / "config.json")
    shutil.copy(e / "model.safetensors", nofilm / "model.safetensors")
    return {"a": a, "b": b, "expected": e, "nofilm": nofilm}


@pytest.fixture(scope="module")
def obs(fixture_dir):
    tensors = load_file(str(fixture_dir / "case.safetensors"))
    meta = json.loads((fixture_dir / "case.json").read_text())
    images = [im.numpy() for im in tensors["images_224_uint8"]]
    return Observation(images, tensors["proprio_raw"].numpy(), meta["instruction"])


@pytest.fixture(scope="module")
def expected(layouts, obs):
    return load_policy(layouts["expected"]).predict_action_chunk(obs)


def test_the_case_can_fail(layouts, obs, expected):
    """FiLM and the vision LoRA both move the actions far beyond the tolerance."""
    assert np.abs(load_policy(layouts["nofilm"]).predict_action_chunk(obs) - expected).max() > 50 * TOL


@pytest.mark.parametrize(
    ("layout", "merge"),
    [("a", True), ("b", True), ("b", False)],
    ids=["merged", "adapter", "adapter-unmerged"],
)
def test_film_layouts_reproduce_the_reference(layouts, obs, expected, layout, merge):
    policy = load_policy(layouts[layout], merge_adapter=merge)
    assert policy.vla.config.use_film
    err = float(np.abs(policy.predict_action_chunk(obs) - expected).max())
    assert err < TOL, f"layout {layout}: max |actions - expected| = {err:.3g}"
