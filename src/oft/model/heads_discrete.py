"""The ``discrete`` action head: OpenVLA's action tokens, decoded autoregressively or in parallel.

OpenVLA maps each normalized action dimension to one of 256 uniform bins over [-1, 1] and writes it as one of
the *last* 256 ids of the text vocabulary (``id = vocab_size - digitize(a)``), overwriting rarely used
tokens instead of growing the embedding table. Two decoders share the same tokens and loss:

* ``decode="autoregressive"``: the original OpenVLA -- causal attention, one token per LLM step with a KV
  cache, each predicted token's embedding fed back. It is the baseline of the paper's Table II, so it is
  kept honest: the prefix is computed once and the LM head runs on one position per step.
* ``decode="parallel"``: OpenVLA-OFT's "PD&AC" discrete row -- empty (zero) slot embeddings, bidirectional
  attention, all K*D tokens read from one forward.

In both, the token for slot j is read from the hidden state immediately before slot j (next-token
prediction), and the LM head is applied to those K*D positions only, never to the whole sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from oft.model.heads import SAMPLE_LOSS, ActionHead, register_head

if TYPE_CHECKING:
    from oft.model.vla import VLA, VLAInputs

DECODE_MODES = ("parallel", "autoregressive")


class ActionTokenizer:
    """OpenVLA's uniform binning of normalized actions into the last ``n_bins`` ids of a vocabulary.

    ``vocab_size`` is the tokenizer's base vocabulary (32000 for Llama-2), not the padded LM-head size.
    Encoding follows ``vocab_size - np.digitize(clip(a, -1, 1), linspace(-1, 1, n_bins))``; decoding maps an
    id to the centre of its bin (``n_bins - 1`` centres), clipping as OpenVLA does.
    """

    def __init__(self, vocab_size: int, n_bins: int = 256, low: float = -1.0, high: float = 1.0) -> None:
        if n_bins < 2 or n_bins >= vocab_size:
            raise ValueError(f"n_bins must be in [2, vocab_size={vocab_size}), got {n_bins}")
        self.vocab_size = vocab_size
        self.n_bins = n_bins
        self.low, self.high = low, high
        self.bins = torch.linspace(low, high, n_bins, dtype=torch.float64)  # (n_bins,)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0  # (n_bins - 1,)

    @property
    def first_id(self) -> int:
        """Smallest id an action can take (``vocab_size - n_bins``); ids span ``[first_id, vocab_size)``."""
        return self.vocab_size - self.n_bins

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalized actions (any shape) -> token ids (same shape, int64)."""
        a = actions.detach().to(torch.float64).clamp(self.low, self.high)
        # bucketize(right=True) is np.digitize(right=False): index i with bins[i-1] <= a < bins[i]
        digit = torch.bucketize(a, self.bins.to(a.device), right=True)  # in [1, n_bins]
        return self.vocab_size - digit

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (any shape) -> normalized actions at bin centres (float32)."""
        idx = (self.vocab_size - ids - 1).clamp(0, self.bin_centers.numel() - 1)
        return self.bin_centers.to(ids.device)[idx].float()


@register_head
class DiscreteHead(ActionHead):
    """Cross-entropy over OpenVLA action tokens; no parameters of its own (the LLM's LM head decodes).

    ``decode`` defaults to "autoregressive" because that is how every original OpenVLA checkpoint was
    trained (a causal model decoded in parallel gives wrong actions); OFT-style models pass "parallel".
    The choice is part of :meth:`config`, so a saved policy decodes the way it was trained.
    """

    name = "discrete"
    uses_lm_head = True
    decode_modes = DECODE_MODES

    def reference_parts(self) -> dict[str, dict[str, torch.Tensor]]:
        return {}  # its "head" is the LLM's own LM head: exported as a plain OpenVLA model

    def __init__(
        self,
        llm_dim: int,
        action_dim: int,
        chunk_len: int,
        decode: str = "autoregressive",
        n_bins: int = 256,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__(llm_dim, action_dim, chunk_len)
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        self.decode = decode
        self.n_bins = n_bins
        self.vocab_size = vocab_size  # None: the VLA tokenizer's action_token_end, read at call time
        self._tokenizer: ActionTokenizer | None = None

    def config(self) -> dict:
        return {"decode": self.decode, "n_bins": self.n_bins, "vocab_size": self.vocab_size}

    def action_tokenizer(self, vla: VLA) -> ActionTokenizer:
        # OpenVLA's "vocab_size" is the base vocabulary without added tokens such as <PAD>
        vocab = self.vocab_size if self.vocab_size is not None else int(vla.tokenizer.action_token_end)
        if self._tokenizer is None or self._tokenizer.vocab_size != vocab:
            self._tokenizer = ActionTokenizer(vocab, self.n_bins)
        return self._tokenizer

    @property
    def causal(self) -> bool:
        return self.decode == "autoregressive"

    def compute_loss(
        self, vla: VLA, inputs: VLAInputs, target: torch.Tensor, is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the K*D action tokens (teacher forcing when autoregressive)."""
        tok = self.action_tokenizer(vla)
        target_ids = tok.encode(target).reshape(target.shape[0], -1)  # (B, K*D)
        # causal: slot j holds the ground-truth token j and only slots < j are visible from position j-1
        slots = vla.embed_tokens(target_ids) if self.causal else None
        hidden = vla.action_hidden_states(inputs, slot_embeds=slots, causal=self.causal)  # (B, K*D, H)
        logits = vla.lm_logits(hidden).float()  # (B, K*D, V)
        labels = target_ids.clone()
        if is_pad is not None:
            labels[is_pad.repeat_interleave(self.action_dim, dim=1)] = -100
        # every chunk step padded: no target, zero loss (not NaN); a sum over a clamped count needs no sync
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
        ce = ce.view_as(labels)  # (B, K*D), 0 where ignored
        loss = ce.sum() / (labels != -100).sum().clamp(min=1)
        with torch.no_grad():  # masked means without boolean indexing: no host sync
            pred = self._argmax_action_ids(logits, tok)
            valid = (labels != -100).float()
            n = valid.sum().clamp(min=1)
            acc = ((pred == labels).float() * valid).sum() / n
            l1 = ((tok.decode(pred) - tok.decode(target_ids)).abs() * valid).sum() / n
            sample_loss = ce.detach().sum(1) / valid.sum(1).clamp(min=1)  # (B,)
        metrics = {"ce_loss": loss.detach(), "token_accuracy": acc, "l1_loss": l1}
        return loss, {SAMPLE_LOSS: sample_loss, **metrics}

    @torch.no_grad()
    def predict(self, vla: VLA, inputs: VLAInputs) -> torch.Tensor:
        tok = self.action_tokenizer(vla)
        if self.causal:
            ids = self.decode_autoregressive(vla, inputs, tok)
        else:
            hidden = vla.action_hidden_states(inputs)  # (B, K*D, H), bidirectional, zero slots
            ids = self._read_action_ids(vla, hidden, tok)  # (B, K*D)
        return tok.decode(ids).reshape(ids.shape[0], self.chunk_len, self.action_dim)

    def _argmax_action_ids(self, logits: torch.Tensor, tok: ActionTokenizer) -> torch.Tensor:
        """Greedy choice restricted to the action-token range: (..., V) logits -> (...) ids."""
        return tok.first_id + logits[..., tok.first_id : tok.vocab_size].argmax(dim=-1)

    def _read_action_ids(self, vla: VLA, hidden: torch.Tensor, tok: ActionTokenizer) -> torch.Tensor:
        """Greedy action ids from hidden states (B, n, H) -> (B, n): the LM head computes only the logits
        of the action tokens (the argmax is restricted to them anyway), not the whole vocabulary."""
        logits = vla.lm_logits(hidden, slice(tok.first_id, tok.vocab_size))  # (B, n, n_bins)
        return tok.first_id + logits.argmax(dim=-1)

    def decode_autoregressive(self, vla: VLA, inputs: VLAInputs, tok: ActionTokenizer) -> torch.Tensor:
        """Greedy causal decoding with a KV cache: one prefix forward, then one token per step -> (B, K*D).

        The prefix ends with the last prompt token, whose hidden state predicts slot 0. Right-padded prompts
        of different lengths decode together: new tokens are appended after the padding, the padding is
        masked out of every step, and their rotary positions continue each example's own prompt. The steps
        run through :class:`oft.model.vla.TokenDecoder` (preallocated cache, one row per layer op).
        """
        from oft.model.vla import TokenDecoder

        n = self.chunk_len * self.action_dim
        seq = vla.build_sequence(inputs, num_slots=0, stop_token=False)  # [BOS, prefix, prompt[1:]]
        cache = vla.new_cache()
        hidden, _ = vla.llm_forward(seq.embeds, seq.attention_mask, causal=True, cache=cache)
        last = (seq.slot_start - 1)[:, None, None].expand(-1, 1, hidden.shape[-1])  # (B, 1, H)
        h = torch.gather(hidden, 1, last)  # (B, 1, H) hidden state before slot 0
        positions = seq.slot_start[:, None] + torch.arange(n - 1, device=hidden.device)  # (B, n - 1)
        decoder = TokenDecoder(vla, cache, seq.attention_mask, positions)
        ids = torch.empty(h.shape[0], n, dtype=torch.long, device=h.device)
        for j in range(n):
            ids[:, j : j + 1] = self._read_action_ids(vla, h, tok)  # (B, 1)
            if j < n - 1:  # the last token needs no forward of its own
                h = decoder(vla.embed_tokens(ids[:, j : j + 1]))
        return ids
