"""The one rollout loop: a policy acts in a :class:`~oft.sim.base.SimEnv` for one episode.

Evaluation, demonstration collection and the tests all run episodes through :func:`rollout`, so an expert's
success rate and a learned policy's are measured by the same code. Each predicted chunk is executed open-loop
(OFT executes the whole chunk, paper Sec. IV); ``open_loop_steps`` executes only its first actions and
re-queries, trading speed for reactivity. ``temporal_ensemble_coeff`` is ACT's alternative (Zhao et al. 2023;
LeRobot's ``temporal_ensemble_coeff``): query every step and act on a weighted average of every chunk's
prediction for this step (:class:`TemporalEnsembler`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from oft.conventions import converter_for
from oft.observation import Observation
from oft.sim.base import SimEnv

log = logging.getLogger(__name__)


class ChunkPolicy(Protocol):
    """Maps an observation to an action chunk: ``oft.Policy``, :class:`ExpertPolicy`, a serving client."""

    def predict_action_chunk(self, obs: Observation) -> np.ndarray: ...  # (K, D)

    def reset(self) -> None: ...


@dataclass
class EpisodeResult:
    """What one episode did. ``frames``/``proprio``/``actions`` are filled only when recorded.

    frames: camera -> (T+1, H, W, 3) uint8 (observations before each action and after the last), for videos.
    observations: with ``record_observations``, the T observations the actions were taken from, aligned with
        ``actions`` (T, D): exactly an :class:`~oft.data.episode.Episode`'s layout.
    success: the task's success test passed at some step; ``success_step`` is the number of actions taken
        when it first did (None without success). With ``rollout(after_success=0)``, the default, the episode
        ends there and ``steps == success_step``.
    """

    success: bool
    steps: int
    seed: int
    task: str
    chunk_queries: int
    wall_s: float
    frames: dict[str, np.ndarray] | None = None
    observations: list[Observation] | None = None
    actions: np.ndarray | None = None  # (T, D)
    info: dict = field(default_factory=dict)
    success_step: int | None = None


class ExpertPolicy:
    """The env's scripted expert as a chunk policy with K=1, so the expert runs through :func:`rollout` too.

    It reads the simulator state, not the images, hence ``needs_images = False``: the rollout then renders
    only what it records.
    """

    needs_images = False

    def __init__(self, env: SimEnv) -> None:
        if type(env).expert_action is SimEnv.expert_action:
            raise ValueError(f"{type(env).__name__} ({env.task}) has no scripted expert (--expert needs one)")
        self.env = env

    def reset(self) -> None:
        pass

    def predict_action_chunk(self, obs: Observation) -> np.ndarray:
        return np.asarray(self.env.expert_action(), dtype=np.float32)[None]  # (1, D)


def _check_chunk(chunk: np.ndarray, action_dim: int) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float32)
    if chunk.ndim == 1:
        chunk = chunk[None]
    if chunk.ndim != 2 or chunk.shape[1] != action_dim or chunk.shape[0] < 1:
        raise ValueError(f"policy returned an action chunk of shape {chunk.shape}; want (K, {action_dim})")
    if not np.all(np.isfinite(chunk)):
        raise ValueError("policy returned an action chunk with NaN or inf")
    return chunk


class TemporalEnsembler:
    """ACT's temporal ensembling: the action for step t averages what every chunk queried at t-K+1 .. t
    predicted for t, weighted ``w_i = exp(-coeff * i)`` with ``i = 0`` the oldest prediction.

    ``coeff`` 0.01 is ACT's value (Zhao et al. 2023, "Learning Fine-Grained Bimanual Manipulation with
    Low-Cost Hardware"; LeRobot's ``ACTConfig.temporal_ensemble_coeff``): older predictions weigh slightly
    more; 0 weighs all equally, a negative value favours the newest. A chunk queried at step t holds actions
    for t .. t+K-1; call :meth:`update` once per step. Raises ValueError for a coefficient that is not finite.
    """

    def __init__(self, coeff: float) -> None:
        check_execution(None, coeff)
        self.coeff = float(coeff)
        self.reset()

    def reset(self) -> None:
        self.chunks: list[tuple[np.ndarray, int]] = []  # (chunk, steps since its query), oldest first

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Add the chunk (K, D) queried at this step; returns the ensembled action (D,) for this step."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if self.chunks and chunk.shape[1:] != self.chunks[-1][0].shape[1:]:
            raise ValueError(
                f"action dims changed within an episode: {self.chunks[-1][0].shape} then {chunk.shape}"
            )
        self.chunks.append((chunk, 0))
        # keep the chunks that still predict this step: age < K
        self.chunks = [(c, age) for c, age in self.chunks if age < c.shape[0]]
        preds = np.stack([c[age] for c, age in self.chunks])  # (n, D), oldest first
        z = -self.coeff * np.arange(len(preds))
        w = np.exp(z - z.max())  # the same weights after normalizing; no overflow to inf/inf for coeff << 0
        action = (w[:, None] * preds).sum(0) / w.sum()
        self.chunks = [(c, age + 1) for c, age in self.chunks]
        return action.astype(np.float32)


def check_execution(open_loop_steps: int | None, temporal_ensemble_coeff: float | None) -> None:
    """How chunks are executed, checked before anything runs: ``open_loop_steps`` >= 1 or None (the whole
    chunk); ``temporal_ensemble_coeff`` a finite number or None, and with it ``open_loop_steps`` None or 1.

    Raises ValueError naming the value and what was expected.
    """
    if open_loop_steps is not None and open_loop_steps < 1:
        raise ValueError(f"open_loop_steps must be >= 1 or None (whole chunk), got {open_loop_steps}")
    if temporal_ensemble_coeff is None:
        return
    if not np.isfinite(float(temporal_ensemble_coeff)):
        raise ValueError(f"temporal_ensemble_coeff must be a finite number, got {temporal_ensemble_coeff}")
    if open_loop_steps not in (None, 1):
        raise ValueError(
            "temporal ensembling queries the policy every step; open_loop_steps must be None or 1 with it, "
            f"got {open_loop_steps}"
        )


def chunk_length(policy) -> int | None:
    """Actions per chunk ``policy`` predicts, known before it is queried: a learned policy's
    ``spec.chunk_len``, 1 for the expert (:class:`ExpertPolicy`, or the class as a factory); None when it does
    not say (a serving client, a factory)."""
    if policy is ExpertPolicy or isinstance(policy, ExpertPolicy):
        return 1
    return getattr(getattr(policy, "spec", None), "chunk_len", None)


def check_open_loop_steps(open_loop_steps: int | None, chunk_len: int | None) -> None:
    """ValueError when ``open_loop_steps`` asks for more actions per query than the policy's chunks hold.

    :func:`rollout` runs at most a whole chunk per query, so a longer horizon would silently run ``chunk_len``
    actions while results recorded the value asked for; an evaluation checks it before any episode.
    """
    if open_loop_steps is None or chunk_len is None or open_loop_steps <= chunk_len:
        return
    raise ValueError(
        f"open_loop_steps {open_loop_steps} is more than the policy's action chunk length {chunk_len}: "
        f"expected 1 to {chunk_len}, or None to run each whole chunk"
    )


def check_after_success(after_success: int | None) -> None:
    """ValueError unless ``after_success`` is a step count >= 0 or None (see :func:`rollout`)."""
    if after_success is None:
        return
    is_int = isinstance(after_success, (int, np.integer)) and not isinstance(after_success, bool)
    if not is_int or after_success < 0:
        raise ValueError(
            f"after_success must be a number of steps >= 0, or None to run to the env's end; "
            f"got {after_success!r}"
        )


def check_action_noise(action_noise: float) -> None:
    """ValueError unless ``action_noise`` is a finite standard deviation >= 0 (see :func:`rollout`)."""
    is_number = isinstance(action_noise, (int, float, np.integer, np.floating)) and not isinstance(
        action_noise, bool
    )
    if not is_number or not np.isfinite(action_noise) or action_noise < 0:
        raise ValueError(f"action_noise must be a finite standard deviation >= 0, got {action_noise!r}")


class _Recorder:
    """Collects video frames and/or (observation, action) pairs during an episode."""

    def __init__(self, cameras: tuple[str, ...], video: bool, observations: bool) -> None:
        self.cameras, self.video, self.keep_obs = cameras, video, observations
        self.frames: list[list[np.ndarray]] = []
        self.obs: list[Observation] = []
        self.actions: list[np.ndarray] = []

    def observe(self, obs: Observation) -> None:
        if self.video and obs.images:  # a state-only env (no cameras) records no video
            self.frames.append(obs.images)

    def act(self, obs: Observation, action: np.ndarray) -> None:
        if self.keep_obs:
            self.obs.append(obs)
        self.actions.append(action)

    def frames_by_camera(self) -> dict[str, np.ndarray] | None:
        if not self.video or not self.frames:
            return None
        return {cam: np.stack([f[i] for f in self.frames]) for i, cam in enumerate(self.cameras)}


def rollout(
    policy: ChunkPolicy,
    env: SimEnv,
    max_steps: int | None = None,
    seed: int = 0,
    open_loop_steps: int | None = None,
    record_video: bool = False,
    record_observations: bool = False,
    temporal_ensemble_coeff: float | None = None,
    after_success: int | None = 0,
    action_noise: float = 0.0,
) -> EpisodeResult:
    """Run one episode from ``env.reset(seed)`` until success, the env's end, or ``max_steps`` actions.

    Images are rendered only when needed — at chunk-query steps (unless ``policy.needs_images`` is False), or
    every step when recording — if the env supports skipping (``env.can_skip_render``): executing an 8-step
    chunk then costs one render, not eight.

    Actions reach ``env.step`` in the simulator's conventions: each chunk is converted from
    ``policy.spec.conventions`` to ``env.spec.conventions`` (:func:`oft.conventions.converter_for`; a policy
    without a spec, like the expert, acts natively). ``EpisodeResult.actions`` are the converted ones.

    temporal_ensemble_coeff: query every step and act on the :class:`TemporalEnsembler` average (ACT's 0.01);
        it renders every step, so it costs about K times the queries of whole chunks. ``open_loop_steps``
        must then be None or 1 (ValueError otherwise).
    after_success: actions to keep taking once the success test first passes (0: stop there, as evaluation
        does); None runs on to the env's end or ``max_steps``, as ACT records its fixed-length scripted
        episodes. Demonstrations that stop at success end on the frame the task was solved, so a policy
        trained on them has no example of what follows and may stop just short of it (``oft collect
        --after-success``). ValueError for a negative count.
    action_noise: standard deviation of Gaussian noise added to every action the env executes, in the env's
        action units (MetaWorld: [-1, 1] per axis, 1 = 1 cm of hand motion per step), drawn from
        ``np.random.default_rng(seed)``; the action recorded in ``EpisodeResult.actions`` stays the policy's
        own. This is DART's noise injection (Laskey et al. 2017, "DART: Noise Injection for Robust Imitation
        Learning"): an expert run this way is pushed off its path and recorded correcting, so its
        demonstrations cover the states a cloned policy's small errors lead to. ValueError if negative or not
        finite.
    """
    max_steps = env.max_steps if max_steps is None else int(max_steps)
    check_execution(open_loop_steps, temporal_ensemble_coeff)
    check_after_success(after_success)
    check_action_noise(action_noise)
    noise_rng = np.random.default_rng(int(seed)) if action_noise > 0 else None
    ensembler = None
    if temporal_ensemble_coeff is not None:
        ensembler, open_loop_steps = TemporalEnsembler(temporal_ensemble_coeff), 1
    render_always = record_video or record_observations or not env.can_skip_render
    # a policy that ignores images (the expert) is queried on image-less observations
    render_queries = getattr(policy, "needs_images", True)
    rec = _Recorder(env.spec.cameras, record_video, record_observations)
    to_env = converter_for(policy, env)
    t0 = time.perf_counter()
    policy.reset()
    obs = env.reset(seed)
    rec.observe(obs)
    steps = queries = 0
    success = done = False
    finished = steps >= max_steps
    reached: int | None = None  # actions taken when the success test first passed
    info: dict = {}
    while not finished:
        chunk = to_env(_check_chunk(policy.predict_action_chunk(obs), env.spec.action_dim))  # (K, D)
        queries += 1
        if ensembler is not None:
            chunk = ensembler.update(chunk)[None]  # (1, D): this step's ensembled action
        n = chunk.shape[0] if open_loop_steps is None else min(open_loop_steps, chunk.shape[0])
        for i in range(n):
            need_obs = render_always or (render_queries and i == n - 1)
            act = chunk[i]
            if noise_rng is not None:
                act = act + noise_rng.normal(0.0, action_noise, act.shape).astype(act.dtype)
            res = env.step(act) if render_always else env.step(act, render=need_obs)
            rec.act(obs, chunk[i])  # the policy's action, not the noise added to it
            steps += 1
            obs, success, done, info = res.observation, res.success, res.done, res.info
            if success and reached is None:
                reached = steps
            past = reached is not None and after_success is not None and steps - reached >= after_success
            finished = past or done or steps >= max_steps
            if finished:
                break
            if need_obs:
                rec.observe(obs)
    if record_video and obs.images:
        rec.observe(obs)  # the final state (success), so videos end on it
    return EpisodeResult(
        success=reached is not None,
        steps=steps,
        seed=int(seed),
        task=env.task,
        chunk_queries=queries,
        wall_s=time.perf_counter() - t0,
        frames=rec.frames_by_camera(),
        observations=rec.obs if record_observations else None,
        actions=np.stack(rec.actions) if rec.actions else np.zeros((0, env.spec.action_dim), np.float32),
        info=info,
        success_step=reached,
    )


__all__ = [
    "ChunkPolicy",
    "EpisodeResult",
    "ExpertPolicy",
    "TemporalEnsembler",
    "check_action_noise",
    "check_after_success",
    "check_execution",
    "check_open_loop_steps",
    "chunk_length",
    "rollout",
]
