"""The paper's learning-rate schedule: constant, then one 10x step decay, with an optional linear warmup.

The paper's script applies warmup by overwriting ``param_group["lr"]`` after ``MultiStepLR`` has run, so a
warmup longer than the decay milestone silently cancels the decay (and the logged lr disagrees with the one
used). Here both are factors of one ``LambdaLR`` multiplier, so they compose instead of fighting, and the
scheduler's ``state_dict`` is all a resumed run needs.

The paper fixes the decay at a step (100K of 150K on LIBERO, 50K of 100K on ALOHA). A run stopped by a time
budget (``max_minutes``) has no known length, so a fixed step may never be reached. :class:`DecayAtFraction`
places the decay at a fraction of the run instead: at ``decay_at * max_steps`` steps, or — under a time
budget — once ``decay_at`` of the budget's training time has passed, whichever comes first. The step it
decides is written into the multiplier (``decay_step``), which the scheduler's ``state_dict`` saves in the
checkpoint's trainer state, so a resumed run decays at exactly the step the first one chose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepDecayWithWarmup:
    """lr multiplier at optimizer step ``s`` (0-based, the update about to be taken).

    warmup: ``0.1 + 0.9 * min((s + 1) / warmup_steps, 1)`` — the paper's 10% -> 100% ramp.
    decay: ``decay_factor`` once ``s >= decay_step`` (``MultiStepLR(milestones=[decay_step], gamma)``).
    """

    decay_step: int | None = None
    decay_factor: float = 0.1
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        factor = 1.0
        if self.warmup_steps > 0:
            factor *= 0.1 + 0.9 * min((step + 1) / self.warmup_steps, 1.0)
        if self.decay_step is not None and step >= self.decay_step:
            factor *= self.decay_factor
        return factor


@dataclass(frozen=True)
class DecayAtFraction:
    """When a run of unknown length reaches ``fraction`` of itself.

    max_steps: the step budget; budget_s: the training-time budget in seconds (None: steps only).
    """

    fraction: float
    max_steps: int
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"decay_at must be a fraction of the run in (0, 1], got {self.fraction!r}")

    def due(self, step: int, elapsed_s: float) -> bool:
        """``step`` updates done after ``elapsed_s`` seconds of the run (resumed segments included): is the
        decay due from now on?"""
        if step >= self.fraction * self.max_steps:
            return True
        return self.budget_s is not None and elapsed_s >= self.fraction * self.budget_s


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    decay_step: int | None,
    decay_factor: float = 0.1,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer update."""
    multiplier = StepDecayWithWarmup(decay_step, decay_factor, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def decided_decay_step(scheduler: torch.optim.lr_scheduler.LambdaLR) -> int | None:
    """The decay step the scheduler's multiplier holds (restored from a checkpoint with its state)."""
    return getattr(scheduler.lr_lambdas[0], "decay_step", None)


def set_decay_step(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int) -> None:
    """Decay from update ``step`` on: written into every multiplier (saved with the scheduler's state), and
    the lr of the next update, already computed by ``scheduler.step()``, recomputed."""
    for fn in scheduler.lr_lambdas:
        fn.decay_step = int(step)
    groups = scheduler.optimizer.param_groups
    for group, base, fn in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]


__all__ = [
    "DecayAtFraction",
    "StepDecayWithWarmup",
    "decided_decay_step",
    "make_scheduler",
    "set_decay_step",
]
