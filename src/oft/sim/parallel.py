"""Evaluation on all cores: simulator processes step episodes in parallel, the policy answers them in batches.

Rendering and physics run in ``workers`` processes (each one env at a time, one thread); the learned policy
stays in the calling process, which waits for observations and answers the workers. Each worker runs the one
:func:`oft.sim.rollout.rollout` with a :class:`RemotePolicy` standing in for the policy, so the rollout
semantics (render skipping, open-loop execution, action-convention conversion from ``policy.spec``) are
exactly the sequential run's, and every episode is reset from its own seed.

``batch=False`` (the default) answers each observation with its own ``predict_action_chunk`` call: the
actions are bit for bit the sequential run's, so are the per-seed results. ``batch=True`` answers every
waiting worker with one batched call (more throughput where a batch costs little more than one observation,
e.g. on a GPU); a batched matmul or reduction may round differently from a single one (measured here: equal
for batches of 2-3 on the CPU, 1e-6 apart at 4), and over hundreds of contact-rich steps that can change an
episode's outcome.

A policy *factory* (``ExpertPolicy``) is built inside each worker, next to its env: nothing crosses processes.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait

import numpy as np
import torch

from oft.observation import Observation
from oft.sim.base import make_env
from oft.sim.evaluate import EpisodeJob, PolicyOrFactory, RolloutSettings, _is_factory, run_episode

log = logging.getLogger(__name__)


class WorkerTraceback(Exception):
    """Where an exception re-raised from an evaluation worker came from: the worker's traceback, as text.

    A worker's exception reaches the caller as itself (its type and message, as ``multiprocessing.Pool``
    re-raises a task's), with this as its ``__cause__``: an unknown camera or a bad option is the same
    ``KeyError`` / ``ValueError`` with any number of workers, which ``oft eval`` prints as one line.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _picklable(e: BaseException) -> BaseException | None:
    """``e`` if it survives pickling (to cross the pipe and be raised again), else None."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return None
    return e


class _EvaluatorGone(Exception):
    """The evaluating process closed its end of a worker's pipe: it stopped (Ctrl-C, an error, a kill)."""


_PIPE_CLOSED = (BrokenPipeError, ConnectionResetError, EOFError)


def _send(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except _PIPE_CLOSED as e:
        raise _EvaluatorGone from e


def _recv(conn: Connection) -> tuple:
    try:
        return conn.recv()
    except _PIPE_CLOSED as e:
        raise _EvaluatorGone from e


class RemotePolicy:
    """The policy as a worker sees it: observations go to the evaluating process, chunks come back.

    Carries what the rollout reads from a policy besides its predictions: ``spec`` (cameras, action
    conventions), ``uses_proprio`` and ``needs_images``.
    """

    def __init__(self, conn: Connection, spec, uses_proprio: bool, needs_images: bool) -> None:
        self.conn, self.spec, self.uses_proprio, self.needs_images = conn, spec, uses_proprio, needs_images

    def reset(self) -> None:
        pass  # the served policy is queried chunk by chunk (predict_action_chunk keeps no episode state)

    def predict_action_chunk(self, obs: Observation) -> np.ndarray:
        _send(self.conn, ("obs", obs))
        kind, payload = _recv(self.conn)
        if kind != "chunk":
            raise RuntimeError(f"the evaluating process failed: {payload}")
        return payload


def _worker(conn: Connection, jobs, settings: RolloutSettings, policy_info) -> None:
    """Worker process: take jobs until the ``None`` sentinel, one env per task (kept while tasks repeat).

    Ctrl-C is the evaluating process's to handle (it keeps the finished episodes and closes the pipes); a
    worker whose evaluating process is gone ends quietly, as there is nobody left to report to."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches every process of the group
    # one core per worker: Mesa's llvmpipe renderer would otherwise start a thread per core in every worker
    # (read when the GL context is made, i.e. after this), and torch computes nothing here
    os.environ["LP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    env = task = policy = None
    try:
        while (job := jobs.get()) is not None:
            if job.task != task:
                if env is not None:
                    env.close()
                env, task = make_env(settings.env_name, task=job.task, **settings.env_kwargs), job.task
                factory, remote = policy_info
                policy = factory(env) if factory is not None else RemotePolicy(conn, *remote)
            _send(conn, ("done", job, run_episode(policy, env, job, settings)))
        _send(conn, ("exit", None))
    except _EvaluatorGone:
        pass
    except Exception as e:  # reported to the parent, which raises it
        with contextlib.suppress(_EvaluatorGone):
            _send(conn, ("error", _picklable(e), traceback.format_exc()))
    finally:
        if env is not None:
            env.close()


def run_parallel(
    policy: PolicyOrFactory,
    jobs: list[EpisodeJob],
    settings: RolloutSettings,
    workers: int,
    batch: bool = False,
) -> Iterator[tuple[EpisodeJob, dict]]:
    """Run ``jobs`` in ``workers`` processes; yields (job, record) as episodes finish (any order)."""
    ctx = mp.get_context("spawn")  # no fork of a process holding torch threads or GL contexts
    queue = ctx.Queue()
    for job in jobs:
        queue.put(job)
    for _ in range(workers):
        queue.put(None)
    if _is_factory(policy):
        info = (policy, None)
    else:
        remote = (
            getattr(policy, "spec", None),
            bool(getattr(policy, "uses_proprio", True)),
            getattr(policy, "needs_images", True),
        )
        info = (None, remote)
    conns, procs = [], []
    for _ in range(workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, queue, settings, info), daemon=True)
        proc.start()
        child.close()
        conns.append(parent)
        procs.append(proc)
    # the workers take the cores: the policy's matmuls get what is left (at least one thread), rather than
    # every process oversubscribing them
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        yield from _serve(policy, conns, batch)
    finally:
        torch.set_num_threads(threads)
        for conn in conns:  # a worker still waiting on its pipe (the run stopped early) sees it close, ends
            conn.close()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def _serve(
    policy: PolicyOrFactory, conns: list[Connection], batch: bool
) -> Iterator[tuple[EpisodeJob, dict]]:
    """Answer observations until every worker has exited.

    When a worker fails, the episodes other workers finished and already sent are still yielded (the caller
    keeps them, see ``results_partial.json``) before its exception is raised; episodes still running are lost.
    """
    alive = set(conns)
    while alive:
        waiting: list[tuple[Connection, Observation]] = []
        for conn in wait(list(alive)):
            try:
                kind, payload, *rest = conn.recv()
            except EOFError as e:
                yield from _finished_before_stop(alive - {conn})
                raise RuntimeError("an evaluation worker died without reporting") from e
            if kind == "obs":
                waiting.append((conn, payload))
            elif kind == "done":
                yield payload, rest[0]
            elif kind == "exit":
                alive.discard(conn)
            else:  # ("error", the exception or None, its traceback)
                yield from _finished_before_stop(alive - {conn})
                if payload is None:
                    raise RuntimeError(f"evaluation worker failed:\n{rest[0]}")
                raise payload from WorkerTraceback(rest[0])
        if waiting:
            _answer(policy, waiting, batch)


def _finished_before_stop(conns: set[Connection]) -> Iterator[tuple[EpisodeJob, dict]]:
    """The (job, record) pairs already sent on ``conns``, read without waiting for any more."""
    for conn in conns:
        try:
            while conn.poll(0):
                kind, payload, *rest = conn.recv()
                if kind == "done":
                    yield payload, rest[0]
        except (EOFError, OSError):
            continue


def _answer(policy, waiting: list[tuple[Connection, Observation]], batch: bool) -> None:
    """Chunks for every waiting worker: one call each, or one batched call (``batch`` and an oft Policy)."""
    observations = [obs for _, obs in waiting]
    try:
        if batch and len(observations) > 1 and _batches(policy):
            chunks = list(policy.predict_action_chunk(observations))
        else:
            chunks = [policy.predict_action_chunk(obs) for obs in observations]
    except Exception as e:
        for conn, _ in waiting:
            with contextlib.suppress(OSError):  # a worker already gone must not hide the policy's error
                conn.send(("error", repr(e)))
        raise
    for (conn, _), chunk in zip(waiting, chunks, strict=True):
        conn.send(("chunk", np.asarray(chunk)))


def _batches(policy) -> bool:
    from oft.model.policy import Policy

    return isinstance(policy, Policy)


__all__ = ["RemotePolicy", "run_parallel"]
