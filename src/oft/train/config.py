"""The training configuration: one frozen dataclass, validated before any work starts.

Every knob of the OFT recipe is a field here, so a run is fully described by its ``train_config.json`` and a
preset is just a set of field values (``oft.train.presets``). Command-line overrides are ``field=value``
strings parsed by the field's type, so the CLI never re-declares the fields. A bad value fails in
:meth:`TrainConfig.validate` — before a dataset is opened or a model is built — with the field's name, the
value and what was expected: a typo should cost a second, not the ten minutes a 7B model takes to load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from oft.spec import PRESETS as SPEC_PRESETS
from oft.spec import unknown_name_message

DEVICES = ("auto", "cpu", "cuda")
DATA_LOADERS = ("auto", "memory", "stream")
MIXTURE_STATS = ("per_dataset", "merged", "per_task")
BASE_STATS = ("checkpoint", "dataset")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides its output directory.

    Model
      base: a named small architecture built from scratch (``oft.model.build.ARCHITECTURES``: "tiny",
        "small", "small-128", "small-128-conv", "small-keypoints", "small-wide", "base"), an OpenVLA /
        OpenVLA-OFT HF directory, or an ``oft`` checkpoint directory to continue fine-tuning.
      robot: robot spec preset (``oft.spec.PRESETS``): action/proprio sizes, cameras, normalization.
      head / decode: action head (``l1``, ``diffusion``, ``discrete``) and how the action slots are decoded:
        ``parallel`` (OFT: bidirectional attention over empty slots, one forward pass) or ``autoregressive``
        (OpenVLA's token-by-token baseline; only meaningful for the ``discrete`` head).
      chunk_len / cameras: None means the robot spec's own. ``cameras`` may name any camera the dataset
        records, in the order the policy takes them (MetaWorld's ``topview`` besides the spec's corner +
        gripperPOV); a camera the dataset lacks stops the run when the dataset is opened.
      proprio / film: feed proprioception (through the proprio projector); FiLM language conditioning of
        the vision features (the paper's OFT+, used for ALOHA).
      augment: the paper's image augmentation (random crop of 90% area + color jitter); the policy then
        evaluates on the matching 90% center crop (the paper's ``--center_crop True``).
      crop_jitter: with ``augment``, the share of the random crop's free range its position is drawn from,
        about the centre: 1.0 the paper's (at 64 px the 90% crop moves the image up to 3.3 pixels), 0.0
        always the centred box evaluation uses (colour jitter only), the framing kept where a translation
        would blur positions measured in pixels (a goal's, a hole's).
      pad_chunks: also sample chunks that run past the episode end (repeating the last action, masked out of
        the loss), so the states just before success are trained on too.
      action_slots: "per_dimension" (the paper: one empty slot per action dimension of every chunk step, K*D)
        or "per_step" (one slot per chunk step, read into D actions by the L1 head: K slots, 25 instead of 350
        positions for ALOHA).
      film_input: what FiLM reads (``oft.model.vla.FILM_INPUTS``): "mean", the paper's average of the
        prompt's token embeddings; "mean_rms", that average scaled to unit RMS (for models built from
        scratch, whose embeddings start at std 0.02); "mean_centered", the average minus the average over
        the training data's instructions, then at unit RMS (FiLM reads only what tells them apart); read
        only with ``film``.
      lora_rank: LoRA rank on the backbone's linear layers; 0 trains every weight (full fine-tuning, the
        only sensible choice for a model built from scratch).
      freeze_token_embeddings: keep the token embedding table as built or loaded. Under LoRA it is frozen
        anyway, as in the paper, where FiLM and the LLM read fixed pretrained embeddings of the prompt. In a
        model trained from scratch the table trains too, and on paired two-cube data it drove "red" and
        "blue" to nearly the same vector (docs/results/aloha.md), so FiLM's input lost the one word that
        tells the instructions apart. Frozen, each word keeps its own random code. A training field, not
        a model one: continuing a checkpoint (``--base``) trains the table unless it is set again.
    Optimization (paper: AdamW, lr 5e-4, decayed 10x once at a step milestone)
      lr, weight_decay, decay_step (None: never), decay_factor, warmup_steps (linear 10%->100% ramp that is
      multiplied with the decay rather than overwriting it, unlike the paper's script), grad_clip (None: off).
      decay_at: the decay at a fraction of the run instead of a fixed step: after ``decay_at * max_steps``
      steps or, under ``max_minutes``, ``decay_at`` of the run's time budget, whichever comes first; the
      step it happens at is saved with the schedule, so a resumed run keeps it (``oft.train.schedule``).
      ema_decay: None (the paper's), or checkpoints serve an exponential moving average of the trainable
        weights, ``ema <- d * ema + (1 - d) * weights`` after every update with ``d`` warming up to
        ``ema_decay`` (about the last ``1 / (1 - ema_decay)`` updates; openpi's full fine-tuning uses 0.99 and
        turns it off for LoRA); ``--resume`` continues from the optimizer's own weights and the float32
        average, kept in ``trainer_state.pt`` (``oft.train.ema``); ``--set ema_decay=none`` turns it off.
      batch_size is per process; the global batch is batch_size * grad_accum * world size.
      max_steps counts optimizer updates; max_minutes (None: no limit) stops earlier by the wall clock of
      the training loop, from its first step on, checkpoint writes included; set-up (opening and decoding
      the data, building the model, restoring a checkpoint) is not counted, since it is paid again on every
      resume and can outlast a short budget (a 1.9 GB decode took 40 s before a 30 s budget's one step).
      Both are the run's: a ``--resume`` trains to max_steps and spends what is left of max_minutes (every
      checkpoint records the run's training seconds so far).
    Data
      datasets: paths or Hub dataset ids (``lerobot/aloha_sim_transfer_cube_human``, ``org/name@revision``;
        a local path that exists wins). dataset_weights: sampling weight of each dataset of a mixture (the
        paper's ``data_mix``); None samples every chunk of every dataset once per epoch.
      start_repeat: samples starting in the first ``start_frames`` frames of an episode (None: the first
        chunk, ``chunk_len`` frames) are drawn that many times per epoch; 1 (the default, the paper's) draws
        every sample once. For policies that run whole chunks open-loop and must read the still start scene
        (which cube, told by the instruction); a choice of ours, not the paper's. On two-cube ALOHA, 30 min
        at 4x then 19 min at 1 (``--base``) made the policy pick the named cube; 4x alone cost the handover
        (docs/results/aloha.md).
      mixture_stats: how a mixture is normalized. "per_dataset" (OpenVLA's): each dataset's samples with its
        own statistics, all kept in the checkpoint under the dataset's name (its directory name, or the Hub
        id without revision) — one normalizer per robot; inference picks one with ``unnorm_key``
        (``oft eval/serve --unnorm-key NAME``), or, for instructions found in one dataset only, by the
        observation's instruction when none is named. "merged": one set of statistics over the union, for
        datasets of the same robot (the checkpoint's one key is the names joined by "+"). "per_task" (ours):
        each task's samples (one instruction, in any dataset, a single multi-task dataset included) with that
        task's own statistics, kept under the instruction; inference picks them by the observation's
        instruction. One set over tasks whose actions differ in scale counts the small ones' errors less: on
        MetaWorld, reach beside six other tasks reached 31 of 100 goals with one set and 56 with its own
        (docs/results/study-mt10.md). Training warns about such a task (``warn_squeezed_tasks``).
      base_stats: the statistics a run continued from an ``oft`` checkpoint (``--base <dir>``) normalizes
        with. "checkpoint" keeps the ones it was trained with (resuming on its own data; a new dataset of a
        per-dataset mixture adds its own); training values outside their bounds are clipped to them, which
        the run warns about, naming the dimensions. "dataset": the training data's own (``mixture_stats``
        decides how a mixture's are formed), as LeRobot, openpi and OpenVLA-OFT fine-tune on a new dataset:
        for new demonstrations that reach further than the old ones (a policy trained on the clipped
        values can never command past the old bounds).
      data_loader: "memory" decodes every frame once into RAM (fastest for small data, the quickstart),
        "stream" decodes per batch in ``num_workers`` worker processes (memory bounded whatever the dataset's
        size), "auto" streams when the decoded frames would take more than half of the available memory.
        Both give the same batches, so a run may resume with the other. num_workers: None = one per CPU
        core beyond the first (at most 8), shared among the ranks of a node.
    """

    base: str = "small"
    datasets: tuple[str, ...] = ()
    robot: str = "metaworld"
    head: str = "l1"
    decode: str = "parallel"
    chunk_len: int | None = None
    cameras: tuple[str, ...] | None = None
    proprio: bool = True
    film: bool = False
    action_slots: str = "per_dimension"
    film_input: str = "mean"
    lora_rank: int = 0
    lora_dropout: float = 0.0
    freeze_token_embeddings: bool = False
    augment: bool = True
    crop_jitter: float = 1.0
    pad_chunks: bool = True
    lr: float = 5e-4
    weight_decay: float = 0.01
    decay_step: int | None = None
    decay_at: float | None = None
    decay_factor: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    ema_decay: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 1000
    max_minutes: float | None = None
    bf16: bool = True
    grad_checkpointing: bool = False
    # torch.compile the vision backbone and the LLM decoder (first steps pay the compilation); measured by
    # `oft bench` (train_step rows) before turning it on: on small CPU models it need not help
    compile: bool = False
    seed: int = 0
    dataset_weights: tuple[float, ...] | None = None
    start_repeat: int = 1
    start_frames: int | None = None
    mixture_stats: str = "per_dataset"
    base_stats: str = "checkpoint"
    data_loader: str = "auto"
    num_workers: int | None = None
    device: str = "auto"
    num_threads: int | None = None
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    wandb: bool = False
    wandb_project: str = "oft"

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def with_absolute_paths(self) -> TrainConfig:
        """This config with its local paths (``datasets`` that exist, a ``base`` directory) made absolute.

        What a run records in ``train_config.json``, so the record names the same data and model from any
        working directory (``--resume``). ``Path.absolute`` keeps symlinks and ``..``: collapsing them by text
        could name another directory. Architecture names (even with a directory of that name at hand, which
        ``oft train`` does not read either) and Hub ids are kept.
        """
        from oft.model.build import ARCHITECTURES

        datasets = tuple(str(Path(p).absolute()) if os.path.exists(p) else p for p in self.datasets)
        local = self.base not in ARCHITECTURES and os.path.isdir(self.base)
        base = str(Path(self.base).absolute()) if local else self.base
        return self.replace(datasets=datasets, base=base)

    # ----------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["datasets"] = list(self.datasets)
        d["cameras"] = None if self.cameras is None else list(self.cameras)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig got unknown fields {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        if "datasets" in d:
            d["datasets"] = tuple(d["datasets"])
        if d.get("cameras") is not None:
            d["cameras"] = tuple(d["cameras"])
        if d.get("dataset_weights") is not None:  # JSON gives a list; --resume compares with the tuple
            d["dataset_weights"] = tuple(float(w) for w in d["dataset_weights"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ----------------------------------------------------------------- validation
    def validate(self, check_paths: bool = True) -> TrainConfig:
        """Raise ValueError naming the first bad field; returns self so calls chain."""
        _check_types(self)
        _check_choices(self)
        _check_ranges(self)
        _check_combinations(self)
        if check_paths:
            _check_paths(self)
        return self


# --------------------------------------------------------------------------- validation helpers
def _bad(name: str, value, expected: str) -> ValueError:
    return ValueError(f"TrainConfig.{name}={value!r} is invalid: expected {expected}")


def _check_types(cfg: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _matches(value, hints[f.name]):
            raise _bad(f.name, value, f"a value of type {_type_name(hints[f.name])}")


def _matches(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is typing.Any:
        return True
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _type_name(tp) -> str:
    return str(tp).replace("typing.", "")


def _check_choices(cfg: TrainConfig) -> None:
    from oft.model.heads import get_head_class, head_names  # the head registry is the one list
    from oft.model.vla import ACTION_SLOT_LAYOUTS, FILM_INPUTS

    heads = head_names()
    every_mode = sorted({m for h in heads for m in get_head_class(h).decode_modes})
    for name, choices in (
        ("head", heads),
        ("decode", every_mode),
        ("action_slots", ACTION_SLOT_LAYOUTS),
        ("film_input", FILM_INPUTS),
        ("device", DEVICES),
        ("data_loader", DATA_LOADERS),
        ("mixture_stats", MIXTURE_STATS),
        ("base_stats", BASE_STATS),
    ):
        value = getattr(cfg, name)
        if value not in choices:
            what = {"decode": "decode mode", "action_slots": "action slot layout", "film_input": "FiLM input"}
            what = what.get(name, name)
            what = what.replace("_", " ")
            raise ValueError(f"TrainConfig.{name}: " + unknown_name_message(what, value, choices))
    # known values that the chosen head cannot take: say which heads can
    head = get_head_class(cfg.head)
    for name, supported in (("decode", "decode_modes"), ("action_slots", "action_slot_layouts")):
        value = getattr(cfg, name)
        if value not in getattr(head, supported):
            able = [h for h in heads if value in getattr(get_head_class(h), supported)]
            raise ValueError(
                f"TrainConfig.{name}={value!r} needs head {' or '.join(map(repr, able))}; head {cfg.head!r} "
                f"takes {name}={' or '.join(map(repr, getattr(head, supported)))}"
            )
    if cfg.robot not in SPEC_PRESETS:
        raise ValueError("TrainConfig.robot: " + unknown_name_message("robot spec", cfg.robot, SPEC_PRESETS))
    if cfg.cameras is not None:
        if not cfg.cameras:
            raise _bad("cameras", cfg.cameras, "at least one camera (or None for all of the spec's)")
        if len(set(cfg.cameras)) != len(cfg.cameras):
            raise _bad("cameras", cfg.cameras, "no duplicate camera names")


_POSITIVE_INT = (
    "batch_size", "grad_accum", "max_steps", "save_every", "keep_last", "log_every", "start_repeat"
)  # fmt: skip
_NON_NEGATIVE_INT = ("lora_rank", "warmup_steps", "seed")
_NON_NEGATIVE_OR_NONE = ("num_workers",)


def _check_ranges(cfg: TrainConfig) -> None:
    for name in _POSITIVE_INT:
        if getattr(cfg, name) < 1:
            raise _bad(name, getattr(cfg, name), "an integer >= 1")
    for name in _NON_NEGATIVE_INT:
        if getattr(cfg, name) < 0:
            raise _bad(name, getattr(cfg, name), "an integer >= 0")
    for name in _NON_NEGATIVE_OR_NONE:
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise _bad(name, getattr(cfg, name), "an integer >= 0, or None")
    positive_or_none = ("chunk_len", "decay_step", "max_minutes", "grad_clip", "num_threads", "start_frames")
    for name in positive_or_none:
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            raise _bad(name, value, "a number > 0, or None")
    if cfg.start_frames is not None and cfg.start_repeat == 1:
        raise _bad("start_frames", cfg.start_frames, "None while start_repeat=1 (it only says which frames "
                   "start_repeat > 1 draws more often)")  # fmt: skip
    if not (0 < cfg.lr < 1):
        raise _bad("lr", cfg.lr, "a learning rate in (0, 1), e.g. 5e-4")
    if cfg.decay_at is not None and not (0 < cfg.decay_at <= 1):
        raise _bad("decay_at", cfg.decay_at, "a fraction of the run in (0, 1], e.g. 0.75, or None")
    if cfg.ema_decay is not None and not (0 < cfg.ema_decay < 1):
        raise _bad("ema_decay", cfg.ema_decay, "a number in (0, 1), e.g. 0.999, or None (no average)")
    if not (0 < cfg.decay_factor <= 1):
        raise _bad("decay_factor", cfg.decay_factor, "a factor in (0, 1], e.g. 0.1 for the paper's 10x decay")
    if not (0 <= cfg.lora_dropout < 1):
        raise _bad("lora_dropout", cfg.lora_dropout, "a probability in [0, 1)")
    if cfg.weight_decay < 0:
        raise _bad("weight_decay", cfg.weight_decay, "a value >= 0")
    if not (0 <= cfg.crop_jitter <= 1):
        raise _bad("crop_jitter", cfg.crop_jitter, "a share of the crop's range in [0, 1] (1.0: the paper's)")
    if not cfg.base:
        raise _bad("base", cfg.base, "an architecture name, an OpenVLA directory or an oft checkpoint")


def _check_combinations(cfg: TrainConfig) -> None:
    if cfg.warmup_steps >= cfg.max_steps:
        raise _bad("warmup_steps", cfg.warmup_steps, f"fewer than max_steps={cfg.max_steps}")
    if cfg.lora_dropout > 0 and not cfg.lora_rank:
        raise _bad("lora_dropout", cfg.lora_dropout, "0 when lora_rank=0 (it acts on LoRA adapters)")
    if cfg.crop_jitter != 1.0 and not cfg.augment:
        raise _bad("crop_jitter", cfg.crop_jitter, "1.0 when augment=false (it moves augmentation's crop)")
    if cfg.decay_step is not None and cfg.decay_at is not None:
        raise _bad("decay_at", cfg.decay_at, f"None when decay_step={cfg.decay_step} is set (one decay rule)")
    if cfg.decay_step is not None and cfg.warmup_steps > cfg.decay_step:
        raise _bad("warmup_steps", cfg.warmup_steps, f"at most decay_step={cfg.decay_step}")
    if cfg.dataset_weights is not None:
        w = cfg.dataset_weights
        if cfg.datasets and len(w) != len(cfg.datasets):
            raise _bad("dataset_weights", w, f"one weight per dataset ({len(cfg.datasets)})")
        if any(not x >= 0 for x in w) or sum(w) <= 0:
            raise _bad("dataset_weights", w, "non-negative numbers with a positive sum")
    spec = SPEC_PRESETS[cfg.robot]
    if cfg.proprio and spec.proprio_dim == 0:
        raise _bad("proprio", cfg.proprio, f"False: robot {cfg.robot!r} has no proprio (proprio_dim=0)")


def _check_paths(cfg: TrainConfig) -> None:
    from oft.hub import is_hub_id
    from oft.model.build import ARCHITECTURES

    if cfg.base not in ARCHITECTURES and not os.path.isdir(cfg.base) and not is_hub_id(cfg.base):
        raise _bad(
            "base",
            cfg.base,
            f"an architecture name ({', '.join(ARCHITECTURES)}), an existing checkpoint directory or a Hub "
            "model id (org/name[@revision])",
        )
    if not cfg.datasets:
        raise _bad("datasets", cfg.datasets, "at least one dataset directory (--dataset DIR)")
    for path in cfg.datasets:
        if not os.path.exists(path) and not is_hub_id(path):
            raise _bad("datasets", cfg.datasets, f"existing paths or Hub ids; {path!r} is neither")


# --------------------------------------------------------------------------- resuming
# What ``--resume`` does with a field whose value differs from the checkpoint's ``train_config.json``. Every
# field is in exactly one group (tests/train/test_config.py checks it), so a new field needs a decision.
#
# fixed: refused before any work. They define the model (architecture, dtype), the data it sees and in which
# order (datasets, batch_size, augment, pad_chunks, seed: the loader position and RNG streams are restored
# from the checkpoint), so a changed value could not take effect honestly. To change one, start a new run
# from the checkpoint: ``--base <checkpoint dir> --out <new dir>`` -- except MODEL_FIELDS, which define the
# model itself: continuing a checkpoint keeps them, so changing one means training a new model.
MODEL_FIELDS = (
    "robot",
    "head",
    "decode",
    "chunk_len",
    "cameras",
    "proprio",
    "film",
    "action_slots",
    "film_input",
    "lora_rank",
)
RESUME_FIXED = (
    "base",
    "datasets",
    *MODEL_FIELDS,
    "freeze_token_embeddings",
    "augment",
    "crop_jitter",
    "pad_chunks",
    "batch_size",
    "bf16",
    "seed",
    "dataset_weights",
    "start_repeat",  # which samples an epoch holds
    "start_frames",
    "mixture_stats",  # the normalization the model learned in
    "base_stats",
)
# applied from the resumed step on, and logged: the optimizer's lr / weight decay and the schedule are rebuilt
# from the new values (the lr at step s is ``lr * multiplier(s)`` of the new schedule), gradient clipping,
# accumulation and LoRA dropout are read from the config at every step.
RESUME_APPLIED = (
    "lr",
    "weight_decay",
    "decay_step",
    "decay_at",  # a decay already taken stays at its step (saved with the schedule); else the new fraction
    "decay_factor",
    "warmup_steps",
    "grad_clip",
    "grad_accum",
    "lora_dropout",
    "ema_decay",  # None -> x: the average starts at the resumed weights; x -> None: the average is dropped
)
# budgets and bookkeeping: free to change, they do not change the updates
RESUME_FREE = (
    "max_steps",
    "max_minutes",
    "grad_checkpointing",
    "compile",
    "device",
    "data_loader",  # both loaders give the same batches
    "num_workers",
    "num_threads",
    "save_every",
    "keep_last",
    "log_every",
    "wandb",
    "wandb_project",
)


def resume_changes(saved: TrainConfig, cfg: TrainConfig) -> dict[str, tuple]:
    """The fields that differ between the checkpoint's config ``saved`` and ``cfg``: ``{name: (old, new)}``.

    Raises ValueError naming every changed :data:`RESUME_FIXED` field with both values.
    """
    changed = {
        f.name: (getattr(saved, f.name), getattr(cfg, f.name))
        for f in dataclasses.fields(TrainConfig)
        if _normalized(f.name, getattr(saved, f.name)) != _normalized(f.name, getattr(cfg, f.name))
    }
    refused = [name for name in changed if name in RESUME_FIXED]
    if refused:
        diffs = ", ".join(f"TrainConfig.{n}: {changed[n][0]!r} -> {changed[n][1]!r}" for n in refused)
        model = [n for n in refused if n in MODEL_FIELDS or n == "base"]
        other = (
            f"{', '.join(model)} define the model: train a new one (--out <new dir>)"
            if model
            else "or start a new run from the checkpoint (--base <checkpoint dir> --out <new dir>)"
        )
        raise ValueError(
            f"--resume: the checkpoint was trained with other settings ({diffs}); these cannot change "
            f"within a run. Resume with the original values; {other}"
        )
    return changed


def _normalized(name: str, value):
    """Dataset and base paths compare as absolute paths (``data/x`` and ``./data/x`` are the same data).

    Runs record them absolute (:meth:`TrainConfig.with_absolute_paths`); a record written before that, with
    the path as given, still compares equal when resumed from the directory it was started in.
    """
    if name == "datasets":
        return tuple(os.path.abspath(p) for p in value)
    if name == "base":  # an architecture name or Hub id is made absolute on both sides alike
        return os.path.abspath(value)
    return value


# --------------------------------------------------------------------------- overrides
def override_name(item: str) -> str:
    """The field an override ``field=value`` names, as :func:`apply_overrides` reads it (``max-steps`` is
    ``max_steps``)."""
    return item.partition("=")[0].strip().replace("-", "_")


def refuse_owned_overrides(overrides: list[str] | tuple[str, ...], owned: dict[str, str], by: str) -> None:
    """ValueError for an override (``--set field=value``) of a field that the command ``by`` sets itself, so
    the override would be dropped or would change what the command records: ``owned`` maps each such field
    to what sets it (a flag, the command's variants, its data). Field names compare as :func:`override_name`
    reads them."""
    for item in overrides:
        name = override_name(item)
        if name in owned:
            raise ValueError(f"override {item!r}: {name} is set by {by} ({owned[name]})")


def apply_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply ``field=value`` strings (``--set lr=1e-4``).

    Values are parsed by the field's type: ints, floats, ``true``/``false``, ``none``, and comma-separated
    lists for tuple fields (``cameras=corner,gripperPOV``). ValueError for an unknown field, an item without
    ``=``, or an empty value (``ema_decay=``: None is written ``none``).
    """
    changes: dict = {}
    hints = typing.get_type_hints(TrainConfig)
    for item in overrides:
        _, sep, raw = item.partition("=")
        name = override_name(item)
        if not sep or not name:
            raise ValueError(f"override {item!r} is not of the form field=value")
        if name not in hints:
            raise ValueError(unknown_name_message("TrainConfig field", name, hints))
        if not raw.strip():  # an unset shell variable ($BUDGET) must not quietly mean None or ()
            none = type(None) in typing.get_args(hints[name])
            raise ValueError(
                f"override {item!r} has no value; expected TrainConfig.{name}=<value>"
                + (f" ({name}=none for None)" if none else "")
            )
        changes[name] = _parse_typed(name, raw, hints[name])
    # decay_step and decay_at are one rule: setting one replaces the preset's other
    for name, other in (("decay_step", "decay_at"), ("decay_at", "decay_step")):
        if changes.get(name) is not None and other not in changes:
            changes[other] = None
    return dataclasses.replace(cfg, **changes)


def _parse_scalar(raw: str):
    text = raw.strip()
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _parse_typed(name: str, raw: str, tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    if optional and raw.strip().lower() in ("none", "null"):
        return None
    core = args[0] if optional and len(args) == 1 else tp
    if typing.get_origin(core) is tuple:
        items = tuple(p.strip() for p in raw.split(","))
        if not all(items):  # cameras=corner,$CAM with CAM unset
            raise ValueError(f"TrainConfig.{name}={raw!r} has an empty item; expected a comma-separated list")
        if typing.get_args(core)[:1] == (float,):
            try:
                return tuple(float(p) for p in items)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected comma-separated numbers") from None
        return items
    value = _parse_scalar(raw)
    if core is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if core is str:
        value = raw.strip()
    return value


__all__ = [
    "DEVICES",
    "MODEL_FIELDS",
    "RESUME_APPLIED",
    "RESUME_FIXED",
    "RESUME_FREE",
    "TrainConfig",
    "apply_overrides",
    "resume_changes",
]
