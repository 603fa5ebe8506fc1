"""An exponential moving average (EMA) of the trainable weights, the weights a checkpoint serves.

After every optimizer update ``ema <- decay * ema + (1 - decay) * weights`` (the average starts at the
weights the run starts or resumes from). A checkpoint then holds two sets of weights:

* ``model.safetensors`` (what ``oft.load_policy``, ``oft eval``, ``oft serve`` and ``oft train --export``
  read): the average;
* ``trainer_state.pt``, key ``"raw_weights"``: the optimizer's own weights, which ``--resume`` continues
  from, so a resumed run is the uninterrupted one, average and all.

Why: at the full learning rate a small policy's success moves by tens of points between checkpoints a few
hundred updates apart, and the average of the last ``~1 / (1 - decay)`` updates is steadier than any one of
them. openpi trains pi0 with ``ema_decay=0.99`` (its ``TrainConfig``) and serves the averaged parameters;
diffusion_policy serves an EMA model too. The OpenVLA-OFT paper uses none. Only trainable tensors are
averaged (LoRA adapters, heads, projectors; every weight of a model trained from scratch), so the extra
memory is one copy of those.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

RAW_WEIGHTS = "raw_weights"  # trainer_state.pt key: {name: tensor} of the optimizer's weights


class WeightEMA:
    """The average of ``module``'s trainable parameters. ``decay`` in (0, 1): the weight of the old average
    at each update (openpi's ``ema_decay``); it averages over about ``1 / (1 - decay)`` updates."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay={decay!r} is invalid: expected a number in (0, 1), e.g. 0.999")
        self.decay = decay
        self.named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step; no host sync)."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self):
        """The module holds the average inside the block (to save or evaluate it), its own weights after."""
        raw = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.average)
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)

    def raw_weights(self) -> dict[str, torch.Tensor]:
        """The optimizer's weights by parameter name, on the CPU (for ``trainer_state.pt``)."""
        return {n: p.detach().cpu().clone() for n, p in self.named}


@torch.no_grad()
def restore_raw_weights(module: torch.nn.Module, raw: dict[str, torch.Tensor]) -> None:
    """Put the optimizer's weights saved by an EMA run back into ``module`` (loaded with the average).

    Raises ValueError naming the parameters when the saved names and the module's trainable ones differ.
    """
    mine = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(mine) != set(raw):
        missing, extra = sorted(set(mine) - set(raw)), sorted(set(raw) - set(mine))
        raise ValueError(
            f"the checkpoint's raw weights do not match the trainable parameters: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    for name, p in mine.items():
        p.copy_(raw[name].to(device=p.device, dtype=p.dtype))


__all__ = ["RAW_WEIGHTS", "WeightEMA", "restore_raw_weights"]
