"""An exponential moving average (EMA) of the trainable weights, the weights a checkpoint serves.

After every optimizer update ``ema <- d * ema + (1 - d) * weights``, with ``d = min(ema_decay, (1 + n) /
(10 + n))`` at the average's ``n``-th update (the warm-up of TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``): the average starts at the weights the run starts or resumes from, and without the warm-up
a from-scratch run's checkpoint 500 updates in would still serve 0.999 ** 500 = 61% of its random start. A
checkpoint then holds

* ``model.safetensors`` (what ``oft.load_policy``, ``oft eval``, ``oft serve`` and ``oft train --export``
  read): the average, in the weights' dtype;
* ``trainer_state.pt``: the optimizer's own weights (``"raw_weights"``), which ``--resume`` continues from,
  and the average in float32 with its update count (``"ema_average"``, ``"ema_updates"``), so a resumed run
  is the uninterrupted one, average and all.

The average is kept in float32 whatever the weights' dtype: a bf16 average would not move, since
``(1 - d) * (weights - ema)`` is far below one bf16 rounding step.

Why: at the full learning rate a small policy's success moves by tens of points between checkpoints a few
hundred updates apart, and an average of the last ``~1 / (1 - ema_decay)`` updates should swing less.
openpi's full fine-tuning configs use ``ema_decay=0.99`` (pi0; 0.999 for pi05_libero) and serve the averaged
parameters; its LoRA configs turn the average off. diffusion_policy serves an EMA model too; the OpenVLA-OFT
paper uses none. Under LoRA the adapters' A and B are averaged separately, and the average of B @ A is not
the product of the averages. Only trainable tensors are averaged (LoRA adapters, heads, projectors; every
weight of a model trained from scratch).
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

# trainer_state.pt keys: {name: tensor} of the optimizer's weights, {name: float32 tensor} of the average,
# and the number of updates folded into it
RAW_WEIGHTS, EMA_AVERAGE, EMA_UPDATES = "raw_weights", "ema_average", "ema_updates"


class WeightEMA:
    """The float32 average of ``module``'s trainable parameters. ``decay`` in (0, 1): the weight of the old
    average at each update once warmed up (openpi's ``ema_decay``); it averages about ``1 / (1 - decay)``
    updates."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay={decay!r} is invalid: expected a number in (0, 1), e.g. 0.999")
        self.decay = decay
        self.updates = 0
        self.named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        self.average = [p.detach().float().clone() for p in self.params]

    def current_decay(self) -> float:
        """The decay of the next update: ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step; no host sync)."""
        weights = [p.detach().float() for p in self.params]
        torch._foreach_lerp_(self.average, weights, 1.0 - self.current_decay())
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The module holds the average inside the block (to save or evaluate it), its own weights after."""
        raw = self.raw_weights()
        try:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.average)  # copy_ casts to each weight's dtype
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw.values(), strict=True):
                    p.copy_(r)

    def raw_weights(self) -> dict[str, torch.Tensor]:
        """The optimizer's weights by parameter name, on the CPU (for ``trainer_state.pt``)."""
        return {n: p.detach().to("cpu", copy=True) for n, p in self.named}

    def state_dict(self) -> dict:
        """The average (float32, CPU) and its update count, for ``trainer_state.pt``."""
        average = {n: a.to("cpu", copy=True) for (n, _), a in zip(self.named, self.average, strict=True)}
        return {EMA_AVERAGE: average, EMA_UPDATES: torch.tensor(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        """Continue the average saved by :meth:`state_dict`; ValueError if its names are not this module's."""
        saved = state[EMA_AVERAGE]
        _check_names([n for n, _ in self.named], saved, "average")
        self.average = [saved[n].to(device=p.device, dtype=torch.float32) for n, p in self.named]
        self.updates = int(state[EMA_UPDATES])


def _check_names(mine: list[str], saved: dict, what: str) -> None:
    if set(mine) != set(saved):
        missing, extra = sorted(set(mine) - set(saved)), sorted(set(saved) - set(mine))
        raise ValueError(
            f"the checkpoint's {what} does not match the trainable parameters: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )


@torch.no_grad()
def restore_raw_weights(module: torch.nn.Module, raw: dict[str, torch.Tensor]) -> None:
    """Put the optimizer's weights saved by an EMA run back into ``module`` (loaded with the average).

    Raises ValueError naming the parameters when the saved names and the module's trainable ones differ.
    """
    mine = {n: p for n, p in module.named_parameters() if p.requires_grad}
    _check_names(list(mine), raw, "raw weights")
    for name, p in mine.items():
        p.copy_(raw[name].to(device=p.device, dtype=p.dtype))


__all__ = ["EMA_AVERAGE", "EMA_UPDATES", "RAW_WEIGHTS", "WeightEMA", "restore_raw_weights"]
