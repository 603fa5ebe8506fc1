"""The training loop: one function, :func:`train`, for a tiny model on a CPU and a 7B model on a cluster.

It reads as the recipe's steps: validate the config, join the process group, open the data, build (or resume)
the policy, then repeat forward -> backward (with gradient accumulation) -> AdamW step -> schedule step,
saving a resumable checkpoint every ``save_every`` steps and at the end. The model's own ``forward(batch)``
does all normalization and preprocessing, so nothing here knows about cameras, tokens or action sizes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oft.model.heads import SAMPLE_LOSS
from oft.observation import Batch
from oft.spec import RobotSpec, get_spec, with_dataset_conventions
from oft.train import distributed as D
from oft.train.checkpoint import (
    TRAIN_CONFIG,
    CheckpointManager,
    capture_rng_state,
    from_jsonable,
    read_trainer_state,
    restore_rng_state,
    write_trainer_state,
)
from oft.train.config import RESUME_APPLIED, TrainConfig, resume_changes
from oft.train.ema import RAW_WEIGHTS, WeightEMA, restore_raw_weights
from oft.train.feedback import MAX_LOGGED_TASKS, TASK_LOSS, TrainFeedback, plot_loss_curve
from oft.train.presets import check_dataset_robot
from oft.train.schedule import (
    DecayAtFraction,
    StepDecayWithWarmup,
    decided_decay_step,
    make_scheduler,
    set_decay_step,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path | None  # the last checkpoint written (rank 0), None on other ranks
    step: int
    start_step: int
    wall_s: float  # this process's wall time, set-up included
    train_s: float  # time spent in optimizer steps (excludes setup and checkpoint writing)
    samples: int  # samples seen by all ranks in this process's run (not counting resumed steps)
    stopped_by: str  # "max_steps" | "max_minutes"
    final_loss: float = math.nan
    run_s: float = math.nan  # the run's training time, resumed segments included (what max_minutes limits)
    loss_curve: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_s if self.train_s > 0 else 0.0


@dataclass
class _State:
    """Everything the loop mutates; kept together so saving and resuming see the same thing."""

    policy: torch.nn.Module
    model: torch.nn.Module  # the policy, DDP-wrapped on multi-process runs
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: object
    step: int = 0
    ema: WeightEMA | None = None  # the average the checkpoints serve (cfg.ema_decay), None: the weights
    setup_started: float = 0.0  # time.perf_counter() when this process's segment began (its set-up)
    started: float = 0.0  # time.perf_counter() at the loop's first step: the budget's clock
    seconds_before: float = 0.0  # training seconds earlier segments spent up to the resumed checkpoint
    tasks: dict[str, int] = field(default_factory=dict)  # instruction -> index, for the loss of each task

    def run_seconds(self) -> float:
        """The run's training seconds so far, resumed segments included, set-up excluded: what ``max_minutes``
        limits."""
        return self.seconds_before + time.perf_counter() - self.started


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    dataset=None,
    info: D.DistInfo | None = None,
    accept: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; ``resume`` continues from the latest checkpoint there.

    ``dataset`` (an ``oft.data`` dataset) replaces ``cfg.datasets`` — tests and the quickstart pass episodes
    they already hold in memory. Local paths are recorded absolute (:meth:`TrainConfig.with_absolute_paths`).
    ``accept(policy)``, called on the built policy before anything is written, refuses the run by raising:
    what the caller does after training (``oft train --export``) checks what it needs of the policy there.
    """
    t0 = time.perf_counter()
    cfg = cfg.validate(check_paths=dataset is None).with_absolute_paths()  # the record reads from anywhere
    if info is not None:
        return _train(cfg, Path(out_dir), resume, dataset, info, t0, accept)
    info = D.init_distributed(train_device(cfg))
    try:
        return _train(cfg, Path(out_dir), resume, dataset, info, t0, accept)
    finally:
        D.cleanup(info)


def _train(
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    dataset,
    info: D.DistInfo,
    t0: float,
    accept: Callable[[Any], None] | None = None,
) -> TrainResult:
    _setup_process(cfg, info)
    if info.is_main:
        warn_unreached_decay(cfg)
    mgr = CheckpointManager(out, cfg.keep_last)
    # checked before anything is written: a refused resume leaves the run directory as it was
    resume_from = mgr.latest() if resume else None
    changes = _check_resumable(cfg, resume_from) if resume_from is not None else {}
    if resume and resume_from is None:
        log.info("--resume: no checkpoint in %s yet, starting from step 0", mgr.root)
    dataset = dataset if dataset is not None else open_datasets(cfg.datasets)
    spec = check_dataset_robot(cfg, robot_spec_for(cfg), dataset)  # the robot the dataset records, if any
    spec = with_dataset_conventions(spec, dataset)  # what the dataset's actions mean
    policy = make_policy(cfg, spec, dataset, resume_from)
    if accept is not None:
        accept(policy)
    from oft.sim.collect import recorded_scene, warn_shared_layouts  # light: imports no simulator

    policy.config.scene = recorded_scene(dataset)  # what evaluation renders (oft eval asks)
    if info.is_main:
        warn_shared_layouts(dataset)
    state = _make_state(cfg, policy, dataset, spec, info)
    state.setup_started = t0
    # the data, the model and the loader are accepted (each refuses what does not fit): only now is the run
    # recorded, so a refused run leaves no directory and a refused resume the config in force
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        mgr.clean_partial()
        cfg.save(out / TRAIN_CONFIG)
    D.barrier(info)
    if resume_from is not None:
        resumed = _restore(state, resume_from, info)
        state.seconds_before = _seconds_before(resumed, out, cfg, info)
        apply_optimizer_settings(cfg, state.optimizer, state.scheduler)
        log.info("resumed from %s at step %d", resume_from, state.step)
        if changes and info.is_main:
            _record_changes(out, state.step, resume_from, changes)
    return _run(cfg, state, mgr, info, out)


# --------------------------------------------------------------------------- setup
def _check_resumable(cfg: TrainConfig, resume_from: Path) -> dict[str, tuple]:
    """Refuse a resume that would change the model or its data (see ``oft.train.config.RESUME_FIXED``);
    log the settings that change from here on. Returns ``{field: (old, new)}``."""
    changes = resume_changes(TrainConfig.load(resume_from / TRAIN_CONFIG), cfg)
    for name, (old, new) in changes.items():
        how = "applied from the resumed step on" if name in RESUME_APPLIED else "budget/bookkeeping"
        log.info("--resume: TrainConfig.%s changed %r -> %r (%s)", name, old, new, how)
    return changes


def _record_changes(out: Path, step: int, resume_from: Path, changes: dict[str, tuple]) -> None:
    """Append what changed at this resume to ``<out>/resumes.jsonl``.

    With each checkpoint's own ``train_config.json`` it tells which values ran at which steps;
    ``<out>/train_config.json`` holds the values in force now.
    """
    changed = {name: list(values) for name, values in changes.items()}
    record = {"step": step, "checkpoint": resume_from.name, "changed": changed}
    with open(out / "resumes.jsonl", "a") as f:
        f.write(json.dumps(record, default=list) + "\n")


def _setup_process(cfg: TrainConfig, info: D.DistInfo) -> None:
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def robot_spec_for(cfg: TrainConfig) -> RobotSpec:
    """The robot preset with the run's chunk length and camera subset."""
    spec = get_spec(cfg.robot)
    changes: dict = {}
    if cfg.chunk_len is not None:
        changes["chunk_len"] = cfg.chunk_len
    if cfg.cameras is not None:
        changes["cameras"] = tuple(cfg.cameras)
    if not cfg.proprio:
        changes["proprio_dim"] = 0
    return spec.replace(**changes) if changes else spec


def open_datasets(paths: tuple[str, ...]):
    """Open the datasets, first verifying those that carry checksums (``oft collect`` writes them): silent
    corruption stops a run before it trains a policy (a sha256 read of the files: ~0.1 s for the quickstart's
    dataset; ~1 s per GB)."""
    from oft.checksums import verify_dataset
    from oft.data import open_dataset
    from oft.hub import is_hub_id, parse_hub_id, resolve

    local = [resolve(p, "dataset") for p in paths]  # Hub ids -> the cached snapshot
    for p in local:
        verify_dataset(p)
    datasets = [open_dataset(p) for p in local]
    for d, p in zip(datasets, paths, strict=True):  # the key of its statistics: the Hub id, or the directory
        d.name = parse_hub_id(p)[0] if is_hub_id(p) else Path(p).resolve().name
    if len(datasets) == 1:
        return datasets[0]
    from oft.train._concat import ConcatDataset

    return ConcatDataset(datasets)


def make_policy(cfg: TrainConfig, spec: RobotSpec, dataset, resume_from: Path | None):
    """Build the policy the config names, or reload it from the checkpoint being resumed."""
    from oft.train.build import build_from_config

    return build_from_config(cfg, spec, dataset, resume_from)


def _make_state(cfg: TrainConfig, policy, dataset, spec: RobotSpec, info: D.DistInfo) -> _State:
    policy.to(info.device)
    policy.train()
    if cfg.grad_checkpointing:
        _enable_grad_checkpointing(policy)
    if cfg.compile:
        from oft.bench.latency import compile_trunk

        compile_trunk(policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters; check lora_rank / base")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.decay_step, cfg.decay_factor, cfg.warmup_steps)
    loader = make_loader(cfg, dataset, spec, policy.image_pipeline, info)
    if info.is_main:
        from oft.train.build import warn_squeezed_tasks

        warn_squeezed_tasks(loader, policy)
    # the policy records the size of the frames it was trained on: simulators render at it (oft eval asks)
    policy.config.frame_sizes = {c: list(hw) for c, hw in loader.frame_sizes.items()}
    model = D.wrap_ddp(policy, info)
    # on a resume the policy holds the checkpoint's weights, the average if it kept one: the average goes on
    # from there and _restore puts the optimizer's own weights back
    ema = None if cfg.ema_decay is None else WeightEMA(policy, cfg.ema_decay)
    if ema is not None:
        log.info("ema_decay=%g: checkpoints serve the average of %d trainable tensors; trainer_state.pt "
                 "keeps the optimizer's weights", cfg.ema_decay, len(ema.params))  # fmt: skip
    return _State(policy=policy, model=model, optimizer=optimizer, scheduler=scheduler, loader=loader,
                  ema=ema, tasks=logged_tasks(loader.instructions))  # fmt: skip


def logged_tasks(instructions: list[str]) -> dict[str, int]:
    """{instruction: index} of the tasks whose training loss is logged apart (``task_loss/<instruction>`` in
    ``metrics.jsonl``, TensorBoard and W&B), in sorted order; empty for a single task or more than
    :data:`MAX_LOGGED_TASKS` distinct instructions. A task is an instruction, as in LeRobot's ``tasks``."""
    names = sorted(set(instructions))
    if len(names) > MAX_LOGGED_TASKS:
        log.info("%d distinct instructions: more than %d, so the loss is not logged per task", len(names),
                 MAX_LOGGED_TASKS)  # fmt: skip
    if not 2 <= len(names) <= MAX_LOGGED_TASKS:
        return {}
    return {name: i for i, name in enumerate(names)}


def make_loader(cfg: TrainConfig, dataset, spec: RobotSpec, pipeline, info: D.DistInfo):
    """The in-memory :class:`~oft.data.loader.ChunkLoader` or the streaming
    :class:`~oft.data.stream.StreamLoader`, as ``cfg.data_loader`` says ("auto": :func:`choose_loader`)."""
    from oft.data.augment import AugmentConfig
    from oft.data.loader import ChunkLoader
    from oft.data.stream import StreamLoader

    kind = cfg.data_loader
    if kind == "auto":
        kind = choose_loader(dataset, spec, pipeline.size, _local_world_size(info))
    common = dict(
        chunk_len=spec.chunk_len,
        cameras=list(spec.cameras),
        batch_size=cfg.batch_size,
        pipeline=pipeline,
        augment=AugmentConfig(crop_jitter=cfg.crop_jitter) if cfg.augment else False,
        pad=cfg.pad_chunks,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        weights=cfg.dataset_weights,
        start_repeat=cfg.start_repeat,
        start_frames=cfg.start_frames,
        norm_keys=mixture_norm_keys(cfg, dataset),
    )
    if kind == "memory":
        return ChunkLoader(dataset, **common)
    workers = cfg.num_workers
    if workers is None:
        workers = min(8, max(1, (os.cpu_count() or 2) // _local_world_size(info) - 1))
    return StreamLoader(dataset, num_workers=workers, **common)


def mixture_norm_keys(cfg: TrainConfig, dataset) -> list[str] | str | None:
    """What names each sample's statistics (the loader tags every sample with it, the policy normalizes by
    it): the dataset name of each part of a mixture trained with per-dataset statistics, ``"instruction"``
    with per-task statistics, else None."""
    if cfg.mixture_stats == "per_task":
        from oft.data.loader import BY_INSTRUCTION

        return BY_INSTRUCTION
    if cfg.mixture_stats != "per_dataset" or not hasattr(dataset, "datasets"):
        return None
    return dataset.keys


# "auto" keeps the decoded frames in RAM when all ranks' copies take at most this fraction of the available
# memory. The memory loader holds the frames once (plus one decoded episode while loading): a 14.2 GB load of
# 300 ALOHA episodes peaked at 15.5 GB resident, and the streamed loader trained that model at 28 samples/s
# against 36-42 in memory.
MEMORY_FRACTION = 0.5


def choose_loader(dataset, spec: RobotSpec, side: int, local_ranks: int = 1) -> str:
    """ "memory" when every rank of this node holding the decoded frames ((F, N, side, side, 3) uint8 each)
    takes at most :data:`MEMORY_FRACTION` of the available memory, else "stream". Counting the frames reads
    the numeric columns only."""
    frames = int(dataset.episode_lengths().sum())
    need = frames * len(spec.cameras) * side * side * 3 * local_ranks
    available = _available_memory()
    kind = "memory" if need <= MEMORY_FRACTION * available else "stream"
    log.info(
        "data_loader=auto: %d frames x %d cameras at %d px = %.2f GB decoded x %d rank(s), %.1f GB available "
        "-> %s", frames, len(spec.cameras), side, need / local_ranks / 1e9, local_ranks, available / 1e9,
        kind,
    )  # fmt: skip
    return kind


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _local_world_size(info: D.DistInfo) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))


def _enable_grad_checkpointing(policy) -> None:
    """Recompute the LLM's layer activations in backward (the memory that limits a 7B batch)."""
    llm = getattr(getattr(getattr(policy, "vla", None), "language_model", None), "model", None)
    # transformers >= 5.x names it activation_checkpointing_enable (the old name warns)
    names = {"activation_checkpointing_enable": "activation_checkpointing_kwargs",
             "gradient_checkpointing_enable": "gradient_checkpointing_kwargs"}  # fmt: skip
    found = [(getattr(o, n), kw) for o in (policy, llm) for n, kw in names.items() if hasattr(o, n)]
    if not found:
        raise ValueError(
            f"TrainConfig.grad_checkpointing=True but {type(policy).__name__} does not support it; "
            "set grad_checkpointing=false"
        )
    enable, kwarg = found[0]
    enable(**{kwarg: {"use_reentrant": False}})


def apply_optimizer_settings(cfg: TrainConfig, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Make a restored optimizer and schedule follow ``cfg``'s lr, weight decay and schedule.

    ``LambdaLR.load_state_dict`` restores the saved multiplier object and base lrs, and the optimizer's state
    the saved lr and weight decay: without this a resumed run with a new ``lr`` or ``decay_step`` would keep
    the old ones while ``train_config.json`` records the new. The lr of the next update is ``cfg.lr`` times
    the new schedule's multiplier at the current step, exactly what a fresh scheduler would give there; with
    unchanged settings nothing changes (bit-exact resume).
    """
    groups = optimizer.param_groups
    scheduler.base_lrs = [cfg.lr] * len(groups)
    # decay_at: a decay the run already took stays at its step (saved with the scheduler's state)
    decay_step = cfg.decay_step if cfg.decay_at is None else decided_decay_step(scheduler)
    multiplier = StepDecayWithWarmup(decay_step, cfg.decay_factor, cfg.warmup_steps)
    scheduler.lr_lambdas = [multiplier] * len(groups)
    for group, base in zip(groups, scheduler.base_lrs, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * multiplier(scheduler.last_epoch)
        group["weight_decay"] = cfg.weight_decay
    scheduler._last_lr = [group["lr"] for group in groups]


def _seconds_before(resume: dict, out: Path, cfg: TrainConfig, info: D.DistInfo) -> float:
    """Wall seconds the run had spent when the checkpoint whose ``resume_state.json`` is ``resume`` was
    written: its ``train_seconds``; for a checkpoint written before that was recorded, estimated from the
    run's ``metrics.jsonl`` (:func:`oft.train.feedback.seconds_trained`)."""
    if resume.get("train_seconds") is not None:
        return float(resume["train_seconds"])
    from oft.train.feedback import seconds_trained

    per_step = cfg.batch_size * cfg.grad_accum * info.world_size
    return seconds_trained(out, per_step, up_to_step=int(resume["step"]))


def _restore(state: _State, path: Path, info: D.DistInfo) -> dict:
    """Load checkpoint ``path``'s optimizer, schedule, step, RNG and loader position into ``state``; returns
    its resume state (``resume_state.json``)."""
    tensors, resume = read_trainer_state(path)
    state.optimizer.load_state_dict(tensors["optimizer"])
    state.scheduler.load_state_dict(tensors["scheduler"])
    state.step = int(tensors["step"])
    if RAW_WEIGHTS in tensors:  # an EMA run's checkpoint: the policy was loaded with the average
        restore_raw_weights(state.policy, tensors[RAW_WEIGHTS])
        if state.ema is not None:
            state.ema.load_state_dict(tensors)  # the float32 average, not the rounded one the policy holds
        else:
            log.info("--resume: ema_decay=None: continuing from the optimizer's weights, the average dropped")
    elif state.ema is not None and state.step > 0:
        log.info("--resume: ema_decay=%g: the average starts at step %d", state.ema.decay, state.step)
    ranks = resume["ranks"]
    if len(ranks) != info.world_size:
        log.warning(
            "checkpoint was written by %d ranks, resuming on %d: data order and RNG streams will differ",
            len(ranks),
            info.world_size,
        )
    mine = ranks[info.rank % len(ranks)]
    restore_rng_state(mine["rng"])
    if mine.get("loader") is not None and len(ranks) == info.world_size:
        state.loader.load_state_dict(from_jsonable(mine["loader"]))
    return resume


# --------------------------------------------------------------------------- the loop
def _run(cfg: TrainConfig, state: _State, mgr: CheckpointManager, info: D.DistInfo, out: Path):
    start_step = state.step
    # The budget's clock starts here: set-up (decoding a large dataset into memory, building the model,
    # restoring a checkpoint) is paid again by every resumed segment and can outlast a short budget.
    state.started = time.perf_counter()
    if cfg.max_minutes is not None:
        log.info("set-up took %.1f s (not counted in max_minutes=%g)", state.started - state.setup_started,
                 cfg.max_minutes)  # fmt: skip
    # max_minutes is the run's budget, like max_steps: a resumed segment gets what earlier ones left
    deadline = None
    if cfg.max_minutes is not None:
        deadline = state.started + 60.0 * cfg.max_minutes - state.seconds_before
    feedback = TrainFeedback(
        out, cfg.max_steps, start_step, info.is_main, cfg.to_dict(), wandb=cfg.wandb, deadline=deadline
    )
    decay = _decay_rule(cfg)
    batches = _batches(state.loader)
    samples_per_step = cfg.batch_size * cfg.grad_accum * info.world_size
    samples, train_s, last_ckpt, loss = 0, 0.0, None, math.nan
    stopped_by = "max_steps"
    sums: dict[str, torch.Tensor] = {}  # metrics summed on the device since the last log step
    since_log = 0
    try:
        if cfg.max_minutes is not None and state.seconds_before >= 60.0 * cfg.max_minutes:
            # resumed a run whose time budget was already spent: nothing to do (decided from the checkpoint's
            # record, the same on every rank)
            stopped_by = "max_minutes"
            log.info("the run's time budget of %.1f min was spent (%.1f min) before step %d", cfg.max_minutes,
                     state.seconds_before / 60.0, state.step)  # fmt: skip
            last_ckpt = mgr.latest()
        while state.step < cfg.max_steps and stopped_by != "max_minutes":
            ts = time.perf_counter()
            step_loss, metrics = train_step(cfg, state, batches, info)
            _accumulate(sums, {"loss": step_loss, **metrics})
            since_log += 1
            train_s += time.perf_counter() - ts
            samples += samples_per_step
            state.step += 1
            log_now = _should_log(cfg, state.step)  # the same on every rank: safe to all-reduce under it
            if decay is not None and _decay_due(decay, state, state.run_seconds(), log_now, info):
                set_decay_step(state.scheduler, state.step)
                log.info("lr decayed %gx from step %d (decay_at=%g)", 1 / cfg.decay_factor, state.step,
                         cfg.decay_at)  # fmt: skip
            logged = None
            if log_now:  # the one host sync of a logging interval
                task_sums = sums.pop(TASK_SUMS, None)
                logged = {k: D.mean_over_ranks(float(v) / since_log, info) for k, v in sums.items()}
                logged.update(task_losses(task_sums, state.tasks, info))
                logged["lr"] = metrics["lr"]
                loss, sums, since_log = logged["loss"], {}, 0
            feedback.step(state.step, samples, logged or {}, log_now=log_now)
            time_up = deadline is not None and _time_up(deadline, log_now, info)
            if time_up or state.step % cfg.save_every == 0 or state.step == cfg.max_steps:
                last_ckpt = save_checkpoint(cfg, state, mgr, info) or last_ckpt
            if time_up:
                stopped_by = "max_minutes"
                log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, state.step)
                break
        if state.step == start_step and state.step >= cfg.max_steps:
            last_ckpt = mgr.latest()  # resumed a finished run: nothing to do
    finally:
        feedback.close()
    curve = plot_loss_curve(out / "metrics.jsonl", out / "loss_curve.png") if info.is_main else None
    return TrainResult(
        out_dir=out,
        checkpoint=last_ckpt if info.is_main else None,
        step=state.step,
        start_step=start_step,
        wall_s=time.perf_counter() - state.setup_started,
        train_s=train_s,
        samples=samples,
        stopped_by=stopped_by,
        final_loss=loss,
        loss_curve=curve,
        run_s=state.run_seconds(),
    )


def warn_unreached_decay(cfg: TrainConfig) -> bool:
    """Log a warning (and return True) when ``decay_step`` is set at or past ``max_steps``: the run would end
    at the full learning rate without the decay the config names, e.g. ``--preset libero-openvla --steps
    50000`` (its decay at 100,000, the paper's LIBERO schedule). Not refused: a run extended later (``--resume
    --set max_steps=N``) reaches it."""
    if cfg.decay_step is None or cfg.decay_step < cfg.max_steps:
        return False
    log.warning(
        "decay_step=%d is not before max_steps=%d: this run ends at the full learning rate %g without its "
        "decay (x%g); --set decay_step=N below max_steps or --set decay_at=0.75 takes it, --set "
        "decay_step=none says there is none",
        cfg.decay_step, cfg.max_steps, cfg.lr, cfg.decay_factor,
    )  # fmt: skip
    return True


def _decay_rule(cfg: TrainConfig) -> DecayAtFraction | None:
    if cfg.decay_at is None:
        return None
    budget_s = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    return DecayAtFraction(cfg.decay_at, cfg.max_steps, budget_s)


def _decay_due(decay: DecayAtFraction, state: _State, elapsed_s: float, log_now: bool, info) -> bool:
    """The decay_at decay is due now (and not taken yet). Ranks of a multi-process run agree on the time
    condition at log steps, like the time budget (``_time_up``)."""
    if decided_decay_step(state.scheduler) is not None:
        return False
    if not info.enabled:
        return decay.due(state.step, elapsed_s)
    if decay.due(state.step, 0.0):  # the step condition: the same on every rank
        return True
    return D.any_rank(decay.due(state.step, elapsed_s), info) if log_now else False


def train_device(cfg: TrainConfig) -> str:
    """The device to train on: ``cfg.device``, except that a small from-scratch architecture asked to run on
    CUDA where there is none trains on the CPU it was sized for (logged) instead of stopping."""
    from oft.model.build import ARCHITECTURES

    if cfg.device == "cuda" and cfg.base in ARCHITECTURES and not torch.cuda.is_available():
        log.warning("TrainConfig.device='cuda' but no CUDA device is available; the %r architecture trains "
                    "on the CPU (set device=cpu to silence this)", cfg.base)  # fmt: skip
        return "cpu"
    return cfg.device


def _should_log(cfg: TrainConfig, step: int) -> bool:
    return step % cfg.log_every == 0 or step == cfg.max_steps or step == 1


def _batches(loader):
    """Endless batches: a new pass starts when the loader is exhausted (the loader tracks its own epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader produced no batch; is the dataset shorter than one chunk?")


def train_step(cfg: TrainConfig, state: _State, batches, info: D.DistInfo) -> tuple[torch.Tensor, dict]:
    """One optimizer update over ``grad_accum`` micro-batches; returns (mean loss, mean metrics) as detached
    device tensors (``lr`` a float): nothing here waits for the device, so on a GPU the host fetches and
    uploads the next batch while this step computes."""
    state.model.train()
    total, sums = None, {}
    for micro in range(cfg.grad_accum):
        batch: Batch = next(batches).to(info.device)
        last = micro == cfg.grad_accum - 1
        sync = contextlib.nullcontext() if last or not info.enabled else state.model.no_sync()
        with sync, _autocast(cfg, info.device):
            loss, metrics = state.model(batch)
        with sync:
            (loss / cfg.grad_accum).backward()
        total = _add(total, loss.detach() / cfg.grad_accum)
        sample_loss = metrics.pop(SAMPLE_LOSS, None)
        if state.tasks and sample_loss is not None:
            per_task = task_sums(sample_loss, batch.instructions, state.tasks)
            sums[TASK_SUMS] = _add(sums.get(TASK_SUMS), per_task)
        for k, v in metrics.items():
            sums[k] = _add(sums.get(k), (v.detach() if torch.is_tensor(v) else v) / cfg.grad_accum)
    if cfg.grad_clip is not None:
        sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(state.policy.parameters(), cfg.grad_clip).detach()
    sums["lr"] = state.optimizer.param_groups[0]["lr"]  # the lr this update uses
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    if state.ema is not None:
        state.ema.update()
    return total, sums


def _add(a, b):
    return b if a is None else a + b


TASK_SUMS = "task_sums"  # the (2, T) per-task loss sums and sample counts among a step's metrics


def task_sums(sample_loss: torch.Tensor, instructions: list[str], tasks: dict[str, int]) -> torch.Tensor:
    """(2, T) the sum of the (B,) ``sample_loss`` over each task's samples, and their count, for the T
    ``tasks`` ({instruction: index}); on the loss's device, no host sync."""
    index = torch.tensor([tasks[text] for text in instructions]).to(sample_loss.device, non_blocking=True)
    out = torch.zeros(2, len(tasks), device=sample_loss.device)
    out[0].index_add_(0, index, sample_loss.float())
    out[1].index_add_(0, index, torch.ones_like(sample_loss, dtype=torch.float32))
    return out


def task_losses(sums: torch.Tensor | None, tasks: dict[str, int], info: D.DistInfo) -> dict[str, float]:
    """``{"task_loss/<instruction>": mean loss}`` over a logging interval from the (2, T) sums of
    :func:`task_sums` (all ranks' samples; one all-reduce), for the tasks drawn in it."""
    if sums is None:
        return {}
    sums = D.sum_over_ranks(sums, info).cpu()
    return {f"{TASK_LOSS}{name}": float(sums[0, i] / sums[1, i]) for name, i in tasks.items()
            if sums[1, i] > 0}  # fmt: skip


def _accumulate(sums: dict, metrics: dict) -> None:
    """Add this step's metrics (device tensors) into ``sums`` without a host sync; ``lr`` is not summed."""
    for k, v in metrics.items():
        if k != "lr":
            sums[k] = _add(sums.get(k), v.float() if torch.is_tensor(v) else float(v))


def _time_up(deadline: float, log_now: bool, info: D.DistInfo) -> bool:
    """Past the wall-clock budget. One process checks every step (host clock only); ranks of a multi-process
    run agree at log steps, where they all-reduce anyway: a step never waits on the slowest rank's clock."""
    past = time.perf_counter() > deadline
    if not info.enabled:
        return past
    return D.any_rank(past, info) if log_now else False


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA only: CPU bf16 matmuls are slower than fp32 on most CPUs and change numerics."""
    if cfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(cfg: TrainConfig, state: _State, mgr: CheckpointManager, info: D.DistInfo) -> Path | None:
    """Gather every rank's RNG + loader state, then rank 0 writes the checkpoint atomically."""
    rank_state = {"rng": capture_rng_state(), "loader": _loader_state(state.loader)}
    rank_states = D.all_gather(rank_state, info)
    path = None
    if info.is_main:

        def write(tmp: Path) -> None:
            extra = None
            if state.ema is None:
                state.policy.save(tmp)
            else:  # the checkpoint serves the average; --resume continues from the optimizer's weights
                with state.ema.applied():
                    state.policy.save(tmp)
                extra = {RAW_WEIGHTS: state.ema.raw_weights(), **state.ema.state_dict()}
            cfg.save(tmp / TRAIN_CONFIG)
            write_trainer_state(tmp, state.step, state.optimizer, state.scheduler, rank_states, extra,
                                train_seconds=state.run_seconds())  # fmt: skip

        path = mgr.save(state.step, write)
    D.barrier(info)
    return path


def _loader_state(loader):
    from oft.train.checkpoint import to_jsonable

    get = getattr(loader, "state_dict", None)
    return None if get is None else to_jsonable(get())


__all__ = ["TrainResult", "open_datasets", "robot_spec_for", "save_checkpoint", "seed_everything", "train"]
