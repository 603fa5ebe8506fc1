"""LoRA through peft, applied in place to the VLA trunk (vision backbone, projector, LLM).

``inject_adapter_in_model`` keeps our module tree (no ``base_model.model`` wrapper), so the policy's
state-dict names stay those of OpenVLA plus peft's ``base_layer`` / ``lora_A`` / ``lora_B``. The paper's
default is LoRA on all linear layers, rank 32, alpha 16, dropout 0.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger(__name__)

# modules that never get LoRA: the proprio projector is trained fully, as in the reference
_LORA_SCOPES = ("vision_backbone.", "projector.", "language_model.")


@dataclass
class LoraSpec:
    rank: int = 32
    alpha: float = 16.0
    dropout: float = 0.0
    include_lm_head: bool = False  # "all-linear" in recent peft skips the output layer

    def to_dict(self) -> dict:
        return asdict(self)


def linear_targets(vla: nn.Module, include_lm_head: bool = False) -> list[str]:
    """Full names of every nn.Linear in the trunk (what "all-linear" means), excluding FiLM maps."""
    names = []
    for name, module in vla.named_modules():
        if not isinstance(module, nn.Linear) or not name.startswith(_LORA_SCOPES):
            continue
        if name.endswith((".scale", ".shift")) or (name.endswith("lm_head") and not include_lm_head):
            continue
        names.append(name)
    return names


def apply_lora(vla: nn.Module, spec: LoraSpec, targets: list[str] | None = None) -> nn.Module:
    """Inject LoRA adapters (in place). ``targets`` are exact module names (default: all linear layers)."""
    from peft import LoraConfig, inject_adapter_in_model  # peft imports slowly; only when LoRA is used

    targets = targets or linear_targets(vla, spec.include_lm_head)
    exact = [f"^{re.escape(t)}$" for t in targets]
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules="|".join(exact),
        init_lora_weights=True,
    )
    inject_adapter_in_model(config, vla)
    log.info("LoRA r=%d alpha=%g on %d modules", spec.rank, spec.alpha, len(targets))
    return vla


def lora_layers(model: nn.Module) -> list:
    """(name, peft LoraLayer) pairs; empty without importing peft when no LoRA was ever applied."""
    import sys

    if "peft" not in sys.modules:
        return []
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layer back (deployment form)."""
    for name, layer in lora_layers(model):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    return model


def unmerge_lora(model: nn.Module) -> None:
    """Undo :func:`merge_lora`-style in-place merges done with ``layer.merge()`` (adapters kept)."""
    for _, layer in lora_layers(model):
        if layer.merged:
            layer.unmerge()


def load_peft_adapter(
    vla: nn.Module, adapter_dir: str | Path, skip_prefixes: tuple[str, ...] = ()
) -> list[str]:
    """Apply a peft ``save_pretrained`` adapter (e.g. the reference's ``lora_adapter/``) to ``vla``, unmerged.

    Targets are taken from the weights actually present (exact module names), not from the saved
    ``target_modules`` suffixes, so no extra module receives an untrained adapter.
    skip_prefixes: module paths (after ``base_model.model.``) whose adapter weights are not applied — for a
    FiLM fine-tune, the vision backbone, which its ``vision_backbone--*.pt`` carries whole (LoRA included).
    Returns the skipped adapter keys.
    """
    from oft.files import read_json_object, reading

    adapter_dir = Path(adapter_dir)
    cfg = read_json_object(adapter_dir / "adapter_config.json", "adapter config")
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora") or cfg.get("rank_pattern"):
        raise ValueError(f"unsupported adapter in {adapter_dir}: only plain LoRA (no DoRA / rank_pattern)")
    with reading(adapter_dir / "adapter_model.safetensors", "safetensors file"):
        sd = load_file(str(adapter_dir / "adapter_model.safetensors"))
    sd = {k.removeprefix("base_model.model."): v for k, v in sd.items()}
    skipped = sorted(k for k in sd if k.startswith(skip_prefixes)) if skip_prefixes else []
    sd = {k: v for k, v in sd.items() if k not in set(skipped)}
    targets = sorted({k.rsplit(".lora_A", 1)[0] for k in sd if ".lora_A" in k})
    if not targets:
        return skipped
    apply_lora(vla, LoraSpec(rank=cfg["r"], alpha=cfg["lora_alpha"], dropout=0.0), targets)
    params = dict(vla.named_parameters())
    with torch.no_grad():
        for key, value in sd.items():
            name = re.sub(r"\.(lora_[AB])\.weight$", r".\1.default.weight", key)
            if name not in params:
                raise ValueError(f"adapter weight {key!r} has no matching parameter ({name!r}) in the model")
            params[name].copy_(value)
    log.info(
        "applied LoRA adapter %s to %d modules (%d weights skipped)", adapter_dir, len(targets), len(skipped)
    )
    return skipped


def fold_lora_state_dict(sd: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Fold peft-style entries (``X.base_layer.weight``, ``X.lora_A[.default].weight``, ``lora_B``) of a raw
    state dict into ``X.weight`` (Linear and Conv2d): component checkpoints saved from a LoRA model."""
    out: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = re.match(r"(.*)\.(lora_A|lora_B)(?:\.default)?\.weight$", k)
        if m:
            lora.setdefault(m.group(1), {})[m.group(2)] = v
        else:
            out[k.replace(".base_layer.", ".")] = v
    for prefix, ab in lora.items():
        a, b = ab["lora_A"].float(), ab["lora_B"].float()
        w = out[f"{prefix}.weight"]
        # conv: B (out, r, 1, 1) @ A (r, in, k, k); linear: B (out, r) @ A (r, in)
        delta = torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a) if a.ndim == 4 else b @ a
        out[f"{prefix}.weight"] = (w.float() + scaling * delta).to(w.dtype)
    return out
