"""From a :class:`TrainConfig` to a policy ready to train: build, resume, or continue a checkpoint.

Which parameters train is decided here, once: everything for a model built from scratch (or ``lora_rank=0``);
with LoRA, the adapters plus the modules the paper trains fully — action head, proprio projector, FiLM maps.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import torch

from oft.spec import RobotSpec
from oft.train.config import MIXTURE_STATS, TrainConfig
from oft.train.feedback import MAX_LOGGED_TASKS

log = logging.getLogger(__name__)

# always trained in full, also under LoRA (paper: the action head, proprio projector and FiLM are new modules)
_FULLY_TRAINED = ("head.", "vla.proprio_projector.")
_FILM_LEAVES = (".scale.weight", ".scale.bias", ".shift.weight", ".shift.bias")
_FILM_KEY = re.compile(r"blocks\.\d+\.(scale|shift)\.(weight|bias)$")


def is_architecture(name: str) -> bool:
    from oft.model.build import ARCHITECTURES

    return name in ARCHITECTURES


def build_from_config(cfg: TrainConfig, spec: RobotSpec, dataset, resume_from: Path | None):
    """The policy to train: reloaded from ``resume_from``, built from scratch, or loaded from ``cfg.base``."""
    if resume_from is not None:
        policy = _resume(cfg, resume_from)
    elif is_architecture(cfg.base):
        policy = _build_from_scratch(cfg, spec, dataset)
    else:
        from oft.model.loading import resolve_checkpoint

        policy = _continue_from(cfg, spec, resolve_checkpoint(cfg.base), dataset)  # once: one step
    set_trainable(policy, cfg)
    return policy.train()


def _resume(cfg: TrainConfig, resume_from: Path):
    """The checkpoint's policy in the dtype it was trained in (a bf16 run stays bf16), with ``cfg``'s LoRA
    dropout (the saved policy config does not record it; LoRA layers load without dropout)."""
    from oft import load_policy
    from oft.model.loading import checkpoint_dtype, saved_unnorm_key

    dtype = checkpoint_dtype(resume_from)
    # the key only picks the inference statistics: training normalizes each sample by its own dataset
    policy = load_policy(resume_from, dtype=dtype, unnorm_key=saved_unnorm_key(resume_from))
    policy.checkpoint_dir = None  # it trains on: what it saves goes elsewhere
    log.info("resuming %s in %s", resume_from, str(dtype).removeprefix("torch."))
    set_lora_dropout(policy, cfg.lora_dropout)
    return policy


def set_lora_dropout(policy: torch.nn.Module, p: float) -> None:
    """Dropout ``p`` on the input of every LoRA adapter (peft's ``lora_dropout`` modules), as ``apply_lora``
    would have built it."""
    for module in policy.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name in list(dropouts.keys()):
                dropouts[name] = torch.nn.Dropout(p) if p > 0 else torch.nn.Identity()


def _build_from_scratch(cfg: TrainConfig, spec: RobotSpec, dataset):
    from oft.model.build import build_policy
    from oft.model.lora import LoraSpec

    key, all_stats = training_stats(dataset, cfg.mixture_stats)
    lora = LoraSpec(cfg.lora_rank, min(cfg.lora_rank, 16), cfg.lora_dropout) if cfg.lora_rank else None
    head_kwargs = {"decode": cfg.decode} if cfg.head == "discrete" else None
    policy = build_policy(
        spec,
        all_stats[key],
        instructions=dataset.instructions,
        arch=cfg.base,
        head=cfg.head,
        use_proprio=cfg.proprio,
        use_film=cfg.film,
        lora=lora,
        center_crop=cfg.augment,
        head_kwargs=head_kwargs,
        action_slots=cfg.action_slots,
        film_input=cfg.film_input,
    )
    policy.set_dataset_stats(all_stats, key, instruction_keys(dataset, cfg.mixture_stats))
    return policy


def checkpoint_model_fields(checkpoint: str | Path) -> dict:
    """{field: value} of :data:`oft.train.config.MODEL_FIELDS` for the model in an ``oft`` checkpoint, read
    from its ``oft_config.json`` (``robot`` only when the checkpoint's robot is a registered spec preset).

    ``oft train --base <checkpoint>`` starts from these, so continuing a model needs no ``--set`` restating
    it. Raises FileNotFoundError if ``checkpoint`` has no ``oft_config.json``.
    """
    import json

    from oft.spec import PRESETS

    meta = json.loads((Path(checkpoint) / "oft_config.json").read_text())
    vla, spec = meta["vla"], meta["spec"]
    fields = {
        "head": meta["head"],
        "decode": (meta.get("head_kwargs") or {}).get("decode", "parallel"),
        "chunk_len": int(spec["chunk_len"]),
        "cameras": tuple(spec["cameras"]),
        "proprio": int(vla.get("proprio_dim", 0)) > 0,
        "film": bool(vla.get("use_film", False)),
        "action_slots": vla.get("action_slots", "per_dimension"),
        "film_input": vla.get("film_input", "mean"),
        "lora_rank": int((meta.get("lora") or {}).get("rank", 0)),
    }
    if spec["name"] in PRESETS:
        fields["robot"] = spec["name"]
    return fields


def checkpoint_normalization(checkpoint: str | Path) -> dict:
    """{"mixture_stats": "per_task"} for an ``oft`` checkpoint trained with per-task statistics, else {}:
    ``oft train --base <checkpoint>`` continues it normalized as it was trained."""
    import json

    meta = json.loads((Path(checkpoint) / "oft_config.json").read_text())
    from oft.model.policy import is_per_task

    keys, stats = meta.get("instruction_keys") or {}, meta.get("dataset_stats") or {}
    return {"mixture_stats": "per_task"} if is_per_task(keys, len(stats)) else {}


def _check_same_model(cfg: TrainConfig, spec: RobotSpec, base: Path) -> None:
    """ValueError naming every model field where ``cfg`` asks for another model than the checkpoint's."""
    have = checkpoint_model_fields(base)
    want = {name: getattr(cfg, name) for name in have}
    want["chunk_len"], want["cameras"] = spec.chunk_len, tuple(spec.cameras)  # cfg's, resolved (None: spec's)
    differ = {n: (have[n], want[n]) for n in have if have[n] != want[n]}
    if differ:
        diffs = ", ".join(f"{n}: checkpoint {h!r}, config {w!r}" for n, (h, w) in differ.items())
        fixes = " ".join(f"--set {n}={_cli_value(h)}" for n, (h, _) in differ.items())
        raise ValueError(
            f"TrainConfig.base={str(base)!r} is another model than the config asks for ({diffs}). "
            f"Continuing a checkpoint keeps its model: set these as it has them ({fixes}; `oft train --base "
            "<checkpoint>` does unless told otherwise), or train a different model from an architecture "
            "(--base small)"
        )


def _cli_value(value) -> str:
    return (
        ",".join(value)
        if isinstance(value, tuple)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def _continue_from(cfg: TrainConfig, spec: RobotSpec, base: Path, dataset):
    """An ``oft`` checkpoint keeps training as it is; an OpenVLA directory gets the OFT modules added."""
    from oft import load_policy

    if (base / "oft_config.json").is_file():
        from oft.model.loading import checkpoint_dtype, saved_unnorm_key

        _check_same_model(cfg, spec, base)  # before loading any weights

        # keeps training in the dtype it has, and its statistics (new datasets of a mixture add theirs)
        policy = load_policy(base, dtype=checkpoint_dtype(base), unnorm_key=saved_unnorm_key(base))
        policy.checkpoint_dir = None  # it trains on: what it saves goes elsewhere
        _check_same_normalization(cfg, base, policy)
        if cfg.base_stats == "dataset":
            key, all_stats = training_stats(dataset, cfg.mixture_stats)
            log.info("continuing %s with the training data's statistics %s (base_stats=dataset)", base,
                     sorted(all_stats))  # fmt: skip
            policy.set_dataset_stats(all_stats, key, instruction_keys(dataset, cfg.mixture_stats))
        else:
            _add_missing_stats(policy, cfg, dataset)
            warn_clipped(policy, dataset, cfg)
        set_lora_dropout(policy, cfg.lora_dropout)
        data_conv, policy_conv = getattr(dataset, "conventions", None), policy.spec.conventions
        if None not in (data_conv, policy_conv) and data_conv != policy_conv:
            raise ValueError(
                f"TrainConfig.base={str(base)!r} acts in conventions {policy_conv.to_dict()}, the dataset's "
                f"actions are in {data_conv.to_dict()}; continuing would mix two meanings of the same numbers"
            )
        return policy
    if (base / "config.json").is_file():
        return _from_openvla(cfg, spec, base, dataset)
    raise ValueError(
        f"TrainConfig.base={str(base)!r} is neither an oft checkpoint (oft_config.json) nor an OpenVLA "
        "directory (config.json + safetensors)"
    )


def _check_same_normalization(cfg: TrainConfig, base: Path, policy) -> None:
    """ValueError when a per-task checkpoint would be continued on its own statistics
    (``base_stats="checkpoint"``) but normalized otherwise: training would normalize every sample with the
    first task's statistics while the checkpoint acts with each task's."""
    if cfg.base_stats == "checkpoint" and policy.per_task and cfg.mixture_stats != "per_task":
        raise ValueError(
            f"TrainConfig.base={str(base)!r} normalizes each task with its own statistics "
            f"(mixture_stats='per_task'), the config asks for mixture_stats={cfg.mixture_stats!r}: continue "
            "it with --set mixture_stats=per_task, or --set base_stats=dataset to normalize the new data the "
            "config's way"
        )


def _from_openvla(cfg: TrainConfig, spec: RobotSpec, base: Path, dataset):
    """OpenVLA weights + the new OFT modules: action head, proprio projector, FiLM (zero = identity), LoRA.

    The trunk is allocated once in the training dtype (bf16 on CUDA, as the paper loads OpenVLA-7B) and filled
    tensor by tensor from the safetensors shards; the new modules get their normal initialization.
    """
    import json

    from oft.model.assemble import add_lora, assemble_policy, init_module
    from oft.model.build import film_instructions
    from oft.model.loading import load_safetensors_into, vla_config_from_openvla, weight_files
    from oft.model.policy import PolicyConfig
    from oft.model.tokenizer import TextTokenizer

    hf = json.loads((base / "config.json").read_text())
    proprio_dim = spec.proprio_dim if cfg.proprio else 0
    vla_cfg = vla_config_from_openvla(hf, spec.chunk_len, spec.action_dim, proprio_dim, cfg.film)
    vla_cfg = dataclasses.replace(
        vla_cfg, action_slots=cfg.action_slots, film_input=cfg.film_input,
        film_instructions=film_instructions(cfg.film_input, dataset.instructions),
    )  # fmt: skip
    tokenizer = TextTokenizer.load(base)
    dtype = (
        torch.bfloat16 if cfg.bf16 and cfg.device != "cpu" and torch.cuda.is_available() else torch.float32
    )
    head_kwargs = {"decode": cfg.decode} if cfg.head == "discrete" else {}
    config = PolicyConfig(vla_cfg, spec, cfg.head, head_kwargs, center_crop=cfg.augment, source="openvla")
    key, all_stats = training_stats(dataset, cfg.mixture_stats)
    policy = assemble_policy(config, tokenizer, all_stats[key], dtype=dtype, empty=True)
    policy.set_dataset_stats(all_stats, key, instruction_keys(dataset, cfg.mixture_stats))
    vla = policy.vla
    new = [n for n in vla.state_dict() if n.startswith("proprio_projector.") or _FILM_KEY.search(n)]
    load_safetensors_into(vla, weight_files(base), strict=True, allow_missing=tuple(new))
    _init_new_modules(vla)
    init_module(policy.head)
    if cfg.lora_rank:
        lora = {"rank": cfg.lora_rank, "alpha": min(cfg.lora_rank, 16), "dropout": cfg.lora_dropout}
        add_lora(policy, lora)
    log.info("fine-tuning OpenVLA %s with a new %s head (%s decoding)", base, cfg.head, cfg.decode)
    return policy


def _init_new_modules(vla) -> None:
    """``materialize`` leaves un-loaded tensors uninitialized: FiLM maps to zero, the proprio projector to
    torch's default Linear init."""
    for module in vla.modules():
        if hasattr(module, "reset_film"):
            module.reset_film()
    projector = getattr(vla, "proprio_projector", None)
    if projector is not None:
        for layer in projector.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()


def training_stats(dataset, mode: str = "per_dataset") -> tuple[str, dict]:
    """(default key, {key: NormStats}) a run normalizes with: one entry per dataset of a mixture, keyed by
    its name (``mode="per_dataset"``, OpenVLA's ``norm_stats`` dict), one entry over the union of the
    datasets (``"merged"``, key: their names joined by "+"), or one entry per instruction over its episodes
    in any dataset (``"per_task"``, key: the instruction; a single dataset too). The default key is the first
    dataset's (the first instruction's). ValueError for another mode."""
    if mode not in MIXTURE_STATS:
        raise ValueError(f"mixture statistics mode {mode!r} is invalid: expected one of {MIXTURE_STATS}")
    if mode == "per_task":
        stats = _per_task_stats(dataset)
        log.info("per-task statistics for %d instructions", len(stats))
        return next(iter(stats)), stats
    parts = getattr(dataset, "datasets", None)
    if parts is None or mode == "merged":
        key = "+".join(d.key for d in parts) if parts is not None else dataset.key
        return key, {key: dataset_stats(dataset)}
    stats = {key: dataset_stats(d) for key, d in zip(dataset.keys, parts, strict=True)}
    log.info("per-dataset statistics for %s", list(stats))
    return next(iter(stats)), stats


MAX_TASK_STATS = 1000
"""``mixture_stats="per_task"`` refuses data with more distinct instructions than this."""


def instruction_keys(dataset, mode: str = "per_dataset") -> dict[str, str]:
    """{instruction: key of :func:`training_stats`} for the instructions whose samples one entry normalizes:
    each instruction itself (``"per_task"``), the one dataset of a mixture holding it (``"per_dataset"``;
    an instruction in several datasets is left out: its statistics depend on the robot, which the
    instruction does not name); {} for one set of statistics. Inference picks statistics by it."""
    if mode == "per_task":
        return {text: text for text in dict.fromkeys(dataset.instructions)}
    parts = getattr(dataset, "datasets", None)
    if parts is None or mode != "per_dataset":
        return {}
    owners: dict[str, set[str]] = {}
    for key, d in zip(dataset.keys, parts, strict=True):
        for text in d.instructions:
            owners.setdefault(text, set()).add(key)
    return {text: next(iter(keys)) for text, keys in owners.items() if len(keys) == 1}


class _Episodes:
    """The episodes ``indices`` of ``dataset`` as a dataset of their own, for statistics (numeric arrays)."""

    def __init__(self, dataset, indices: list[int]) -> None:
        self.dataset, self.indices, self.path = dataset, list(indices), getattr(dataset, "path", None)

    @property
    def num_episodes(self) -> int:
        return len(self.indices)

    def episode_arrays(self, i: int):
        return self.dataset.episode_arrays(self.indices[i])


def _per_task_stats(dataset, known=()) -> dict:
    """{instruction: NormStats over its episodes} for each instruction of ``dataset`` not in ``known``
    (instructions read once). ValueError for more than :data:`MAX_TASK_STATS` instructions."""
    from oft.data.stats import compute_stats

    groups: dict[str, list[int]] = {}
    for e, text in enumerate(dataset.instructions):  # read once: a reader may build the list per call
        groups.setdefault(text, []).append(e)
    if len(groups) > MAX_TASK_STATS:
        raise ValueError(
            f"mixture_stats='per_task' on data with {len(groups)} distinct instructions (at most "
            f"{MAX_TASK_STATS}): data with an instruction per episode (as DROID) has no tasks to "
            "normalize apart; use mixture_stats=per_dataset or merged"
        )
    return {t: compute_stats(_Episodes(dataset, ep)) for t, ep in groups.items() if t not in known}


def _add_missing_stats(policy, cfg: TrainConfig, dataset) -> None:
    """A checkpoint continued on a per-dataset mixture (or per task): datasets (tasks) it has no statistics
    for bring their own."""
    parts = getattr(dataset, "datasets", None)
    if cfg.mixture_stats == "merged" or (parts is None and cfg.mixture_stats == "per_dataset"):
        return
    known = dict(policy.dataset_stats) or {policy.unnorm_key or "base": policy.norm_stats}
    if cfg.mixture_stats == "per_task":
        new = _per_task_stats(dataset, known)
    else:
        new = {k: dataset_stats(d) for k, d in zip(dataset.keys, parts, strict=True) if k not in known}
    if new:
        log.info("continuing with the checkpoint's statistics %s; adding %s", sorted(known), sorted(new))
        mapping = {**policy.instruction_keys, **instruction_keys(dataset, cfg.mixture_stats)}
        policy.set_dataset_stats({**known, **new}, policy.unnorm_key or next(iter(known)), mapping)


def stats_overrun(have, data, kind: str) -> dict[int, tuple[float, float, float, float]]:
    """Dims where the bounds of ``data`` (a :class:`~oft.data.normalize.Stats` of the training values) reach
    past those of ``have`` (the statistics a model normalizes with) by more than 0.1% of their range:
    {dim: (have_lo, have_hi, data_lo, data_hi)}. Masked-off dims pass through unnormalized and are skipped."""
    lo, hi = (np.asarray(v, np.float64) for v in have.bounds(kind))
    dlo, dhi = (np.asarray(v, np.float64) for v in data.bounds(kind))
    tol = 1e-3 * np.maximum(hi - lo, 1e-8)
    mask = np.ones(len(lo), bool) if have.mask is None else np.asarray(have.mask, bool)
    over = mask & ((dlo < lo - tol) | (dhi > hi + tol))
    return {int(i): (float(lo[i]), float(hi[i]), float(dlo[i]), float(dhi[i])) for i in np.flatnonzero(over)}


def warn_clipped(policy, dataset, cfg: TrainConfig) -> None:
    """Warn when a continued checkpoint's statistics clip the training data (``base_stats="checkpoint"``):
    a policy fits the clipped values, so it never learns to command past the old bounds."""
    per_dataset = (hasattr(dataset, "datasets") and cfg.mixture_stats == "per_dataset") or (
        cfg.mixture_stats == "per_task"
    )
    kind = policy.spec.normalization
    for key, stats in training_stats(dataset, cfg.mixture_stats)[1].items():
        # a per-dataset mixture (per-task data) normalizes each part (task) by its own entry, else the one set
        have = policy.dataset_stats.get(key, policy.norm_stats) if per_dataset else policy.norm_stats
        for what, h, d in (("action", have.action, stats.action), ("proprio", have.proprio, stats.proprio)):
            if h is None or d is None:
                continue
            over = stats_overrun(h, d, kind)
            if over:
                shown = "; ".join(f"dim {i}: checkpoint [{a:.4g}, {b:.4g}], data [{c:.4g}, {e:.4g}]"
                                  for i, (a, b, c, e) in over.items())  # fmt: skip
                log.warning(
                    "the checkpoint's %s statistics (%s) are narrower than the training data's in %d dims "
                    "(%s): those values are clipped to the old bounds, so the policy cannot learn to go past "
                    "them; `--set base_stats=dataset` normalizes with the data's own",
                    what, kind, len(over), shown,
                )  # fmt: skip


SQUEEZE_SHARE = 0.5
"""A task whose actions span less than this share of its normalizer's range in some dimension is warned
about (:func:`warn_squeezed_tasks`)."""


def squeezed_dims(actions: np.ndarray, stats, kind: str, below: float = SQUEEZE_SHARE) -> dict[int, float]:
    """{dim: share} where the (N, D) raw ``actions`` of one task span (their own 1st..99th percentile, or
    min..max for ``kind="bounds"``) less than ``below`` of the range ``stats`` (a
    :class:`~oft.data.normalize.Stats`) normalizes that dim over. Masked-off dims, dims the task holds
    constant and dims the statistics hold constant are skipped: none of them is scaled."""
    lo, hi = (np.asarray(v, np.float64) for v in stats.bounds(kind))
    if kind == "bounds":
        tlo, thi = actions.min(0), actions.max(0)
    else:
        tlo, thi = np.quantile(actions, [0.01, 0.99], axis=0)
    span, own = hi - lo, thi - tlo
    mask = np.ones(len(lo), bool) if stats.mask is None else np.asarray(stats.mask, bool)
    keep = mask & (span > 1e-8) & (own > 1e-8 * np.maximum(span, 1.0))
    share = np.where(keep, own / np.maximum(span, 1e-8), 1.0)
    return {int(i): float(share[i]) for i in np.flatnonzero(keep & (share < below))}


def warn_squeezed_tasks(
    loader, policy, max_frames: int = 100_000, max_tasks: int = MAX_LOGGED_TASKS
) -> list[str]:
    """Warn for each task (instruction) whose actions fill less than :data:`SQUEEZE_SHARE` of the range its
    statistics normalize them over, in some dimension, and return the warnings. One set of statistics over
    several tasks (one multi-task dataset, or ``mixture_stats="merged"``) scales each task by the union's
    range: a task whose actions are small (MetaWorld reach's x and z, within about -0.4..0.4 of the union's
    -1..1) then has its errors counted that many times less by the loss, and its precision suffers beside
    the others (docs/results/study-mt10.md: reach beside six other tasks reached 31 of 100 goals with merged
    statistics, 56 with per-dataset ones, 74 alone). ``loader`` is a training loader (its ``actions`` (F, D),
    ``frame_episode`` (F,), per-episode ``instructions`` and ``episode_norm_key``); at most ``max_frames``
    frames of a task are read (a fixed subsample), and data with more than ``max_tasks`` distinct
    instructions (one per episode, as in DROID) is not checked."""
    keys = getattr(loader, "episode_norm_key", None)
    episode_group = [(text, None if keys is None else keys[e]) for e, text in enumerate(loader.instructions)]
    groups = sorted(set(episode_group), key=str)
    kind, warnings = policy.spec.normalization, []
    if kind not in ("bounds_q99", "bounds") or len(groups) > max_tasks:
        return warnings
    actions = loader.actions.numpy() if hasattr(loader.actions, "numpy") else np.asarray(loader.actions)
    index = {g: i for i, g in enumerate(groups)}
    frame_group = np.asarray([index[g] for g in episode_group])[np.asarray(loader.frame_episode)]
    order = np.argsort(frame_group, kind="stable")  # the frames of each group, contiguous, in one sort
    edges = np.searchsorted(frame_group[order], np.arange(len(groups) + 1))
    rng = np.random.default_rng(0)
    for (text, key), i in index.items():
        rows = order[edges[i] : edges[i + 1]]
        if len(rows) > max_frames:
            rows = np.sort(rng.choice(rows, max_frames, replace=False))
        stats = policy.dataset_stats.get(key, policy.norm_stats) if key is not None else policy.norm_stats
        squeezed = squeezed_dims(actions[rows], stats.action, kind)
        if not squeezed:
            continue
        dims = ", ".join(f"dim {d}: {100 * v:.0f}%" for d, v in squeezed.items())
        where = "" if key is None else f" (dataset {key!r})"
        factor = 1 / min(squeezed.values())
        message = (
            f"task {text!r}{where}: its actions span only part of the range its statistics normalize over "
            f"({dims}; {kind}), so the loss counts its errors up to {factor:.1f}x smaller than a task that "
            "fills the range; mixture_stats=per_task normalizes each task with its own statistics"
        )
        log.warning("%s", message)
        warnings.append(message)
    return warnings


def dataset_stats(dataset):
    """Statistics saved with the dataset, else computed over it (streaming, no images decoded)."""
    stats = getattr(dataset, "stats", None)
    if stats is not None:
        return stats
    from oft.data.stats import compute_stats

    log.info("computing normalization statistics over %d episodes", dataset.num_episodes)
    return compute_stats(dataset)


def set_trainable(policy: torch.nn.Module, cfg: TrainConfig) -> None:
    """Freeze the backbone under LoRA (adapters + new modules train); train everything otherwise, except the
    token embedding table with ``cfg.freeze_token_embeddings``."""
    has_lora = any(".lora_" in n for n, _ in policy.named_parameters())
    for name, p in policy.named_parameters():
        if not has_lora:
            p.requires_grad_(True)
        else:
            p.requires_grad_(
                ".lora_" in name or name.startswith(_FULLY_TRAINED) or name.endswith(_FILM_LEAVES)
            )
    if cfg.freeze_token_embeddings:
        policy.vla.language_model.model.embed_tokens.weight.requires_grad_(False)
    n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in policy.parameters())
    log.info("trainable parameters: %.2fM of %.2fM", n_train / 1e6, n_all / 1e6)


__all__ = [
    "build_from_config",
    "checkpoint_model_fields",
    "dataset_stats",
    "is_architecture",
    "set_lora_dropout",
    "set_trainable",
    "training_stats",
]
