"""Collect successful expert demonstrations into a LeRobot v3 dataset.

The expert runs through the same :func:`~oft.sim.rollout.rollout` as any policy, recording the observation
before every action. Only successful episodes are kept: a failed seed is discarded and the next seed tried.

Seeds: demonstrations of a task use seeds ``0, 1, 2, ...`` (below ``env.eval_seed_offset``), consumed in
order, so the dataset is the same whatever the number of workers. A second dataset of the same task collected
the same way would hold the same layouts (and, under ``action_noise``, the same episodes); ``first_seed``
(``oft collect --first-seed N``) starts it at seed N instead, so it adds layouts the first does not have.
Resumption: ``meta/oft_collect.json`` records the seed of every committed episode and the scene options
(``CollectConfig.env_kwargs``, e.g. MetaWorld's ``show_goal``); rerunning the same command continues after
the last one (the dataset writer itself drops a half-written episode), and a rerun with other scene options
is refused rather than mixed in.
The sidecar is written before each episode is committed and entries past the dataset's committed count are
ignored on reopening.

Instructions (``CollectConfig.instructions``, ``oft collect --instruction``): every start state is
demonstrated once under each instruction (the env's ``instruction=``), its episodes committed together and
only if all of them succeeded, so the layout never tells the demonstrations apart: only the instruction does.
On ALOHA ``two-cube`` an instruction naming a colour also makes that cube the one the expert transfers; with
one instruction per layout (each seed's own cube) a policy can recall each layout's demonstration without
reading its instruction, and pairing removes that shortcut (it does not by itself make a small policy read
the instruction: docs/results/aloha.md). Elsewhere the instruction changes only the text the
demonstrations carry. A resumed collection first completes a start state left with fewer
episodes than instructions, and a rerun with other instructions is refused.

Past success (``CollectConfig.after_success``, ``oft collect --after-success N|end``): by default a
demonstration ends on the frame its success test first passes, as evaluation does; N more steps (or all of
them to the env's limit, ACT's fixed-length episodes) show the policy what follows, so a rollout that reaches
the demonstrated end pose without the test passing there still has an example of going on.

    from oft.sim.collect import collect
    summary = collect("metaworld", ["pick-place-v3"], episodes_per_task=50, out="data/pp", workers=2)
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oft.data.episode import Episode
from oft.progress import progress_bar
from oft.sim.base import SimEnv, make_env
from oft.sim.evaluate import check_instructions
from oft.sim.rollout import ExpertPolicy, check_action_noise, check_after_success, rollout

if TYPE_CHECKING:
    from oft.data.lerobot import PreparedFrames

log = logging.getLogger(__name__)

SIDECAR = "meta/oft_collect.json"


@dataclass
class CollectConfig:
    """What to render and how hard to try. ``env_kwargs`` go to ``make_env`` (cameras, image_size, ...).

    after_success: how many steps each demonstration goes on once the task's success test passes (0: it ends
        on that frame); None records to the env's step limit, as ACT's scripted ALOHA episodes do (400 steps).
        A demonstration ending at success shows nothing of what follows it: a policy that reaches the last
        demonstrated pose without the test passing there (a cube grasped a little lower) has no example of
        going on, and stalls. Recorded in the sidecar; a rerun with another value is refused.
    action_noise: standard deviation of Gaussian noise added to each action the expert executes, in the
        env's action units, while the clean expert action is what the dataset records (DART's noise injection,
        :func:`~oft.sim.rollout.rollout`): the expert is pushed off its path and recorded steering back, so
        the demonstrations show the states a cloned policy drifts into. Episodes that fail under the noise are
        discarded like any failed seed. The noise of a seed is fixed (drawn from the seed), so the dataset
        does not depend on the number of workers. Recorded in the sidecar; a rerun with another value is
        refused.
    first_seed: the first reset seed tried for each task (default 0); seeds are then consumed in order. A
        dataset collected from seed 0 holds seeds 0, 1, ... (failed ones skipped); another one of the same
        task started past its last seed holds other layouts (``demonstration_seeds`` lists a dataset's).
        Must lie below the env's first evaluation seed (``eval_seed_offset``: 1,000,000 for MetaWorld and
        ALOHA), which the collection never reaches. Recorded in the sidecar; a rerun with another value is
        refused.
    """

    cameras: tuple[str, ...] = ("corner", "gripperPOV")
    image_size: int = 128
    workers: int = 2
    video: bool = True  # MP4 image features (LeRobot's default) rather than PNG bytes in parquet
    max_failures: int | None = None  # per task; default max(20, episodes)
    env_kwargs: dict = field(default_factory=dict)
    instructions: tuple[str, ...] = ()  # each start state once under each (module doc); () the task's own
    after_success: int | None = 0  # steps recorded past the expert's success; None: to the env's end (doc)
    action_noise: float = 0.0  # std of the noise added to what the expert executes, not records (doc)
    first_seed: int = 0  # the first seed tried for each task (doc)


# ------------------------------------------------------------------------------- one demonstration


_WORKER_ENVS: dict[str, SimEnv] = {}


def _worker_env(env_name: str, task: str, env_kwargs: dict) -> SimEnv:
    """One env per task and options per worker process, reused across seeds (building one costs ~1 s)."""
    key = f"{env_name}/{task}/{json.dumps(env_kwargs, sort_keys=True, default=str)}"
    if key not in _WORKER_ENVS:
        _WORKER_ENVS[key] = make_env(env_name, task=task, **env_kwargs)
    return _WORKER_ENVS[key]


def demo_episode(
    env: SimEnv, seed: int, after_success: int | None = 0, action_noise: float = 0.0
) -> tuple[Episode | None, int]:
    """The expert's episode from ``reset(seed)`` as an :class:`Episode` (None if it never succeeded), and its
    steps; ``after_success`` and ``action_noise`` as in :class:`CollectConfig`. ``meta["success_step"]``: the
    steps taken when the success test first passed.

    An env that can step without rendering (``env.can_skip_render``) first runs the episode without images:
    a seed the expert fails then costs its physics only, not the render of every frame up to the step limit
    (under ``action_noise`` 0.3 a sixth of push's and pick-place's seeds fail, and rendering is most of a
    step's cost). The recorded run repeats it: the same reset, actions and noise. The dry run adds about 3%
    to a successful MetaWorld episode and 6% to an ALOHA one (measured: 0.06 s against 2.0 s for a 95-step
    peg-insert-side demonstration at 64 px, 0.46 s against 7.8 s for a 209-step transfer-cube one)."""
    expert = ExpertPolicy(env)
    options = dict(seed=seed, after_success=after_success, action_noise=action_noise)
    if env.can_skip_render:
        dry = rollout(expert, env, **options)
        if not dry.success:
            return None, dry.steps
    r = rollout(expert, env, record_observations=True, **options)
    if not r.success:
        return None, r.steps
    obs = r.observations
    images = {cam: np.stack([o.images[i] for o in obs]) for i, cam in enumerate(env.spec.cameras)}
    return Episode(
        images=images,  # (T, H, W, 3) per camera
        proprio=np.stack([o.proprio for o in obs]),  # (T, P)
        actions=r.actions,  # (T, D)
        instruction=env.instruction,
        meta={"task": env.task, "seed": seed, "steps": r.steps, "success_step": r.success_step},
    ), r.steps


def _demo_job(
    env_name: str, task: str, seed: int, env_kwargs: dict, cfg: CollectConfig
) -> tuple[Episode | None, int, PreparedFrames | None]:
    """Worker entry point (module level so ``spawn`` can import it): (episode, steps, its
    :class:`~oft.data.lerobot.PreparedFrames`, PNG bytes for a PNG dataset), recorded as ``cfg`` says. The
    workers encode and take the image statistics, not the one writing process, whose share caps the
    collection whatever the number of workers (about 3 episodes/s when it did this too,
    ``tests/data/bench_writer.py``)."""
    from oft.data.lerobot import prepare_frames

    env = _worker_env(env_name, task, env_kwargs)
    ep, steps = demo_episode(env, seed, cfg.after_success, cfg.action_noise)
    return ep, steps, (prepare_frames(ep, not cfg.video) if ep is not None else None)


def _init_worker() -> None:
    import signal

    import torch

    torch.set_num_threads(1)  # the workers simulate and render; torch is only imported, never busy
    # Ctrl-C reaches every process of a terminal's group: the collecting process handles it (it keeps the
    # committed episodes and terminates the pool), a worker would only add its own traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ------------------------------------------------------------------------------------- resumption


def _scene_options(env_kwargs: dict) -> dict:
    """``CollectConfig.env_kwargs`` as the sidecar stores it (JSON values: tuples become lists)."""
    return json.loads(json.dumps(dict(env_kwargs), sort_keys=True, default=str))


def recorded_scene(dataset) -> dict | None:
    """``{"env": name, "options": {...}}``: the simulator and scene options (``CollectConfig.env_kwargs``,
    e.g. MetaWorld's ``show_goal=False``) that ``oft collect`` recorded for ``dataset`` (an opened dataset
    with a ``path``, or a concatenation of several in ``.datasets``). None when a part has no record (not
    written by ``oft collect``, or before scenes were recorded) or the parts disagree: then nothing is known
    to repeat. The trainer stores it in the policy, and evaluation renders the same scene
    (:func:`oft.sim.evaluate.evaluate`)."""
    parts = getattr(dataset, "datasets", None) or [dataset]
    found = []
    for part in parts:
        path = getattr(part, "path", None)
        side = Path(path) / SIDECAR if path is not None else None
        if side is None or not side.is_file():
            return None
        data = json.loads(side.read_text())
        if "scene" not in data:
            return None
        found.append({"env": data.get("env"), "options": data["scene"]})
    if any(f != found[0] for f in found[1:]):
        log.warning("the training datasets were collected in different scenes %s; evaluation uses the "
                    "simulator's defaults unless told", found)  # fmt: skip
        return None
    return found[0]


def shared_layouts(dataset) -> list[tuple[str, str, str, list[int]]]:
    """``[(dataset A, dataset B, task, seeds)]``: the layouts of a task that two parts of a training mixture
    (``dataset.datasets``, each with a ``path``) both hold demonstrations of, by the seeds ``oft collect``
    recorded (:func:`demonstration_seeds`; parts without a record, or of another simulator, are not
    compared). Two datasets of a task collected from seed 0 hold the same layouts, and under the same
    ``--action-noise`` the same episodes: the mixture then draws them from both, as if weighted up."""
    parts = getattr(dataset, "datasets", None) or []
    known = []
    for part in parts:
        path = getattr(part, "path", None)
        if path is None or not (Path(path) / SIDECAR).is_file():
            continue
        try:
            known.append((str(path), *demonstration_seeds(path)))
        except ValueError:  # no committed episodes: nothing to share
            continue
    found = []
    for i, (path_a, env_a, seeds_a) in enumerate(known):
        for path_b, env_b, seeds_b in known[i + 1 :]:
            if env_a != env_b:
                continue
            for task in seeds_a.keys() & seeds_b.keys():
                both = sorted(set(seeds_a[task]) & set(seeds_b[task]))
                if both:
                    found.append((path_a, path_b, task, both))
    return found


def warn_shared_layouts(dataset) -> bool:
    """Log a warning for every task whose layouts two parts of ``dataset`` share (:func:`shared_layouts`),
    naming the datasets, how many and which seeds, and ``--first-seed`` as the way to new ones; True if any.
    Not refused: drawing a dataset twice is one way to weight it."""
    found = shared_layouts(dataset)
    for path_a, path_b, task, seeds in found:
        log.warning(
            "datasets %s and %s both hold demonstrations of %s from the same %d layouts (seeds %d..%d): they "
            "are drawn from both, the same episodes where the noise was the same. For new layouts, collect "
            "the second with `oft collect --first-seed %d`",
            path_a, path_b, task, len(seeds), seeds[0], seeds[-1], seeds[-1] + 1,
        )  # fmt: skip
    return bool(found)


def seed_stop(env_name: str, task: str) -> int:
    """One past the last seed a demonstration of ``task`` may use: the env's first evaluation seed
    (:func:`oft.sim.base.eval_seed_offset`, so demonstration and evaluation layouts stay disjoint) or its
    :meth:`~oft.sim.base.SimEnv.seed_limit`, whichever comes first (2**31 where neither bounds it)."""
    from oft.sim.base import eval_seed_offset, seed_limit

    return min(eval_seed_offset(env_name) or 1 << 31, seed_limit(env_name, task) or 1 << 31)


def check_first_seed(env_name: str, tasks: list[str], first_seed: int, start_states: int = 1) -> None:
    """ValueError unless ``first_seed`` is an int >= 0 and seeds ``first_seed .. first_seed + start_states -
    1`` all lie below :func:`seed_stop` of every task (failed seeds need more; the collection stops there)."""
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise ValueError(f"first_seed must be an integer >= 0, got {first_seed!r}")
    for task in tasks:
        stop = seed_stop(env_name, task)
        if first_seed + start_states > stop:
            raise ValueError(
                f"first_seed {first_seed} with {start_states} start states would use seeds up to "
                f"{first_seed + start_states - 1}; {env_name} task {task!r} stops at {stop} (its first "
                "evaluation seed: demonstrations must not use evaluation layouts; or its last layout). "
                f"Expected first_seed <= {max(stop - start_states, 0)}"
            )


def demonstration_seeds(dataset: str | Path) -> tuple[str, dict[str, list[int]]]:
    """-> (env name, {task: reset seeds}) of the episodes ``oft collect`` committed to ``dataset`` (a
    directory), each seed once per task in collection order. ``env.reset(seed)`` draws those layouts again:
    ``oft eval --demonstration-layouts`` evaluates a policy where it was trained, which tells a policy that
    does not fit its data from one that fits it but does not generalize to the unseen layouts.

    Raises FileNotFoundError when ``dataset`` has no ``meta/info.json``, ValueError when it has no
    ``meta/oft_collect.json`` (not written by ``oft collect``: its layouts are unknown) or no episodes.
    """
    from oft.data.lerobot import load_info

    root = Path(dataset)
    committed = int(load_info(root)["total_episodes"])  # the commit point: later sidecar rows never landed
    path = root / SIDECAR
    if not path.is_file():
        raise ValueError(
            f"{root} has no {SIDECAR}: it was not written by `oft collect`, so the layouts of its "
            "demonstrations are unknown"
        )
    data = json.loads(path.read_text())
    seeds: dict[str, list[int]] = {}
    for e in data.get("episodes", []):
        if e["index"] < committed and e["seed"] not in seeds.setdefault(e["task"], []):
            seeds[e["task"]].append(int(e["seed"]))  # under several instructions a seed recurs
    if not seeds:
        raise ValueError(f"{root} holds no committed episodes; expected at least one demonstration")
    return str(data.get("env")), seeds


def _load_sidecar(
    out: Path,
    committed: int,
    env_name: str,
    scene: dict,
    instructions: list,
    after_success: int | None = 0,
    action_noise: float = 0.0,
    first_seed: int = 0,
) -> list[dict]:
    path = out / SIDECAR
    if not path.exists():
        if committed:
            raise ValueError(
                f"{out} holds {committed} episodes but no {SIDECAR}; it was not written by `oft collect`, "
                "so the seeds already used are unknown. Collect into a new directory."
            )
        return []
    data = json.loads(path.read_text())
    if data.get("env") != env_name:
        raise ValueError(f"{out} was collected from env {data.get('env')!r}, not {env_name!r}")
    episodes = [e for e in data["episodes"] if e["index"] < committed]
    if episodes:
        if "scene" not in data:
            log.warning("%s does not record the scene options of its %d episodes; topping it up with %s",
                        out, len(episodes), scene)  # fmt: skip
        elif data["scene"] != scene:
            raise ValueError(
                f"{out} holds {len(episodes)} episodes collected with scene options {data['scene']}; this "
                f"run asks for {scene}. Their frames would differ (a policy trained on both sees two scenes, "
                "and is evaluated in one): collect into a new directory, or rerun with the same options"
            )
        if data.get("instructions", []) != instructions:
            raise ValueError(
                f"{out} holds {len(episodes)} episodes collected with instructions "
                f"{data.get('instructions', [])} (each start state once under each; [] the task's own); "
                f"this run asks for {instructions}: rerun with the same --instruction list, or collect into "
                "a new directory"
            )
        recorded = data.get("after_success", 0)
        if recorded != after_success:
            raise ValueError(
                f"{out} holds {len(episodes)} episodes recorded to {_after_text(recorded)}; "
                f"this run asks for {_after_text(after_success)}: rerun with the same --after-success, or "
                "collect into a new directory"
            )
        recorded = data.get("action_noise", 0.0)
        if recorded != action_noise:
            raise ValueError(
                f"{out} holds {len(episodes)} episodes whose expert executed its actions with noise of "
                f"standard deviation {recorded}; this run asks for {action_noise}: rerun with the same "
                "--action-noise, or collect into a new directory"
            )
        recorded = data.get("first_seed", 0)
        if recorded != first_seed:
            raise ValueError(
                f"{out} holds {len(episodes)} episodes collected from seed {recorded} on (--first-seed "
                f"{recorded}); this run asks for --first-seed {first_seed}: rerun with the same --first-seed "
                "(it continues after the last seed), or collect into a new directory"
            )
    return episodes


def _after_text(after_success: int | None) -> str:
    if after_success is None:
        return "the env's end (--after-success end)"
    return f"{after_success} steps past success (--after-success {after_success})"


def _save_sidecar(
    out: Path,
    env_name: str,
    episodes: list[dict],
    scene: dict,
    instructions: list,
    after_success: int | None = 0,
    action_noise: float = 0.0,
    first_seed: int = 0,
) -> None:
    path = out / SIDECAR
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    data = {"env": env_name, "scene": scene, "episodes": episodes}
    if instructions:
        data["instructions"] = instructions
    if after_success != 0:  # absent: 0, as every dataset before the option
        data["after_success"] = after_success
    if action_noise:  # absent: none, as every dataset before the option
        data["action_noise"] = action_noise
    if first_seed:  # absent: 0, as every dataset before the option
        data["first_seed"] = first_seed
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# -------------------------------------------------------------------------------------- the driver


class _Runner:
    """Runs demo jobs in seed order, in-process (workers <= 1) or in a pool, keeping a bounded window."""

    def __init__(self, cfg: CollectConfig) -> None:
        self.pool, self.cfg = None, cfg
        if cfg.workers > 1:
            self.pool = mp.get_context("spawn").Pool(cfg.workers, initializer=_init_worker)
        self.window = max(1, 2 * cfg.workers)

    def run(self, env_name: str, task: str, jobs, needed: int):
        """Yield ((seed, instruction), (Episode | None, steps, PreparedFrames | None)) in job order until the
        caller stops or the jobs run out; a job is (seed, instruction, env_kwargs), ``needed`` bounds what is
        started ahead."""
        if self.pool is None:
            for seed, instruction, kwargs in jobs:
                yield (seed, instruction), _demo_job(env_name, task, seed, kwargs, self.cfg)
            return
        pending: deque = deque()
        while True:
            while len(pending) < min(self.window, max(needed, 1)):
                job = next(jobs, None)
                if job is None:
                    break
                seed, instruction, kwargs = job
                res = self.pool.apply_async(_demo_job, (env_name, task, seed, kwargs, self.cfg))
                pending.append(((seed, instruction), res))
            if not pending:
                return
            key, res = pending.popleft()
            result = res.get()
            needed -= result[0] is not None
            yield key, result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        for env in _WORKER_ENVS.values():  # in-process envs
            env.close()
        _WORKER_ENVS.clear()


def collect(
    env_name: str,
    tasks: list[str],
    episodes_per_task: int,
    out: str | Path,
    config: CollectConfig | None = None,
    progress: bool = False,
) -> dict:
    """Write ``episodes_per_task`` successful expert episodes of each task to the LeRobot v3 dataset ``out``.

    Returns a summary: episodes written and tried per task, seeds, env steps, wall time, steps/s.
    """
    from oft.data.lerobot import LeRobotWriter

    cfg = config or CollectConfig()
    out = Path(out)
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    instructions = check_instructions(env_name, cfg.instructions) if cfg.instructions else []
    check_after_success(cfg.after_success)
    check_action_noise(cfg.action_noise)
    check_first_seed(env_name, tasks, cfg.first_seed, episodes_per_task)
    env_kwargs = {"cameras": tuple(cfg.cameras), "image_size": cfg.image_size, **cfg.env_kwargs}
    with make_env(env_name, task=tasks[0], **env_kwargs) as probe:
        spec, robot = probe.spec, env_name
    writer = LeRobotWriter(
        out,
        fps=round(spec.control_hz),
        cameras=list(spec.cameras),
        image_shape=(cfg.image_size, cfg.image_size),
        action_dim=spec.action_dim,
        proprio_dim=spec.proprio_dim,
        robot_type=robot,
        video=cfg.video,
        conventions=spec.conventions,  # the simulator's own: the expert acts in it
    )
    scene = _scene_options(cfg.env_kwargs)  # what the sidecar checks and records: computed once
    done = _load_sidecar(
        out,
        writer.num_episodes,
        env_name,
        scene,
        instructions,
        cfg.after_success,
        cfg.action_noise,
        cfg.first_seed,
    )
    summary = {"env": env_name, "out": str(out), "tasks": {}, "resumed_from": len(done)}
    per_task = episodes_per_task * max(1, len(instructions))
    # the bar counts this request: episodes of other tasks, or past a task's count, are not progress on it
    counted = sum(min(sum(e["task"] == t for e in done), per_task) for t in tasks)
    bar = progress_bar(len(tasks) * per_task, desc="collect", unit="demo", initial=counted, enabled=progress)
    runner = _Runner(cfg)
    t0 = time.perf_counter()
    try:
        for task in tasks:
            summary["tasks"][task] = _collect_task(
                runner, writer, done, env_name, task, episodes_per_task, env_kwargs, scene, cfg, bar
            )
    finally:
        runner.close()
        bar.close()
    writer.finalize()  # exact action/state quantiles (appending later keeps working)
    wall = time.perf_counter() - t0
    steps = sum(t["env_steps"] for t in summary["tasks"].values())  # failed episodes' steps included
    summary |= {"wall_s": round(wall, 2), "env_steps": steps, "env_steps_per_s": round(steps / wall, 1)}
    summary["num_episodes"] = writer.num_episodes
    return summary


def _collect_task(runner, writer, done, env_name, task, n, env_kwargs, scene, cfg, bar) -> dict:
    """Fill task ``task`` up to ``n`` committed start states, each with one episode per instruction (one
    episode when there are none), continuing after its last committed seed."""
    instructions = list(cfg.instructions)
    wanted = instructions or [None]
    have = [e for e in done if e["task"] == task]
    last = max((e["seed"] for e in have), default=cfg.first_seed - 1)
    # a start state left with fewer episodes than instructions (stopped between them) is completed first
    shown = {e.get("instruction") for e in have if e["seed"] == last}  # None: the task's own instruction
    missing = [i for i in wanted if have and i not in shown]
    needed = n - len({e["seed"] for e in have})
    max_failures = cfg.max_failures if cfg.max_failures is not None else max(20, n)
    tried = failures = env_steps = 0
    if needed <= 0 and not missing:
        return {"start_states": n, "episodes": len(have), "tried": 0, "failures": 0, "env_steps": 0}

    def job(seed: int, instruction: str | None):
        kwargs = env_kwargs if instruction is None else {**env_kwargs, "instruction": instruction}
        return seed, instruction, kwargs

    def commit(seed: int, instruction: str | None, ep: Episode, prepared) -> None:
        entry = {"index": writer.num_episodes, "task": task, "seed": seed, "steps": len(ep)}
        if cfg.after_success != 0:
            entry["success_step"] = ep.meta["success_step"]
        if instruction is not None:
            entry["instruction"] = instruction
        done.append(entry)
        # the sidecar before the commit: entries past the committed count are ignored on reopening
        _save_sidecar(
            writer.root,
            env_name,
            done,
            scene,
            instructions,
            cfg.after_success,
            cfg.action_noise,
            cfg.first_seed,
        )
        writer.add_episode(ep, sidecars=(writer.root / SIDECAR,), prepared=prepared)
        bar.update(1)

    stop = seed_stop(env_name, task)
    jobs = itertools.chain(
        (job(last, i) for i in missing),
        (job(s, i) for s in range(last + 1, stop) for i in wanted),
    )
    completing, group = len(missing), []
    for (seed, instruction), (ep, steps, prepared) in runner.run(
        env_name, task, jobs, (needed * len(wanted)) or 1
    ):
        tried += 1
        env_steps += steps
        if completing:
            completing -= 1
            if ep is None:
                failures += 1
                log.warning("%s seed %d: the expert failed under %r; the start state stays without it",
                            task, seed, instruction)  # fmt: skip
            else:
                commit(seed, instruction, ep, prepared)
            if completing == 0 and needed <= 0:
                break
            continue
        group.append((instruction, ep, prepared))
        if len(group) < len(wanted):
            continue
        episodes, group = group, []
        if any(e is None for _, e, _ in episodes):
            failures += 1
            log.info("%s seed %d: the expert failed; trying the next seed", task, seed)
            if failures > max_failures:
                raise RuntimeError(f"{task}: the expert failed {failures} times; giving up")
            continue
        for i, e, prepared_e in episodes:
            commit(seed, i, e, prepared_e)
        needed -= 1
        if needed == 0:
            break
    if needed > 0:
        raise RuntimeError(
            f"{task}: {needed} start states short of {n} when the seeds ran out at {stop} (the env's first "
            f"evaluation seed or its last layout); what was written is kept ({writer.num_episodes} "
            f"episodes in {writer.root}). Choose a smaller --first-seed"
        )
    count = sum(e["task"] == task for e in done)
    return dict(start_states=n, episodes=count, tried=tried, failures=failures, env_steps=env_steps)


__all__ = ["CollectConfig", "collect", "demo_episode", "recorded_scene"]
