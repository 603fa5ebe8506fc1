"""``oft quickstart``: the whole OFT recipe on a laptop CPU in under half an hour, no flags needed.

1. collect MetaWorld expert demonstrations for a few tasks (reused when already in ``--out``);
2. train a small OFT policy from scratch — parallel decoding of an action chunk, L1 head, both cameras
   (``corner`` + ``gripperPOV``), proprio, the language instruction through FiLM — with a wall-clock budget;
3. evaluate it in the simulator on layouts no demonstration used;
4. print a success table and the policy's action throughput; save videos, plots and ``results.json``.

Every phase is resumable: rerunning the command reuses the demonstrations, continues training from the last
checkpoint (or skips it when finished) and re-evaluates.

Default tasks: drawer open / close, whose goal is visually large (learnable from 64 px pixels within minutes),
and faucet open / close, which start from the same-looking faucet once the goal markers are hidden
(``--goal-markers auto``; both faucet tasks then draw their start states from one pool, as the language
study's do): only the instruction tells the policy which way to turn it, so their success is instruction
following. Measured results of the defaults: ``docs/results/quickstart.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

from oft.cli import COUNT, COUNT_OR_ZERO, POSITIVE

log = logging.getLogger(__name__)

# two visually large goals, and a pair that only the instruction tells apart (markers hidden)
DEFAULT_TASKS = ("drawer-open-v3", "drawer-close-v3", "faucet-open-v3", "faucet-close-v3")
DEFAULT_OUT = "runs/quickstart"
PRESET = "metaworld-tiny"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument(
        "--budget-minutes", type=POSITIVE, default=30.0, help="total wall-clock budget (default 30)"
    )
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated MetaWorld tasks")
    p.add_argument("--demos", type=COUNT, default=50, help="expert demonstrations per task (default 50)")
    p.add_argument(
        "--eval-episodes", type=COUNT, default=25, help="evaluation episodes per task (default 25)"
    )
    p.add_argument("--threads", type=COUNT, default=None, help="torch threads (default: idle cores, >= 1)")
    p.add_argument(
        "--train-minutes", type=POSITIVE, default=None, help="training budget (default: what is left)"
    )
    p.add_argument("--steps", type=COUNT, default=None, help="max optimizer steps (default: the preset's)")
    p.add_argument("--head", default="l1", help="action head: l1 (OFT), diffusion, discrete")
    p.add_argument("--decode", default="parallel", help="parallel (OFT) or autoregressive (OpenVLA baseline)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--videos", type=COUNT_OR_ZERO, default=2, help="videos saved per task")
    p.add_argument(
        "--eval-max-steps", type=COUNT, default=None, help="episode step limit (default: the env's)"
    )
    p.add_argument("--seed", type=COUNT_OR_ZERO, default=0)
    p.add_argument("--goal-markers", choices=("auto", "shown", "hidden"), default="auto",
                   help="MetaWorld's goal markers: auto hides them when no task needs one (drawers, "
                   "faucets...: faucet-open and -close then look alike but for the instruction)")  # fmt: skip
    p.add_argument(
        "--compare-baseline",
        action="store_true",
        help="also train + evaluate the paper's baseline (discrete tokens, autoregressive) on the same data",
    )


def run(args: argparse.Namespace) -> int:
    from oft.sim.metaworld import resolve_tasks

    tasks = resolve_tasks(args.tasks)  # an unknown or empty --tasks is refused before anything is written
    runs = [("oft", args.head, args.decode, [])]
    if args.compare_baseline:
        # OpenVLA as the paper compares against it: action tokens decoded one by one, one action per query
        runs.append(("baseline", "discrete", "autoregressive", ["chunk_len=1", "film=false"]))
    # every run's config checked before anything is written (a bad --set is refused before the demos)
    configs = [train_config((head, decode, extra), args) for _, head, decode, extra in runs]
    image_size, cameras = demo_frames(configs)
    out = Path(args.out)
    args.env_kwargs = scene_options(tasks, args.goal_markers)
    settings = data_settings(tasks, args)
    check_rerun(out, settings)  # a rerun continues the same run: other data settings are refused here
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    t_start = time.perf_counter()
    deadline = t_start + 60.0 * args.budget_minutes
    walls: dict[str, float] = {}

    args.threads = args.threads or idle_cores()
    log.info("using %d torch thread(s)", args.threads)
    log.info("goal markers %s", settings["goal_markers"])
    t0 = time.perf_counter()
    collect_phase(out / "data", tasks, args.demos, image_size, args.env_kwargs, cameras)
    datasets = [out / "data"]
    walls["collect_s"] = time.perf_counter() - t0

    summary = {}
    for i, (name, head, decode, extra) in enumerate(runs):
        run_dir = out if name == "oft" else out / "baseline"
        variant = (head, decode, extra)
        summary[name] = train_and_evaluate(args, run_dir, datasets, tasks, variant, deadline, len(runs) - i)
    walls.update(summary["oft"]["wall_s"])
    walls["total_s"] = time.perf_counter() - t_start
    results = _results(summary, tasks, walls, args)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _print_table(results, out)
    return 0


# what a quickstart directory holds was made with: its demonstrations and the runs trained on them
SETTINGS_FILE = "quickstart.json"


def data_settings(tasks: list[str], args: argparse.Namespace) -> dict:
    """The settings the demonstrations and the training depend on (``--tasks``, ``--demos``, ``--seed``, and
    the goal markers as ``--goal-markers`` resolves them: "shown" or "hidden", so auto and the choice it
    makes are one), as :data:`SETTINGS_FILE` records them; ``args.env_kwargs`` must hold
    :func:`scene_options`. ``--compare-baseline`` is not one: a rerun may add the baseline, trained on the
    same demonstrations."""
    markers = "hidden" if args.env_kwargs.get("show_goal") is False else "shown"
    return {"tasks": sorted(tasks), "demos": args.demos, "seed": args.seed, "goal_markers": markers}


def check_rerun(out: Path, settings: dict) -> None:
    """ValueError when ``out`` holds a quickstart made with other :func:`data_settings`, naming each that
    differs: a rerun keeps the demonstrations and the finished training, so the results would describe a
    policy trained on other data (more demonstrations collected after training ended, or tasks it also
    learned) than the command line says. A directory without the record (no quickstart yet) is accepted."""
    record = out / SETTINGS_FILE
    if not record.is_file():
        return
    old = json.loads(record.read_text())
    differ = [f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v]
    if differ:
        raise ValueError(
            f"--out {out} holds a quickstart made with {'; '.join(differ)}: a rerun continues it with its "
            "demonstrations and training; give the same settings, or another --out"
        )


def train_and_evaluate(args, run_dir: Path, datasets, tasks, variant, deadline, runs_left) -> dict:
    """Train (time-budgeted, resumable) then evaluate one policy; returns its results.

    variant: (head, decode, extra ``field=value`` overrides).
    """
    from oft import load_policy

    head, decode, _ = variant
    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    eval_reserve = _eval_reserve_s(len(tasks), args.eval_episodes)
    left = (deadline - time.perf_counter() - runs_left * eval_reserve) / runs_left
    # max_minutes counts the training loop; the set-up before it (decoding 200 demonstrations: seconds) comes
    # out of the evaluation reserve's margin
    minutes = args.train_minutes if args.train_minutes is not None else max(left / 60.0, 0.5)
    result = train_phase(run_dir / "train", datasets, variant, minutes, args)
    walls["train_s"] = time.perf_counter() - t0
    policy = load_policy(result.checkpoint)
    torch.set_num_threads(1)  # a 1M-parameter model gains little from a 2nd thread; rendering runs beside it
    t0 = time.perf_counter()
    evaluation = eval_phase(policy, run_dir / "eval", tasks, args)
    walls["eval_s"] = time.perf_counter() - t0
    return {
        "head": head,
        "decode": decode,
        "checkpoint": str(result.checkpoint),
        "train_steps": result.step,
        "train_samples_per_s": result.samples_per_s,
        "final_loss": result.final_loss,
        "stopped_by": result.stopped_by,
        "actions_per_s": action_throughput(policy, datasets),
        "evaluation": evaluation,
        "wall_s": walls,
    }


# --------------------------------------------------------------------------- phases
def show_goal_markers(tasks: list[str], choice: str = "auto") -> bool:
    """Whether MetaWorld draws its goal markers: ``"auto"`` hides them when every task is one whose marker
    only draws the goal state of an object in view (:data:`oft.sim.metaworld.GOAL_MARKER_OPTIONAL`).

    Raises ValueError for a ``choice`` other than auto / shown / hidden.
    """
    from oft.sim.metaworld import GOAL_MARKER_OPTIONAL

    if choice not in ("auto", "shown", "hidden"):
        raise ValueError(f"goal markers: expected 'auto', 'shown' or 'hidden', got {choice!r}")
    if choice != "auto":
        return choice == "shown"
    return not all(t in GOAL_MARKER_OPTIONAL for t in tasks)


def scene_options(tasks: list[str], choice: str = "auto") -> dict:
    """The MetaWorld options of the quickstart's demonstrations and evaluation: ``{}`` (the env's defaults)
    when the goal markers are shown (:func:`show_goal_markers`); when hidden, ``show_goal=False`` and
    ``shared_layouts=True``: look-alike tasks (faucet open / close) are then told apart by the instruction
    alone, so they start from one pool of layouts (MetaWorld's own ranges differ, and the position would say
    which task it is). Raises ValueError for a ``choice`` other than auto / shown / hidden."""
    if show_goal_markers(tasks, choice):
        return {}
    return {"show_goal": False, "shared_layouts": True}


def demo_frames(configs) -> tuple[int, tuple[str, ...]]:
    """The image side (pixels) and cameras the demonstrations are rendered with: the trained model's input
    size and the cameras it reads (``--set cameras=...``, else the robot spec's), so no resize is involved.

    Raises ValueError for a base that is not one of the from-scratch architectures (the quickstart builds its
    model) or a robot other than MetaWorld, KeyError for a camera MetaWorld does not have, and ValueError
    when the runs' models differ in size or cameras."""
    from oft.model.build import ARCHITECTURES, input_size
    from oft.sim import check_cameras
    from oft.spec import get_spec

    for c in configs:
        if c.base not in ARCHITECTURES:
            known = ", ".join(ARCHITECTURES)
            raise ValueError(f"the quickstart trains from scratch: base must be one of {known}, "
                             f"got {c.base!r} (continue a checkpoint with oft train --base)")  # fmt: skip
        if c.robot != "metaworld":
            raise ValueError(f"the quickstart collects MetaWorld demonstrations: robot must be 'metaworld', "
                             f"got {c.robot!r}")  # fmt: skip
        check_cameras("metaworld", c.cameras)
    frames = {(input_size(c.base), tuple(c.cameras or get_spec(c.robot).cameras)) for c in configs}
    if len(frames) != 1:
        raise ValueError(
            f"the quickstart's runs share one dataset; their models read different frames: {frames}"
        )
    return frames.pop()


def collect_phase(root: Path, tasks: list[str], demos: int, image_size: int, env_kwargs=None,
                  cameras: tuple[str, ...] = ("corner", "gripperPOV")) -> dict:  # fmt: skip
    """Expert demonstrations of every task in one LeRobot dataset; a rerun keeps them and tops them up.

    Frames are rendered at the model's input size (evaluation then renders at the size the trained policy
    records, this one, and no resize is involved anywhere) and stored as PNG (lossless: MP4 compression
    would be a train/eval difference the tiny model has to absorb).
    """
    from oft.sim.collect import CollectConfig, collect

    cfg = CollectConfig(cameras=tuple(cameras), image_size=image_size, workers=2, video=False,
                        env_kwargs=dict(env_kwargs or {}))  # fmt: skip
    return collect("metaworld", tasks, demos, root, cfg, progress=True)


def train_config(variant, args):
    """The quickstart preset with ``variant`` = (head, decode, extra ``field=value`` overrides) and the
    command line's ``--set`` / ``--steps`` / ``--seed`` / ``--threads``, validated (the data added later).
    The variant's extra fields win over ``--set`` (the baseline's ``chunk_len=1``, ``film=false``).

    Raises ValueError / KeyError naming a bad override, or a ``--set`` of what the quickstart sets itself
    (head, decode, seed, num_threads, datasets, max_minutes; max_steps with ``--steps``)."""
    from oft.train.config import apply_overrides, override_name, refuse_owned_overrides
    from oft.train.presets import get_preset

    head, decode, extra = variant
    owned = dict(head="--head", decode="--decode", seed="--seed", num_threads="--threads",
                 datasets="its demonstrations",
                 max_minutes="the budget: --train-minutes / --budget-minutes")  # fmt: skip
    if args.steps is not None:
        owned["max_steps"] = "--steps"
    refuse_owned_overrides(args.overrides, owned, "the quickstart")
    overrides = [f"head={head}", f"decode={decode}", f"seed={args.seed}"]
    overrides += [f"num_threads={args.threads}"] if args.threads else []
    overrides += [f"max_steps={args.steps}"] if args.steps is not None else []
    kept = sorted({override_name(o) for o in args.overrides} & {override_name(o) for o in extra})
    if kept:  # the baseline's own fields (chunk_len=1, film=false) are what make it the paper's baseline
        log.info("%s/%s keeps its own %s over --set", head, decode, ", ".join(kept))
    overrides += [*args.overrides, *extra]
    return apply_overrides(get_preset(PRESET), overrides).validate(check_paths=False)


def train_phase(run_dir: Path, datasets: list[Path], variant, minutes: float, args):
    from oft.train.loop import train

    cfg = train_config(variant, args)
    cfg = cfg.replace(datasets=tuple(str(p) for p in datasets), max_minutes=minutes)
    log.info("training %s/%s for at most %.1f min (%d steps)", *variant[:2], minutes, cfg.max_steps)
    return train(cfg, run_dir, resume=True)


def eval_phase(policy, out: Path, tasks: list[str], args) -> dict:
    """Episodes on layouts no demonstration used (``env.eval_seed_offset``), rendered at the size and with
    the cameras the policy records for its training frames (``policy.render_sizes``)."""
    from oft.sim.evaluate import evaluate

    return evaluate(
        policy,
        "metaworld",
        tasks,
        episodes=args.eval_episodes,
        seed=args.seed,
        out=out,
        video_episodes=args.videos,
        max_steps=args.eval_max_steps,
        env_kwargs=getattr(args, "env_kwargs", None),
        progress=True,
    )


def idle_cores() -> int:
    """Cores not already busy (1-minute load average), at least 1.

    On 2 shared cores an oversubscribed torch (2 threads beside another busy process) ran 7x slower than
    with 1 thread (2 vs 15 samples/s measured), so the quickstart only uses cores that are idle.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def _eval_reserve_s(num_tasks: int, episodes: int) -> float:
    """Time kept for evaluation: ~3 s per episode on 2 cores (150-290 env steps/s measured, <= 500 steps)."""
    return 3.0 * num_tasks * episodes + 30.0


def action_throughput(policy, datasets: list[Path], calls: int = 30) -> dict:
    """Actions per second of the trained policy: chunk predictions on real observations, timed."""
    from oft.data import open_dataset
    from oft.observation import Observation

    ds = open_dataset(datasets[0])
    ep = ds.episode(0)
    cams = policy.spec.cameras
    obs = [
        Observation(
            images=[ep.images[c][t] for c in cams],
            proprio=ep.proprio[t] if policy.spec.proprio_dim else None,
            instruction=ep.instruction,
        )
        for t in range(min(len(ep), calls))
    ]
    policy.predict_action_chunk(obs[0])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for i in range(calls):
        n += policy.predict_action_chunk(obs[i % len(obs)]).shape[0]
    dt = time.perf_counter() - t0
    return {
        "actions_per_s": n / dt,
        "chunk_latency_ms": 1000 * dt / calls,
        "chunk_len": policy.spec.chunk_len,
    }


# --------------------------------------------------------------------------- reporting
def _results(summary: dict, tasks: list[str], walls: dict, args) -> dict:
    oft = summary["oft"]
    ev = oft["evaluation"]
    res = {
        "success_rate": ev["overall"]["success_rate"],
        "episodes": ev["overall"]["episodes"],
        "tasks": {t: ev["tasks"][t]["success_rate"] for t in tasks},
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "budget_minutes": args.budget_minutes,
        "goal_markers": "hidden" if args.env_kwargs.get("show_goal") is False else "shown",
        "policy": {k: v for k, v in oft.items() if k not in ("evaluation", "wall_s")},
    }
    if "baseline" in summary:
        b = summary["baseline"]
        res["baseline"] = {
            "success_rate": b["evaluation"]["overall"]["success_rate"],
            "episodes": b["evaluation"]["overall"]["episodes"],
            "tasks": {t: b["evaluation"]["tasks"][t]["success_rate"] for t in tasks},
            "policy": {k: v for k, v in b.items() if k not in ("evaluation",)},
        }
    return res


def _print_table(results: dict, out: Path) -> None:
    cols = ["oft"] + (["baseline"] if "baseline" in results else [])
    print(f"\n{'task':<24}" + "".join(f"{c:>12}" for c in cols))
    for task, rate in results["tasks"].items():
        row = [rate] + ([results["baseline"]["tasks"][task]] if "baseline" in results else [])
        print(f"{task:<24}" + "".join(f"{100 * r:>11.0f}%" for r in row))
    overall = [results["success_rate"]] + (
        [results["baseline"]["success_rate"]] if "baseline" in results else []
    )
    print(
        f"{'overall':<24}"
        + "".join(f"{100 * r:>11.1f}%" for r in overall)
        + f"   ({results['episodes']} episodes)"
    )
    print()
    for name, policy in [("oft", results["policy"])] + (
        [("baseline", results["baseline"]["policy"])] if "baseline" in results else []
    ):
        tp = policy["actions_per_s"]
        print(
            f"action throughput ({name}): {tp['actions_per_s']:.0f} actions/s "
            f"({tp['chunk_latency_ms']:.1f} ms per chunk of {tp['chunk_len']})"
        )
    w = results["wall_s"]
    print("wall time: " + ", ".join(f"{k[:-2]} {v / 60:.1f} min" for k, v in w.items()))
    print(f"results, videos and plots: {out}")
