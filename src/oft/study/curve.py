"""Success against training minutes: every (or every n-th) checkpoint of one run, evaluated the same way.

A study row says what one budget bought; a practitioner choosing a budget needs the curve. ``oft eval-curve``
evaluates the checkpoints a training run kept (``<run>/checkpoints/step_*``, see ``keep_last``) on the same
tasks, episodes and seeds, and places each on the minutes axis with the run's own ``metrics.jsonl``
(:func:`oft.train.feedback.seconds_trained`: wall time, resumed segments included)::

    from oft.study.curve import CurveConfig, evaluate_curve

    curve = evaluate_curve(CurveConfig(run="runs/aloha", env="aloha", tasks="transfer-cube", episodes=20,
                                       out="runs/aloha/curve", every=2000))
    [(p["step"], p["train_minutes"], p["success_rate"]) for p in curve["points"]]

Writes ``out/curve.json`` (``{"run", "env", "tasks", "episodes", "seed", "points": [{"step",
"train_minutes", "successes", "episodes", "success_rate", "ci95", "per_task": {task: {"successes",
"episodes", "success_rate", "ci95"}, and where ``oft eval`` reports them "stages" (reward stages reached) and
"followed", "followed_rate", "followed_ci95" (instruction-following)}, "eval"}], "pruned_steps"}``),
``out/curve.md`` (the success table, then a table of each for the tasks that have it) and ``out/curve.png``;
each point's ``oft eval`` output stays in ``out/step_XXXXXXX/``. Resumable: a point whose ``results.json``
exists for the same checkpoint, tasks, episodes, seed, episode limits and loading options (``dtype``,
``unnorm_key``, ``center_crop``: recorded as its ``"loading"``) is read back, not rerun; one that differs in
any is evaluated again, with a warning naming the differences. The device is not compared: it changes only
rounding, as the number of workers does, so a curve evaluated on the CPU can be extended on a GPU. A run may
still be training: a listed checkpoint that its ``keep_last`` removes before its turn is skipped with a
warning and named in ``pruned_steps`` (FileNotFoundError only when every chosen one went).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from oft.sim.eval_stats import error_bars

log = logging.getLogger(__name__)

# what `oft eval` reports beside success where the task has it, carried into each point's per_task: the reward
# stages episodes reached (ALOHA) and how often the instruction was followed (oft.sim.evaluate)
_DIAGNOSTICS = ("stages", "followed", "followed_rate", "followed_ci95")

# what must match for an existing point's results.json to be reused
_SAME_EVAL = ("env", "episodes_per_task", "seed", "open_loop_steps", "max_steps", "temporal_ensemble_coeff")
# load_policy's options that change what a checkpoint does (its statistics, pixels, numerics), recorded with
# each point as "loading" and compared on reuse
_LOADING = ("dtype", "unnorm_key", "center_crop")


@dataclass(frozen=True)
class CurveConfig:
    """One curve. ``steps`` (exact checkpoint steps) or ``every`` (checkpoints whose step is a multiple of
    it, plus the last) choose the points; neither: every checkpoint the run kept.

    env_kwargs: passed to ``make_env`` for every point (``image_size``, ``cameras``; default the policy's).
    instructions: run every task once per instruction (:func:`oft.sim.evaluate.evaluate_instructions`; rows
        ``"<task>: <instruction>"``); None: each task's own.
    load_kwargs: passed to :func:`oft.model.loading.load_policy` (``dtype``, ``unnorm_key``, ``center_crop``).
    """

    run: str | Path
    env: str
    tasks: str
    episodes: int
    out: str | Path
    steps: tuple[int, ...] | None = None
    every: int | None = None
    seed: int = 0
    workers: int = 1
    device: str = "cpu"
    open_loop_steps: int | None = None
    max_steps: int | None = None
    env_kwargs: dict | None = None
    load_kwargs: dict | None = None
    instructions: tuple[str, ...] | None = None
    temporal_ensemble_coeff: float | None = None

    def validate(self) -> CurveConfig:
        from oft.sim.rollout import check_execution

        check_execution(self.open_loop_steps, self.temporal_ensemble_coeff)
        if self.instructions is not None:  # None: each task's own
            from oft.sim.evaluate import check_instructions

            check_instructions(self.env, self.instructions)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        from oft.sim.base import check_seeds
        from oft.sim.evaluate import resolve_tasks

        check_seeds(self.env, resolve_tasks(self.env, self.tasks), self.seed, self.episodes)  # before loading
        if self.steps is not None and self.every is not None:
            raise ValueError("choose the points with steps or with every, not both")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be >= 1 (steps between points), got {self.every}")
        return self


def choose_checkpoints(run: Path, steps: tuple[int, ...] | None, every: int | None) -> list[tuple[int, Path]]:
    """The run's complete checkpoints to evaluate, as (step, path), oldest first.

    Raises FileNotFoundError when the run kept none, KeyError naming the steps it does not have, ValueError
    for an empty ``steps`` or an ``every`` below 1.
    """
    from oft.train.checkpoint import CheckpointManager

    if steps is not None and not steps:
        raise ValueError("steps names no checkpoint; expected one or more steps (None: every kept one)")
    if every is not None and every < 1:
        raise ValueError(f"every must be >= 1 (checkpoints at multiples of it), got {every}")

    kept = CheckpointManager(run).checkpoints()
    if not kept:
        raise FileNotFoundError(
            f"{run} holds no complete checkpoint (expected {run}/checkpoints/step_XXXXXXX with "
            "trainer_state.pt: the directory oft train --out wrote)"
        )
    if steps is not None:
        have = dict(kept)
        missing = [s for s in steps if s not in have]
        if missing:
            raise KeyError(f"{run} has no checkpoint at step(s) {missing}; it kept {sorted(have)}")
        return [(s, have[s]) for s in sorted(set(steps))]
    if every is not None:
        return [(s, p) for i, (s, p) in enumerate(kept) if s % every == 0 or i == len(kept) - 1]
    return kept


def samples_per_step(run: Path, checkpoint: Path) -> int:
    """Samples one optimizer step consumed: the run's ``batch_size * grad_accum`` times the world size the
    checkpoint recorded (``resume_state.json``)."""
    cfg = json.loads((run / "train_config.json").read_text())
    resume = checkpoint / "resume_state.json"
    world = json.loads(resume.read_text()).get("world_size", 1) if resume.is_file() else 1
    return int(cfg["batch_size"]) * int(cfg.get("grad_accum", 1)) * int(world)


def evaluate_curve(config: CurveConfig) -> dict:
    """Evaluate the chosen checkpoints of ``config.run``; returns and writes the curve (module docstring)."""
    config.validate()
    run = Path(config.run).absolute()  # what curve.json and each point record: valid from any directory
    if not (run / "train_config.json").is_file():
        raise FileNotFoundError(f"{run}/train_config.json does not exist; expected a training run directory")
    chosen = choose_checkpoints(run, config.steps, config.every)

    def point(checkpoint: Path, point_dir: Path) -> dict:
        return _point_results(config, checkpoint, point_dir)

    head = {"run": str(run), "env": config.env, "episodes": config.episodes, "seed": config.seed}
    return _evaluate_points(run, chosen, point, Path(config.out).absolute(), head)


def evaluate_study_curve(
    study: str | Path,
    variant: str,
    out: str | Path,
    steps: tuple[int, ...] | None = None,
    every: int | None = None,
    workers: int = 1,
    device: str = "cpu",
    load_kwargs: dict | None = None,
) -> dict:
    """The curve of one variant of an ``oft study`` directory, every point evaluated as the study evaluated
    the variant (:func:`oft.study.run.evaluate_variant`: the suite's env options, tasks, episodes and seeds;
    on the language suite every start state under every instruction, and the withheld control), so the last
    checkpoint's point is the study's row. A plain ``evaluate_curve`` of the same run renders the same scene
    (the policy's ``PolicyConfig.scene``) but runs each task under its own instruction only: on the language
    suite, no instruction swap and no withheld control, so its numbers are not the study's.

    Writes what :func:`evaluate_curve` writes (with ``"study"`` and ``"variant"`` in ``curve.json``); each
    point's evaluation stays in ``out/step_XXXXXXX/`` with ``study_point.json`` (the checkpoint and its
    results), which a rerun reads back instead of evaluating again.
    Raises FileNotFoundError when ``study`` has no ``study.json`` or the variant no training run.
    """
    from oft.study.run import study_context

    study = Path(study).absolute()  # what curve.json and each point record: valid from any directory
    ctx = study_context(study, eval_workers=workers, progress=True)
    run = study / "variants" / variant / "train"
    if not (run / "train_config.json").is_file():
        runs = (study / "variants").glob("*/train/train_config.json")
        trained = sorted(p.parent.parent.name for p in runs)
        raise FileNotFoundError(
            f"{run}/train_config.json does not exist: study {study} has no training run of variant "
            f"{variant!r} (trained: {', '.join(trained) or 'none'})"
        )
    chosen = choose_checkpoints(run, steps, every)

    def point(checkpoint: Path, point_dir: Path) -> dict:
        return _study_point_results(ctx, checkpoint, point_dir, device, load_kwargs)

    head = {"run": str(run), "study": str(study), "variant": variant, "env": ctx.suite.env,
            "episodes": ctx.config.episodes, "seed": ctx.config.seed}  # fmt: skip
    return _evaluate_points(run, chosen, point, Path(out).absolute(), head)


def _evaluate_points(run: Path, chosen: list[tuple[int, Path]], point, out: Path, head: dict) -> dict:
    """Each chosen checkpoint evaluated by ``point(checkpoint, point_dir)``, placed on the minutes axis."""
    from oft.train.feedback import seconds_trained

    per_step = samples_per_step(run, chosen[-1][1])
    points, pruned = [], []
    for step, ckpt in chosen:
        # a run still training removes its oldest checkpoints (keep_last), perhaps after they were listed
        try:
            results = point(ckpt, out / f"step_{step:07d}") if ckpt.is_dir() else None
        except FileNotFoundError:
            if ckpt.is_dir():
                raise
            results = None
        if results is None:
            log.warning("%s was removed before it was evaluated (the run's keep_last); skipped", ckpt)
            pruned.append(step)
            continue
        minutes = seconds_trained(run, per_step, up_to_step=step) / 60.0
        points.append(_point(step, minutes, results, out / f"step_{step:07d}"))
        log.info("step %d (%.1f min): %.1f%% success", step, minutes, 100 * points[-1]["success_rate"])
    if not points:
        raise FileNotFoundError(
            f"every chosen checkpoint of {run} (steps {pruned}) was removed before it was evaluated; "
            "evaluate a run that keeps them (keep_last) or after it finished"
        )
    curve = {**head, "tasks": sorted(points[-1]["per_task"]), "points": points, "pruned_steps": pruned}
    write_curve(curve, out)
    return curve


def _study_point_results(ctx, checkpoint: Path, point_dir: Path, device: str, load_kwargs: dict | None):
    """The study's evaluation of one checkpoint into ``point_dir``, or the earlier results of the same one."""
    from oft.model.loading import load_policy
    from oft.study.run import evaluate_variant

    record = point_dir / "study_point.json"
    loading = _loading_record(load_kwargs)
    if record.is_file():
        old = json.loads(record.read_text())
        differ = _checkpoint_differs(old.get("checkpoint"), checkpoint)
        differ += _loading_differs(old, loading, record)
        if not differ:
            log.info("%s: evaluated before, reusing %s", checkpoint.name, record)
            return old["results"]
        _evaluating_again(checkpoint, record, differ)
    policy = load_policy(checkpoint, device=device, **(load_kwargs or {}))
    policy.eval()
    results = evaluate_variant(ctx, policy, point_dir)
    point_dir.mkdir(parents=True, exist_ok=True)
    point = {"checkpoint": str(checkpoint), "loading": loading, "results": results}
    record.write_text(json.dumps(point, indent=2))
    return results


def _point_results(config: CurveConfig, checkpoint: Path, point_dir: Path) -> dict:
    """``oft eval`` of one checkpoint into ``point_dir``, or its earlier results when they match."""
    from oft.sim.evaluate import resolve_tasks

    wanted = {"env": config.env, "episodes_per_task": config.episodes, "seed": config.seed,
              "open_loop_steps": config.open_loop_steps, "max_steps": config.max_steps,
              "temporal_ensemble_coeff": config.temporal_ensemble_coeff}  # fmt: skip
    tasks = resolve_tasks(config.env, config.tasks)
    instructions = None if config.instructions is None else list(config.instructions)
    rows = tasks if instructions is None else [f"{t}: {i}" for t in tasks for i in instructions]
    done = point_dir / "results.json"
    loading = _loading_record(config.load_kwargs)
    if done.is_file():
        old = json.loads(done.read_text())
        differ = [_differs(k, old.get(k), wanted[k]) for k in _SAME_EVAL if old.get(k) != wanted[k]]
        if old.get("instructions") != instructions:
            differ.append(_differs("instructions", old.get("instructions"), instructions))
        if set(old["tasks"]) != set(rows):
            differ.append(_differs("tasks", sorted(old["tasks"]), sorted(rows)))
        differ += _checkpoint_differs(old.get("policy"), checkpoint) + _loading_differs(old, loading, done)
        if not differ:
            log.info("%s: evaluated before, reusing %s", checkpoint.name, done)
            return old
        _evaluating_again(checkpoint, done, differ)
    results = _evaluate_point(config, checkpoint, point_dir, tasks, instructions)
    results["loading"] = loading  # what a rerun compares: results.json records what was evaluated
    point_dir.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(results, indent=2))
    return results


def _evaluate_point(config: CurveConfig, checkpoint: Path, point_dir: Path, tasks: list[str], instructions):
    """``oft eval`` of ``checkpoint`` as ``config`` says, written into ``point_dir``."""
    from oft.model.loading import load_policy
    from oft.sim.evaluate import evaluate, evaluate_instructions

    policy = load_policy(checkpoint, device=config.device, **(config.load_kwargs or {}))
    policy.eval()
    common = dict(
        seed=config.seed,
        out=point_dir,
        env_kwargs=config.env_kwargs,
        open_loop_steps=config.open_loop_steps,
        max_steps=config.max_steps,
        temporal_ensemble_coeff=config.temporal_ensemble_coeff,
        progress=True,
        workers=config.workers,
        policy_source=str(checkpoint),
    )
    if instructions is not None:
        return evaluate_instructions(policy, config.env, tasks, instructions, config.episodes, **common)
    return evaluate(policy, config.env, tasks, config.episodes, **common)


def _loading_record(load_kwargs: dict | None) -> dict:
    """``load_kwargs``'s options that change what a checkpoint does, as JSON: ``dtype`` by name (None loads
    float32, :func:`oft.model.loading.load_policy`), ``unnorm_key`` and ``center_crop`` (None: the
    checkpoint's own)."""
    kw = load_kwargs or {}
    dtype = kw.get("dtype")
    return {
        "dtype": "float32" if dtype is None else str(dtype).removeprefix("torch."),
        "unnorm_key": kw.get("unnorm_key"),
        "center_crop": kw.get("center_crop"),
    }


def _loading_differs(old: dict, loading: dict, record: Path) -> list[str]:
    """How an earlier point's loading options differ from ``loading`` ([] when they match). A point written
    before they were recorded is read back, warned: what it does record, the statistics it acted with
    (``oft eval``'s ``"statistics"``), is compared with an ``unnorm_key`` asked for."""
    if "loading" in old:
        was = old["loading"]
        return [_differs(k, was.get(k), loading[k]) for k in _LOADING if was.get(k) != loading[k]]
    acted, key = old.get("statistics"), loading["unnorm_key"]
    if key is not None and acted is not None and acted != key:
        return [f"statistics {acted!r} (now unnorm_key {key!r})"]
    log.warning(
        "%s does not record the loading options it was evaluated with (written before they were); read "
        "back as if they were %s: delete it to evaluate the point again",
        record, ", ".join(f"{k} {loading[k]!r}" for k in _LOADING),
    )  # fmt: skip
    return []


def _checkpoint_differs(recorded: str | None, checkpoint: Path) -> list[str]:
    if _same_checkpoint(recorded, checkpoint):
        return []
    return [_differs("checkpoint", recorded, str(checkpoint))]


def _differs(name: str, was, now) -> str:
    return f"{name} {was!r} (now {now!r})"


def _evaluating_again(checkpoint: Path, record: Path, differ: list[str]) -> None:
    log.warning(
        "%s: %s was evaluated otherwise: %s; evaluating again", checkpoint.name, record, "; ".join(differ)
    )


def _same_checkpoint(recorded: str | None, checkpoint: Path) -> bool:
    """Whether an earlier point's record names ``checkpoint`` (absolute); a relative record (curves written
    before paths were recorded absolute) is read against the working directory, as it was written."""
    return recorded is not None and Path(recorded).absolute() == checkpoint


def _point(step: int, minutes: float, results: dict, point_dir: Path) -> dict:
    o = results["overall"]
    keys = ("successes", "episodes", "success_rate", "ci95", *_DIAGNOSTICS)
    per_task = {t: {k: r[k] for k in keys if k in r} for t, r in results["tasks"].items()}
    return {
        "step": step,
        "train_minutes": minutes,
        "successes": o["successes"],
        "episodes": o["episodes"],
        "success_rate": o["success_rate"],
        "ci95": list(o["ci95"]),
        "per_task": per_task,
        "eval": str(point_dir),
    }


def write_curve(curve: dict, out: Path) -> None:
    """``curve.json``, a markdown table (``curve.md``) and the chart (``curve.png``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    (out / "curve.md").write_text(format_curve(curve))
    plot_curve(curve, out / "curve.png")
    log.info("wrote %s, curve.md and curve.png", out / "curve.json")


def format_curve(curve: dict) -> str:
    """Markdown: one row per checkpoint, minutes, steps, per-task successes and the overall rate with CI."""
    tasks = curve["tasks"]
    lines = [
        f"# Success against training minutes: {curve['run']}",
        "",
        f"{curve['env']}, {curve['episodes']} episodes per task, seed {curve['seed']}; minutes are "
        "the run's wall time to the checkpoint (its metrics.jsonl).",
        "",
        "| minutes | step | " + " | ".join(tasks) + " | all [95% CI] |",
        "|---:|---:|" + "---:|" * len(tasks) + "---:|",
    ]
    for p in curve["points"]:
        cells = [f"{p['per_task'][t]['successes']}/{p['per_task'][t]['episodes']}" for t in tasks]
        lo, hi = p["ci95"]
        overall = f"{100 * p['success_rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
        lines.append(f"| {p['train_minutes']:.1f} | {p['step']} | " + " | ".join(cells) + f" | {overall} |")
    lines += _stage_table(curve) + _followed_table(curve)
    if curve.get("pruned_steps"):
        lines += ["", f"Not evaluated (removed by the run before their turn): steps {curve['pruned_steps']}."]
    return "\n".join(lines) + "\n"


def _stage_table(curve: dict) -> list[str]:
    """Where success is still rare, how far the episodes got: per task, the episodes that reached each of its
    reward stages (ALOHA's, the stages ACT reports), one row per checkpoint; [] when no task has stages."""
    names = {}  # task: its stage names, from the points that counted them
    for p in curve["points"]:
        for task, row in p["per_task"].items():
            if row.get("stages"):
                names.setdefault(task, list(row["stages"]))
    columns = [
        (f"{t}: {s}" if len(names) > 1 else s, t, lambda row, s=s: row.get("stages", {}).get(s))
        for t in curve["tasks"]
        for s in names.get(t, [])
    ]
    return _count_table(curve, "Episodes that reached each reward stage:", columns)


def _followed_table(curve: dict) -> list[str]:
    """Instruction-following per checkpoint (episodes that did what they were told, per row); [] when no row
    counts it."""
    columns = [
        (t, t, lambda row: row.get("followed"))
        for t in curve["tasks"]
        if any("followed" in p["per_task"][t] for p in curve["points"])
    ]
    return _count_table(curve, "Episodes that followed their instruction:", columns)


def _count_table(curve: dict, title: str, columns: list) -> list[str]:
    """A markdown table under ``title``, one row per checkpoint; ``columns``: (heading, task, count) with
    ``count(per_task[task])`` an episode count or None ("–"), shown out of that task's episodes."""
    if not columns:
        return []
    heads = " | ".join(h for h, _, _ in columns)
    lines = ["", title, "", f"| minutes | step | {heads} |", "|---:|---:|" + "---:|" * len(columns)]
    for p in curve["points"]:
        cells = []
        for _, task, count in columns:
            row = p["per_task"][task]
            n = count(row)
            cells.append("–" if n is None else f"{n}/{row['episodes']}")
        lines.append(f"| {p['train_minutes']:.1f} | {p['step']} | " + " | ".join(cells) + " |")
    return lines


def plot_curve(curve: dict, path: Path) -> Path:
    """Overall success (%) with its 95% interval, and each task's rate, against training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = curve["points"]
    x = [p["train_minutes"] for p in pts]
    y = [100 * p["success_rate"] for p in pts]
    err = error_bars([p["success_rate"] for p in pts], [p["ci95"] for p in pts])
    fig, ax = plt.subplots(figsize=(7, 4))
    for task in curve["tasks"]:
        ax.plot(x, [100 * p["per_task"][task]["success_rate"] for p in pts], lw=1, alpha=0.5, label=task)
    ax.errorbar(x, y, yerr=err, color="black", lw=2, capsize=3, marker="o", label="all tasks (95% CI)")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{curve['env']}: {curve['episodes']} episodes per task per point")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["CurveConfig", "choose_checkpoints", "evaluate_curve", "format_curve", "write_curve"]
