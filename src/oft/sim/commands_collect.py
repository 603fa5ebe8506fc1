"""``oft collect``: successful expert demonstrations into a LeRobot v3 dataset (resumable).

oft collect metaworld --task pick-place-v3 --episodes 50 --out data/pick-place
oft collect metaworld --task mt10 --episodes 20 --out data/mt10 --workers 2 --image-size 64
oft collect aloha --task transfer-cube,insertion,two-cube --episodes 50 --out data/aloha --image-size 64
oft collect aloha --task two-cube --episodes 50 --out data/two-cube \
    --instruction "transfer the red cube" --instruction "transfer the blue cube"    # 50 layouts x 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from oft.cli import COUNT, comma_list

# suites with a scripted expert, and the cameras their adapters render besides the spec's default ones
# (MetaWorld: oft.sim.metaworld's camera list; ALOHA: oft.sim.aloha.CAMERAS). Kept here so that --help does
# not import the simulators.
EXPERT_SUITES = {
    "metaworld": "any of corner, corner2, corner3, topview, behindGripper, gripperPOV, corner4, workspace",
    "aloha": "cam_high (top), cam_left_wrist, cam_right_wrist",
}


def cameras_help() -> str:
    """``--cameras`` help: each suite's default cameras (its robot spec) and the ones it can render."""
    from oft.spec import get_spec

    parts = [f"{name}: {','.join(get_spec(name).cameras)} ({more})" for name, more in EXPERT_SUITES.items()]
    return "comma-separated cameras; default the suite's spec — " + "; ".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("env", help=f"simulator suite with a scripted expert ({', '.join(EXPERT_SUITES)})")
    p.add_argument("--task", "--tasks", dest="tasks", required=True, help="tasks: a,b or mt10")
    p.add_argument(
        "--episodes", type=COUNT, required=True,
        help="successful episodes per task (with --instruction: start states, each once per instruction)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="dataset directory (rerun to resume)")
    p.add_argument("--workers", type=COUNT, default=2, help="parallel simulator processes")
    p.add_argument("--cameras", default=None, help=cameras_help())
    p.add_argument("--image-size", type=COUNT, default=128, help="square image size in pixels")
    p.add_argument("--images", choices=("video", "png"), default="video", help="image storage: MP4 or PNG")
    p.add_argument(
        "--instruction", action="append", default=None, metavar="TEXT",
        help="demonstrate every start state once under this instruction (repeat: once under each, kept only "
        "if all succeed, so only the instruction tells a layout's demonstrations apart; aloha two-cube: the "
        "named colour is the cube the expert transfers; elsewhere it changes the text only)",
    )  # fmt: skip
    p.add_argument(
        "--after-success", type=after_success_arg, default=0, metavar="N|end",
        help="record N more steps of each demonstration once the task succeeds (default 0: end on the "
        "success frame), or 'end' to record to the step limit as ACT's scripted ALOHA data does "
        "(a policy trained without them has no example of what follows the demonstrated end)",
    )  # fmt: skip
    p.add_argument(
        "--action-noise", type=noise_arg, default=0.0, metavar="STD",
        help="standard deviation of Gaussian noise added to each action the expert executes, in the env's "
        "action units (MetaWorld: [-1, 1], 1 = 1 cm per step), while the clean action is recorded: DART's "
        "noise injection, so the demonstrations show the expert correcting the drift a cloned policy makes "
        "(default 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--first-seed", type=seed_arg, default=0, metavar="N",
        help="the first reset seed tried for each task (default 0): a second dataset of a task collected "
        "from 0 again holds the first one's layouts, from past its last seed it holds new ones (seeds stay "
        "below the first evaluation seed, 1000000)",
    )  # fmt: skip


def noise_arg(text: str) -> float:
    """``--action-noise``: a finite standard deviation >= 0 (:func:`oft.sim.rollout.check_action_noise`)."""
    from oft.sim.rollout import check_action_noise  # here, so that --help does not import it

    try:
        value = float(text)
        check_action_noise(value)
    except ValueError:
        message = f"expected a standard deviation >= 0 (e.g. 0.3), got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return value


def _whole_number(text: str) -> int:
    """``text`` as an integer, or -1 where it is not one (the callers refuse anything below 0)."""
    try:
        return int(text)
    except ValueError:
        return -1


def seed_arg(text: str) -> int:
    """``--first-seed``: an integer >= 0 (its upper bound, the env's, is checked by ``collect``)."""
    n = _whole_number(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer >= 0, got {text!r}")
    return n


def after_success_arg(text: str) -> int | None:
    """``--after-success``: a step count >= 0, or ``end`` (None: to the env's step limit)."""
    if text.strip().lower() == "end":
        return None
    n = _whole_number(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of steps >= 0 or 'end', got {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    from oft.sim.collect import CollectConfig, collect
    from oft.sim.evaluate import resolve_tasks
    from oft.spec import get_spec

    tasks = resolve_tasks(args.env, args.tasks)
    cameras = get_spec(args.env).cameras if args.cameras is None else comma_list(args.cameras, "--cameras")
    cfg = CollectConfig(
        cameras=cameras,
        image_size=args.image_size,
        workers=args.workers,
        video=args.images == "video",
        instructions=tuple(args.instruction or ()),
        after_success=args.after_success,
        action_noise=args.action_noise,
        first_seed=args.first_seed,
    )
    summary = collect(args.env, tasks, args.episodes, args.out, cfg, progress=True)
    print(json.dumps(summary, indent=1))
    return 0
