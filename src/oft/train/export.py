"""Export a policy to the on-disk layout of the paper's code (OpenVLA-OFT ``vla-scripts/finetune.py``).

What its evaluation scripts (``experiments/robot/openvla_utils.py``) read from a checkpoint directory::

    config.json, model.safetensors          the VLA (LoRA merged), HF OpenVLA names
    action_head--{step}_checkpoint.pt       L1 / diffusion head state dict ("module." prefixed, as DDP saves)
    noisy_action_projector--{step}_...      diffusion only
    proprio_projector--{step}_...           with proprio
    vision_backbone--{step}_...             with FiLM: the whole FiLM-wrapped backbone, LoRA unmerged
    dataset_statistics.json                 {unnorm_key: {"action": ..., "proprio": ...}}
    tokenizer.json (+ special-token files)
    lora_adapter/                           mode "adapter": peft adapter, with the un-adapted model in base/
    oft_export.json                         what the layout has no place for (ignored by other readers)

``oft_export.json`` (:data:`oft.model.loading.EXPORT_SIDECAR`) holds the policy config (robot spec with its
conventions, chunk length, cameras, center crop and other preprocessing, head settings such as diffusion
steps, LoRA rank/alpha) and the normalization rules of its statistics, so that ``load_policy`` on the export
gives the policy that was exported, action for action.

A discrete-token policy exports as a plain OpenVLA directory (its statistics in ``config.json``).
``oft.load_policy`` reads this layout back, which is what the round-trip test checks. Component files are
tensors-only ``torch.save`` dicts, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

if TYPE_CHECKING:
    from oft.data.normalize import NormStats

log = logging.getLogger(__name__)

EXPORT_MODES = ("merged", "adapter")
_FILM = re.compile(r"\.(scale|shift)\.(weight|bias)$")


def reference_incompatibility(action_slots: str, film: bool, film_input: str) -> str | None:
    """What in a model's design the paper's code cannot run (None: nothing), given the model fields of
    :class:`oft.train.config.TrainConfig` of the same names.

    The paper's layout has no place for these, so an export would load there (and in ``oft.load_policy``,
    which reads the layout as the paper's code does) as another model: with K*D action slots where the
    policy has K, or with FiLM fed the plain mean prompt embedding where it learned another input.
    """
    if action_slots != "per_dimension":
        reason = (
            f"action_slots={action_slots!r}; the paper's code reads one action slot per action dimension "
            "(K*D slots)"
        )
    elif film and film_input != "mean":
        reason = (
            f"film_input={film_input!r}; the paper's code feeds FiLM the plain mean prompt embedding "
            "('mean'), so the export would run with FiLM inputs the policy never saw"
        )
    else:
        return None
    return f"{reason}. Keep the oft checkpoint (oft eval / oft serve load it)."


def check_unnorm_key(policy, unnorm_key: str | None) -> dict[str, NormStats]:
    """The policy's statistics by key when it holds several (a mixture: per dataset or per task), else {}.

    KeyError naming ``unnorm_key`` and the policy's keys when it holds several and ``unnorm_key`` (None: the
    policy's own) is none of them. ``oft train --export`` calls it on the built policy, before training."""
    stats = getattr(policy, "dataset_stats", {})
    mixture = stats if len(stats) > 1 else {}
    if mixture and unnorm_key is not None and unnorm_key not in mixture:
        kind = "instructions" if getattr(policy, "per_task", False) else "datasets"
        raise KeyError(f"unnorm_key {unnorm_key!r} is not one of the policy's {kind} {sorted(mixture)}")
    return mixture


def export_reference(
    policy, out: str | Path, step: int = 0, unnorm_key: str | None = None, mode: str = "merged"
):
    """Write ``policy`` to ``out`` in the paper's layout; returns ``out``.

    unnorm_key: the dataset-statistics key (the paper's ``--unnorm_key``); default the robot spec's name.
        A mixture trained with per-dataset statistics exports every dataset's, under its name; unnorm_key
        (one of them; default the policy's) is the one recorded as the export's own: KeyError listing them
        for any other name, before anything is written. Per-task statistics export under each instruction:
        the paper's code, which has no instruction map, picks a task's with ``--unnorm_key "<instruction>"``.
    mode: "merged" (LoRA folded into the weights) or "adapter" (``base/`` + ``lora_adapter/``).
    """
    if mode not in EXPORT_MODES:
        raise ValueError(f"export mode {mode!r} is invalid: expected one of {EXPORT_MODES}")
    mixture = check_unnorm_key(policy, unnorm_key)
    cfg = policy.vla.config
    problem = reference_incompatibility(cfg.action_slots, cfg.use_film, cfg.film_input)
    if problem is not None:
        raise ValueError(f"this policy cannot be exported to the paper's layout: {problem}")
    has_lora = any(".lora_" in n for n, _ in policy.vla.named_parameters())
    if mode == "adapter" and not has_lora:  # before anything is written
        raise ValueError("export mode 'adapter' needs a policy trained with LoRA (lora_rank > 0)")
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    key = (unnorm_key or policy.unnorm_key) if mixture else unnorm_key
    key = key or policy.spec.name
    vla = copy.deepcopy(policy.vla).float().cpu()
    model_dir = tmp
    if mode == "adapter":
        model_dir = tmp / "base"
        model_dir.mkdir()
        _write_adapter(vla, tmp / "lora_adapter", policy.config.lora or {})
    from oft.model.lora import merge_lora

    # components first: the FiLM backbone is saved with its LoRA unmerged, as the paper saves it
    _write_components(vla, policy, tmp, step)
    if mode == "merged":
        merge_lora(vla)
    _write_model(vla, policy, model_dir, key)
    _write_tokenizer(policy.vla.tokenizer, tmp)
    stats = {key: _stats_entry(policy.norm_stats)}
    if mixture:  # one normalizer per robot, by dataset name
        stats = {k: _stats_entry(s) for k, s in mixture.items()}
    (tmp / "dataset_statistics.json").write_text(json.dumps(stats, indent=2))
    _write_record(policy, tmp, key)
    from oft.checksums import write_checksums

    write_checksums(tmp)  # oft_checksums.json (other readers ignore it); load_policy verifies it
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("exported %s (%s) to %s", policy.spec.name, mode, out)
    return out


# --------------------------------------------------------------------------- the VLA
def _write_model(vla, policy, model_dir: Path, key: str) -> None:
    """config.json (HF OpenVLA) + model.safetensors without the parts the component files carry."""
    state = _base_state(vla)
    skip = ("proprio_projector.",)
    tensors = {k: v.contiguous() for k, v in state.items() if not k.startswith(skip) and not _FILM.search(k)}
    save_file(tensors, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    (model_dir / "config.json").write_text(json.dumps(openvla_config(vla.config, policy, key), indent=2))


def _base_state(vla) -> dict[str, torch.Tensor]:
    """State dict with peft's ``base_layer`` names folded back and adapters dropped (un-adapted weights)."""
    out = {}
    for k, v in vla.state_dict().items():
        if ".lora_" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v.detach().cpu()
    return out


def openvla_config(vla_config, policy, key: str) -> dict:
    """The HF ``config.json`` of an OpenVLA model with this trunk (the fields the OpenVLA loaders read)."""
    from oft.model.vision import TIMM_VITS

    ids, overrides = [], []
    for vit in vla_config.vits:
        model_id = _closest_timm_id(vit, TIMM_VITS)
        ids.append(model_id)
        base = dataclasses.replace(TIMM_VITS[model_id], img_size=vit.img_size)
        diff = {
            f.name: getattr(vit, f.name)
            for f in dataclasses.fields(vit)
            if getattr(vit, f.name) != getattr(base, f.name)
        }
        overrides.append({k: list(v) if isinstance(v, tuple) else v for k, v in diff.items()})
    fused = len(ids) == 2
    return {
        "model_type": "openvla",
        "architectures": ["OpenVLAForActionPrediction"],
        "use_fused_vision_backbone": fused,
        "timm_model_ids": ids,
        "timm_override_kwargs": overrides if any(overrides) else None,
        "timm_override_act_layers": [None] * len(ids),
        "image_sizes": [v.img_size for v in vla_config.vits],
        "image_resize_strategy": "resize-naive",
        "arch_specifier": "no-align+fused-gelu-mlp" if fused else "no-align+gelu-mlp",
        "text_config": {"model_type": "llama", **vla_config.llm},
        "pad_token_id": policy.vla.tokenizer.pad_id,
        "n_action_bins": 256,
        "norm_stats": {key: _stats_entry(policy.norm_stats)},
        "torch_dtype": "float32",
    }


def _closest_timm_id(vit, known: dict) -> str:
    def score(model_id: str) -> int:
        ref = known[model_id]
        return sum(getattr(vit, f.name) == getattr(ref, f.name) for f in dataclasses.fields(vit))

    return max(known, key=score)


# --------------------------------------------------------------------------- components
def _write_components(vla, policy, out: Path, step: int) -> None:
    def save(stem: str, sd: dict) -> None:
        # "module." as the paper's DDP-wrapped modules save it (its loader strips it again)
        tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in sd.items()}
        torch.save(tensors, out / f"{stem}--{step}_checkpoint.pt")

    for stem, sd in policy.head.reference_parts().items():  # the head says which files it is
        save(stem, sd)
    if getattr(vla, "proprio_projector", None) is not None:
        save("proprio_projector", vla.proprio_projector.state_dict())
    if vla.config.use_film:
        # the paper's ``vla.module.vision_backbone.state_dict()``: the FiLM wrapper's keys
        # (``vision_backbone.featurizer.blocks.N.block.…``), LoRA unmerged (base_layer / lora_A.default /
        # lora_B.default), no DDP prefix (its loader reads this file without stripping one)
        sd = {k: v for k, v in vla.state_dict().items() if k.startswith("vision_backbone.")}
        tensors = {film_name(k): v.detach().cpu().contiguous() for k, v in sd.items()}
        torch.save(tensors, out / f"vision_backbone--{step}_checkpoint.pt")


def film_name(key: str) -> str:
    """Our name -> the paper's FiLM wrapper name: ``vision_backbone.featurizer.blocks.3.attn.qkv.weight`` ->
    ``vision_backbone.featurizer.blocks.3.block.attn.qkv.weight`` (its wrapper holds the timm block as
    ``.block``); FiLM's own ``scale``/``shift`` stay at the block. Other keys are unchanged."""
    m = re.match(r"(.*(?:fused_)?featurizer\.blocks\.\d+)\.(.*)$", key)
    if not m or re.match(r"(scale|shift)\.", m.group(2)):
        return key
    return f"{m.group(1)}.block.{m.group(2)}"


def _write_record(policy, out: Path, key: str) -> None:
    """``oft_export.json``: what the paper's layout cannot hold (read back by ``load_policy``)."""
    from oft.model.loading import EXPORT_SIDECAR

    policy.config.head_kwargs = policy.head.config()
    stats = policy.norm_stats
    record = {
        "format": "oft-export",
        "version": 1,
        "unnorm_key": key,
        "policy": policy.config.to_dict(),
        "flat_dims": {
            "action": stats.action.flat_dims,
            **({"proprio": stats.proprio.flat_dims} if stats.proprio is not None else {}),
        },
    }
    (out / EXPORT_SIDECAR).write_text(json.dumps(record, indent=2))


def _write_adapter(vla, adapter_dir: Path, lora_meta: dict) -> None:
    """peft ``save_pretrained`` layout: adapter_config.json + adapter_model.safetensors.

    With FiLM, vision keys take the paper's FiLM-wrapped path (``vision_backbone.vision_backbone.featurizer.
    blocks.N.block.…``, the wrapper holding the backbone as ``.vision_backbone``), as its training saves them.
    """
    adapter_dir.mkdir(parents=True)
    tensors = {}
    for k, v in vla.state_dict().items():
        m = re.match(r"(.*)\.(lora_[AB])\.default\.weight$", k)
        if m:
            module = m.group(1)
            if vla.config.use_film and module.startswith("vision_backbone."):
                module = "vision_backbone." + film_name(module)
            tensors[f"base_model.model.{module}.{m.group(2)}.weight"] = v.detach().cpu().contiguous()
    rank = int(lora_meta.get("rank") or next(v.shape[0] for k, v in tensors.items() if "lora_A" in k))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": lora_meta.get("alpha", min(rank, 16)),
        "lora_dropout": 0.0,
        "target_modules": sorted({k.split(".")[-3] for k in tensors}),
        "init_lora_weights": "gaussian",
        "bias": "none",
        "task_type": None,
    }
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def _write_tokenizer(tokenizer, out: Path) -> None:
    tokenizer.save(out)
    vocab = tokenizer.tokenizer
    names = {role: vocab.id_to_token(i) for role, i in (("bos", tokenizer.bos_id), ("eos", tokenizer.eos_id),
                                                        ("pad", tokenizer.pad_id))}  # fmt: skip
    special = {f"{role}_token": name for role, name in names.items() if name is not None}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 2048}, indent=2))


def _stats_entry(stats) -> dict:
    d = stats.to_dict()
    return {k: v for k, v in d.items() if v is not None}


__all__ = ["EXPORT_MODES", "export_reference", "openvla_config", "reference_incompatibility"]
