"""The VLA trunk: vision backbone -> projector -> Llama over [BOS, patches, proprio, prompt, slots, </s>].

OpenVLA-OFT decodes all K·D action slots in ONE forward pass with bidirectional attention. Instead of
forking transformers (as the paper's code does), the LLM receives a 4-D additive mask in which every query
sees every non-padding key; causal mode (the original OpenVLA's autoregressive decoding) uses a 4-D causal
mask through the same path, so both attention backends ("eager", "sdpa") see exactly the same mask.

Sequence layout (OpenVLA-OFT's, right padding)::

    [BOS] [patches of image 0 .. image N-1] [proprio] [head extra tokens] [prompt ids[1:] incl. "▁"]
    [K·D action slots] [</s>] [pad ...]

The hidden state used for action slot j is the one at the position immediately *before* slot j (the model
was trained as a next-token predictor, so position i "predicts" slot i + 1).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import Cache, DynamicCache, LlamaConfig, LlamaModel

from oft.model.projectors import PatchProjector, ProprioProjector
from oft.model.tokenizer import TextTokenizer
from oft.model.vision import VisionBackbone, ViTConfig

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
# How the empty action slots are laid out (VLAConfig.action_slots): OpenVLA-OFT gives every action dimension
# of every chunk step its own slot (K*D); "per_step" gives each chunk step one slot, read into D actions by
# the head (K slots: 25 instead of 350 for ALOHA's K=25, D=14)
ACTION_SLOT_LAYOUTS = ("per_dimension", "per_step")
# What FiLM reads (VLAConfig.film_input). "mean": the paper's average of the prompt's token embeddings
# (OpenVLA-OFT's FiLM, the only choice for its checkpoints). "mean_rms": that average scaled to unit RMS. A
# model built from scratch starts its embedding table at std 0.02 (Llama's initializer_range), so the average
# that "mean" hands the zero-initialized FiLM maps has a norm near 0.1 and two instructions that differ in one
# word differ by ~0.03 in it: the maps learn the instruction-dependent part of (gamma, beta) slowly.
# "mean_centered": the average minus the average of the training instructions' averages
# (VLAConfig.film_instructions), then at unit RMS. Scaling keeps the part every prompt shares (the template,
# "transfer the ... cube"): where instructions differ in one word of 17 prompt tokens the two "mean_rms"
# inputs still point the same way (cosine 0.993 on a trained two-cube policy); centering drops the shared
# part, so FiLM reads only what tells the training instructions apart. With one training instruction the
# input is zero and FiLM is a learned constant (there is nothing to condition on).
FILM_INPUTS = ("mean", "mean_rms", "mean_centered")


@dataclass
class VLAConfig:
    """Architecture of the trunk. ``llm`` holds LlamaConfig kwargs (only the non-default ones are needed)."""

    vits: list[ViTConfig]
    llm: dict
    chunk_len: int
    action_dim: int
    proprio_dim: int = 0  # 0: no proprio token
    use_film: bool = False
    attn_implementation: str = "sdpa"
    # the 32k-wide vocabulary projection: only heads that read token logits (discrete) need it — at 7B it is
    # 131M parameters an L1 or diffusion policy would carry for nothing (set by oft.model.assemble)
    lm_head: bool = True
    # ACTION_SLOT_LAYOUTS: "per_dimension" (the paper's K*D slots) or "per_step" (K slots, one per chunk step)
    action_slots: str = "per_dimension"
    # FILM_INPUTS: "mean" (the paper's), "mean_rms" (scaled to unit RMS; for models built from scratch) or
    # "mean_centered" (centered on the training instructions below, then at unit RMS)
    film_input: str = "mean"
    # the training instructions "mean_centered" centers on (None for the other inputs)
    film_instructions: list[str] | None = None

    @property
    def slots_per_step(self) -> int:
        """Action slots of one chunk step: D ("per_dimension") or 1 ("per_step")."""
        return self.action_dim if self.action_slots == "per_dimension" else 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["vits"] = [v.to_dict() for v in self.vits]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VLAConfig:
        d = dict(d)
        d["vits"] = [ViTConfig.from_dict(v) for v in d["vits"]]
        return cls(**d)

    def llama_config(self) -> LlamaConfig:
        cfg = LlamaConfig(**self.llm)
        cfg._attn_implementation = self.attn_implementation
        return cfg


@dataclass
class VLAInputs:
    """Everything about an observation that does not depend on the action slots (computed once per chunk).

    prefix_embeds: (B, n_prefix, H) projected patches of all images, then the proprio token if any.
    text_ids: (B, T) BOS + prompt (+ "▁") ids, right-padded with the pad id; text_lengths: (B,).
    text_embeds: (B, T, H) their embeddings.
    patch_embeds: (B, N*P, H) projected patches alone (for inspection / golden tests).
    """

    prefix_embeds: torch.Tensor
    text_ids: torch.Tensor
    text_lengths: torch.Tensor
    text_embeds: torch.Tensor
    patch_embeds: torch.Tensor
    # (1, H) embedding of </s>, looked up with the prompt in one embedding call (None: looked up when needed)
    stop_embed: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.prefix_embeds.shape[0])


@dataclass
class Sequence:
    """An assembled LLM input. slot_start: (B,) position of the first action slot of each example.

    ``slot_index`` (B, n_slots) are the positions of the action slots and ``extra_start`` the (shared)
    position of the first head extra token, so :meth:`VLA.replace_tokens` can swap slots / extra tokens in
    without assembling the sequence again (the diffusion head's T denoising steps change nothing else).
    """

    embeds: torch.Tensor  # (B, S, H)
    attention_mask: torch.Tensor  # (B, S) bool, False on padding
    slot_start: torch.Tensor  # (B,)
    lengths: torch.Tensor  # (B,) non-padding length
    extra: dict = field(default_factory=dict)
    slot_index: torch.Tensor | None = None  # (B, n_slots) long
    extra_start: int = 0
    num_extra: int = 0


@functools.cache
def _cache_argument(model_cls: type) -> str:
    """The name under which ``model_cls.forward`` takes the KV cache: ``cache`` in the transformers releases
    that renamed it (``past_key_values`` is deprecated there and removed in 5.40), ``past_key_values`` in the
    5.x releases before the rename."""
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


class LanguageModel(nn.Module):
    """Llama decoder + a separate LM head (named as in OpenVLA: ``language_model.model`` / ``.lm_head``).

    Keeping the head separate lets continuous heads drop the 32k-wide vocabulary projection entirely
    (``lm_head=False``: ``self.lm_head`` is None) and the discrete head compute it only at the positions whose
    tokens are read.
    """

    def __init__(self, config: LlamaConfig, lm_head: bool = True) -> None:
        super().__init__()
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False) if lm_head else None


def _prompt_mean(text_embeds: torch.Tensor, lengths: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """(B, T, H) right-padded prompt embeddings, (B,) lengths, (1, H) </s> -> (B, H) mean over the prompt
    and </s>, padding excluded."""
    valid = torch.arange(text_embeds.shape[1], device=lengths.device)[None] < lengths[:, None]  # (B, T)
    total = (text_embeds * valid.unsqueeze(-1).to(text_embeds.dtype)).sum(1)
    return (total + eos) / (lengths[:, None].to(text_embeds.dtype) + 1)


class VLA(nn.Module):
    """Vision backbone, projectors and LLM with OpenVLA's parameter names (see the module docstring)."""

    def __init__(self, config: VLAConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        if config.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation {config.attn_implementation!r}; expected one of {ATTN_IMPLEMENTATIONS}"
            )
        if config.action_slots not in ACTION_SLOT_LAYOUTS:
            raise ValueError(f"action_slots {config.action_slots!r}; expected one of {ACTION_SLOT_LAYOUTS}")
        if config.film_input not in FILM_INPUTS:
            raise ValueError(f"film_input {config.film_input!r}; expected one of {FILM_INPUTS}")
        if config.film_input == "mean_centered" and not config.film_instructions:
            raise ValueError(
                f"film_input 'mean_centered' needs the training instructions (VLAConfig.film_instructions), "
                f"got {config.film_instructions!r}"
            )
        self.config = config
        self.tokenizer = tokenizer
        self._center_prompts = None  # (device, ids, lengths) of film_instructions, tokenized on first use
        llama = config.llama_config()
        if llama.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"LLM vocab_size {llama.vocab_size} < tokenizer vocab {tokenizer.vocab_size}")
        self.vision_backbone = VisionBackbone(config.vits, llama.hidden_size if config.use_film else None)
        self.projector = PatchProjector(
            self.vision_backbone.embed_dim, llama.hidden_size, len(config.vits) == 2
        )
        self.language_model = LanguageModel(llama, lm_head=config.lm_head)
        if config.proprio_dim > 0:
            self.proprio_projector = ProprioProjector(llama.hidden_size, config.proprio_dim)

    # --- sizes -------------------------------------------------------------------------------------------
    @property
    def llm_dim(self) -> int:
        return self.language_model.model.config.hidden_size

    @property
    def num_action_slots(self) -> int:
        """Empty action slots in the sequence: K*D (the paper's layout) or K (``action_slots="per_step"``)."""
        return self.config.chunk_len * self.config.slots_per_step

    def set_attn_implementation(self, name: str) -> None:
        if name not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation {name!r}; expected one of {ATTN_IMPLEMENTATIONS}")
        self.config.attn_implementation = name
        self.language_model.model.config._attn_implementation = name

    # --- inputs --------------------------------------------------------------------------------------------
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.model.embed_tokens(ids)

    def tokenize(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, T) right-padded prompt ids, (B,) lengths."""
        seqs = [self.tokenizer.encode_prompt(s) for s in instructions]
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.tokenizer.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        device = self.language_model.model.embed_tokens.weight.device
        return ids.to(device), torch.tensor([len(s) for s in seqs], device=device)

    def film_embedding(
        self, text_embeds: torch.Tensor, lengths: torch.Tensor, stop_embed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean embedding of the language tokens (BOS, prompt, </s>; not the action slots) -> (B, H).

        The reference averages every non-action token, which in padded training batches includes padding;
        we exclude padding so that a prompt's FiLM signal does not depend on its batch mates. With
        ``config.film_input == "mean_rms"`` each row is then divided by sqrt(mean square + 1e-6) (RMSNorm
        without a weight; 1e-6 is Llama's epsilon), so FiLM reads unit-scale inputs whatever the embedding
        table's scale. With ``"mean_centered"`` the average of the training instructions' means
        (``config.film_instructions``, each counted once) is subtracted first; the epsilon then keeps rows
        whose differences are below ~1e-3 per element (a new table, an instruction equal to the center) from
        being blown up to unit scale.
        stop_embed: (1, H) embedding of </s> (looked up here when None).
        """
        eos = self._stop_embed(lengths.device) if stop_embed is None else stop_embed  # (1, H)
        mean = _prompt_mean(text_embeds, lengths, eos)
        if self.config.film_input == "mean_centered":
            mean = mean - self._training_instructions_mean(eos)
        if self.config.film_input in ("mean_rms", "mean_centered"):
            mean = mean * torch.rsqrt(mean.pow(2).mean(-1, keepdim=True) + 1e-6)
        return mean

    def _training_instructions_mean(self, eos: torch.Tensor) -> torch.Tensor:
        """(1, H) average over ``config.film_instructions`` (each once) of their mean prompt embeddings, from
        the current embedding table (it trains, so the center moves with it)."""
        device = eos.device
        if self._center_prompts is None or self._center_prompts[0] != device:
            self._center_prompts = (device, *self.tokenize(sorted(set(self.config.film_instructions))))
        _, ids, lengths = self._center_prompts
        return _prompt_mean(self.embed_tokens(ids.to(device)), lengths.to(device), eos).mean(0, keepdim=True)

    def _stop_embed(self, device: torch.device) -> torch.Tensor:
        return self.embed_tokens(torch.tensor([self.tokenizer.eos_id], device=device))  # (1, H)

    def prepare(
        self, pixels: torch.Tensor, proprio: torch.Tensor | None, instructions: list[str]
    ) -> VLAInputs:
        """(B, N, 3*n_vits, H, W) normalized pixels, (B, P) normalized proprio, B instructions."""
        ids, lengths = self.tokenize(instructions)
        B, T = ids.shape
        # the prompt and </s> in one embedding lookup; </s> is then reused by FiLM and every sequence built
        all_ids = torch.cat([ids.reshape(-1), ids.new_full((1,), self.tokenizer.eos_id)])
        embedded = self.embed_tokens(all_ids)  # (B*T + 1, H)
        text_embeds, stop = embedded[:-1].reshape(B, T, -1), embedded[-1:]  # (B, T, H), (1, H)
        lang = self.film_embedding(text_embeds, lengths, stop) if self.config.use_film else None
        patches = self.projector(self.vision_backbone(pixels.to(text_embeds.dtype), lang))  # (B, N*P, H)
        prefix = patches
        if self.config.proprio_dim > 0:
            if proprio is None:
                raise ValueError(f"this model needs proprio of dim {self.config.proprio_dim}, got None")
            token = self.proprio_projector(proprio.to(patches.dtype).reshape(patches.shape[0], -1))
            prefix = torch.cat([patches, token.unsqueeze(1)], dim=1)
        return VLAInputs(prefix, ids, lengths, text_embeds, patches, stop)

    def build_sequence(
        self,
        inputs: VLAInputs,
        slot_embeds: torch.Tensor | None = None,
        extra_tokens: torch.Tensor | None = None,
        num_slots: int | None = None,
        stop_token: bool = True,
    ) -> Sequence:
        """Assemble [BOS, prefix, extra, prompt[1:], slots, </s>] per example, right-padded.

        Built for the whole batch with tensor ops (no per-example loop, no device->host sync): the part before
        the prompt has the same length for every example; the rest is gathered with a per-example shift so
        that each example's slots follow its own prompt. ``inputs.text_embeds`` are padded to the longest
        prompt, so the width is S = 1 + n_prefix + n_extra + (T - 1) + n_slots + stop.
        """
        B, H = inputs.batch_size, self.llm_dim
        n_slots = self.num_action_slots if num_slots is None else num_slots
        ref = inputs.prefix_embeds
        dtype, device = ref.dtype, ref.device
        if slot_embeds is None:
            slot_embeds = ref.new_zeros(B, n_slots, H)  # OpenVLA-OFT zeroes the slot embeddings
        elif slot_embeds.shape[:2] != (B, n_slots):
            raise ValueError(
                f"slot_embeds has shape {tuple(slot_embeds.shape)}, expected ({B}, {n_slots}, {H})"
            )
        text = inputs.text_embeds.to(dtype)  # (B, T, H)
        head = [text[:, :1], ref]
        n_extra = 0
        if extra_tokens is not None:
            head.append(extra_tokens.to(dtype))
            n_extra = extra_tokens.shape[1]
        n_head = 1 + ref.shape[1] + n_extra
        after = [slot_embeds.to(dtype)]
        if stop_token:
            stop = inputs.stop_embed if inputs.stop_embed is not None else self._stop_embed(device)
            after.append(stop.to(dtype).expand(B, 1, H))
        n_after = n_slots + int(stop_token)
        if B == 1:  # one prompt: no padding, the parts simply follow each other
            embeds = torch.cat([*head, text[:, 1:], *after], dim=1)
        else:
            embeds = torch.cat([*head, _shift_after_prompt(text, after, inputs.text_lengths, n_after)], dim=1)
        S = embeds.shape[1]
        lengths = n_head - 1 + inputs.text_lengths + n_after  # (B,)
        mask = torch.arange(S, device=device)[None] < lengths[:, None]  # (B, S)
        slot_start = n_head - 1 + inputs.text_lengths  # (B,)
        slot_index = slot_start[:, None] + torch.arange(n_slots, device=device)  # (B, n_slots)
        return Sequence(
            embeds, mask, slot_start, lengths, slot_index=slot_index, extra_start=n_head - n_extra,
            num_extra=n_extra,
        )  # fmt: skip

    def replace_tokens(
        self, seq: Sequence, slot_embeds: torch.Tensor | None = None, extra_tokens: torch.Tensor | None = None
    ) -> Sequence:
        """``seq`` with new slot embeddings (B, n_slots, H) and/or extra tokens (B, n_extra, H), rest kept:
        what changes between the diffusion head's denoising steps. ``seq`` itself is not modified."""
        embeds = seq.embeds.clone()
        if extra_tokens is not None:
            if extra_tokens.shape[1] != seq.num_extra:
                raise ValueError(
                    f"{extra_tokens.shape[1]} extra tokens for a sequence built with {seq.num_extra}"
                )
            embeds[:, seq.extra_start : seq.extra_start + seq.num_extra] = extra_tokens.to(embeds.dtype)
        if slot_embeds is not None:
            if seq.slot_index is None or slot_embeds.shape[:2] != seq.slot_index.shape:
                raise ValueError(
                    f"slot_embeds has shape {tuple(slot_embeds.shape)}, expected "
                    f"{None if seq.slot_index is None else tuple(seq.slot_index.shape)} + (H,)"
                )
            index = seq.slot_index.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
            embeds.scatter_(1, index, slot_embeds.to(embeds.dtype))
        return dataclasses.replace(seq, embeds=embeds)

    # --- LLM ------------------------------------------------------------------------------------------------
    def new_cache(self) -> Cache:
        """An empty KV cache for :meth:`llm_forward`: transformers' ``DynamicCache``, grown by each call."""
        return DynamicCache(config=self.language_model.model.config)

    def llm_forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        causal: bool = False,
        cache: Cache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Cache | None]:
        """-> (last hidden states (B, S, H), ``cache`` or None).

        ``attention_mask`` (B, S_past + S) bool marks the non-padding keys (cache included). ``cache`` (from
        :meth:`new_cache`) holds the keys/values of the S_past earlier positions; this call appends its own
        to it, in place. Without a cache nothing is kept.
        """
        B, S = inputs_embeds.shape[:2]
        past = 0 if cache is None else cache.get_seq_length()
        if position_ids is None:
            position_ids = torch.arange(past, past + S, device=inputs_embeds.device)[None].expand(B, -1)
        mask = attention_mask_4d(attention_mask, S, causal, inputs_embeds.dtype)
        llm = self.language_model.model
        cache_kwargs = {} if cache is None else {_cache_argument(type(llm)): cache}
        out = llm(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **cache_kwargs,
        )
        return out.last_hidden_state, cache

    def lm_logits(self, hidden: torch.Tensor, tokens: slice | None = None) -> torch.Tensor:
        """Vocabulary logits for the given hidden states only (B, n, H) -> (B, n, V).

        tokens: only these vocabulary ids (B, n, len(range)): e.g. the 256 action tokens a decoder reads
        instead of all 32k (the same numbers, 1/128 of the work).
        """
        lm_head = self.language_model.lm_head
        if lm_head is None:
            raise ValueError(
                "this VLA was built without an LM head (VLAConfig.lm_head=False); only the discrete head "
                "reads token logits"
            )
        if tokens is None:
            return lm_head(hidden)
        bias = None if lm_head.bias is None else lm_head.bias[tokens]
        return nn.functional.linear(hidden, lm_head.weight[tokens], bias)

    def action_hidden_states(
        self,
        inputs: VLAInputs,
        slot_embeds: torch.Tensor | None = None,
        extra_tokens: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """One forward over the full sequence -> (B, K*D, H) hidden states feeding each action slot."""
        return self.slot_hidden_states(self.build_sequence(inputs, slot_embeds, extra_tokens), causal)

    def slot_hidden_states(self, seq: Sequence, causal: bool = False) -> torch.Tensor:
        """One LLM forward over an assembled sequence -> (B, n_slots, H), the state before each slot."""
        return self.llm_forward_rows(seq.embeds, seq.attention_mask, seq.slot_index - 1, causal)

    def llm_forward_rows(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: torch.Tensor,
        causal: bool = False,
    ) -> torch.Tensor:
        """Last hidden states at ``rows`` (B, n) only -> (B, n, H): ``llm_forward(...)[0]`` at those rows.

        Nothing is computed that is not read: every layer but the last runs on all S positions (their keys
        and values feed the rows), the last one computes keys/values for all positions but queries, attention
        output, MLP and the final norm only for the n rows read (the K*D positions before the action slots,
        56 of 599 on the paper's bench architecture). The decoder layers are the model's own modules
        (``LlamaDecoderLayer``, attention backend as configured); the last layer's arithmetic is Llama's,
        written out for a subset of queries.
        """
        llm = self.language_model.model
        B, S, _ = inputs_embeds.shape
        position_ids = torch.arange(S, device=inputs_embeds.device)[None].expand(B, -1)
        mask = attention_mask_4d(attention_mask, S, causal, inputs_embeds.dtype)  # (B, 1, S, S)
        cos, sin = llm.rotary_emb(inputs_embeds, position_ids)  # (B, S, head_dim)
        x = inputs_embeds
        layers = llm.layers[: llm.config.num_hidden_layers]
        for layer in layers[:-1]:
            x = layer(x, attention_mask=mask, position_ids=position_ids, position_embeddings=(cos, sin))
        return llm.norm(_last_layer_at_rows(layers[-1], x, rows, mask, cos, sin))


class TokenDecoder:
    """Feeds one token per call after a prefilled causal sequence: greedy decoding with a KV cache.

    The keys/values of the prefix (``cache``, filled by :meth:`VLA.llm_forward`) are copied once into
    buffers preallocated for all ``positions`` to come, and each call runs the decoder layers' weights on the
    one new row, writing its key/value in place. This is Llama's decoder-layer arithmetic for a single query
    (``modeling_llama.LlamaDecoderLayer``) written out, so that a token costs a dozen tensor ops per layer
    and not transformers' per-call machinery (mask construction, output dataclasses, cache bookkeeping),
    which at one row is most of the time: RMSNorm is ``F.rms_norm``, and the q/k/v and gate/up projections
    of plain ``nn.Linear`` layers are fused into one matmul each (LoRA-wrapped layers are called as they
    are). Equal to :meth:`VLA.llm_forward` with a cache (tests/model/test_heads_discrete.py).

    key_mask: (B, S_p) bool, the prefix's non-padding keys; positions: (B, n) rotary positions of the n
    tokens to feed (each example continues its own prompt).
    """

    def __init__(self, vla: VLA, cache: Cache, key_mask: torch.Tensor, positions: torch.Tensor) -> None:
        llm = vla.language_model.model
        self.layers = [_LayerStep(layer) for layer in llm.layers]
        self.norm = llm.norm
        B, S_p = key_mask.shape
        n = positions.shape[1]
        self.prefix_len, self.step = S_p, 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        for i in range(len(self.layers)):
            k, v = _cached_kv(cache, i)  # (B, kv_heads, S_p, head_dim)
            keys = k.new_empty(*k.shape[:2], S_p + n, k.shape[-1])
            values = v.new_empty(*v.shape[:2], S_p + n, v.shape[-1])
            keys[:, :, :S_p], values[:, :, :S_p] = k, v
            self.keys.append(keys)
            self.values.append(values)
        ref = self.keys[0] if self.keys else llm.embed_tokens.weight
        cos, sin = llm.rotary_emb(ref, positions)  # (B, n, head_dim)
        self.rotations = _rotation_matrices(cos, sin)  # (B, n, head_dim, head_dim)
        # padding keys of the prefix are blocked; with none (one prompt) sdpa runs without a mask
        self.mask = None
        if not bool(key_mask.all()):
            allowed = torch.cat([key_mask, key_mask.new_ones(B, n)], dim=1)[:, None, None, :]
            zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
            self.mask = torch.where(allowed, zero, torch.finfo(ref.dtype).min)  # (B, 1, 1, S_p + n)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H) embedding of the next token -> (B, 1, H) last hidden state at its position."""
        j, n = self.step, self.rotations.shape[1]
        if j >= n:
            raise ValueError(f"TokenDecoder was prepared for {n} tokens; got token {j + 1}")
        end = self.prefix_len + j + 1
        rotation = self.rotations[:, j : j + 1]  # (B, 1, hd, hd): broadcast over heads
        mask = None if self.mask is None else self.mask[..., :end]
        for layer, keys, values in zip(self.layers, self.keys, self.values, strict=True):
            x = layer(x, keys, values, end, rotation, mask)
        self.step += 1
        return self.norm(x)


class _LayerStep:
    """One Llama decoder layer applied to one new row (see :class:`TokenDecoder`)."""

    def __init__(self, layer: nn.Module) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.norm1, self.norm2 = _rms_norm(layer.input_layernorm), _rms_norm(layer.post_attention_layernorm)
        self.qkv = _fused(attn.q_proj, attn.k_proj, attn.v_proj)
        self.gate_up = _fused(mlp.gate_proj, mlp.up_proj)
        self.o_proj, self.down_proj, self.act = attn.o_proj, mlp.down_proj, mlp.act_fn

    def __call__(self, x, keys, values, end, rotation, mask) -> torch.Tensor:
        B, hd = x.shape[0], self.head_dim
        q, k, v = self.qkv(self.norm1(x))  # (B, 1, heads*hd), (B, 1, kv_heads*hd) x 2
        q = q.view(B, 1, -1, hd).transpose(1, 2) @ rotation  # (B, heads, 1, hd), rotary applied
        k = k.view(B, 1, -1, hd).transpose(1, 2) @ rotation  # (B, kv_heads, 1, hd)
        keys[:, :, end - 1 : end] = k
        values[:, :, end - 1 : end] = v.view(B, 1, -1, hd).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(
            q, keys[:, :, :end], values[:, :, :end], attn_mask=mask, scale=self.scaling,
            enable_gqa=q.shape[1] != k.shape[1],
        )  # fmt: skip
        x = x + self.o_proj(out.transpose(1, 2).reshape(B, 1, -1))
        gate, up = self.gate_up(self.norm2(x))
        return x + self.down_proj(self.act(gate) * up)


def _rotation_matrices(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as matrices: ``x @ R`` = ``x * cos + rotate_half(x) * sin`` (modeling_llama's
    ``apply_rotary_pos_emb``), one matmul per query/key row instead of seven elementwise ops.

    cos, sin: (B, n, hd) -> R: (B, n, hd, hd) with R[i, i] = cos_i, R[i + hd/2, i] = -sin_i (i < hd/2) and
    R[i - hd/2, i] = sin_i (i >= hd/2).
    """
    hd = cos.shape[-1]
    half = hd // 2
    R = torch.diag_embed(cos)  # (B, n, hd, hd)
    i = torch.arange(half, device=cos.device)
    R[..., i + half, i] = -sin[..., :half]
    R[..., i, i + half] = sin[..., half:]
    return R


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rms_norm(norm: nn.Module):
    """Llama's RMSNorm as one fused op (float32 inputs: the same arithmetic); other norms as they are."""
    weight, eps = getattr(norm, "weight", None), getattr(norm, "variance_epsilon", None)
    if (
        type(norm).__name__ != "LlamaRMSNorm"
        or weight is None
        or eps is None
        or weight.dtype != torch.float32
    ):
        return norm
    return functools.partial(nn.functional.rms_norm, normalized_shape=weight.shape, weight=weight, eps=eps)


def _fused(*linears: nn.Module):
    """x -> tuple of each linear's output, computed as one matmul when all are plain ``nn.Linear``."""
    if not all(type(m) is nn.Linear for m in linears):
        return lambda x: tuple(m(x) for m in linears)
    weight = torch.cat([m.weight for m in linears])  # (sum out, in)
    biases = [m.bias for m in linears]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat(
            [m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in linears]
        )
    sizes = [m.out_features for m in linears]
    return lambda x: nn.functional.linear(x, weight, bias).split(sizes, dim=-1)


def _last_layer_at_rows(
    layer: nn.Module,
    x: torch.Tensor,
    rows: torch.Tensor,
    mask: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> torch.Tensor:
    """A Llama decoder layer whose output is needed at ``rows`` (B, n) only: (B, S, H) -> (B, n, H).

    Keys and values come from all S positions; queries, attention output and MLP from the n rows.
    mask: (B, 1, S, S) additive; cos/sin: (B, S, head_dim) rotary tables of the S positions.
    """
    attn = layer.self_attn
    B, S, _ = x.shape
    n, hd = rows.shape[1], attn.head_dim

    def take(t: torch.Tensor) -> torch.Tensor:  # (B, S, C) -> (B, n, C)
        return torch.gather(t, 1, rows.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    h = layer.input_layernorm(x)  # (B, S, H)
    q = attn.q_proj(take(h)).view(B, n, -1, hd).transpose(1, 2)  # (B, heads, n, hd)
    k = attn.k_proj(h).view(B, S, -1, hd).transpose(1, 2)  # (B, kv_heads, S, hd)
    v = attn.v_proj(h).view(B, S, -1, hd).transpose(1, 2)
    cos_q, sin_q = take(cos).unsqueeze(1), take(sin).unsqueeze(1)
    q = q * cos_q + _rotate_half(q) * sin_q  # modeling_llama.apply_rotary_pos_emb
    k = k * cos.unsqueeze(1) + _rotate_half(k) * sin.unsqueeze(1)
    row_mask = torch.gather(mask, 2, rows[:, None, :, None].expand(-1, 1, -1, S))  # (B, 1, n, S)
    out = nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=row_mask, scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1],
        dropout_p=attn.attention_dropout if attn.training else 0.0,
    )  # fmt: skip
    y = take(x) + attn.o_proj(out.transpose(1, 2).reshape(B, n, -1))  # (B, n, H)
    return y + layer.mlp(layer.post_attention_layernorm(y))


def _cached_kv(cache: Cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer of a transformers cache, (B, kv_heads, S, head_dim) each."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]  # transformers releases before cache layers


def _shift_after_prompt(
    text: torch.Tensor, after: list[torch.Tensor], text_lengths: torch.Tensor, n_after: int
) -> torch.Tensor:
    """[prompt[1:], after..., padding] per example: (B, T-1 + n_after, H), ``after`` right behind each prompt.

    text: (B, T, H) right-padded prompt embeddings (with BOS), text_lengths: (B,) their lengths L_b <= T.
    Output position p takes prompt token p + 1 while p < L_b - 1, then ``after`` token p - (L_b - 1), then
    zeros (padding).
    """
    B, T, H = text.shape
    src = torch.cat([text[:, 1:], *after, text.new_zeros(B, 1, H)], dim=1)  # (B, T-1 + n_after + 1, H)
    width = T - 1 + n_after
    p = torch.arange(width, device=text.device)[None]  # (1, width)
    n_prompt = (text_lengths - 1)[:, None]  # (B, 1) prompt tokens after BOS
    index = torch.where(
        p < n_prompt, p, torch.where(p < n_prompt + n_after, p + (T - 1) - n_prompt, width)
    )  # (B, width)
    return torch.gather(src, 1, index.unsqueeze(-1).expand(-1, -1, H))


def attention_mask_4d(key_mask: torch.Tensor, q_len: int, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """(B, S_k) bool key mask -> (B, 1, q_len, S_k) additive mask (0 = attend, dtype-min = blocked).

    Bidirectional: every query attends to every non-padding key (padding queries too, so no row is empty).
    Causal: the last ``q_len`` of the S_k positions are the queries; query i sees keys <= its position.
    """
    B, S_k = key_mask.shape
    allowed = key_mask[:, None, None, :].expand(B, 1, q_len, S_k)
    if causal:
        q_pos = torch.arange(S_k - q_len, S_k, device=key_mask.device)[:, None]
        allowed = allowed & (torch.arange(S_k, device=key_mask.device)[None] <= q_pos)
    zero = torch.zeros((), dtype=dtype, device=key_mask.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)
