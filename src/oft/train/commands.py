"""``oft train``: build a :class:`TrainConfig` from a preset + overrides and run :func:`oft.train.loop.train`.

Multi-GPU / multi-node: launch the same command under torchrun, e.g.
``torchrun --nproc-per-node 8 -m oft.cli train --preset libero-openvla --dataset DIR --out runs/x
--set base=/models/openvla-7b``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oft.cli import COUNT
from oft.train.checkpoint import TRAIN_CONFIG
from oft.train.config import TrainConfig, apply_overrides
from oft.train.presets import PRESETS, default_preset, get_preset

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None,
                   help=f"named config: {', '.join(sorted(PRESETS))} (default: the one of the robot the "
                   "dataset records in meta/info.json, e.g. aloha; else metaworld-tiny)")  # fmt: skip
    p.add_argument(
        "--dataset", action="append", default=[], metavar="DIR", help="dataset directory (repeatable)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory: checkpoints, logs, plots")
    p.add_argument("--steps", type=COUNT, default=None, help="max optimizer steps (overrides the preset)")
    p.add_argument(
        "--base", default=None,
        help="architecture name, OpenVLA directory, oft checkpoint or oft train run (its newest checkpoint), "
        "continued with its own model fields and per-task statistics",
    )  # fmt: skip
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set lr=1e-4 --set cameras=corner --set decay_step=none "
        f"(fields: {', '.join(TrainConfig.__dataclass_fields__)})",
    )
    p.add_argument(
        "--resume", action="store_true",
        help="continue from the latest checkpoint in --out, with the run's own config (+ any --set)",
    )  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--export",
        metavar="DIR",
        default=None,
        help="after training, also write the last checkpoint in the paper's layout (for its eval scripts)",
    )
    p.add_argument(
        "--export-mode", choices=("merged", "adapter"), default=None, help="LoRA merged (default) or not"
    )
    p.add_argument("--unnorm-key", default=None, help="dataset-statistics key of the export (default: robot)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: what it starts from, then ``--set`` / ``--steps`` / ``--base`` / ``--dataset``.

    It starts from, in this order of precedence: ``--preset``; with ``--resume``, the run's own
    ``<out>/train_config.json`` (so a resume restates nothing it does not change); else the dataset's robot's
    preset. With ``--base <oft checkpoint or run>`` the model's fields (:data:`oft.train.config.MODEL_FIELDS`)
    and per-task statistics (:func:`oft.train.build.checkpoint_normalization`) come from the checkpoint, so
    continuing a model needs no ``--set`` describing it.
    """
    saved = Path(args.out) / TRAIN_CONFIG
    if args.preset is None and args.resume and saved.is_file():
        cfg = TrainConfig.from_dict(json.loads(saved.read_text()))
        log.info("--resume: starting from the run's own config %s", saved)
    else:
        cfg = get_preset(args.preset or default_preset(args.dataset))
    if args.base is not None:
        from oft.model.loading import resolve_checkpoint

        # a Hub id: its cached snapshot; an oft train run directory: its newest checkpoint (what is continued)
        base = resolve_checkpoint(args.base)
        if (base / "oft_config.json").is_file():
            from oft.train.build import checkpoint_model_fields, checkpoint_normalization

            cfg = cfg.replace(**checkpoint_model_fields(base), **checkpoint_normalization(base))
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"max_steps={args.steps}")
    if args.base is not None:
        overrides.append(f"base={args.base}")
    cfg = apply_overrides(cfg, overrides)
    if args.dataset:  # not through a "datasets=a,b" string: paths may contain commas
        cfg = cfg.replace(datasets=tuple(args.dataset))
    return cfg


def run(args: argparse.Namespace) -> int:
    _check_export_flags(args)
    mode = args.export_mode or "merged"
    cfg = config_from_args(args).validate(check_paths=not args.print_config)
    if args.print_config:
        import json

        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.export:  # before any training: the run would otherwise end in the refusal
        from oft.train.export import reference_incompatibility

        problem = reference_incompatibility(cfg.action_slots, cfg.film, cfg.film_input)
        if problem is None and mode == "adapter" and not cfg.lora_rank:
            problem = (
                "--export-mode adapter needs LoRA (lora_rank > 0), got lora_rank=0; use --export-mode merged"
            )
        if problem is not None:
            raise ValueError(f"--export {args.export}: this run's model cannot be exported: {problem}")
    from oft.train.loop import train

    result = train(cfg, args.out, resume=args.resume, accept=_export_key_check(args))
    if result.checkpoint is not None and args.export:
        from oft import load_policy
        from oft.model.loading import saved_unnorm_key
        from oft.train.export import export_reference

        policy = load_policy(result.checkpoint, unnorm_key=saved_unnorm_key(result.checkpoint))
        export_reference(policy, args.export, step=result.step, unnorm_key=args.unnorm_key, mode=mode)
        print(f"exported (paper layout, {mode}): {args.export}")
    if result.checkpoint is not None:
        resumed = (
            f" from step {result.start_step} (the run: {result.run_s / 60:.1f} min in all)"
            if result.start_step
            else ""
        )
        print(
            f"trained to step {result.step} ({result.stopped_by}) in {result.wall_s / 60:.1f} min{resumed}, "
            f"{result.samples_per_s:.0f} samples/s, final loss {result.final_loss:.4f}\n"
            f"checkpoint: {result.checkpoint}"
            + (f"\nloss curve: {result.loss_curve}" if result.loss_curve else "")
        )
    return 0


def _check_export_flags(args: argparse.Namespace) -> None:
    """ValueError for ``--unnorm-key`` or ``--export-mode`` without ``--export``: they describe the export,
    and without one they were silently ignored."""
    if args.export:
        return
    if args.unnorm_key is not None:
        raise ValueError(
            f"--unnorm-key {args.unnorm_key!r} names the statistics of an export: it needs --export DIR "
            "(oft eval / oft serve take their own --unnorm-key)"
        )
    if args.export_mode is not None:
        raise ValueError(
            f"--export-mode {args.export_mode} says how to write an export: it needs --export DIR"
        )


def _export_key_check(args: argparse.Namespace) -> Callable[[Any], None] | None:
    """With ``--export --unnorm-key KEY``: the check :func:`oft.train.loop.train` runs on the built policy
    (its statistics' keys are known only once the data are opened), so a misspelled key is refused before
    training rather than after it; else None."""
    if not args.export or args.unnorm_key is None:
        return None
    from oft.train.export import check_unnorm_key

    def accept(policy) -> None:
        try:
            check_unnorm_key(policy, args.unnorm_key)
        except KeyError as e:
            raise KeyError(f"--export {args.export}: {e.args[0]}") from None

    return accept
