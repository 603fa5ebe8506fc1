"""Evaluate a policy (or an env's expert) on simulator tasks through the one rollout loop.

``evaluate`` is what ``oft eval`` and the quickstart call::

    from oft.sim.evaluate import evaluate
    from oft.sim.rollout import ExpertPolicy

    results = evaluate(policy, "metaworld", ["drawer-open-v3"], episodes=20, out="runs/eval")
    results = evaluate(ExpertPolicy, "metaworld", "mt10", episodes=10)   # a factory: called with each env
    results["overall"]["success_rate"], results["tasks"]["drawer-open-v3"]["seeds"]

Episode ``i`` of every task is reset with seed ``env.eval_seed_offset + seed + i`` (MetaWorld: layouts no
demonstration uses; LIBERO: the suite's fixed initial state ``seed + i``), recorded in the results; or, given
``reset_seeds``, with its ``i``-th seed of the task (a dataset's demonstration layouts:
:func:`oft.sim.collect.demonstration_seeds`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oft.progress import progress_bar
from oft.sim.base import SimEnv, check_seeds, eval_seed_offset, list_tasks, make_env
from oft.sim.rollout import (
    ChunkPolicy,
    EpisodeResult,
    check_execution,
    check_open_loop_steps,
    chunk_length,
    rollout,
)
from oft.spec import unknown_name_message
from oft.train.checkpoint import checkpoint_step  # results["policy_step"]: kept when the run prunes the path

log = logging.getLogger(__name__)

PolicyOrFactory = ChunkPolicy | Callable[[SimEnv], ChunkPolicy]
VIDEO_FPS = 30


def acting_statistics(policy) -> str | None:
    """What a result records as the statistics ``policy`` acted with: ``"instruction"`` when each
    observation's instruction picked its own (per-task statistics), else the key of its one set
    (``unnorm_key``), or None (one set without a key; a scripted policy or factory)."""
    if getattr(policy, "act_by_instruction", False):
        return "instruction"
    return getattr(policy, "unnorm_key", None)


def resolve_tasks(env_name: str, tasks: str | list[str]) -> list[str]:
    """Task names from ``"a,b"``, a list, ``"all"``, or a group: MetaWorld ``"mt10"``, or the prefix of
    ``group/name`` tasks (LIBERO ``"libero_spatial"`` = ``libero_spatial/0`` ... ``libero_spatial/9``)."""
    if env_name == "metaworld":
        from oft.sim.metaworld import resolve_tasks as resolve_metaworld

        return resolve_metaworld(tasks)
    known = list_tasks(env_name)
    if isinstance(tasks, str):
        from oft.cli import comma_list

        tasks = comma_list(tasks, "tasks")
    names = [t.strip() for t in tasks if t.strip()]
    out: list[str] = []
    for name in names:
        group = [t for t in known if t.startswith(name + "/")]
        if name == "all":
            out.extend(known)
        elif group:
            out.extend(group)
        elif name not in known:
            raise KeyError(unknown_name_message(f"{env_name} task", name, known))
        else:
            out.append(name)
    if not out:
        raise ValueError(f"no tasks given for {env_name}; expected comma-separated names or 'all'")
    return list(dict.fromkeys(out))


def _is_factory(policy: PolicyOrFactory) -> bool:
    """A class (``ExpertPolicy``) or a plain callable builds a policy per env; an instance is the policy."""
    return isinstance(policy, type) or not hasattr(policy, "predict_action_chunk")


def _policy_for(policy: PolicyOrFactory, env: SimEnv) -> ChunkPolicy:
    return policy(env) if _is_factory(policy) else policy


def _env_kwargs(policy: PolicyOrFactory, env_kwargs: dict | None, env_name: str | None = None) -> dict:
    """A learned policy's cameras and ``render_sizes`` decide what the env renders, unless the caller said
    otherwise: frames rendered at the size the policy was trained on go through the policy's own resize, so
    the model sees exactly the pixels it saw in training. So does the scene its demonstrations were collected
    in (``PolicyConfig.scene``, e.g. MetaWorld's goal markers hidden), when ``env_name`` is that simulator."""
    kw = dict(env_kwargs or {})
    if _is_factory(policy):
        return kw
    scene = getattr(getattr(policy, "config", None), "scene", None)
    if scene and env_name is not None and scene.get("env") == env_name:
        taken = {k: v for k, v in scene.get("options", {}).items() if k not in kw}
        if taken:
            log.info("%s scene options of the policy's training demonstrations: %s", env_name, taken)
        kw.update(taken)
    spec = getattr(policy, "spec", None)
    if spec is not None and "cameras" not in kw:
        kw["cameras"] = tuple(spec.cameras)
    sizes = getattr(policy, "render_sizes", None)
    if sizes and "image_size" not in kw:
        kw["image_size"] = render_size_arg({c: sizes[c] for c in kw.get("cameras", sizes) if c in sizes})
    return kw


def render_size_arg(sizes: dict[str, tuple[int, int]]) -> int | tuple[int, int] | dict:
    """{camera: (H, W)} as the simplest ``image_size`` an adapter takes: an int for one square size, (H, W)
    for one size, else the per-camera dict."""
    distinct = set(sizes.values())
    if len(distinct) != 1:
        return dict(sizes)
    h, w = distinct.pop()
    return h if h == w else (h, w)


@dataclass(frozen=True)
class EpisodeJob:
    """Episode ``index`` of ``task``: reset with ``reset_seed`` (by default ``env.eval_seed_offset + seed +
    index``)."""

    task: str
    index: int
    reset_seed: int
    record_video: bool


@dataclass(frozen=True)
class RolloutSettings:
    """What every episode of one ``evaluate`` call shares (picklable: parallel workers receive it)."""

    env_name: str
    env_kwargs: dict
    max_steps: int | None
    open_loop_steps: int | None
    out: Path | None
    temporal_ensemble_coeff: float | None = None


def run_episode(policy: ChunkPolicy, env: SimEnv, job: EpisodeJob, settings: RolloutSettings) -> dict:
    """One :func:`rollout` of ``job`` in ``env`` -> its record (the video written when recorded)."""
    r = rollout(
        policy, env, settings.max_steps, job.reset_seed, settings.open_loop_steps,
        record_video=job.record_video, temporal_ensemble_coeff=settings.temporal_ensemble_coeff,
    )  # fmt: skip
    video = _write_video(r, settings.out, job.index) if settings.out is not None and r.frames else None
    return _episode_record(r, video)


def run_sequential(
    policy: PolicyOrFactory, jobs: list[EpisodeJob], settings: RolloutSettings
) -> Iterator[tuple[EpisodeJob, dict]]:
    """The jobs in order in this process, one env per task (opened when its first episode starts)."""
    env, task = None, None
    try:
        for job in jobs:
            if job.task != task:
                if env is not None:
                    env.close()
                env, task = make_env(settings.env_name, task=job.task, **settings.env_kwargs), job.task
                chunk_policy = _policy_for(policy, env)
            yield job, run_episode(chunk_policy, env, job, settings)
    finally:
        if env is not None:
            env.close()


def _batching_runs(policy: PolicyOrFactory, batch: bool, workers: int) -> bool:
    """Whether ``batch`` takes effect: parallel workers answered by an oft ``Policy`` (one batched call for
    all waiting, :mod:`oft.sim.parallel`); otherwise each observation gets its own prediction, said here."""
    if not batch:
        return False
    if workers > 1:
        from oft.sim.parallel import _batches

        if _batches(policy):
            return True
        why = "the policy is not an oft Policy (it predicts one observation at a time)"
    else:
        why = "one worker runs the episodes in this process"
    log.warning("batch: %s; every observation gets its own prediction (results record batch false)", why)
    return False


def _episode_record(r: EpisodeResult, video: str | None) -> dict:
    # the digest of the executed actions tells two runs of a seed apart even when both fail at max_steps
    digest = hashlib.sha1(np.ascontiguousarray(r.actions, dtype=np.float32).tobytes()).hexdigest()[:16]
    rec = {"seed": r.seed, "success": r.success, "steps": r.steps, "chunk_queries": r.chunk_queries,
           "actions_sha1": digest}  # fmt: skip
    if "outcome" in r.info:  # what the env says the episode did (oft.sim.base.StepResult)
        rec["outcome"] = r.info["outcome"]
    return rec | ({"video": video} if video else {})


def followed_counts(rows: list[dict]) -> dict:
    """``{"followed", "followed_rate", "followed_ci95"}`` over the episodes of ``rows`` (each a task row with
    ``followed`` and ``episodes``, or an episode record with ``outcome.followed``); {} when any lacks it."""
    from oft.sim.eval_stats import wilson_interval

    if not rows:
        return {}
    if all("outcome" in r and "followed" in r["outcome"] for r in rows):
        wins, n = sum(bool(r["outcome"]["followed"]) for r in rows), len(rows)
    elif all("followed" in r for r in rows):
        wins, n = sum(r["followed"] for r in rows), sum(r["episodes"] for r in rows)
    else:
        return {}
    return {
        "followed": wins,
        "followed_rate": wins / n if n else 0.0,
        "followed_ci95": list(wilson_interval(wins, n)),
    }


def stage_counts(episodes: list[dict]) -> dict:
    """``{"stages": {name: episodes that reached at least that stage}}`` in stage order, from each episode
    record's ``outcome.max_stage`` (0 = none) and ``outcome.stages`` (the names of stages 1, 2, ...: ALOHA's
    rewards, ACT's stages); {} when any episode lacks them or they name different stages."""
    outcomes = [e.get("outcome", {}) for e in episodes]
    if not outcomes or not all("max_stage" in o and "stages" in o for o in outcomes):
        return {}
    names = outcomes[0]["stages"]
    if not names or any(o["stages"] != names for o in outcomes):
        return {}
    return {"stages": {n: sum(o["max_stage"] >= k for o in outcomes) for k, n in enumerate(names, 1)}}


def _write_video(r: EpisodeResult, out: Path, index: int) -> str | None:
    from oft.sim.video import tile_cameras, write_mp4

    if not r.frames:
        return None
    name = f"videos/{r.task}/ep{index:03d}_seed{r.seed}_{'success' if r.success else 'fail'}.mp4"
    write_mp4(out / name, tile_cameras(r.frames), fps=VIDEO_FPS)
    return name


def _summarize(records: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Per-task and overall success, each with its 95% Wilson interval (``ci95``, oft.sim.eval_stats)."""
    from oft.sim.eval_stats import pooled_rate, wilson_interval

    tasks = {}
    for task, eps in records.items():
        wins = sum(e["success"] for e in eps)
        tasks[task] = {
            "success_rate": wins / len(eps) if eps else 0.0,
            "ci95": list(wilson_interval(wins, len(eps))),
            "successes": wins,
            "episodes": len(eps),
            "seeds": [e["seed"] for e in eps],
            "mean_steps": sum(e["steps"] for e in eps) / max(len(eps), 1),
            **followed_counts(eps),
            **stage_counts(eps),
            "episode_results": eps,
        }
    return tasks, pooled_rate(tasks) | followed_counts(list(tasks.values()))


def evaluate(
    policy: PolicyOrFactory,
    env_name: str,
    tasks: str | list[str],
    episodes: int = 10,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    video_episodes: int = 0,
    env_kwargs: dict | None = None,
    open_loop_steps: int | None = None,
    max_steps: int | None = None,
    temporal_ensemble_coeff: float | None = None,
    progress: bool = False,
    workers: int = 1,
    batch: bool = False,
    policy_source: str | None = None,
    reset_seeds: dict[str, list[int]] | None = None,
    layouts: str | None = None,
) -> dict:
    """Roll ``policy`` out ``episodes`` times per task; returns (and with ``out`` writes) the results.

    policy: a chunk policy (``predict_action_chunk``/``reset``), or a factory called with each task's env
        (``ExpertPolicy``). env_kwargs go to ``make_env``; what they leave out comes from a learned policy:
        its cameras, the size of its training frames, and the scene options its demonstrations were
        collected with (``PolicyConfig.scene``: MetaWorld's hidden goal markers, shared layouts).
    out: directory for ``results.json``, ``success.png`` and ``videos/<task>/*.mp4`` of the first
        ``video_episodes`` episodes of each task. A run stopped by an exception (or Ctrl-C) first writes the
        episodes that finished, with the error, to ``results_partial.json`` (removed when a run starts).
    workers: simulator processes stepping episodes in parallel (see :mod:`oft.sim.parallel`); a learned
        policy stays in this process and answers them. Every episode is the same :func:`rollout` from the
        same seed: the per-seed results equal the sequential run's (``workers=1``).
    batch: answer all waiting workers with one batched prediction (throughput on a GPU; a batch may round
        differently from single predictions, so per-seed equality with the sequential run is not promised).
        ``results["workers"]`` is the number that ran: never more than the episodes. ``results["batch"]``
        likewise says whether batching ran: only with more than one worker and an oft ``Policy`` (warned).
    policy_source: what was evaluated (a checkpoint path, "expert"), recorded in ``results["policy"]``.
    temporal_ensemble_coeff: ACT's temporal ensembling instead of open-loop chunks (see
        :func:`oft.sim.rollout.rollout`; ValueError with an ``open_loop_steps`` other than None or 1).
    reset_seeds: {task: seeds}: episode ``i`` of a task resets with its ``i``-th seed instead of the
        evaluation layouts (``seed`` must then stay 0). With a dataset's demonstration seeds
        (:func:`oft.sim.collect.demonstration_seeds`) this measures the policy on its training layouts.
    layouts: what ``results["layouts"]`` records the layouts were (default "evaluation", or "given" with
        ``reset_seeds``; ``oft eval --demonstration-layouts D`` writes "demonstrations of D").

    Raises ValueError, before any episode, for seeds past what a task accepts
    (:func:`oft.sim.base.check_seeds`), a task with fewer ``reset_seeds`` than ``episodes``, ``episodes``
    or ``workers`` below 1, an ``open_loop_steps`` longer than the policy's chunks
    (:func:`oft.sim.rollout.check_open_loop_steps`), or videos without ``out``.
    """
    check_execution(open_loop_steps, temporal_ensemble_coeff)  # here, not in a worker
    check_open_loop_steps(open_loop_steps, chunk_length(policy))  # the rollout would run fewer than recorded
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    task_names = resolve_tasks(env_name, tasks)
    if reset_seeds is None:  # before any episode: none of their results is lost
        check_seeds(env_name, task_names, seed, episodes)
        offset = eval_seed_offset(env_name)
        reset_seeds = {t: [offset + seed + i for i in range(episodes)] for t in task_names}
        layouts = layouts or "evaluation"
    else:
        check_reset_seeds(reset_seeds, task_names, seed, episodes)
        layouts = layouts or "given"
    out = Path(out) if out is not None else None
    if out is None and video_episodes:
        raise ValueError("video_episodes needs an output directory (out=...)")
    if out is not None:  # an earlier run's, into the same directory: this run's results replace it
        (out / PARTIAL_RESULTS).unlink(missing_ok=True)
    jobs = [
        EpisodeJob(t, i, int(reset_seeds[t][i]), i < video_episodes)
        for t in task_names
        for i in range(episodes)
    ]
    bar = progress_bar(len(jobs), desc="eval", unit="ep", enabled=progress)
    records: dict[str, list[dict]] = {t: [None] * episodes for t in task_names}  # type: ignore[list-item]
    t0, env_steps = time.perf_counter(), 0
    env_kwargs = _env_kwargs(policy, env_kwargs, env_name)
    settings = RolloutSettings(env_name, env_kwargs, max_steps, open_loop_steps, out, temporal_ensemble_coeff)
    workers = min(workers, len(jobs))  # never a process with no episode to run
    batch = _batching_runs(policy, batch, workers)  # what results record: what ran
    if workers == 1:
        finished = run_sequential(policy, jobs, settings)
    else:
        from oft.sim.parallel import run_parallel

        finished = run_parallel(policy, jobs, settings, workers, batch)
    try:
        for job, record in finished:
            records[job.task][job.index] = record
            env_steps += record["steps"]
            bar.update(1)
            wins = sum(bool(e and e["success"]) for e in records[job.task])
            bar.set_postfix(task=job.task, success=f"{wins}")
    except BaseException as e:  # an episode failed, a worker died, or Ctrl-C: what finished is kept
        run = {"env": env_name, "env_options": json.loads(json.dumps(env_kwargs, default=str)),
               "policy": policy_source, "episodes_per_task": episodes, "seed": seed,
               "open_loop_steps": open_loop_steps, "max_steps": max_steps,
               "temporal_ensemble_coeff": temporal_ensemble_coeff}  # fmt: skip
        _keep_finished(records, out, e, run)
        raise
    finally:
        bar.close()
        finished.close()  # stops the workers (run_parallel's finally) when the loop body was interrupted
    per_task, overall = _summarize(records)
    wall = time.perf_counter() - t0
    results = {
        "env": env_name,
        "env_options": json.loads(json.dumps(env_kwargs, default=str)),  # what was rendered, as JSON
        "policy": policy_source,
        "policy_step": checkpoint_step(policy_source),
        "statistics": acting_statistics(policy),
        "episodes_per_task": episodes,
        "seed": seed,
        "layouts": layouts,
        "open_loop_steps": open_loop_steps,
        "max_steps": max_steps,
        "temporal_ensemble_coeff": temporal_ensemble_coeff,
        "overall": overall,
        "tasks": per_task,
        "wall_s": round(wall, 2),
        "env_steps": env_steps,
        "env_steps_per_s": round(env_steps / wall, 1) if wall > 0 else None,
        "workers": workers,
        "batch": batch,
        "episodes_per_s": round(len(jobs) / wall, 3) if wall > 0 else None,
    }
    rate, n = overall["success_rate"], overall["episodes"]
    log.info("%s: success %.1f%% over %d episodes", env_name, 100 * rate, n)
    if out is not None:
        write_results(results, out)
    return results


def check_takes_instruction(env_name: str) -> None:
    """Raise ValueError unless env ``env_name`` takes ``instruction=`` (what its observations say instead of
    the task's own language: MetaWorld and ALOHA do; LIBERO's tasks carry theirs in their BDDL files)."""
    import inspect

    from oft.sim.base import ENVS, _import_adapters

    _import_adapters()
    if env_name not in ENVS:
        raise KeyError(unknown_name_message("environment", env_name, ENVS))
    params = inspect.signature(ENVS[env_name]).parameters
    if "instruction" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = sorted(n for n, f in ENVS.items() if "instruction" in inspect.signature(f).parameters)
        raise ValueError(
            f"env {env_name!r} takes no instruction (its tasks carry their own language); "
            f"instructions can be given to: {', '.join(takes)}"
        )


def check_instructions(env_name: str, instructions) -> list[str]:
    """``instructions`` as a list of str for running every start state once under each (``oft eval
    --instruction``, ``oft collect --instruction``). Raises ValueError for none, a repeated one, or an env
    that takes no instruction (:func:`check_takes_instruction`)."""
    instructions = [str(i) for i in instructions]
    if not instructions:
        raise ValueError("instructions: expected one or more, got none")
    repeated = sorted({i for i in instructions if instructions.count(i) > 1})
    if repeated:
        raise ValueError(f"instructions: {repeated} given more than once; expected each once")
    check_takes_instruction(env_name)
    return instructions


def check_reset_seeds(reset_seeds: dict, tasks: list[str], seed: int, episodes: int) -> None:
    """Raise ValueError unless ``reset_seeds`` gives every one of ``tasks`` at least ``episodes`` seeds >= 0,
    and ``seed`` is 0 (it offsets the evaluation layouts, which explicit seeds replace)."""
    if seed != 0:
        raise ValueError(f"seed is {seed}: it offsets the evaluation layouts; with reset_seeds expected 0")
    for task in tasks:  # episodes >= 1: evaluate and argparse checked it
        have = [int(s) for s in reset_seeds.get(task, [])]
        if not have:
            raise ValueError(f"task {task!r} has no reset seeds given; tasks given: {sorted(reset_seeds)}")
        if len(have) < episodes:
            raise ValueError(
                f"task {task!r} has {len(have)} reset seeds given, expected at least {episodes} (one per "
                f"episode): evaluate {len(have)} episodes or fewer"
            )
        if min(have) < 0:
            raise ValueError(f"task {task!r}: reset seeds must be >= 0, got {min(have)}")


def instruction_slug(text: str) -> str:
    """A folder name for instruction ``text``: lowercase words and digits joined by ``-`` ("transfer the red
    cube" -> "transfer-the-red-cube"; "" -> "empty")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "empty"


def evaluate_instructions(
    policy: PolicyOrFactory,
    env_name: str,
    tasks: str | list[str],
    instructions: list[str] | tuple[str, ...],
    episodes: int = 10,
    *,
    out: str | Path | None = None,
    env_kwargs: dict | None = None,
    policy_source: str | None = None,
    **kwargs,
) -> dict:
    """Every task once per instruction, from the same start states each time (episode ``i`` has the same
    seed under every instruction), so a policy that ignores its instruction cannot pass both.

    The env gets ``instruction=`` (MetaWorld, ALOHA): what the observations say; on ALOHA ``two-cube`` an
    instruction naming a colour also makes that cube the one success asks for. Rows are
    ``"<task>: <instruction>"``, shaped like :func:`evaluate`'s (``oft eval-compare`` reads them); ``overall``
    pools every row with its 95% Wilson interval. With ``out``, each (task, instruction) run writes its own
    ``oft eval`` directory ``out/instructions/<task>__<slug>/`` (:func:`instruction_slug`) and the rows go to
    ``out/results.json`` and ``out/success.png``. Where the env records which object an episode moved
    (``outcome.moved``, ALOHA ``two-cube``), ``results["same_object"][task]`` = ``{"start_states", "same"}``:
    start states where an object was moved under every instruction, and how many of them the same one.
    Other keyword arguments go to :func:`evaluate`.

    Raises ValueError for no instructions or a repeated one, and when ``env_name`` takes no instruction.
    """
    instructions = check_instructions(env_name, instructions)
    slugs = [instruction_slug(i) for i in instructions]
    if out is not None and len(set(slugs)) < len(slugs):  # each run's folder is named by its slug
        raise ValueError(f"instructions {instructions} share a folder name ({slugs}); reword them")
    task_names = resolve_tasks(env_name, tasks)
    out = Path(out) if out is not None else None
    t0 = time.perf_counter()
    rows, runs = {}, []
    for task in task_names:
        for instruction in instructions:
            row_out = out / "instructions" / f"{task}__{instruction_slug(instruction)}" if out else None
            res = evaluate(
                policy,
                env_name,
                [task],
                episodes,
                out=row_out,
                env_kwargs=dict(env_kwargs or {}, instruction=instruction),
                policy_source=policy_source,
                **kwargs,
            )
            rows[f"{task}: {instruction}"] = res["tasks"][task]
            runs.append(res)
    from oft.sim.eval_stats import pooled_rate

    overall = pooled_rate(rows) | followed_counts(list(rows.values()))
    wall = time.perf_counter() - t0
    first = runs[0]
    results = {
        "env": env_name,
        "policy": policy_source,
        "policy_step": checkpoint_step(policy_source),
        "statistics": acting_statistics(policy),
        "episodes_per_task": episodes,
        "seed": first["seed"],
        "layouts": first["layouts"],
        "open_loop_steps": first["open_loop_steps"],
        "max_steps": first["max_steps"],
        "temporal_ensemble_coeff": first["temporal_ensemble_coeff"],
        "instructions": instructions,
        "overall": overall,
        "tasks": rows,
        "wall_s": round(wall, 2),
        "env_steps": sum(r["env_steps"] for r in runs),
        "env_steps_per_s": round(sum(r["env_steps"] for r in runs) / wall, 1) if wall > 0 else None,
        "workers": max(r["workers"] for r in runs),
        "batch": first["batch"],
        "episodes_per_s": round(overall["episodes"] / wall, 3) if wall > 0 else None,
    }
    effect = {t: _same_outcome(rows, t, instructions) for t in task_names}
    if any(effect.values()):
        results["same_object"] = {t: e for t, e in effect.items() if e}
    if out is not None:
        write_results(results, out)
    return results


def _same_outcome(rows: dict, task: str, instructions: list[str]) -> dict:
    """Start states where the policy moved an object (``outcome.moved``) under every instruction, and how
    many of them it moved the same one under all (``{"start_states", "same"}``; {} without outcomes): a
    policy that reads its instruction moves different objects when told different ones."""
    runs = [rows[f"{task}: {i}"]["episode_results"] for i in instructions]
    if len(runs) < 2 or not all("moved" in e.get("outcome", {}) for eps in runs for e in eps):
        return {}
    moved = [[e["outcome"]["moved"] for e in eps] for eps in runs]
    acted = [col for col in zip(*moved, strict=True) if all(m is not None for m in col)]
    return {"start_states": len(acted), "same": sum(len(set(col)) == 1 for col in acted)}


PARTIAL_RESULTS = "results_partial.json"


def _keep_finished(records: dict[str, list], out: Path | None, error: BaseException, run: dict) -> None:
    """Write the episodes that finished before ``error`` stopped an evaluation to ``out/results_partial.json``
    (``run`` + ``error``, ``episodes_finished`` and per task the finished episodes' records); nothing when
    there is no ``out`` or no finished episode."""
    done = {t: [r for r in eps if r is not None] for t, eps in records.items()}
    n = sum(len(eps) for eps in done.values())
    if out is None or n == 0:
        return
    text = error.args[0] if isinstance(error, KeyError) and error.args else error
    name = type(error).__name__
    doc = run | {"error": f"{name}: {text}" if str(text) else name, "episodes_finished": n, "tasks": done}
    path = out / PARTIAL_RESULTS
    try:  # written whole or not at all; a failure here must not hide the error that stopped the run
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        tmp.replace(path)
    except Exception as write_error:
        log.warning("could not keep the %d finished episodes in %s: %s", n, path, write_error)
        return
    log.error("evaluation stopped after %d finished episodes (%s); kept in %s", n, name, path)


def write_results(results: dict, out: Path) -> None:
    """``out/results.json`` and ``out/success.png`` (each row's rate with its 95% interval) of ``results``
    shaped like :func:`evaluate`'s (``env``, ``tasks``, ``overall``)."""
    from oft.sim.video import plot_success

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    rates = {t: r["success_rate"] for t, r in results["tasks"].items()}
    intervals = {t: tuple(r["ci95"]) for t, r in results["tasks"].items()}
    o = results["overall"]
    lo, hi = o["ci95"]
    ci = f"95% CI {100 * lo:.0f}-{100 * hi:.0f}%"
    title = f"{results['env']}: {o['successes']}/{o['episodes']} successes ({ci})"
    plot_success(rates, o["success_rate"], out / "success.png", title, intervals=intervals)
    log.info("wrote %s and %s", out / "results.json", out / "success.png")


__all__ = [
    "EpisodeJob",
    "RolloutSettings",
    "evaluate",
    "render_size_arg",
    "resolve_tasks",
    "run_episode",
]
