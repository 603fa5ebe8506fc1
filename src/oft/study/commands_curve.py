"""``oft eval-curve``: success against training minutes, from the checkpoints one training run kept.

oft eval-curve --run runs/aloha --env aloha --tasks transfer-cube --episodes 20 --every 2000 --out runs/curve
oft eval-curve --run runs/study/variants/pdac_l1/train --env metaworld --tasks mt10 --episodes 10 --out runs/c
oft eval-curve --run runs/aloha --env aloha --tasks two-cube --episodes 50 --out runs/curve \
    --instruction "transfer the red cube" --instruction "transfer the blue cube"

Each point is an ``oft eval`` of one checkpoint on the same seeds (layouts no demonstration used); a rerun
reuses the points already evaluated. Keep more checkpoints with ``oft train --set keep_last=N``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from oft.model.commands import add_loading_arguments, resolve_dtype
from oft.sim.commands_eval import add_ensemble_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="training run directory (oft train --out)")
    p.add_argument("--env", default="metaworld", help="simulator suite (metaworld, aloha, libero)")
    p.add_argument("--tasks", required=True, help="comma-separated task names, 'all', or 'mt10' (metaworld)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task and checkpoint")
    p.add_argument("--out", type=Path, required=True, help="curve.json/.md/.png, one eval per step")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--steps", default=None, help="comma-separated checkpoint steps (default: all kept)")
    which.add_argument("--every", type=int, default=None, help="checkpoints at multiples of N, and the last")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed env.eval_seed_offset + seed + i")
    p.add_argument("--open-loop-steps", type=int, default=None, help="actions run per chunk (default all)")
    add_ensemble_argument(p)
    p.add_argument("--max-steps", type=int, default=None, help="episode limit (default: the suite's)")
    p.add_argument(
        "--instruction", action="append", default=None, metavar="TEXT",
        help="run every task under this instruction instead of its own (repeat: one row per task and "
        "instruction, the same start states each; as oft eval --instruction)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="device for the policies")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="simulator processes in parallel")
    add_loading_arguments(p)  # --dtype, --unnorm-key, --center-crop/--no-center-crop


def _steps(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--steps must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from oft.study.curve import CurveConfig, choose_checkpoints, evaluate_curve, format_curve

    steps = _steps(args.steps)
    instructions = None if args.instruction is None else tuple(args.instruction)
    if instructions is not None:
        from oft.sim.evaluate import check_takes_instruction

        check_takes_instruction(args.env)  # before any checkpoint is read
    last = choose_checkpoints(args.run, steps, args.every)[-1][1]
    load_kwargs = {"dtype": resolve_dtype(args.dtype, last), "unnorm_key": args.unnorm_key,
                   "center_crop": args.center_crop}  # fmt: skip
    config = CurveConfig(run=args.run, env=args.env, tasks=args.tasks, episodes=args.episodes, out=args.out,
                         steps=steps, every=args.every, seed=args.seed, workers=args.workers,
                         device=args.device, open_loop_steps=args.open_loop_steps, max_steps=args.max_steps,
                         load_kwargs=load_kwargs, instructions=instructions,
                         temporal_ensemble_coeff=args.temporal_ensemble_coeff)  # fmt: skip
    curve = evaluate_curve(config)
    print(format_curve(curve))
    print(f"curve: {args.out / 'curve.json'}, {args.out / 'curve.png'}")
    return 0
