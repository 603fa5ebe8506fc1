"""Checks on what leaves a policy for a robot, and on what a prompt may cost.

A policy whose weights hold one NaN (a corrupt file, a diverged fine-tune) predicts NaN actions; a robot
driver that forwards them does something undefined. So ``Policy.predict_action_chunk`` passes its result
through :func:`check_actions`, which raises :class:`NonFiniteActionError` instead of returning a number that
is not one. :func:`clip_to_bounds` optionally clamps actions to the range the policy was trained on (the
``min``/``max`` of its action statistics) and says how many values it moved.

The prompt helpers turn "the model has 2,048 positions" into a number of instruction tokens a server can
check *before* it batches a request: OpenVLA's sequence is ``[BOS, patches, proprio, extra, prompt[1:],
K*D action slots, </s>]`` (``oft.model.vla.VLA.build_sequence``), so everything except the prompt has a
fixed length per policy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from oft.data.normalize import Stats

log = logging.getLogger(__name__)


class NonFiniteActionError(RuntimeError):
    """The policy produced NaN or inf actions. A model fault, not a bad request (hence RuntimeError)."""


class PromptTooLongError(ValueError):
    """An instruction whose tokens do not fit the limit or the model's positions."""


def check_actions(actions: np.ndarray) -> np.ndarray:
    """Return ``actions`` ((K, D) or (B, K, D)) unchanged if all finite, else raise NonFiniteActionError."""
    finite = np.isfinite(actions)
    if finite.all():
        return actions
    bad = np.argwhere(~finite)
    first = tuple(int(i) for i in bad[0])
    n_nan = int(np.isnan(actions).sum())
    raise NonFiniteActionError(
        f"policy produced non-finite actions: {len(bad)} of {actions.size} values "
        f"({n_nan} NaN, {len(bad) - n_nan} inf), first at index {first} of shape {list(actions.shape)}; "
        "refusing to return them (check the checkpoint's weights for NaN/inf)"
    )


def finite_rows(actions: np.ndarray) -> np.ndarray:
    """(B,) bool: which examples of a (B, K, D) batch are entirely finite."""
    return np.isfinite(actions.reshape(actions.shape[0], -1)).all(axis=1)


def clip_to_bounds(actions: np.ndarray, stats: Stats) -> tuple[np.ndarray, int]:
    """Clamp (..., D) actions to the training range ``[stats.min, stats.max]`` -> (clipped, values moved).

    Dims whose statistics are not finite are left alone. Logs a warning when it moved anything, so a
    policy that keeps pushing against its bounds is visible in the server log.
    """
    lo, hi = np.asarray(stats.min, np.float64), np.asarray(stats.max, np.float64)
    if actions.shape[-1] != lo.shape[0]:
        raise ValueError(f"actions have {actions.shape[-1]} dims; the statistics have {lo.shape[0]}")
    lo = np.where(np.isfinite(lo), lo, -np.inf)
    hi = np.where(np.isfinite(hi), hi, np.inf)
    clipped = np.clip(actions, lo, hi).astype(actions.dtype)
    moved = int(np.count_nonzero(clipped != actions))
    if moved:
        dims = sorted({int(d) for d in np.nonzero(clipped != actions)[-1]})
        log.warning(
            "clipped %d of %d action values to the training bounds (dims %s)", moved, actions.size, dims
        )
    return clipped, moved


def fixed_sequence_tokens(policy: Any) -> int | None:
    """LLM positions a policy's sequence uses besides its prompt ids; None if it is not an oft VLA policy."""
    vla = getattr(policy, "vla", None)
    if vla is None or not hasattr(vla, "vision_backbone"):
        return None
    n_cameras = policy.spec.num_cameras
    proprio = 1 if vla.config.proprio_dim > 0 else 0
    extra = int(getattr(getattr(policy, "head", None), "num_extra_tokens", 0))
    # [BOS] is counted with the prompt ids; image tokens, proprio, extra, K*D slots and </s> are fixed
    return n_cameras * vla.vision_backbone.num_tokens + proprio + extra + vla.num_action_slots + 1


def max_positions(policy: Any) -> int | None:
    """The LLM's ``max_position_embeddings`` (Llama-2: 4,096; OpenVLA's config: 2,048), if known."""
    try:
        return int(policy.vla.language_model.model.config.max_position_embeddings)
    except AttributeError:
        return None


def prompt_token_budget(policy: Any, max_prompt_tokens: int | None = None) -> int | None:
    """Most prompt ids (BOS included) a request may have: ``max_prompt_tokens`` and what fits in positions."""
    fixed, positions = fixed_sequence_tokens(policy), max_positions(policy)
    limits = [n for n in (max_prompt_tokens,) if n is not None]
    if fixed is not None and positions is not None:
        limits.append(positions - fixed)
    return min(limits) if limits else None


def count_prompt_tokens(policy: Any, instruction: str) -> int | None:
    """Prompt ids (BOS, template, instruction, suffix) the policy would feed; None without a tokenizer."""
    tokenizer = getattr(getattr(policy, "vla", None), "tokenizer", None)
    if tokenizer is None:
        return None
    return len(tokenizer.encode_prompt(instruction))


def check_prompt(policy: Any, instruction: str, max_prompt_tokens: int | None = None) -> int:
    """Number of prompt tokens, or PromptTooLongError naming count and limit; 0 without a tokenizer."""
    n = count_prompt_tokens(policy, instruction)
    if n is None:
        return 0
    budget = prompt_token_budget(policy, max_prompt_tokens)
    if budget is not None and n > budget:
        positions = max_positions(policy)
        raise PromptTooLongError(
            f"instruction is {n} tokens with the prompt template; at most {budget} allowed "
            f"(server limit {max_prompt_tokens}, model positions {positions})"
        )
    return n


__all__ = [
    "NonFiniteActionError",
    "PromptTooLongError",
    "check_actions",
    "check_prompt",
    "clip_to_bounds",
    "count_prompt_tokens",
    "finite_rows",
    "prompt_token_budget",
]
