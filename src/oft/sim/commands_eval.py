"""``oft eval``: success rate of a checkpoint (or the scripted expert) in a simulator.

oft eval --env metaworld --tasks mt10 --expert --episodes 10 --out runs/eval_expert
oft eval --env metaworld --tasks drawer-open-v3 --checkpoint runs/ckpt --episodes 20 --out runs/eval
oft eval --env aloha --tasks two-cube --checkpoint runs/ckpt --episodes 50 --out runs/eval \
    --instruction "transfer the red cube" --instruction "transfer the blue cube"
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
from pathlib import Path

from oft.cli import COUNT, COUNT_OR_ZERO, Bounded, comma_list
from oft.model.commands import add_loading_arguments, load_from_args, loaded_source

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="metaworld", help="simulator suite (metaworld, aloha, libero)")
    p.add_argument("--tasks", required=True, help="comma-separated task names, 'all', or 'mt10' (metaworld)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(  # a str: Path would turn a Hub id's '/' into '\\' on Windows
        "--checkpoint", help="checkpoint directory, training run or Hub id (oft.load_policy)"
    )
    who.add_argument("--expert", action="store_true", help="evaluate the env's scripted expert")
    p.add_argument("--episodes", type=COUNT, default=10, help="episodes per task")
    p.add_argument("--out", type=Path, required=True, help="directory for results.json, success.png, videos/")
    p.add_argument(
        "--seed", type=COUNT_OR_ZERO, default=0, help="episode i uses seed env.eval_seed_offset + seed + i"
    )
    p.add_argument(
        "--demonstration-layouts", type=Path, default=None, metavar="DATASET",
        help="evaluate on the layouts DATASET's demonstrations were collected on (the seeds its "
        "meta/oft_collect.json records; episode i of a task is its i-th) instead of unseen ones: a policy "
        "that fails where it was trained does not fit its data",
    )  # fmt: skip
    p.add_argument(
        "--video-episodes", type=COUNT_OR_ZERO, default=1, help="record the first M episodes of each task"
    )
    p.add_argument("--open-loop-steps", type=COUNT, default=None, help="actions run per chunk (default all)")
    add_ensemble_argument(p)
    p.add_argument("--max-steps", type=COUNT, default=None, help="episode limit (default: the suite's)")
    p.add_argument("--image-size", type=COUNT, default=None, help="rendered image size (default adapter's)")
    p.add_argument("--cameras", default=None, help="comma-separated cameras (default: the policy's)")
    p.add_argument(
        "--instruction", action="append", default=None, metavar="TEXT",
        help="run every task under this instruction instead of its own (repeat: each start state once per "
        "instruction, rows 'task: instruction'; aloha two-cube: the named colour is the cube to transfer)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="device for --checkpoint (default cpu)")
    p.add_argument(
        "--workers", type=COUNT, default=os.cpu_count() or 1,
        help="simulator processes in parallel (default: the number of cores); per-seed results equal 1's",
    )  # fmt: skip
    p.add_argument(
        "--batch-policy", action="store_true",
        help="answer all waiting workers with one batched prediction (GPU throughput; may round differently)",
    )  # fmt: skip
    add_loading_arguments(p)  # --dtype, --unnorm-key, --center-crop/--no-center-crop


def add_ensemble_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--temporal-ensemble-coeff", type=Bounded(float), default=None, metavar="COEFF",
        help="ACT's temporal ensembling: query every step and average the chunks' predictions for it, "
        "weights exp(-COEFF*i) from the oldest (ACT: 0.01); default off, chunks run open-loop",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from oft.sim.base import check_seeds
    from oft.sim.evaluate import check_takes_instruction, evaluate, evaluate_instructions, resolve_tasks
    from oft.sim.rollout import ExpertPolicy, check_execution

    check_execution(args.open_loop_steps, args.temporal_ensemble_coeff)  # before a checkpoint is loaded
    if args.expert:
        check_expert_options(args)
    tasks = resolve_tasks(args.env, args.tasks)
    layouts = {}
    if args.demonstration_layouts is None:
        check_seeds(args.env, tasks, args.seed, args.episodes)  # likewise
    else:
        layouts = demonstration_layouts(args.demonstration_layouts, args.env, tasks, args.seed, args.episodes)
    if args.instruction is not None:
        check_takes_instruction(args.env)  # before a checkpoint is loaded

    env_kwargs = {}
    if args.image_size is not None:
        env_kwargs["image_size"] = args.image_size
    if args.cameras is not None:
        env_kwargs["cameras"] = comma_list(args.cameras, "--cameras")
    if args.expert:
        policy = ExpertPolicy
    else:
        from oft.hub import is_hub_id

        # a Hub id: load_policy fetches it
        if not Path(args.checkpoint).exists() and not is_hub_id(args.checkpoint):
            raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
        policy = load_from_args(args, args.checkpoint, device=args.device or "cpu")
        policy.eval()
    if args.instruction is not None:
        run_eval = functools.partial(evaluate_instructions, instructions=args.instruction)
    else:
        run_eval = evaluate
    results = run_eval(
        policy,
        args.env,
        args.tasks,
        episodes=args.episodes,
        seed=args.seed,
        out=args.out,
        video_episodes=args.video_episodes,
        env_kwargs=env_kwargs,
        open_loop_steps=args.open_loop_steps,
        max_steps=args.max_steps,
        temporal_ensemble_coeff=args.temporal_ensemble_coeff,
        progress=True,
        workers=args.workers,
        batch=args.batch_policy,
        policy_source="expert" if args.expert else loaded_source(policy, args.checkpoint),
        **layouts,
    )
    if args.demonstration_layouts is not None:
        print(f"layouts: {results['layouts']} (not unseen: this measures fitting, not generalization)")
    _print_table(results)
    if results.get("policy_step") is not None:
        print(f"checkpoint: {results['policy']} (step {results['policy_step']})")
    print(f"results: {args.out / 'results.json'}")
    return 0


# options of the policy --checkpoint loads (and how it answers the workers), which --expert has none of
_POLICY_OPTIONS = {"dtype": "--dtype", "unnorm_key": "--unnorm-key", "center_crop": "--center-crop",
                   "device": "--device", "batch_policy": "--batch-policy"}  # fmt: skip


def check_expert_options(args: argparse.Namespace) -> None:
    """ValueError naming the options given with ``--expert`` that only a loaded policy takes: the scripted
    expert would silently ignore them, and a results.json would not say they were."""
    given = [flag for key, flag in _POLICY_OPTIONS.items() if getattr(args, key) not in (None, False)]
    if args.center_crop is False:
        given.append("--no-center-crop")
    if given:
        raise ValueError(
            f"{', '.join(given)}: options of a loaded policy (--checkpoint); --expert loads none, drop them"
        )


def demonstration_layouts(dataset: Path, env: str, tasks: list[str], seed: int, episodes: int) -> dict:
    """``evaluate``'s ``reset_seeds`` and ``layouts`` for ``--demonstration-layouts dataset``: the first
    ``episodes`` demonstration seeds of each task. Raises ValueError (before a checkpoint is loaded) for a
    dataset of another env, a task with fewer demonstrations than ``episodes``, or a ``--seed``."""
    from oft.sim.collect import demonstration_seeds
    from oft.sim.evaluate import check_reset_seeds

    recorded_env, seeds = demonstration_seeds(dataset)
    if recorded_env != env:
        raise ValueError(f"{dataset} was collected in env {recorded_env!r}; this evaluation runs {env!r}")
    if seed:
        raise ValueError(f"--seed {seed} offsets the unseen layouts; with --demonstration-layouts expected 0")
    check_reset_seeds(seeds, tasks, seed, episodes)
    return {"reset_seeds": {t: seeds[t][:episodes] for t in tasks}, "layouts": f"demonstrations of {dataset}"}


def _print_table(results: dict) -> None:
    """One row per task and the overall one: successes/episodes, rate, 95% Wilson interval."""
    width = max(len(t) for t in [*results["tasks"], "overall"])
    rows = [*results["tasks"].items(), ("overall", results["overall"])]
    followed = all("followed" in r for _, r in rows)  # the env says whether the instruction was acted on
    head = "  followed (what the instruction names)" if followed else ""
    print(f"{'task':<{width}}  {'successes':>9} {'rate':>6}  95% CI (Wilson)" + head)
    for task, r in rows:
        lo, hi = r["ci95"]
        row = f"{r['successes']:>4}/{r['episodes']:<4} {100 * r['success_rate']:5.1f}%"
        extra = (
            f"  {r['followed']:>4}/{r['episodes']:<4} {100 * r['followed_rate']:5.1f}%" if followed else ""
        )
        print(f"{task:<{width}}  {row}  [{100 * lo:5.1f}, {100 * hi:5.1f}]" + extra)
    for task, r in results["tasks"].items():
        if "stages" in r:  # where the failures stop (ALOHA: ACT's reward stages)
            reached = ", ".join(f"{name} {n}/{r['episodes']}" for name, n in r["stages"].items())
            print(f"{task}: episodes reaching each stage: {reached}")
    for task, e in results.get("same_object", {}).items():
        print(
            f"{task}: {e['start_states']} start states with an object moved under every instruction, "
            f"{e['same']} of them the same one whatever the instruction (a reader of it moves different ones)"
        )
    print(
        f"wall {results['wall_s']} s, {results['env_steps_per_s']} env steps/s, "
        f"{results['episodes_per_s']} episodes/s with {results['workers']} worker(s)"
    )
    log.debug(json.dumps(results["overall"]))
