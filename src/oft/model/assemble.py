"""One function assembles every policy: VLA + action head + LoRA + statistics, on a device, in a dtype.

Building from scratch (:func:`oft.model.build.build_policy`), loading any checkpoint kind
(:func:`oft.load_policy`), fine-tuning from OpenVLA (:mod:`oft.train.build`), resuming and exporting all go
through :func:`assemble_policy`, so a policy cannot be put together two ways (LeRobot and openpi each have one
``make_policy``/``create`` for the same reason). What it decides, once:

* the LM head (the vocabulary projection, 131M parameters at 7B) exists only for heads that read token logits
  (``ActionHead.uses_lm_head``: the discrete head) — L1 and diffusion policies neither carry nor save it;
* the head reads the action slots as the VLA lays them out (``VLAConfig.action_slots``): a head that cannot
  read one slot per chunk step is refused;
* LoRA adapters are injected when ``config.lora`` says so, on the recorded target modules;
* ``empty=True`` builds on the ``meta`` device and allocates once on ``device`` in ``dtype`` for weights that
  are loaded next (no float32 copy of a bf16 7B model); ``empty=False`` initializes the parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
from torch import nn

from oft.data.normalize import NormStats
from oft.model.heads import get_head_class, head_names, make_head
from oft.model.policy import Policy, PolicyConfig
from oft.model.tokenizer import TextTokenizer
from oft.model.vla import VLA

log = logging.getLogger(__name__)


def assemble_policy(
    config: PolicyConfig,
    tokenizer: TextTokenizer,
    norm_stats: NormStats,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    empty: bool = False,
) -> Policy:
    """The :class:`Policy` ``config`` describes, with ``tokenizer`` and ``norm_stats`` inside it.

    config.lora: ``{"rank", "alpha", "targets"?, "dropout"?}``; missing targets mean every linear layer of the
        trunk ("all-linear"), and the chosen names are written back into ``config.lora``.
    empty: leave the weights unallocated-then-uninitialized (to be loaded); False initializes them.
    Raises KeyError for an unknown head name, ValueError when the statistics do not fit the spec or the head
    cannot read the VLA's action slot layout.
    """
    head_cls = get_head_class(config.head)
    config.vla = dataclasses.replace(config.vla, lm_head=head_cls.uses_lm_head)
    spec = config.spec
    layout = config.vla.action_slots
    if layout not in head_cls.action_slot_layouts:
        raise ValueError(
            f"the {config.head!r} head reads action slots laid out {head_cls.action_slot_layouts}, not "
            f"action_slots={layout!r}; heads that read {layout!r}: "
            f"{[n for n in head_names() if layout in get_head_class(n).action_slot_layouts]}"
        )
    head_kwargs = dict(config.head_kwargs)
    if "per_step" in head_cls.action_slot_layouts:
        head_kwargs["slots_per_step"] = config.vla.slots_per_step

    def build() -> Policy:
        vla = VLA(config.vla, tokenizer)
        if config.lora:
            _apply_lora(vla, config.lora)
        head = make_head(config.head, vla.llm_dim, spec.action_dim, spec.chunk_len, **head_kwargs)
        return Policy(config, vla, head, norm_stats)

    if empty:
        return materialize(build, device, dtype)
    return build().to(device=device, dtype=dtype)


def _apply_lora(vla: VLA, lora: dict) -> None:
    from oft.model.lora import LoraSpec, apply_lora

    spec = LoraSpec(int(lora["rank"]), float(lora["alpha"]), float(lora.get("dropout", 0.0)))
    apply_lora(vla, spec, lora.get("targets"))
    if not lora.get("targets"):
        lora["targets"] = sorted(
            {n.rsplit(".lora_A", 1)[0] for n, _ in vla.named_parameters() if ".lora_A." in n}
        )


def add_lora(policy: Policy, lora: dict) -> Policy:
    """Inject freshly initialized LoRA adapters into an assembled (and loaded) policy, recorded in its config:
    fine-tuning adds them after the pretrained weights are in place. ``lora`` as ``PolicyConfig.lora``."""
    if policy.config.lora:
        raise ValueError(f"the policy already has LoRA adapters {policy.config.lora}")
    ref = policy.vla.language_model.model.embed_tokens.weight
    with torch.device(ref.device):
        _apply_lora(policy.vla, lora)
    policy.vla.to(ref.dtype)
    policy.config.lora = lora
    return policy


def init_module(module: nn.Module) -> nn.Module:
    """Give every layer of ``module`` its default initialization (``reset_parameters``): for the new modules
    of a policy assembled with ``empty=True`` whose weights no checkpoint provides (a new action head)."""
    with torch.no_grad():
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset) and any(True for _ in sub.parameters(recurse=False)):
                reset()
    return module


def materialize(build: Callable[[], nn.Module], device, dtype: torch.dtype) -> nn.Module:
    """Build on meta, cast there, allocate once on ``device`` (no float32 copy of a bf16 model)."""
    with torch.device("meta"):
        module = build()
    module = module.to(dtype=dtype).to_empty(device=device)
    _reset_non_persistent_buffers(module, device)
    return module


def _reset_non_persistent_buffers(module: nn.Module, device) -> None:
    """``to_empty`` leaves non-persistent buffers (Llama's rotary ``inv_freq``) uninitialized: rebuild."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    for name, sub in list(module.named_modules()):
        if isinstance(sub, LlamaRotaryEmbedding):
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            with torch.device(device):
                setattr(parent, child, LlamaRotaryEmbedding(sub.config))


__all__ = ["add_lora", "assemble_policy", "init_module", "materialize"]
