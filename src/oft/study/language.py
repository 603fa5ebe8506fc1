"""Instruction following: every start state under every instruction, judged by what the policy was told.

For tasks whose scenes look alike (the ``language`` suite's faucet-open / faucet-close), a policy can score
well on each task's own layouts by reading something in the scene rather than the instruction. Here each
*direction* ``(scene task S, told task T)`` runs the layouts of S (``env.eval_seed_offset + seed + i``, the
same start states for every T) with T's instruction and T's success criterion (the MetaWorld adapter's
``layout_task=S``, which overrides the suite's ``shared_layouts`` pool): its success rate is how often the
policy did what it was told. The diagonal (T = S) is
ordinary evaluation; the off-diagonal asks for the other behavior from the same start.

The control withholds the instruction (``instruction=""``) and judges the same start states by each
criterion: a policy that follows instructions has no way to know what is wanted there, so its rates show
what the scene alone makes it do (e.g. always open: 100% / 0%).
"""

from __future__ import annotations

import logging
from pathlib import Path

from oft.sim.eval_stats import pooled_rate
from oft.sim.evaluate import PolicyOrFactory, evaluate
from oft.train.checkpoint import checkpoint_step

log = logging.getLogger(__name__)


def direction_name(scene: str, told: str) -> str:
    """``"told faucet-close-v3 @ faucet-open-v3"``: the instruction given, at the layouts of ``scene``."""
    return f"told {told} @ {scene}"


def _counts(results: dict, task: str) -> dict:
    r = results["tasks"][task]
    return {k: r[k] for k in ("success_rate", "ci95", "successes", "episodes", "seeds")}


def evaluate_instruction_following(
    policy: PolicyOrFactory,
    env_name: str,
    tasks: list[str],
    episodes: int,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    env_kwargs: dict | None = None,
    max_steps: int | None = None,
    withheld: bool = True,
    video_episodes: int = 0,
    workers: int = 1,
    progress: bool = False,
    policy_source: str | None = None,
) -> dict:
    """Run every (scene, told) direction of ``tasks`` ``episodes`` times; returns an ``oft eval``-shaped dict.

    ``results["tasks"]`` is keyed by :func:`direction_name` (so ``oft eval-compare`` works on it) and
    ``results["overall"]`` pools the directions: the instruction-following rate. With ``withheld``,
    ``results["withheld"]`` holds the same directions run with an empty instruction, and
    ``results["withheld_overall"]`` their pooled rate. ``out`` gets one ``oft eval`` directory per direction
    (``following/<scene>__<told>``, ``withheld/<scene>__<told>``), with ``videos/<told>/*.mp4`` of its first
    ``video_episodes`` episodes (needs ``out``). workers: simulator processes (evaluate). policy_source:
    what was evaluated (a checkpoint directory), recorded in every results dict as ``"policy"``.
    """
    if len(tasks) < 2:
        raise ValueError(f"instruction following needs at least two tasks to swap, got {tasks}")
    out = Path(out) if out is not None else None
    kinds = {"following": None, **({"withheld": ""} if withheld else {})}
    by_instruction = getattr(policy, "act_by_instruction", False)
    found: dict[str, dict[str, dict]] = {kind: {} for kind in kinds}
    try:
        for kind, instruction in kinds.items():
            # withheld, a policy with per-task statistics has no instruction to pick them by: it acts
            # with its default set (unnorm_key), as for any observation without its task's
            if by_instruction:
                policy.act_by_instruction = kind == "following"  # type: ignore[union-attr]
            for scene in tasks:
                for told in tasks:
                    kw = dict(env_kwargs or {}, layout_task=scene)
                    if instruction is not None:
                        kw["instruction"] = instruction
                    res = evaluate(
                        policy,
                        env_name,
                        [told],
                        episodes,
                        seed=seed,
                        out=None if out is None else out / kind / f"{scene}__{told}",
                        env_kwargs=kw,
                        max_steps=max_steps,
                        video_episodes=video_episodes,
                        workers=workers,
                        progress=progress,
                        policy_source=policy_source,
                    )
                    where = {"scene": scene, "told": told}
                    found[kind][direction_name(scene, told)] = _counts(res, told) | where
    finally:
        if by_instruction:
            policy.act_by_instruction = True  # type: ignore[union-attr]
    following = found["following"]
    results = {
        "env": env_name,
        "policy": policy_source,
        "policy_step": checkpoint_step(policy_source),
        "episodes_per_task": episodes,
        "seed": seed,
        "instruction_swap": True,
        "tasks": following,
        "overall": pooled_rate(following),
    }
    if withheld:
        results["withheld"] = found["withheld"]
        results["withheld_overall"] = pooled_rate(found["withheld"])
    log.info(
        "instruction following: %.1f%% over %d episodes", 100 * results["overall"]["success_rate"],
        results["overall"]["episodes"],
    )  # fmt: skip
    return results


__all__ = ["direction_name", "evaluate_instruction_following"]
