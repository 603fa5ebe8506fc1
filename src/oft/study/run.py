"""``run_study``: the same demonstrations and the same training budget for every variant; each trained,
evaluated on layouts no demonstration used, and timed.

Layout of ``out``::

    study.json                 the settings (a rerun with other settings is refused)
    data/                      the demonstrations, collected once (LeRobot v3, PNG frames, every camera)
    variants/<name>/train/     the training run (resumable checkpoints, metrics.jsonl, loss_curve.png)
    variants/<name>/train.json the finished training: steps, minutes, checkpoint
    variants/<name>/eval/      oft eval results.json (+ per-direction ones for the language suite)
    variants/<name>/result.json  the variant's row; its presence marks the variant finished
    results.json, results.md, results.png   every finished variant (written after each one)

Resuming: a rerun skips variants with a ``result.json``, continues an interrupted training from its last
checkpoint with what is left of its budget, and tops up the demonstrations.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from oft.sim import check_cameras
from oft.study.suites import Suite, get_suite
from oft.study.variants import PAPER_VARIANTS, VARIANT_FIELDS, VARIANTS, StudyVariant, resolve_variants

log = logging.getLogger(__name__)

DEFAULT_PRESET = "metaworld-tiny"
DEFAULT_DEMOS = 50  # expert demonstrations per task, where the suite does not say
# settings that change what a finished variant's numbers mean: a rerun must keep them
FIXED_SETTINGS = (
    "suite", "tasks", "preset", "overrides", "budget_minutes", "steps", "demos", "episodes", "seed",
    "eval_max_steps", "cameras",
)  # fmt: skip


@dataclass(frozen=True)
class StudyConfig:
    """What one study runs. Budget: ``budget_minutes`` of training per variant (capped by the preset's
    ``max_steps``) or ``steps`` optimizer steps; neither = the preset's ``max_steps``.

    tasks: a subset of the suite's tasks (None: all). overrides: TrainConfig ``field=value`` applied to every
    variant (not the fields a variant decides). episodes: per task (language suite: per direction).
    after_success: steps each demonstration is recorded past the expert's success (None: to the env's end;
    :class:`oft.sim.collect.CollectConfig`).
    action_noise: standard deviation of the noise the expert executes its actions with while the
        demonstrations record its clean ones (0: none; DART's noise injection,
        :class:`oft.sim.collect.CollectConfig`).
    cameras: the cameras the demonstrations record and the variants draw from, in order (None: the robot
        spec's, MetaWorld ``corner, gripperPOV``): the first is the primary camera of the base variants, the
        first two are the extra-inputs variants' (``("workspace", "gripperPOV")``: MetaWorld's framed view).
    """

    suite: str
    out: str
    variants: tuple[str, ...] = PAPER_VARIANTS
    tasks: tuple[str, ...] | None = None
    preset: str = DEFAULT_PRESET
    overrides: tuple[str, ...] = ()
    budget_minutes: float | None = None
    steps: int | None = None
    demos: int = DEFAULT_DEMOS
    episodes: int = 20
    seed: int = 0
    eval_max_steps: int | None = None
    threads: int = 1
    collect_workers: int = 2
    eval_workers: int = 1
    videos: int = 0
    timing_iters: int = 20
    progress: bool = False
    after_success: int | None = 0
    cameras: tuple[str, ...] | None = None
    action_noise: float = 0.0

    def validate(self) -> StudyConfig:
        if self.budget_minutes is not None and self.steps is not None:
            raise ValueError("give the budget as minutes or as steps, not both")
        for name in ("demos", "episodes", "threads", "timing_iters", "eval_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"StudyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ValueError(f"budget_minutes must be > 0, got {self.budget_minutes}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.cameras is not None and (not self.cameras or len(set(self.cameras)) != len(self.cameras)):
            raise ValueError(f"cameras must name one or more distinct cameras, got {list(self.cameras)}")
        from oft.train.config import refuse_owned_overrides

        owned = dict.fromkeys(VARIANT_FIELDS, f"its variants decide {', '.join(VARIANT_FIELDS)}")
        owned.update(datasets="its demonstrations", max_minutes="the budget: --budget-minutes / --steps",
                     num_threads="--threads", seed="--seed")  # fmt: skip
        if self.steps is not None:
            owned["max_steps"] = "--steps"
        refuse_owned_overrides(self.overrides, owned, "the study")
        from oft.sim.rollout import check_action_noise

        check_action_noise(self.action_noise)
        resolve_variants(self.variants)
        return self


@dataclass
class _Context:
    """What every variant shares: the suite, its tasks, the demonstrations, the robot spec."""

    config: StudyConfig
    suite: Suite
    tasks: list[str]
    out: Path
    data: Path
    spec: object = None
    rows: dict[str, dict] = field(default_factory=dict)


def run_study(config: StudyConfig) -> dict:
    """Collect once, then train + evaluate + time each variant not finished yet; returns ``results.json``."""
    config.validate()
    suite = get_suite(config.suite)
    tasks = _tasks(suite, config.tasks)
    out = Path(config.out).absolute()  # train.json and results.json name checkpoints valid from anywhere
    ctx = _Context(config, suite, tasks, out, out / "data")
    ctx.spec = _robot_spec(config)
    # --cameras, else the preset's or its robot's: a typo, or a preset of another robot (--suite aloha
    # --preset metaworld-tiny), is refused before study.json records it
    check_cameras(suite.env, ctx.spec.cameras)
    _check_train_configs(ctx)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, config)
    collect_demos(ctx)
    for variant in resolve_variants(config.variants):
        vdir = out / "variants" / variant.name
        if (vdir / "result.json").is_file():
            log.info("%s: finished earlier, skipped (%s)", variant.name, vdir / "result.json")
            continue
        row = run_variant(ctx, variant, vdir)
        (vdir / "result.json").write_text(json.dumps(row, indent=2))
        write_reports(out, suite)
    return write_reports(out, suite)


# --------------------------------------------------------------------------- shared setup
def _tasks(suite: Suite, subset: tuple[str, ...] | None) -> list[str]:
    tasks = suite.task_names()
    if subset is None:
        return tasks
    for t in subset:
        if t not in tasks:
            from oft.spec import unknown_name_message

            raise KeyError(unknown_name_message(f"task of suite {suite.name}", t, tasks))
    if suite.instruction_swap and len(subset) < 2:
        raise ValueError(
            f"suite {suite.name} swaps instructions between tasks; keep two or more, got {subset}"
        )
    return [t for t in tasks if t in subset]


def _check_train_configs(ctx: _Context) -> None:
    """Every variant's training config built and validated before ``study.json`` records the study, so an
    unknown ``--preset``, a bad ``--set`` or a base that is not a from-scratch architecture is refused with
    nothing written (a recorded study refuses reruns with other settings)."""
    model_image_size(ctx.config)
    for variant in resolve_variants(ctx.config.variants):
        variant_train_config(ctx, variant).validate(check_paths=False)


def _check_settings(out: Path, config: StudyConfig) -> None:
    """Write ``study.json`` on the first run; refuse a rerun whose fixed settings differ."""
    path = out / "study.json"
    mine = {k: _jsonable(getattr(config, k)) for k in FIXED_SETTINGS}
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = {k: (saved.get(k), mine[k]) for k in FIXED_SETTINGS if saved.get(k) != mine[k]}
        if diff:
            text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a study with other settings ({text}); rerun with the same settings to resume, "
                "or choose another --out"
            )
        return
    path.write_text(json.dumps(mine, indent=2))


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def study_context(out: str | Path, eval_workers: int = 1, progress: bool = False) -> _Context:
    """The context of the study in ``out`` rebuilt from its ``study.json``, to evaluate more checkpoints of
    its variants exactly as the study evaluates them (the suite's env options, tasks, episodes and seeds).

    Raises FileNotFoundError when ``out`` holds no ``study.json`` (not a directory ``oft study`` wrote).
    """
    out = Path(out).absolute()
    path = out / "study.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a directory `oft study --out` wrote")
    saved = json.loads(path.read_text())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in FIXED_SETTINGS}
    config = StudyConfig(out=str(out), eval_workers=eval_workers, progress=progress, **fields).validate()
    suite = get_suite(config.suite)
    return _Context(config, suite, _tasks(suite, config.tasks), out, out / "data")


def base_train_config(config: StudyConfig):
    """The preset with the study's overrides and budget (before any variant's fields)."""
    from oft.train.config import apply_overrides
    from oft.train.presets import get_preset

    cfg = apply_overrides(get_preset(config.preset), [f"seed={config.seed}", *config.overrides])
    if config.steps is not None:
        cfg = cfg.replace(max_steps=config.steps)
    # device: the preset's ("auto": CUDA where there is one, as oft train), or --set device=...
    return cfg.replace(num_threads=config.threads)


def _robot_spec(config: StudyConfig):
    """The preset's robot spec with the cameras the study records and draws from: ``--cameras`` when given,
    else the preset's (``metaworld-mt10``: the table camera and the gripper's), else the robot's."""
    from oft.spec import get_spec

    base = base_train_config(config)
    spec = get_spec(base.robot)
    cameras = config.cameras or base.cameras
    return spec.replace(cameras=tuple(cameras)) if cameras else spec


def model_image_size(config: StudyConfig) -> int:
    """The input side of the (overridden) preset's architecture: demos are rendered at it, no resize."""
    from oft.model.build import ARCHITECTURES, input_size

    base = base_train_config(config).base
    if base not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"the study trains from scratch: base must be one of {known}, got {base!r}")
    return input_size(base)


def collect_demos(ctx: _Context) -> dict:
    """Expert demonstrations of every task, every camera of the robot, once for all variants (a rerun tops
    them up). PNG frames: lossless, so train and eval pixels agree."""
    from oft.sim.collect import CollectConfig, collect

    cfg = ctx.config
    collect_cfg = CollectConfig(
        cameras=tuple(ctx.spec.cameras),
        image_size=model_image_size(cfg),
        workers=cfg.collect_workers,
        video=False,
        env_kwargs=ctx.suite.env_options,
        after_success=cfg.after_success,
        action_noise=cfg.action_noise,
    )
    t0 = time.perf_counter()
    summary = collect(ctx.suite.env, ctx.tasks, cfg.demos, ctx.data, collect_cfg, progress=cfg.progress)
    wall = time.perf_counter() - t0
    log.info("demonstrations: %d episodes in %s (%.1f s)", summary["num_episodes"], ctx.data, wall)
    return summary


# --------------------------------------------------------------------------- one variant
def run_variant(ctx: _Context, variant: StudyVariant, vdir: Path) -> dict:
    """Train (resumable) -> evaluate on unseen layouts -> time the policy; returns the variant's row."""
    from oft import load_policy

    log.info("variant %s: training", variant.name)
    trained = train_variant(ctx, variant, vdir)
    policy = load_policy(trained["checkpoint"])
    policy.eval()
    torch.set_num_threads(ctx.config.threads)
    t0 = time.perf_counter()
    evaluation = evaluate_variant(ctx, policy, vdir / "eval")
    eval_minutes = (time.perf_counter() - t0) / 60.0
    speed = time_policy(policy, ctx.config.timing_iters)
    return variant_row(variant, trained, evaluation, speed, eval_minutes)


def variant_train_config(ctx: _Context, variant: StudyVariant):
    from oft.train.config import apply_overrides

    cfg = apply_overrides(base_train_config(ctx.config), variant.overrides(ctx.spec))
    return cfg.replace(datasets=(str(ctx.data),))


def train_variant(ctx: _Context, variant: StudyVariant, vdir: Path) -> dict:
    """Train ``variant`` into ``vdir/train`` within the budget; returns (and records in train.json) the run.

    A training interrupted by a kill resumes from its last checkpoint; with a minutes budget it gets what is
    left (``max_minutes`` is the whole run's budget: the training loop subtracts the time its checkpoint
    records, :func:`oft.train.loop.train`).
    """
    from oft.train.feedback import seconds_trained
    from oft.train.loop import train

    record = vdir / "train.json"
    if record.is_file():
        return json.loads(record.read_text())
    cfg = variant_train_config(ctx, variant)
    spent_s = seconds_trained(vdir / "train", cfg.batch_size * cfg.grad_accum)
    if ctx.config.budget_minutes is not None:
        cfg = cfg.replace(max_minutes=ctx.config.budget_minutes)
        if spent_s > 0:
            log.info("%s: resuming, about %.2f of %.2f training minutes spent", variant.name, spent_s / 60.0,
                     ctx.config.budget_minutes)  # fmt: skip
    result = train(cfg, vdir / "train", resume=True)
    checkpoint = result.checkpoint or _latest_checkpoint(vdir / "train")
    trained = {
        "checkpoint": str(checkpoint),
        "steps": result.step,
        "train_minutes": (spent_s + result.train_s) / 60.0,
        "samples_per_s": result.samples_per_s,
        "stopped_by": result.stopped_by,
        "final_loss": result.final_loss,
        "config": cfg.to_dict(),
    }
    vdir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(trained, indent=2))
    return trained


def _latest_checkpoint(train_dir: Path) -> Path:
    from oft.train.checkpoint import CheckpointManager

    latest = CheckpointManager(train_dir).latest()
    if latest is None:
        raise FileNotFoundError(f"training in {train_dir} wrote no checkpoint")
    return latest


def evaluate_variant(ctx: _Context, policy, out: Path) -> dict:
    """Episodes on layouts no demonstration used; the language suite: every instruction from every start."""
    from oft.sim.evaluate import evaluate
    from oft.study.language import evaluate_instruction_following

    cfg = ctx.config
    common = dict(
        seed=cfg.seed,
        out=out,
        env_kwargs=ctx.suite.env_options,
        max_steps=cfg.eval_max_steps,
        workers=cfg.eval_workers,
        progress=cfg.progress,
        policy_source=None if getattr(policy, "checkpoint_dir", None) is None else str(policy.checkpoint_dir),
    )
    env, tasks = ctx.suite.env, ctx.tasks
    if ctx.suite.instructions:
        return evaluate_per_instruction(ctx, policy, out, common)
    if not ctx.suite.instruction_swap:
        return evaluate(policy, env, tasks, cfg.episodes, video_episodes=cfg.videos, **common)
    results = evaluate_instruction_following(
        policy, env, tasks, cfg.episodes, video_episodes=cfg.videos, **common
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))  # oft eval-shaped: eval-compare reads it
    return results


def evaluate_per_instruction(ctx: _Context, policy, out: Path, common: dict) -> dict:
    """The suite's ``instructions`` tasks once per instruction (the same start states each time, each judged
    by what it asks: :func:`oft.sim.evaluate.evaluate_instructions`), rows ``"<task>: <instruction>"``; other
    tasks as usual. ``overall`` pools every row."""
    from oft.sim.eval_stats import pooled_rate
    from oft.sim.evaluate import evaluate, evaluate_instructions, followed_counts, write_results

    cfg, per_task = ctx.config, dict(ctx.suite.instructions)
    plain = [t for t in ctx.tasks if t not in per_task]
    kw = dict(common, video_episodes=cfg.videos)
    # each evaluate() writes its own oft eval directory (results.json, success.png, videos/<task>/): the plain
    # tasks under tasks/, each instruction's run under instructions/<task>__<instruction>/
    results = (
        evaluate(policy, ctx.suite.env, plain, cfg.episodes, **(kw | {"out": out / "tasks"}))
        if plain
        else {"tasks": {}}
    )
    for task in (t for t in ctx.tasks if t in per_task):
        res = evaluate_instructions(policy, ctx.suite.env, [task], per_task[task], cfg.episodes, **kw)
        results["tasks"].update(res["tasks"])
    results["env"], results["policy"] = ctx.suite.env, common.get("policy_source")
    results["overall"] = pooled_rate(results["tasks"]) | followed_counts(list(results["tasks"].values()))
    write_results(results, out)  # every row: the plain tasks' and each instruction's
    return results


def time_policy(policy, iters: int, warmup: int = 3) -> dict:
    """Median latency of one chunk prediction (random images, in-range proprio: cost does not depend on
    content) and actions per second, timed like ``oft bench``."""
    from oft.bench.latency import fake_observation
    from oft.bench.timing import summarize, time_calls

    obs = fake_observation(policy, "turn the faucet handle to open the faucet", seed=0)
    device = next(policy.parameters()).device
    times = time_calls(lambda: policy.predict_action_chunk(obs), warmup, iters, device)
    row = summarize("policy", times, policy.spec.chunk_len)
    return {
        "latency_s": row.latency_median_s,
        "latency_p90_s": row.latency_p90_s,
        "throughput_hz": row.throughput_hz,
        "chunk_len": policy.spec.chunk_len,
    }


def variant_row(
    variant: StudyVariant, trained: dict, evaluation: dict, speed: dict, eval_minutes: float
) -> dict:
    """The ``results.json`` entry of one variant (the issue's fields first, then details)."""
    overall = evaluation["overall"]
    row = {
        "name": variant.name,
        "success_rate": overall["success_rate"],
        "ci95": overall["ci95"],
        "episodes": overall["episodes"],
        "per_task": {t: r["success_rate"] for t, r in evaluation["tasks"].items()},
        "throughput_hz": speed["throughput_hz"],
        "latency_s": speed["latency_s"],
        "train_minutes": trained["train_minutes"],
        "steps": trained["steps"],
        "successes": overall["successes"],
        "per_task_ci95": {t: r["ci95"] for t, r in evaluation["tasks"].items()},
        "per_task_episodes": {t: r["episodes"] for t, r in evaluation["tasks"].items()},
        "latency_p90_s": speed["latency_p90_s"],
        "chunk_len": speed["chunk_len"],
        "eval_minutes": eval_minutes,
        "train_samples_per_s": trained["samples_per_s"],
        "stopped_by": trained["stopped_by"],
        "checkpoint": trained["checkpoint"],
        "recipe": asdict(variant.row)
        | {"film": variant.film, "all_cameras": variant.all_cameras, "action_slots": variant.action_slots},
    }
    if "withheld" in evaluation:
        w = evaluation["withheld_overall"]
        row["withheld"] = {t: r["success_rate"] for t, r in evaluation["withheld"].items()}
        row["withheld_success_rate"], row["withheld_ci95"] = w["success_rate"], w["ci95"]
    return row


def write_reports(out: Path, suite: Suite) -> dict:
    """results.json, results.md and results.png over every finished variant (in the paper's order)."""
    from oft.study.report import write_chart, write_markdown

    rows = []
    for name in [*VARIANTS, *sorted(p.name for p in (out / "variants").glob("*") if p.name not in VARIANTS)]:
        path = out / "variants" / name / "result.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
    results = {"suite": suite.name, "variants": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if rows:
        write_markdown(results, out / "results.md")
        write_chart(results, out / "results.png")
    return results


__all__ = ["StudyConfig", "base_train_config", "run_study", "time_policy"]
