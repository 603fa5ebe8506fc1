"""The one interface every simulator adapter implements, and the registry that names them.

A suite differs from another only in its adapter: the rollout loop, evaluation, collection and the tests
are written once against :class:`SimEnv`. Per-suite numbers (max steps, cameras, warm-up) live next to the
adapter that needs them, with a comment citing their source.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from oft.observation import Observation
from oft.spec import RobotSpec, unknown_name_message


@dataclass
class StepResult:
    """One step. ``info["outcome"]`` (optional): a small JSON-safe dict saying what the episode has done so
    far beyond success; evaluation records the last step's with each episode. Its ``"followed"`` (bool):
    whether the policy acted on what the instruction names (ALOHA ``two-cube``: the named cube is the one it
    moved furthest), counted per task by :func:`oft.sim.evaluate.evaluate`; ``"max_stage"`` (int, 0 = none)
    and ``"stages"`` (names of stages 1, 2, ...): the furthest stage of the task the episode reached (ALOHA:
    the reward, ACT's stages), counted per task as ``"stages"`` (:func:`oft.sim.evaluate.stage_counts`)."""

    observation: Observation
    success: bool  # the task's success criterion holds at this step
    done: bool  # the episode cannot continue (time limit or the simulator's own termination)
    info: dict = field(default_factory=dict)


class SimEnv(abc.ABC):
    """A simulated task.

    ``spec`` gives the action/proprio sizes and camera order; observations carry images rendered only for
    ``spec.cameras`` at ``image_size``. ``reset(seed)`` draws the layout (object positions, initial state)
    deterministically from ``seed``; evaluation seeds are disjoint from demonstration seeds by convention of
    each adapter (see its docstring).
    """

    spec: RobotSpec
    task: str
    instruction: str
    max_steps: int
    # True when ``step(action, render=False)`` is supported: the step skips rendering and returns an
    # observation with ``images == []``. The rollout renders only at chunk-query steps, which on a CPU
    # (Mesa) renderer is most of an episode's cost.
    can_skip_render: bool = False
    # Evaluation episode i of ``oft eval --seed S`` uses ``reset(eval_seed_offset + S + i)``; demonstrations
    # use seeds from 0. An adapter whose seeds draw random layouts sets an offset beyond any demo seed so
    # evaluation layouts are disjoint from the demos'; one with fixed initial states (LIBERO) keeps 0.
    eval_seed_offset: int = 0

    @classmethod
    def seed_limit(cls, task: str) -> int | None:
        """One past the largest seed ``reset`` accepts for ``task``; None: any seed >= 0.

        :func:`check_seeds` tests a whole run's seeds against it before the first episode, so a run that
        would reach past it is refused up front instead of failing at that episode with the earlier
        episodes' results lost (LIBERO: 50 fixed initial states per task).
        """
        return None

    @abc.abstractmethod
    def reset(self, seed: int) -> Observation: ...

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> StepResult: ...

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state. Adapters without an expert raise."""
        raise NotImplementedError(f"{type(self).__name__} has no scripted expert")

    def render(self) -> Observation:
        """Observation of the current state (images re-rendered)."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


EnvFactory = Callable[..., SimEnv]
ENVS: dict[str, EnvFactory] = {}
# suite name -> callable returning the task names of that suite (so tests and `oft eval` can enumerate them)
SUITE_TASKS: dict[str, Callable[[], list[str]]] = {}


def register_env(name: str, tasks: Callable[[], list[str]]):
    """Class/function decorator: ``make_env(name, task=..., **kw)`` will call the decorated factory."""

    def deco(factory: EnvFactory) -> EnvFactory:
        if name in ENVS:
            raise ValueError(f"environment {name!r} registered twice")
        ENVS[name] = factory
        SUITE_TASKS[name] = tasks
        return factory

    return deco


def _import_adapters() -> None:
    """Import the adapters so they register themselves; a missing optional extra only hides its suite."""
    import importlib

    for mod in ("oft.sim.metaworld", "oft.sim.aloha", "oft.sim.libero"):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            if (e.name or "").startswith("oft") and e.name != mod:
                raise  # our own bug, not a missing extra (an adapter module not written yet is skipped)
            continue


def eval_seed_offset(name: str) -> int:
    """The first evaluation seed of env ``name`` (:attr:`SimEnv.eval_seed_offset`). KeyError for an unknown
    env."""
    _import_adapters()
    if name not in ENVS:
        raise KeyError(unknown_name_message("environment", name, ENVS))
    return int(getattr(ENVS[name], "eval_seed_offset", 0))


def seed_limit(name: str, task: str) -> int | None:
    """One past the largest reset seed env ``name`` accepts for ``task`` (:meth:`SimEnv.seed_limit`); None:
    any seed >= 0. KeyError for an unknown env."""
    eval_seed_offset(name)  # loads the adapters, names an unknown env
    limit_of = getattr(ENVS[name], "seed_limit", None)
    return limit_of(task) if limit_of is not None else None


def check_seeds(name: str, tasks: list[str], seed: int, episodes: int) -> None:
    """Raise ValueError unless every task of env ``name`` accepts the seeds of episodes ``0 .. episodes - 1``
    started from ``seed``: ``eval_seed_offset + seed + i`` (``oft eval --seed S --episodes N``).

    The message names the task, the seeds the run would use, the range the task accepts and the largest
    ``--episodes`` that fits (:meth:`SimEnv.seed_limit`). Checked by :func:`oft.sim.evaluate.evaluate`
    before any episode, and by ``oft eval`` and ``oft eval-curve`` before a checkpoint is loaded. Also
    raises KeyError for an unknown env, ValueError for ``seed < 0`` or ``episodes < 1``.
    """
    offset = eval_seed_offset(name)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    first, last = offset + seed, offset + seed + episodes - 1
    for task in tasks:
        limit = seed_limit(name, task)
        if limit is not None and last >= limit:
            fits = max(limit - first, 0)
            hint = f" (at most {fits} episode{'s' * (fits != 1)} from seed {seed})" if fits else ""
            raise ValueError(
                f"{name} task {task!r} accepts reset seeds {offset}..{limit - 1} for evaluation; seed {seed} "
                f"with {episodes} episodes would use seeds {first}..{last}. Expected seed + episodes <= "
                f"{limit - offset}{hint}"
            )


def make_env(name: str, task: str, **kwargs) -> SimEnv:
    """Build env ``name`` (a registered suite) for ``task``; ``kwargs`` go to the adapter."""
    _import_adapters()
    if name not in ENVS:
        raise KeyError(unknown_name_message("environment", name, ENVS))
    return ENVS[name](task=task, **kwargs)


def list_tasks(name: str) -> list[str]:
    _import_adapters()
    if name not in SUITE_TASKS:
        raise KeyError(unknown_name_message("environment", name, SUITE_TASKS))
    return SUITE_TASKS[name]()
