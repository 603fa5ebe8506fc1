"""``oft study``: train and evaluate the paper's design variants on one suite, one dataset, one budget.

oft study --suite mt10 --out runs/study_mt10 --budget-minutes 30
oft study --suite language --out runs/study_lang      # pdac_l1 vs pdac_l1_film, 100 demos/task, 8,000 steps
oft study --suite mt10 --out runs/smoke --variants pdac_l1,ar_discrete --tasks reach-v3,drawer-open-v3 \
    --steps 3 --demos 2 --episodes 1 --set base=tiny

Rerunning the same command resumes: finished variants are skipped, an interrupted training continues.
"""

from __future__ import annotations

import argparse
import logging

from oft.cli import COUNT, COUNT_OR_ZERO, POSITIVE, comma_list
from oft.sim.commands_collect import after_success_arg, noise_arg

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oft.study.run import DEFAULT_DEMOS, DEFAULT_PRESET
    from oft.study.suites import SUITES
    from oft.study.variants import VARIANTS

    p.add_argument("--suite", required=True, help=f"task suite: {', '.join(SUITES)}")
    p.add_argument("--out", required=True, help="study directory (data, one folder per variant, results)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated among {', '.join(VARIANTS)} (default: the suite's; else the "
                   "paper's rows, in order)")  # fmt: skip
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=POSITIVE, default=None, help="training minutes per variant")
    budget.add_argument("--steps", type=COUNT, default=None, help="optimizer steps per variant")
    p.add_argument("--demos", type=COUNT, default=None,
                   help=f"demonstrations per task (default: the suite's, else {DEFAULT_DEMOS})")  # fmt: skip
    p.add_argument("--episodes", type=COUNT, default=20, help="evaluation episodes per task (default 20)")
    p.add_argument("--tasks", default=None, help="only these tasks of the suite (comma-separated)")
    p.add_argument("--preset", default=None,
                   help=f"training preset (default: the suite's; else {DEFAULT_PRESET})")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig override for every variant (e.g. base=tiny, batch_size=16)")  # fmt: skip
    p.add_argument("--cameras", default=None,
                   help="cameras to record and draw from, comma-separated: the first is the base variants' "
                   "primary camera, the first two the extra-inputs variants' (default: the preset's, "
                   "else the robot's, MetaWorld corner,gripperPOV; e.g. workspace,gripperPOV)")  # fmt: skip
    p.add_argument("--seed", type=COUNT_OR_ZERO, default=0)
    p.add_argument(
        "--eval-max-steps", type=COUNT, default=None, help="episode step limit (default: the env's)"
    )
    p.add_argument("--threads", type=COUNT, default=None, help="torch threads (default: idle cores, >= 1)")
    p.add_argument("--collect-workers", type=COUNT, default=2, help="processes collecting demonstrations")
    p.add_argument("--eval-workers", type=COUNT, default=1, help="simulator processes per evaluation")
    p.add_argument("--videos", type=COUNT_OR_ZERO, default=0, help="videos saved per task and variant")
    p.add_argument("--after-success", type=after_success_arg, default=0, metavar="N|end",
                   help="record each demonstration N steps past the expert's success, or to the step limit "
                   "('end'); default 0 (as `oft collect --after-success`)")  # fmt: skip
    p.add_argument("--action-noise", type=noise_arg, default=0.0, metavar="STD",
                   help="the expert executes each action plus Gaussian noise of this standard deviation "
                   "while the demonstrations record its clean action (DART; default 0, as `oft collect "
                   "--action-noise`)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from oft.study.run import DEFAULT_DEMOS, DEFAULT_PRESET, StudyConfig, run_study
    from oft.study.suites import get_suite
    from oft.study.variants import PAPER_VARIANTS
    from oft.train.quickstart import idle_cores

    suite = get_suite(args.suite)  # an unknown name fails before anything is written
    variants = (
        comma_list(args.variants, "--variants")
        if args.variants is not None
        else (suite.variants or PAPER_VARIANTS)
    )
    config = StudyConfig(
        suite=args.suite,
        out=args.out,
        variants=tuple(variants),
        tasks=None if args.tasks is None else comma_list(args.tasks, "--tasks"),
        preset=args.preset or suite.preset or DEFAULT_PRESET,
        overrides=tuple(args.overrides),
        budget_minutes=args.budget_minutes,
        steps=args.steps,
        demos=args.demos if args.demos is not None else (suite.demos or DEFAULT_DEMOS),
        episodes=args.episodes,
        seed=args.seed,
        eval_max_steps=args.eval_max_steps,
        threads=args.threads or idle_cores(),
        collect_workers=args.collect_workers,
        eval_workers=args.eval_workers,
        videos=args.videos,
        progress=True,
        after_success=args.after_success,
        action_noise=args.action_noise,
        cameras=None if args.cameras is None else tuple(comma_list(args.cameras, "--cameras")),
    )
    results = run_study(config)
    from oft.study.report import markdown_tables

    if results["variants"]:
        print(markdown_tables(results))
    print(f"results: {args.out}/results.json, results.md, results.png")
    return 0
