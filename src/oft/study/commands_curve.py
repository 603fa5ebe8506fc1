"""``oft eval-curve``: success against training minutes, from the checkpoints one training run kept.

oft eval-curve --run runs/aloha --env aloha --tasks transfer-cube --episodes 20 --every 2000 --out runs/curve
oft eval-curve --run runs/study/variants/pdac_l1/train --env metaworld --tasks mt10 --episodes 10 --out runs/c
oft eval-curve --run runs/aloha --env aloha --tasks two-cube --episodes 50 --out runs/curve \
    --instruction "transfer the red cube" --instruction "transfer the blue cube"
oft eval-curve --study runs/lang --variant pdac_l1_film --every 2000 --workers 2 --out runs/lang_curve

With ``--study DIR --variant NAME`` every point is evaluated as the study evaluated the variant (its suite's
env options, tasks, episodes and seeds; the language suite's instruction swap and withheld control), so the
last point is the study's row; ``--run`` on a study's variant renders the same scene (the policy records it)
but runs each task under its own instruction only, as ``oft eval`` does.

Each point is an ``oft eval`` of one checkpoint on the same seeds (layouts no demonstration used); a rerun
reuses the points already evaluated the same way (settings and --dtype/--unnorm-key/--center-crop; not
--device) and evaluates the others again, naming what differs. Keep more checkpoints with ``oft train --set
keep_last=N``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from oft.cli import COUNT, COUNT_OR_ZERO, comma_list
from oft.model.commands import add_loading_arguments, resolve_dtype
from oft.sim.commands_eval import add_ensemble_argument

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="training run directory (oft train --out)")
    source.add_argument(
        "--study", type=Path,
        help="an oft study directory: evaluate --variant's checkpoints as the study does (its tasks, "
        "episodes, seeds and env options; no --env/--tasks/--episodes/--seed/--max-steps/--instruction)",
    )  # fmt: skip
    p.add_argument("--variant", default=None, help="with --study: the variant whose run to evaluate")
    p.add_argument("--env", default=None, help="simulator suite (metaworld (default), aloha, libero)")
    p.add_argument("--tasks", default=None, help="comma-separated task names, 'all', or 'mt10' (metaworld)")
    p.add_argument(
        "--episodes", type=COUNT, default=None, help="episodes per task and checkpoint (default 10)"
    )
    p.add_argument("--out", type=Path, required=True, help="curve.json/.md/.png, one eval per step")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--steps", default=None, help="comma-separated checkpoint steps (default: all kept)")
    which.add_argument(
        "--every", type=COUNT, default=None, help="checkpoints at multiples of N, and the last"
    )
    p.add_argument(
        "--seed", type=COUNT_OR_ZERO, default=None, help="episode i: seed eval_seed_offset + seed + i (0)"
    )
    p.add_argument("--open-loop-steps", type=COUNT, default=None, help="actions run per chunk (default all)")
    add_ensemble_argument(p)
    p.add_argument("--max-steps", type=COUNT, default=None, help="episode limit (default: the suite's)")
    p.add_argument(
        "--instruction", action="append", default=None, metavar="TEXT",
        help="run every task under this instruction instead of its own (repeat: one row per task and "
        "instruction, the same start states each; as oft eval --instruction)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="device for the policies")
    p.add_argument(
        "--workers", type=COUNT, default=os.cpu_count() or 1, help="simulator processes in parallel"
    )
    add_loading_arguments(p)  # --dtype, --unnorm-key, --center-crop/--no-center-crop


def _steps(text: str | None) -> tuple[int, ...] | None:

    return None if text is None else comma_list(text, "--steps", int)


# what a study decides for its evaluation, so --study refuses them
_STUDY_DECIDES = ("env", "tasks", "episodes", "seed", "max_steps", "instruction", "open_loop_steps",
                  "temporal_ensemble_coeff")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.study is not None:
        return _run_study_curve(args)
    if args.variant is not None:
        raise ValueError(f"--variant {args.variant!r} names a variant of a study: give --study DIR with it")
    if args.tasks is None:
        raise ValueError("--tasks is required with --run (e.g. --tasks drawer-open-v3, or 'mt10')")
    _warn_if_study_run(args.run)
    args.env = args.env or "metaworld"
    args.episodes = 10 if args.episodes is None else args.episodes
    args.seed = 0 if args.seed is None else args.seed
    return _run_curve(args)


def _run_study_curve(args: argparse.Namespace) -> int:
    from oft.study.curve import evaluate_study_curve, format_curve

    given = [f"--{k.replace('_', '-')}" for k in _STUDY_DECIDES if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: the study decides these for its evaluation; drop them")
    if args.variant is None:
        raise ValueError(f"--study {args.study} needs --variant NAME (whose checkpoints to evaluate)")
    steps = _steps(args.steps)
    curve = evaluate_study_curve(args.study, args.variant, args.out, steps=steps, every=args.every,
                                 workers=args.workers, device=args.device,
                                 load_kwargs=_load_kwargs(args, None))  # fmt: skip
    print(format_curve(curve))
    print(f"curve: {args.out / 'curve.json'}, {args.out / 'curve.png'}")
    return 0


def _warn_if_study_run(run: Path) -> None:
    """A run inside ``<study>/variants/<name>/train`` was evaluated by its study with the suite's settings."""
    study = run.parent.parent.parent
    if run.parent.parent.name == "variants" and (study / "study.json").is_file():
        log.warning(
            "%s is variant %s of the study %s: evaluated here as oft eval does, not as the study did "
            "(its tasks, episodes, seeds, instruction swap); --study %s --variant %s evaluates it as the "
            "study did",
            run, run.parent.name, study, study, run.parent.name,
        )  # fmt: skip


def _load_kwargs(args: argparse.Namespace, last: Path | None) -> dict:
    """load_policy's options; without a checkpoint to read it from, dtype None (load_policy's float32, as a
    study evaluates its variants)."""
    dtype = resolve_dtype(args.dtype, last) if last is not None or args.dtype else None
    return {"dtype": dtype, "unnorm_key": args.unnorm_key, "center_crop": args.center_crop}


def _run_curve(args: argparse.Namespace) -> int:
    from oft.study.curve import CurveConfig, choose_checkpoints, evaluate_curve, format_curve

    steps = _steps(args.steps)
    instructions = None if args.instruction is None else tuple(args.instruction)
    if instructions is not None:
        from oft.sim.evaluate import check_takes_instruction

        check_takes_instruction(args.env)  # before any checkpoint is read
    last = choose_checkpoints(args.run, steps, args.every)[-1][1]
    load_kwargs = _load_kwargs(args, last)
    config = CurveConfig(run=args.run, env=args.env, tasks=args.tasks, episodes=args.episodes, out=args.out,
                         steps=steps, every=args.every, seed=args.seed, workers=args.workers,
                         device=args.device, open_loop_steps=args.open_loop_steps, max_steps=args.max_steps,
                         load_kwargs=load_kwargs, instructions=instructions,
                         temporal_ensemble_coeff=args.temporal_ensemble_coeff)  # fmt: skip
    curve = evaluate_curve(config)
    print(format_curve(curve))
    print(f"curve: {args.out / 'curve.json'}, {args.out / 'curve.png'}")
    return 0
