"""``load_policy(path)`` for the three checkpoint kinds, memory-aware.

* OpenVLA HF directory (``config.json`` with ``model_type: openvla`` + safetensors, maybe sharded through
  ``model.safetensors.index.json``; ``norm_stats`` in the config): the original discrete-token policy.
* OpenVLA-OFT fine-tune directory, as the paper's code writes it: ``action_head--*_checkpoint.pt``,
  ``proprio_projector--*``, optional ``vision_backbone--*`` (FiLM) and ``noisy_action_projector--*``,
  ``dataset_statistics.json``; the merged model at the top level, or a base model (``base/``) plus a
  ``lora_adapter/`` to apply; tokenizer files at the top level.
* Our own checkpoint (``oft_config.json``, written by :meth:`Policy.save`).

An ``oft train --export`` directory is the paper's layout plus ``oft_export.json`` (:data:`EXPORT_SIDECAR`),
which records what that layout has no place for (robot spec, preprocessing, head settings, normalization
rules); it is read when present, so an exported policy reloads acting exactly as the one exported.

Models are built on the ``meta`` device, cast to the target dtype there, materialized with ``to_empty`` and
filled shard by shard, so a 7B model in bf16 never has a float32 copy in memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from oft.checksums import verify_checkpoint
from oft.conventions import paper_conventions
from oft.data.normalize import NormStats
from oft.files import (
    CorruptFileError,
    config_values,
    load_tensors_file,
    read_json_object,
    reading,
)
from oft.model.assemble import assemble_policy
from oft.model.heads import get_head_class, head_for_reference
from oft.model.lora import fold_lora_state_dict, load_peft_adapter, merge_lora
from oft.model.policy import CONFIG_FILE, WEIGHTS_FILE, Policy, PolicyConfig
from oft.model.tokenizer import TextTokenizer
from oft.model.vision import timm_vit_config
from oft.model.vla import VLA, VLAConfig
from oft.spec import PRESETS, RobotSpec

log = logging.getLogger(__name__)

_LLM_CONFIG_SKIP = ("model_type", "torch_dtype", "architectures", "_name_or_path", "transformers_version")


EXPORT_SIDECAR = "oft_export.json"
# The paper trains its fine-tunes with random-crop augmentation (finetune.py ``image_aug=True``); its LIBERO
# evaluation (run_libero_eval.py) and ALOHA deployment default ``center_crop=True`` to match.
PAPER_CENTER_CROP = True
# OpenVLA's base models were pre-trained without crop augmentation; its eval scripts leave the crop to the
# user ("set center_crop=True if the model is fine-tuned with augmentations", as its LIBERO fine-tunes were).
OPENVLA_CENTER_CROP = False


@dataclass
class LoadOptions:
    """Caller choices that override what a checkpoint says about itself (None: the checkpoint's own)."""

    unnorm_key: str | None = None
    spec: RobotSpec | None = None
    center_crop: bool | None = None
    apply_adapter: bool = True
    merge_adapter: bool = True


def load_policy(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    unnorm_key: str | None = None,
    spec: RobotSpec | None = None,
    center_crop: bool | None = None,
    apply_adapter: bool = True,
    merge_adapter: bool = True,
    attn_implementation: str = "sdpa",
    verify: bool = True,
) -> Policy:
    """Load any supported checkpoint directory into an eval-mode :class:`Policy`.

    unnorm_key: which dataset's statistics to use when the checkpoint holds several.
    spec: override the robot spec inferred for the paper's checkpoints (they do not record chunk length or
        camera count; we infer them from the platform preset matching the statistics).
    center_crop: evaluate on the 90%-area center crop (``PolicyConfig.center_crop``). None = the checkpoint's
        own default: an oft checkpoint's recorded value (on when trained with crop augmentation); on for
        OpenVLA-OFT fine-tunes (:data:`PAPER_CENTER_CROP`; an ``oft train --export`` directory: the value it
        recorded); off for plain OpenVLA checkpoints (:data:`OPENVLA_CENTER_CROP`: pass True for OpenVLA
        fine-tunes trained with augmentation, as OpenVLA's own LIBERO evaluation does).
    apply_adapter / merge_adapter: for ``base/`` + ``lora_adapter/`` layouts: apply the adapter, fold it in.
    verify: when the directory has an ``oft_checksums.json`` (every checkpoint ``oft`` writes), check the
        sha256 of the files a policy is made of first (a corrupted weight file is an error, not a wrong
        policy); costs one read of the weights (~0.5 s per GB here).

    Statistics are never guessed: an OpenVLA-OFT fine-tune without its ``dataset_statistics.json`` is refused
    (its ``config.json`` ``norm_stats`` are the *base* model's datasets) unless ``unnorm_key`` names one of
    those on purpose. A corrupt or wrongly typed file raises :class:`~oft.files.CorruptFileError` naming it.
    """
    path = resolve_checkpoint(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    if verify:
        verify_checkpoint(path)
    dtype = dtype or torch.float32
    options = LoadOptions(unnorm_key, spec, center_crop, apply_adapter, merge_adapter)
    if (path / CONFIG_FILE).is_file():
        policy = _load_oft(path, device, dtype, unnorm_key)
    elif any(path.glob("action_head--*")):
        policy = _load_reference_oft(path, device, dtype, options)
    elif (path / "config.json").is_file():
        policy = _load_openvla(path, device, dtype, unnorm_key, spec)
    else:
        raise FileNotFoundError(
            f"{path} is not a checkpoint: expected {CONFIG_FILE} (oft), action_head--*.pt (OpenVLA-OFT), "
            f"config.json (OpenVLA) or an oft train run directory (checkpoints/step_XXXXXXX){_hint(path)}"
        )
    if center_crop is not None:
        policy.config.center_crop = bool(center_crop)
    policy.vla.set_attn_implementation(attn_implementation)
    policy.checkpoint_dir = path.absolute()  # results name it: valid from any working directory
    return policy.eval()


def _hint(path: Path) -> str:
    """What a directory that is not a checkpoint probably is, for the error that says so."""
    if (path / "checkpoints").is_dir():
        return "; this run has no complete checkpoint yet"
    if (path / "study.json").is_file():
        return f"; this is an oft study: give one variant's run, {path / 'variants' / '<name>' / 'train'}"
    if (path / "train" / "checkpoints").is_dir():
        return f"; did you mean {path / 'train'}?"
    return ""


def resolve_checkpoint(path: str | Path) -> Path:
    """The directory ``load_policy(path)`` reads: a Hub id's cached snapshot, an ``oft train`` run directory's
    newest complete checkpoint (logged), else ``path``. Commands resolve once and pass the result on, so the
    dtype, the statistics key and the weights come from one step even while the run saves new ones."""
    from oft.hub import resolve

    given = resolve(path, "model")
    found = _latest_training_checkpoint(given)
    if found != given:
        log.info("%s is a training run: loading its newest checkpoint %s", given, found.relative_to(given))
    return found


def _latest_training_checkpoint(path: Path) -> Path:
    """An ``oft train`` run directory (or its ``checkpoints/``) stands for its newest complete checkpoint:
    the highest step (by number: ``step_10000000`` is newer than ``step_9999999``) holding a policy. Unlike
    :meth:`CheckpointManager.checkpoints` (which needs the trainer state to resume), a policy is enough."""
    from oft.train.checkpoint import checkpoint_step

    for root in (path / "checkpoints", path):
        steps = [(checkpoint_step(p), p) for p in root.glob("step_*") if (p / CONFIG_FILE).is_file()]
        steps = [(s, p) for s, p in steps if s is not None]
        if steps and not (path / CONFIG_FILE).is_file():
            return max(steps)[1]
    return path


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
}  # fmt: skip


def checkpoint_dtype(path: str | Path) -> torch.dtype:
    """The dtype a checkpoint's weights are stored in: what ``load_policy`` should use unless told otherwise.

    oft checkpoints: the floating dtype holding most elements of the saved weights (a bf16 run saves bf16).
    OpenVLA / OpenVLA-OFT: the model config's ``torch_dtype`` (``dtype`` in newer transformers), in the top
    directory or ``base/``. float32 when nothing is recorded.
    """
    path = resolve_checkpoint(path)  # a Hub id: its cached snapshot's dtype
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        counts: dict[torch.dtype, int] = {}
        with reading(path / WEIGHTS_FILE, "safetensors file"), _open_safetensors(path / WEIGHTS_FILE) as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensor = f.get_slice(key)
                dtype = _SAFETENSORS_DTYPES.get(tensor.get_dtype())
                if dtype is not None:
                    counts[dtype] = counts.get(dtype, 0) + max(1, _numel(tensor.get_shape()))
        return max(counts, key=counts.get) if counts else torch.float32
    for model_dir in (path, path / "base"):
        if (model_dir / "config.json").is_file():
            cfg = read_json_object(model_dir / "config.json", "model config")
            name = cfg.get("torch_dtype") or cfg.get("dtype")
            dtype = getattr(torch, name, None) if isinstance(name, str) else None
            return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
    return torch.float32


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# --- our format -----------------------------------------------------------------------------------
def _load_oft(path: Path, device, dtype, unnorm_key: str | None = None) -> Policy:
    meta = read_json_object(path / CONFIG_FILE, "policy config")
    with config_values(path / CONFIG_FILE):
        config = PolicyConfig.from_dict(meta)
        norm_stats = NormStats.from_dict(meta["norm_stats"], f"{path / CONFIG_FILE} norm_stats")
        all_stats = _oft_dataset_stats(path, meta)
        instruction_keys = _oft_instruction_keys(path, meta, all_stats)
    saved = meta.get("unnorm_key")
    key = _choose_unnorm_key(path, all_stats, unnorm_key, by_instruction=bool(instruction_keys), saved=saved)
    tokenizer = TextTokenizer.load(path, meta.get("tokenizer"))

    with config_values(path / CONFIG_FILE):  # wrongly typed sizes fail while the modules are built
        policy = assemble_policy(config, tokenizer, norm_stats, device=device, dtype=dtype, empty=True)
    if all_stats:
        policy.set_dataset_stats(all_stats, key, instruction_keys)
        # a key the caller chose acts for every instruction (OpenVLA's unnorm_key); none: each its own
        policy.act_by_instruction = policy.act_by_instruction and unnorm_key is None
    load_safetensors_into(policy, [path / WEIGHTS_FILE], strict=True)
    return policy


def _oft_dataset_stats(path: Path, meta: dict) -> dict[str, NormStats]:
    """{key: NormStats} of an oft checkpoint's ``dataset_stats``: a mixture trained with per-dataset
    statistics has one per dataset; one key otherwise; none before they were recorded."""
    found = meta.get("dataset_stats") or {}
    where = f"{path / CONFIG_FILE} dataset_stats"
    if not isinstance(found, dict):
        raise CorruptFileError(
            path / CONFIG_FILE, f"dataset_stats is a {type(found).__name__}, expected an object"
        )
    return {k: NormStats.from_dict(v, f"{where}[{k!r}]") for k, v in found.items()}


def _oft_instruction_keys(path: Path, meta: dict, all_stats: dict[str, NormStats]) -> dict[str, str]:
    """{instruction: ``dataset_stats`` key} an oft checkpoint records (training instructions that belong to
    one entry); {} when it records none. CorruptFileError for a malformed map or a key without statistics."""
    found = meta.get("instruction_keys") or {}
    ok = isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items())
    if not ok:
        raise CorruptFileError(
            path / CONFIG_FILE, "instruction_keys is not an object of instruction -> statistics key strings"
        )
    missing = sorted({v for v in found.values() if v not in all_stats})
    if missing:
        raise CorruptFileError(
            path / CONFIG_FILE, f"instruction_keys names statistics {missing} that dataset_stats lacks"
        )
    return dict(found)


def _choose_unnorm_key(
    path: Path,
    all_stats: dict[str, NormStats],
    unnorm_key: str | None,
    by_instruction: bool = False,
    saved: str | None = None,
) -> str | None:
    """The key of ``all_stats`` to act with. With several, the caller must choose (OpenVLA's
    ``unnorm_key``): un-normalizing with another robot's ranges would give wrong actions silently; a policy
    that records which instruction each entry serves (``by_instruction``) acts by instruction instead and
    keeps its ``saved`` key as the default."""
    where = f"{path / CONFIG_FILE} dataset_stats"
    if not all_stats:
        if unnorm_key is not None:
            log.warning("%s has one set of statistics (no dataset keys); unnorm_key=%r is ignored", path,
                        unnorm_key)  # fmt: skip
        return None
    if unnorm_key is None:
        if len(all_stats) > 1 and not by_instruction:
            raise ValueError(
                f"{where} holds statistics for {sorted(all_stats)} (a mixture with per-dataset statistics); "
                "pass unnorm_key= naming the robot to act for"
            )
        unnorm_key = saved if saved in all_stats else next(iter(all_stats))
    if unnorm_key not in all_stats:
        raise KeyError(f"unnorm_key {unnorm_key!r} not in {where}; available: {sorted(all_stats)}")
    return unnorm_key


def saved_unnorm_key(path: str | Path) -> str | None:
    """The statistics key an oft checkpoint was saved with (its first dataset's for a mixture), or None."""
    path = resolve_checkpoint(path)
    if not (path / CONFIG_FILE).is_file():
        return None
    key = read_json_object(path / CONFIG_FILE, "policy config").get("unnorm_key")
    return key if isinstance(key, str) else None


# --- OpenVLA HF checkpoints -----------------------------------------------------------------------
def vla_config_from_openvla(
    cfg: dict, chunk_len: int, action_dim: int, proprio_dim: int, film: bool
) -> VLAConfig:
    """Translate an OpenVLA ``config.json`` (incl. a ``timm_override_kwargs`` list) into our VLAConfig."""
    if cfg.get("model_type") != "openvla":
        raise ValueError(f"config.json has model_type {cfg.get('model_type')!r}, expected 'openvla'")
    ids = cfg["timm_model_ids"]
    overrides = cfg.get("timm_override_kwargs") or [{}] * len(ids)
    sizes = cfg.get("image_sizes") or [224] * len(ids)
    if not cfg.get("use_fused_vision_backbone", len(ids) == 2):
        ids, overrides, sizes = ids[:1], overrides[:1], sizes[:1]
    vits = [timm_vit_config(i, s, o) for i, s, o in zip(ids, sizes, overrides, strict=True)]
    llm = {k: v for k, v in (cfg.get("text_config") or {}).items() if k not in _LLM_CONFIG_SKIP}
    llm.setdefault("vocab_size", 32064)
    return VLAConfig(vits, llm, chunk_len, action_dim, proprio_dim, use_film=film)


def _select_stats(all_stats: dict, unnorm_key: str | None, file: Path) -> tuple[str, NormStats]:
    """(key, statistics) chosen from ``{unnorm_key: {"action": ..., "proprio": ...}}`` read from ``file``."""
    where = f"{file} norm_stats" if file.name == "config.json" else str(file)
    if not isinstance(all_stats, dict):
        raise CorruptFileError(file, f"statistics are a {type(all_stats).__name__}, expected an object")
    if unnorm_key is None:
        if len(all_stats) != 1:
            raise ValueError(
                f"{where} holds statistics for {sorted(all_stats)}; pass unnorm_key= to choose one"
            )
        unnorm_key = next(iter(all_stats))
    if unnorm_key not in all_stats:
        raise KeyError(f"unnorm_key {unnorm_key!r} not in {where}; available: {sorted(all_stats)}")
    d = all_stats[unnorm_key]
    with config_values(file):
        return unnorm_key, NormStats.from_dict({k: d[k] for k in ("action", "proprio") if k in d}, where)


def infer_spec(key: str, stats: NormStats, proprio_dim: int) -> RobotSpec:
    """The platform preset the paper's code would pick (it keys its constants on the dataset name)."""
    name = key.lower()
    D = stats.action.dim
    if "aloha" in name or D == 14:
        base = PRESETS["aloha"]
    elif "bridge" in name:
        base = PRESETS["bridge"]
    else:
        base = PRESETS["libero"]
    mask = stats.action.mask
    mask = tuple(bool(m) for m in mask) if mask is not None else None
    return RobotSpec(
        name=f"{base.name}:{key}",
        action_dim=D,
        proprio_dim=proprio_dim,
        chunk_len=base.chunk_len,
        cameras=base.cameras,
        normalization=base.normalization,
        action_norm_mask=mask,
        control_hz=base.control_hz,
        conventions=paper_conventions(base.name, D),  # OpenVLA's RLDS loader's (gripper 1 = open, 0 = close)
    )


def _load_openvla(path: Path, device, dtype, unnorm_key, spec) -> Policy:
    cfg = read_json_object(path / "config.json", "model config")
    key, stats = _select_stats(cfg.get("norm_stats") or {}, unnorm_key, path / "config.json")
    # OpenVLA's RLDS loader gives every dataset its gripper convention (1 = open, 0 = close)
    preset = "libero" if "libero" in key.lower() else "bridge"
    spec = spec or RobotSpec(
        name=f"openvla:{key}", action_dim=stats.action.dim, proprio_dim=0, chunk_len=1,
        cameras=("image_primary",), normalization="bounds_q99",
        action_norm_mask=None if stats.action.mask is None else tuple(bool(m) for m in stats.action.mask),
        conventions=paper_conventions(preset, stats.action.dim),
    )  # fmt: skip
    tokenizer = TextTokenizer.load(path)
    with config_values(path / "config.json"):  # wrongly typed sizes fail while the modules are built
        vla_cfg = vla_config_from_openvla(cfg, spec.chunk_len, spec.action_dim, 0, False)
        config = PolicyConfig(vla_cfg, spec, "discrete", center_crop=OPENVLA_CENTER_CROP, source="openvla")
        policy = assemble_policy(config, tokenizer, stats, device=device, dtype=dtype, empty=True)
    load_safetensors_into(policy.vla, weight_files(path), strict=True)
    return policy


# --- OpenVLA-OFT fine-tunes -----------------------------------------------------------------------
def read_component(path: Path, stem: str) -> dict[str, torch.Tensor] | None:
    """``<stem>--*_checkpoint.pt`` (the paper's torch.save of a state dict), ``module.`` prefix stripped."""
    files = sorted(path.glob(f"{stem}--*checkpoint.pt")) or sorted(path.glob(f"{stem}--*.pt"))
    if not files:
        return None
    if len(files) > 1:
        raise ValueError(f"several {stem} checkpoints in {path}: {[f.name for f in files]}")
    sd = load_tensors_file(files[0])  # tensors only: a pickled object is refused, naming the file
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_reference_oft(path: Path, device, dtype, options: LoadOptions) -> Policy:
    model_dir = path if (path / "config.json").is_file() else path / "base"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no model config.json in {path} or {path / 'base'}")
    adapter = path / "lora_adapter"
    unmerged_adapter = model_dir != path and adapter.is_dir() and options.apply_adapter
    sidecar = read_export_sidecar(path)
    parts = {
        s: read_component(path, s) for s in ("action_head", "proprio_projector", "noisy_action_projector")
    }
    parts = {k: v for k, v in parts.items() if v is not None}
    film_sd = read_component(path, "vision_backbone")
    proprio_dim = (
        int(parts["proprio_projector"]["fc1.weight"].shape[1]) if "proprio_projector" in parts else 0
    )
    stats_file, all_stats = _read_dataset_statistics(path, model_dir, options.unnorm_key)
    unnorm_key = options.unnorm_key or (sidecar or {}).get("unnorm_key")
    key, stats = _select_stats(all_stats, unnorm_key, stats_file)
    _set_flat_dims(stats, (sidecar or {}).get("flat_dims"))
    recorded = PolicyConfig.from_dict(sidecar["policy"]) if sidecar else None
    spec = options.spec or (recorded.spec if recorded else infer_spec(key, stats, proprio_dim))
    head_name = head_for_reference(parts)
    head_kwargs = get_head_class(head_name).kwargs_from_reference(parts)
    if recorded is not None and recorded.head == head_name:
        head_kwargs.update(recorded.head_kwargs)  # e.g. diffusion steps, which the .pt files cannot hold
    cfg = read_json_object(model_dir / "config.json", "model config")
    with config_values(model_dir / "config.json"):
        film = film_sd is not None
        vla_cfg = vla_config_from_openvla(cfg, spec.chunk_len, spec.action_dim, proprio_dim, film)
    config = PolicyConfig(vla_cfg, spec, head_name, head_kwargs, PAPER_CENTER_CROP, source="openvla-oft")
    if recorded is not None:
        _copy_preprocessing(recorded, config)
    tokenizer = TextTokenizer.load(path if (path / "tokenizer.json").is_file() else model_dir)

    # L1 / diffusion never read token logits: assembled without an LM head (the files' one is skipped)
    with config_values(model_dir / "config.json"):  # wrongly typed sizes fail while the modules are built
        policy = assemble_policy(config, tokenizer, stats, device=device, dtype=dtype, empty=True)
    # the proprio projector (and, with FiLM, the whole vision backbone) comes from the component files
    allow_missing = tuple(k for k in policy.vla.state_dict() if k.startswith("proprio_projector."))
    if film_sd is not None:
        allow_missing += _film_keys(policy.vla)
    load_safetensors_into(policy.vla, weight_files(model_dir), strict=True, allow_missing=allow_missing)
    if unmerged_adapter:
        _apply_reference_adapter(policy, adapter, film=film_sd is not None, merge=options.merge_adapter)
    if film_sd is not None:
        _load_film_backbone(policy.vla, film_sd, _film_lora_scaling(adapter, film_sd, recorded))
    if "proprio_projector" in parts:
        policy.vla.proprio_projector.load_state_dict(parts["proprio_projector"])
    policy.head.load_reference(parts)
    return policy.to(device)


def read_export_sidecar(path: Path) -> dict | None:
    """``oft_export.json`` of an ``oft train --export`` directory; None for the paper's own checkpoints."""
    f = path / EXPORT_SIDECAR
    if not f.is_file():
        return None
    d = read_json_object(f, "oft export record")
    if d.get("format") != "oft-export" or "policy" not in d:
        raise ValueError(f"{f} is not an oft export record (format={d.get('format')!r}, keys {sorted(d)})")
    return d


# fields of PolicyConfig the reference layout determines itself; every other one (center crop, crop scale,
# frame sizes, and whatever preprocessing setting is added later) is taken from the export record
_LAYOUT_FIELDS = ("vla", "spec", "head", "head_kwargs", "lora", "source")


def _copy_preprocessing(recorded: PolicyConfig, config: PolicyConfig) -> None:
    for f in dataclasses.fields(PolicyConfig):
        if f.name not in _LAYOUT_FIELDS:
            setattr(config, f.name, getattr(recorded, f.name))


def _set_flat_dims(stats: NormStats, recorded: dict | None) -> None:
    """Equal-bounds dims of the paper's checkpoints: its deployment's ``normalize_proprio`` ("clip");
    an oft export keeps the rule it was trained with (see ``oft.data.normalize``)."""
    recorded = recorded or {}
    stats.action.flat_dims = recorded.get("action", stats.action.flat_dims)
    if stats.proprio is not None:
        stats.proprio.flat_dims = recorded.get("proprio", "clip")


def _apply_reference_adapter(policy: Policy, adapter: Path, film: bool, merge: bool) -> None:
    """Apply ``lora_adapter/`` as the paper's deployment does.

    With FiLM, the adapter's vision keys carry the FiLM wrapper's path (``vision_backbone.vision_backbone.
    featurizer.blocks.N.block.…``): the paper merges the adapter into the *unwrapped* base, where only the LLM
    and projector keys match, and then loads the whole vision backbone (its still-unmerged LoRA included) from
    ``vision_backbone--*.pt``. So the adapter's vision keys are skipped here; the .pt provides the vision.
    """
    skip = ("vision_backbone.",) if film else ()
    if policy.vla.language_model.lm_head is None:
        skip += ("language_model.lm_head.",)  # the "all-linear" adapter may hold one; this policy has none
    skipped = load_peft_adapter(policy.vla, adapter, skip_prefixes=skip)
    if skipped:
        log.info("%d adapter weights skipped (the LM head; with FiLM the vision, from vision_backbone--*.pt)",
                 len(skipped))  # fmt: skip
    if merge:
        merge_lora(policy.vla)
        policy.requires_grad_(True)  # peft froze the base weights; a merged model is a plain model
    else:
        policy.config.lora = _lora_meta(policy.vla, adapter)


DATASET_STATISTICS = "dataset_statistics.json"


def _read_dataset_statistics(path: Path, model_dir: Path, unnorm_key: str | None) -> tuple[Path, dict]:
    """(file, {unnorm_key: statistics}) of an OpenVLA-OFT fine-tune: its ``dataset_statistics.json``.

    Never guessed: the ``norm_stats`` of the model's ``config.json`` are OpenVLA's pre-training datasets
    (or whatever the base was fine-tuned on), not this fine-tune's, and un-normalizing with them gives actions
    that are wrong without any error (issue 13: off by up to 0.66). The paper's deployment only warns; we
    refuse unless ``unnorm_key`` names one of those statistics on purpose.
    """
    for d in (path, model_dir):
        f = d / DATASET_STATISTICS
        if f.is_file():
            data = read_json_object(f, "dataset statistics")
            if not all(isinstance(v, dict) for v in data.values()):
                raise CorruptFileError(f, "expected {unnorm_key: {'action': ..., 'proprio': ...}}")
            return f, data
    config = model_dir / "config.json"
    found = read_json_object(config, "model config").get("norm_stats") or {}
    if not isinstance(found, dict):
        raise CorruptFileError(config, f"norm_stats is a {type(found).__name__}, expected an object")
    if unnorm_key is not None and unnorm_key in found:
        log.warning("%s: no %s; un-normalizing with %s norm_stats[%r] as unnorm_key asked",
                    path, DATASET_STATISTICS, config, unnorm_key)  # fmt: skip
        return config, found
    instead = f"{config} carries norm_stats for {sorted(found)}" if found else f"{config} has no norm_stats"
    raise FileNotFoundError(
        f"{path / DATASET_STATISTICS} is missing: the statistics this fine-tune's actions are un-normalized "
        f"with; {instead} (the base model's datasets, not necessarily this fine-tune's). Copy the "
        f"fine-tune's {DATASET_STATISTICS} into {path}"
        + (", or pass unnorm_key= naming one of those to use it on purpose" if found else "")
    )


def _film_keys(vla: VLA) -> tuple[str, ...]:
    return tuple(k for k in vla.state_dict() if k.startswith("vision_backbone."))


def _film_lora_scaling(
    adapter: Path, film_sd: dict[str, torch.Tensor], recorded: PolicyConfig | None
) -> float:
    """LoRA scaling (alpha / r) for the unmerged LoRA entries of a FiLM ``vision_backbone--*.pt``.

    From ``lora_adapter/adapter_config.json`` when present, else from an export record, else as the paper's
    deployment (``_apply_film_to_vla``) rebuilds it: ``LoraConfig(r, lora_alpha=min(r, 16))`` with r the rank
    the file's ``lora_A`` weights have (its ``--lora_rank`` must equal the training run's for them to load).
    """
    if (adapter / "adapter_config.json").is_file():
        c = read_json_object(adapter / "adapter_config.json", "adapter config")
        with config_values(adapter / "adapter_config.json"):
            return float(c["lora_alpha"]) / float(c["r"])
    if recorded is not None and recorded.lora:
        return float(recorded.lora["alpha"]) / float(recorded.lora["rank"])
    ranks = {int(v.shape[0]) for k, v in film_sd.items() if re.search(r"\.lora_A(\.default)?\.weight$", k)}
    if len(ranks) > 1:
        raise ValueError(f"vision_backbone--*.pt has LoRA weights of several ranks {sorted(ranks)}")
    r = ranks.pop() if ranks else 32
    return min(r, 16) / r


def _load_film_backbone(vla: VLA, sd: dict[str, torch.Tensor], scaling: float) -> None:
    """The paper saves the whole FiLM-wrapped vision backbone: ``blocks.i.block.<timm name>`` for the
    ViT block, ``blocks.i.scale``/``.shift`` for FiLM, possibly with unmerged LoRA entries."""
    sd = fold_lora_state_dict(sd, scaling)
    sd = {re.sub(r"(blocks\.\d+)\.block\.", r"\1.", k): v for k, v in sd.items()}
    sd = {k if k.startswith("vision_backbone.") else f"vision_backbone.{k}": v for k, v in sd.items()}
    load_tensors(vla, sd, strict_prefix="vision_backbone.")


def _lora_meta(vla: nn.Module, adapter: Path) -> dict:
    c = json.loads((adapter / "adapter_config.json").read_text())
    targets = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in vla.named_parameters() if ".lora_A." in n})
    return {"rank": c["r"], "alpha": c["lora_alpha"], "targets": targets}


# --- memory-aware building and filling ------------------------------------------------------------
def weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        with config_values(index):
            shards = sorted(set(read_json_object(index, "safetensors index")["weight_map"].values()))
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists shards that are missing: {missing}")
        return [model_dir / s for s in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")


_LM_HEAD = re.compile(r"(^|\.)lm_head\.")


def load_safetensors_into(
    module: nn.Module, files: list[Path], strict: bool = True, allow_missing: tuple[str, ...] = ()
) -> None:
    """Copy tensors file by file, one tensor at a time, into ``module``'s already-allocated parameters.

    An LM head in the files is skipped when the model has none (L1 / diffusion policies drop it: see
    :mod:`oft.model.assemble`); it is never read, so a 7B checkpoint does not cost its 131M parameters.
    """
    params = _named_tensors(module)
    seen: set[str] = set()
    unexpected = []
    no_lm_head = not any(_LM_HEAD.search(k) for k in params)
    for f in files:
        with _open_safetensors(f) as reader:
            for key in reader.keys():  # noqa: SIM118 (safe_open is not a dict)
                name = _peft_name(key, params)
                if name is None and no_lm_head and _LM_HEAD.search(key):
                    continue
                if name is None:
                    unexpected.append(key)
                    continue
                with reading(f, "safetensors file"):
                    tensor = reader.get_tensor(key)
                _copy(params[name], tensor, f"{f}: {key}")
                seen.add(name)
    missing = [k for k in params if k not in seen and k not in allow_missing and ".lora_" not in k]
    if strict and (missing or unexpected):
        raise ValueError(
            f"checkpoint does not match the model: missing {missing[:8]} ({len(missing)}), "
            f"unexpected {unexpected[:8]} ({len(unexpected)})"
        )


def _open_safetensors(path: Path):
    """``safe_open`` naming the file when its header is truncated or garbage (safetensors checks the
    header covers the whole file, so a truncated file fails here)."""
    with reading(path, "safetensors file"):
        return safe_open(str(path), framework="pt")


def load_tensors(module: nn.Module, sd: dict[str, torch.Tensor], strict_prefix: str = "") -> None:
    params = _named_tensors(module)
    for key, value in sd.items():
        name = _peft_name(key, params)
        if name is None:
            raise ValueError(f"tensor {key!r} has no matching parameter in the model")
        _copy(params[name], value, key)
    missing = [k for k in params if k.startswith(strict_prefix) and ".lora_" not in k and _bare(k) not in sd]
    if missing:
        raise ValueError(f"missing {missing[:8]} ({len(missing)}) in the component checkpoint")


def _bare(name: str) -> str:
    return name.replace(".base_layer.", ".")


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict(keep_vars=True))


def _peft_name(key: str, params: dict) -> str | None:
    """Match a plain checkpoint key to the model, also when the layer now wraps it as ``base_layer``."""
    if key in params:
        return key
    head, _, leaf = key.rpartition(".")
    wrapped = f"{head}.base_layer.{leaf}"
    return wrapped if wrapped in params else None


def _copy(dst: torch.Tensor, src: torch.Tensor, key: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"{key}: checkpoint shape {tuple(src.shape)} != model shape {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(src)
