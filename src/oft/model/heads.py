"""Action heads: the part of the policy that turns LLM hidden states into an action chunk.

Interface for head writers (``diffusion``, ``discrete`` and any new head)
-------------------------------------------------------------------------
A head is an ``nn.Module`` subclass of :class:`ActionHead`, registered by name with ``@register_head``.
It is built as ``cls(llm_dim=..., action_dim=D, chunk_len=K, **kwargs)`` (kwargs from the checkpoint config,
so every constructor argument must be JSON-serializable and returned by :meth:`ActionHead.config`).

Class attributes:

* ``name``: registry key (``"l1"``, ``"diffusion"``, ``"discrete"``).
* ``uses_lm_head``: True if the head reads token logits (discrete); the policy then keeps the LM head.
* ``num_extra_tokens``: tokens the head inserts after the proprio token (diffusion: 1, the timestep token).
* ``action_slot_layouts``: the ``VLAConfig.action_slots`` layouts it can read ("per_dimension": one slot per
  action dimension, K*D; "per_step": one per chunk step, K). A head that takes "per_step" receives
  ``slots_per_step`` (D or 1) as a constructor argument.

Methods the policy calls (``vla`` is an :class:`oft.model.vla.VLA`, ``inputs`` a :class:`VLAInputs` it
prepared: images already through the vision backbone and projector, proprio token, tokenized prompt):

* ``compute_loss(vla, inputs, target, is_pad) -> (loss, metrics)``: ``target`` (B, K, D) *normalized*
  actions, ``is_pad`` (B, K) bool or None (True = chunk step past the episode end, excluded from the loss).
  ``metrics`` maps names to detached 0-dim tensors (for logging): no ``float()`` here, so a training step
  never waits for the device; the loop converts them at log steps. One entry is not a scalar:
  ``metrics[SAMPLE_LOSS]``, the (B,) detached loss of each sample (its own mean over the chunk steps that are
  not padding), from which the loop logs the loss of each task of a multi-task run.
* ``predict(vla, inputs) -> (B, K, D)`` normalized actions (the policy un-normalizes).
* ``config() -> dict`` (kwargs to rebuild), and for the paper's checkpoints the classmethods
  ``matches_reference(parts)`` (is this the head those files hold?) and ``kwargs_from_reference(parts)``, then
  ``load_reference(parts)`` and its inverse ``reference_parts()`` (what export writes), ``parts`` =
  {"action_head": sd, "noisy_action_projector": sd, ...} as in ``<stem>--*_checkpoint.pt`` (``module.``
  stripped).
* ``decode_modes``: how its action slots may be decoded (``"parallel"`` first; the discrete head also
  ``"autoregressive"``) — the one list configs and the CLI check ``decode`` against.

What a head can ask the VLA for:

* ``vla.action_hidden_states(inputs, slot_embeds=None, extra_tokens=None, causal=False) -> (B, K*D, H)``:
  one LLM forward over ``[BOS, patches, proprio, extra_tokens, prompt[1:], K*D slots, </s>]``; slots get
  ``slot_embeds`` (B, K*D, H) or zero embeddings; returns the last-layer hidden state *immediately before*
  each slot (OpenVLA-OFT's rule).
* ``vla.build_sequence(inputs, slot_embeds=None, extra_tokens=None, num_slots=None, stop_token=True)`` ->
  :class:`oft.model.vla.Sequence` (embeds, attention_mask, slot_start, slot_index, lengths), built once;
  ``vla.replace_tokens(seq, slot_embeds, extra_tokens)`` swaps slots / extra tokens in (a head that runs the
  LLM several times per chunk, like diffusion) and ``vla.slot_hidden_states(seq)`` runs the forward, the
  last layer computed only at the rows read; for heads that drive the LLM themselves (autoregressive
  decoding) ``vla.new_cache()`` (a ``transformers.DynamicCache``), ``oft.model.vla.TokenDecoder`` (one token
  per call after a prefilled cache),
  ``vla.llm_forward(embeds, attention_mask, causal, cache, position_ids)`` -> (hidden, cache),
  ``vla.lm_logits(hidden, tokens=None)`` (LM head on the given positions only, optionally on a slice of the
  vocabulary), ``vla.embed_tokens(ids)``, ``vla.llm_dim``,
  ``vla.num_action_slots``, ``vla.tokenizer`` (``TextTokenizer``: ``.vocab_size``, ``.pad_id``, ``.eos_id``,
  ``.action_token_end``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from oft.spec import unknown_name_message

if TYPE_CHECKING:
    from oft.model.vla import VLA, VLAInputs

HEADS: dict[str, type[ActionHead]] = {}


def register_head(cls: type[ActionHead]) -> type[ActionHead]:
    """Class decorator: add ``cls`` to :data:`HEADS` under ``cls.name``."""
    HEADS[cls.name] = cls
    return cls


def _load_builtin_heads() -> None:
    # the diffusion / discrete heads live in their own modules; import them so they register themselves
    import importlib

    for module in ("oft.model.heads_diffusion", "oft.model.heads_discrete"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def get_head_class(name: str) -> type[ActionHead]:
    if name not in HEADS:
        _load_builtin_heads()
    if name not in HEADS:
        raise KeyError(unknown_name_message("action head", name, HEADS))
    return HEADS[name]


def head_names() -> tuple[str, ...]:
    """Every registered head name, built-ins included: the one list configs and the CLI validate against."""
    _load_builtin_heads()
    return tuple(sorted(HEADS))


def head_for_reference(parts: dict[str, dict[str, torch.Tensor]]) -> str:
    """The registered head whose paper component files ``parts`` are (ValueError naming the files if none)."""
    _load_builtin_heads()
    found = [name for name, cls in sorted(HEADS.items()) if cls.matches_reference(parts)]
    if len(found) != 1:
        raise ValueError(
            f"component files {sorted(parts)} match heads {found}; expected exactly one of {sorted(HEADS)}"
        )
    return found[0]


def make_head(name: str, llm_dim: int, action_dim: int, chunk_len: int, **kwargs) -> ActionHead:
    """Build the head registered as ``name`` (KeyError with a "did you mean" hint if unknown)."""
    return get_head_class(name)(llm_dim=llm_dim, action_dim=action_dim, chunk_len=chunk_len, **kwargs)


class ActionHead(nn.Module):
    """Base class of action heads (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    uses_lm_head: ClassVar[bool] = False
    decode_modes: ClassVar[tuple[str, ...]] = ("parallel",)
    action_slot_layouts: ClassVar[tuple[str, ...]] = ("per_dimension",)
    num_extra_tokens: int = 0

    def __init__(self, llm_dim: int, action_dim: int, chunk_len: int) -> None:
        super().__init__()
        self.llm_dim = llm_dim
        self.action_dim = action_dim
        self.chunk_len = chunk_len

    def config(self) -> dict:
        """Constructor kwargs (besides llm_dim/action_dim/chunk_len) needed to rebuild this head."""
        return {}

    def compute_loss(
        self, vla: VLA, inputs: VLAInputs, target: torch.Tensor, is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def predict(self, vla: VLA, inputs: VLAInputs) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def kwargs_from_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> dict:
        """Constructor kwargs inferred from the reference's component state dicts (see load_reference)."""
        return {}

    @classmethod
    def matches_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> bool:
        """True if the paper's component files ``parts`` hold this kind of head."""
        return False

    def load_reference(self, parts: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load the paper's component checkpoints. ``parts`` maps the file stem ("action_head",
        "noisy_action_projector") to its state dict, ``module.`` prefix already stripped."""
        self.load_state_dict(parts["action_head"])

    def reference_parts(self) -> dict[str, dict[str, torch.Tensor]]:
        """The inverse of :meth:`load_reference`: {file stem: state dict} for export ({} if none)."""
        return {"action_head": self.state_dict()}


SAMPLE_LOSS = "sample_loss"
"""The key of the (B,) per-sample loss in the metrics every head's ``compute_loss`` returns."""


def masked_l1(pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean |pred - target| over (B, K, D), excluding padded chunk steps (all steps count when None)."""
    return masked_mean((pred - target).abs(), is_pad)


def masked_mean(err: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, K, D) error over the chunk steps that are not padding (all steps when None)."""
    if is_pad is None:
        return err.mean()
    keep = (~is_pad).to(err.dtype).unsqueeze(-1)  # (B, K, 1)
    return (err * keep).sum() / (keep.sum() * err.shape[-1]).clamp(min=1)


def per_sample_mean(err: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """(B,) mean of a (B, K, D) error over each sample's chunk steps that are not padding (all when None); a
    sample whose every step is padding gets 0. No host sync."""
    if is_pad is None:
        return err.flatten(1).mean(1)
    keep = (~is_pad).to(err.dtype).unsqueeze(-1)  # (B, K, 1)
    return (err * keep).sum((1, 2)) / (keep.sum((1, 2)) * err.shape[-1]).clamp(min=1)


class MLPResNetBlock(nn.Module):
    """Pre-LayerNorm residual feed-forward block: x + ReLU(Linear(LayerNorm(x)))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    """The reference's MLP-ResNet (parameter names kept so its ``action_head--*.pt`` files load)."""

    def __init__(self, num_blocks: int, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.mlp_resnet_blocks = nn.ModuleList([MLPResNetBlock(hidden_dim) for _ in range(num_blocks)])
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


def chunk_features(hidden: torch.Tensor, chunk_len: int) -> torch.Tensor:
    """(B, K*D, H) slot hidden states -> (B, K, D*H): row k concatenates slots k*D .. k*D+D-1."""
    return hidden.reshape(hidden.shape[0], chunk_len, -1)


@register_head
class L1RegressionHead(ActionHead):
    """Continuous actions regressed with an L1 loss from all action slots in one parallel forward.

    L1 rather than L2 because the paper found it matches diffusion's quality at a fraction of the cost
    and is robust to the multi-modal outliers of teleoperation data.
    """

    name = "l1"
    action_slot_layouts = ("per_dimension", "per_step")

    def __init__(
        self,
        llm_dim: int,
        action_dim: int,
        chunk_len: int,
        hidden_dim: int | None = None,
        num_blocks: int = 2,
        slots_per_step: int | None = None,
    ) -> None:
        """slots_per_step: hidden states read per chunk step, D (None: the paper's layout) or 1 (one slot per
        step); the MLP's input is their concatenation, ``slots_per_step * llm_dim`` wide."""
        super().__init__(llm_dim, action_dim, chunk_len)
        self.hidden_dim = hidden_dim or llm_dim
        self.num_blocks = num_blocks
        self.slots_per_step = action_dim if slots_per_step is None else int(slots_per_step)
        if self.slots_per_step not in (1, action_dim):
            raise ValueError(f"slots_per_step={slots_per_step}; expected {action_dim} (action_dim) or 1")
        self.model = MLPResNet(num_blocks, llm_dim * self.slots_per_step, self.hidden_dim, action_dim)

    def config(self) -> dict:
        return {"hidden_dim": self.hidden_dim, "num_blocks": self.num_blocks}

    @classmethod
    def matches_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> bool:
        """The paper's ``L1RegressionActionHead``: an ``action_head--*`` with no noise projector."""
        return "action_head" in parts and "noisy_action_projector" not in parts

    @classmethod
    def kwargs_from_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> dict:
        sd = parts["action_head"]
        blocks = {k.split(".")[2] for k in sd if k.startswith("model.mlp_resnet_blocks.")}
        return {"hidden_dim": int(sd["model.fc1.weight"].shape[0]), "num_blocks": len(blocks)}

    def head_forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, K*D, H) slot hidden states (K*1 with one slot per step) -> (B, K, D) normalized actions."""
        return self.model(chunk_features(hidden, self.chunk_len))

    def predict(self, vla: VLA, inputs: VLAInputs) -> torch.Tensor:
        return self.head_forward(vla.action_hidden_states(inputs))

    def compute_loss(
        self, vla: VLA, inputs: VLAInputs, target: torch.Tensor, is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = self.head_forward(vla.action_hidden_states(inputs))  # (B, K, D)
        return l1_loss_and_metrics(pred, target.to(pred.dtype), is_pad)


def l1_loss_and_metrics(
    pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training L1 loss plus the reference's logging metrics (current step / later steps), as detached
    device tensors."""
    loss = masked_l1(pred, target, is_pad)
    pad0 = None if is_pad is None else is_pad[:, :1]
    pad_rest = None if is_pad is None else is_pad[:, 1:]
    with torch.no_grad():
        metrics = {
            SAMPLE_LOSS: per_sample_mean((pred - target).abs(), is_pad),
            "l1_loss": loss.detach(),
            "curr_action_l1_loss": masked_l1(pred[:, :1], target[:, :1], pad0),
        }
        if pred.shape[1] > 1:
            metrics["next_actions_l1_loss"] = masked_l1(pred[:, 1:], target[:, 1:], pad_rest)
    return loss, metrics


__all__ = [
    "HEADS",
    "SAMPLE_LOSS",
    "ActionHead",
    "L1RegressionHead",
    "MLPResNet",
    "chunk_features",
    "get_head_class",
    "make_head",
    "masked_l1",
    "masked_mean",
    "per_sample_mean",
    "register_head",
]
