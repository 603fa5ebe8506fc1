from __future__ import annotations

import numpy as np
import pytest
import torch

from oft.model.heads import HEADS, make_head
from oft.model.heads_discrete import ActionTokenizer, DiscreteHead
from oft.model.tokenizer import build_word_tokenizer
from oft.model.vision import ViTConfig
from oft.model.vla import VLA, VLAConfig

INSTRUCTIONS = ["open the drawer", "press the red button now please"]


def tiny_vla(chunk_len: int, action_dim: int, proprio_dim: int = 0, seed: int = 0) -> VLA:
    torch.manual_seed(seed)
    tok = build_word_tokenizer(INSTRUCTIONS)
    vit = ViTConfig(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2)
    llm = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=tok.vocab_size,
        max_position_embeddings=256,
    )
    cfg = VLAConfig(vits=[vit], llm=llm, chunk_len=chunk_len, action_dim=action_dim, proprio_dim=proprio_dim)
    return VLA(cfg, tok).eval()


def tiny_inputs(vla: VLA, select: slice = slice(None)):
    """Prepared inputs for INSTRUCTIONS[select] (each example keeps its own image and proprio)."""
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(len(INSTRUCTIONS), 1, 3, 16, 16, generator=g)
    proprio = None
    if vla.config.proprio_dim:
        proprio = (torch.rand(len(INSTRUCTIONS), vla.config.proprio_dim, generator=g) * 2 - 1)[select]
    return vla.prepare(pixels[select], proprio, INSTRUCTIONS[select])


def test_registered():
    assert HEADS.get("discrete") is DiscreteHead or make_head("discrete", 32, 4, 2).name == "discrete"
    with pytest.raises(ValueError, match="decode"):
        DiscreteHead(32, 4, 2, decode="beam")


def test_action_tokenizer_matches_openvla_formula():
    tok = ActionTokenizer(vocab_size=32000)
    a = np.concatenate([np.linspace(-1.3, 1.3, 2001), [-1.0, 1.0, 0.0, 0.99999]]).astype(np.float32)
    bins = np.linspace(-1, 1, 256)
    expected = 32000 - np.digitize(np.clip(a, -1, 1), bins)
    ids = tok.encode(torch.from_numpy(a)).numpy()
    np.testing.assert_array_equal(ids, expected)
    assert ids.min() >= 31744 and ids.max() <= 31999
    centers = (bins[:-1] + bins[1:]) / 2
    np.testing.assert_allclose(
        tok.decode(torch.from_numpy(ids)).numpy(),
        centers[np.clip(32000 - ids - 1, 0, 254)],
        rtol=0,
        atol=1e-7,
    )
    # round trip error is at most one bin width
    back = tok.decode(torch.from_numpy(ids)).numpy()
    assert np.abs(back - np.clip(a, -1, 1)).max() <= 2 / 255 + 1e-6


def test_autoregressive_kv_cache_equals_full_recomputation():
    K, D = 2, 3
    vla = tiny_vla(K, D)
    head = DiscreteHead(vla.llm_dim, D, K, decode="autoregressive")
    inputs = tiny_inputs(vla)  # two prompts of different lengths: exercises the padded batch
    tok = head.action_tokenizer(vla)
    with torch.no_grad():
        cached = head.decode_autoregressive(vla, inputs, tok)  # (B, K*D)
        # recomputation: one full causal forward per token, earlier predictions as slot embeddings
        ids = torch.full_like(cached, tok.first_id)
        for j in range(K * D):
            hidden = vla.action_hidden_states(inputs, slot_embeds=vla.embed_tokens(ids), causal=True)
            ids[:, j] = head._argmax_action_ids(vla.lm_logits(hidden[:, j]), tok)
    assert torch.equal(cached, ids)
    # the decoded tokens are not all the same token (the comparison would be vacuous)
    assert cached.unique().numel() > 1
    # a single example decodes the same alone as in the padded batch
    with torch.no_grad():
        alone = head.decode_autoregressive(vla, tiny_inputs(vla, slice(1, 2)), tok)
    assert torch.equal(alone, cached[1:])


def test_autoregressive_decoding_uses_the_supported_cache_api():
    """transformers announces ``past_key_values=`` for removal (5.40): the KV cache goes in as a ``Cache``
    object under the name the installed release supports, so decoding raises no deprecation warning."""
    import warnings

    from transformers import Cache

    K, D = 2, 3
    vla = tiny_vla(K, D)
    head = DiscreteHead(vla.llm_dim, D, K, decode="autoregressive")
    inputs = tiny_inputs(vla)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        ids = head.decode_autoregressive(vla, inputs, head.action_tokenizer(vla))
        cache = vla.new_cache()
        seq = vla.build_sequence(inputs, num_slots=0, stop_token=False)
        _, returned = vla.llm_forward(seq.embeds, seq.attention_mask, causal=True, cache=cache)
    assert ids.shape == (2, K * D)
    assert isinstance(cache, Cache) and returned is cache
    assert cache.get_seq_length() == seq.embeds.shape[1]  # the call filled the cache it was given


@pytest.mark.parametrize("decode", ["parallel", "autoregressive"])
def test_lm_head_only_at_read_positions(decode, monkeypatch):
    """Logits are computed for the K*D rows read and, at inference, for the 256 action ids only."""
    K, D = 2, 3
    vla = tiny_vla(K, D)
    head = DiscreteHead(vla.llm_dim, D, K, decode=decode)
    shapes: list[tuple[int, int]] = []
    original = VLA.lm_logits

    def counting(self, hidden, tokens=None):
        out = original(self, hidden, tokens)
        shapes.append((hidden.reshape(-1, hidden.shape[-1]).shape[0], out.shape[-1]))
        return out

    monkeypatch.setattr(VLA, "lm_logits", counting)
    inputs = tiny_inputs(vla)
    out = head.predict(vla, inputs)
    B = len(INSTRUCTIONS)
    assert out.shape == (B, K, D)
    assert sum(rows for rows, _ in shapes) == B * K * D  # one row per action token read, nothing else
    assert {cols for _, cols in shapes} == {head.n_bins}  # action-token columns only
    if decode == "autoregressive":
        assert [rows for rows, _ in shapes] == [B] * (K * D)


def test_action_logits_equal_the_full_vocabulary_slice():
    vla = tiny_vla(2, 3)
    head = DiscreteHead(vla.llm_dim, 3, 2)
    tok = head.action_tokenizer(vla)
    h = torch.randn(2, 5, vla.llm_dim)
    with torch.no_grad():
        full = vla.lm_logits(h)[..., tok.first_id : tok.vocab_size]
        part = vla.lm_logits(h, slice(tok.first_id, tok.vocab_size))
    torch.testing.assert_close(part, full, rtol=0, atol=1e-6)
    assert torch.equal(head._read_action_ids(vla, h, tok), head._argmax_action_ids(vla.lm_logits(h), tok))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_token_decoder_equals_llm_forward_with_cache(attn):
    """The lean one-token step gives transformers' hidden states (padded batch, grouped-query attention)."""
    from oft.model.vla import TokenDecoder

    torch.manual_seed(0)
    tok = build_word_tokenizer(INSTRUCTIONS)
    vit = ViTConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    llm = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=tok.vocab_size, max_position_embeddings=256)  # fmt: skip
    vla = VLA(VLAConfig([vit], llm, 2, 3, 0, attn_implementation=attn), tok).eval()
    inputs = tiny_inputs(vla)
    steps = 4
    with torch.no_grad():
        seq = vla.build_sequence(inputs, num_slots=0, stop_token=False)
        new = torch.randn(2, steps, vla.llm_dim)
        positions = seq.slot_start[:, None] + torch.arange(steps)
        reference, mask = vla.new_cache(), seq.attention_mask
        vla.llm_forward(seq.embeds, mask, causal=True, cache=reference)
        lean = vla.new_cache()
        vla.llm_forward(seq.embeds, mask, causal=True, cache=lean)
        decoder = TokenDecoder(vla, lean, mask, positions)
        for j in range(steps):
            mask = torch.cat([mask, mask.new_ones(2, 1)], dim=1)
            expected, _ = vla.llm_forward(
                new[:, j : j + 1], mask, causal=True, cache=reference, position_ids=positions[:, j : j + 1]
            )
            torch.testing.assert_close(decoder(new[:, j : j + 1]), expected, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="prepared for 4 tokens"):
            decoder(new[:, :1])


def test_autoregressive_without_chunking():
    vla = tiny_vla(chunk_len=1, action_dim=4)
    head = DiscreteHead(vla.llm_dim, 4, 1, decode="autoregressive")
    out = head.predict(vla, tiny_inputs(vla))
    assert out.shape == (2, 1, 4)
    assert out.abs().max() <= 1


@pytest.mark.parametrize("decode", ["parallel", "autoregressive"])
def test_discrete_loss_decreases_on_overfit(decode):
    K, D = 2, 3
    vla = tiny_vla(K, D, proprio_dim=2).train()
    head = DiscreteHead(vla.llm_dim, D, K, decode=decode)
    target = torch.rand(2, K, D, generator=torch.Generator().manual_seed(3)) * 2 - 1
    is_pad = torch.tensor([[False, False], [False, True]])
    opt = torch.optim.Adam(vla.parameters(), lr=5e-3)
    losses = []
    for _ in range(60):
        loss, metrics = head.compute_loss(vla, tiny_inputs(vla), target, is_pad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(metrics) >= {"ce_loss", "token_accuracy", "l1_loss"}
    # after fitting, decoding recovers most (non-padded) targets to within a bin
    vla.eval()
    pred = head.predict(vla, tiny_inputs(vla))
    within_bin = ((pred - target).abs() < 2 / 255 + 1e-5)[~is_pad]
    assert within_bin.float().mean() >= 0.8, within_bin


@pytest.mark.parametrize(
    "head, kwargs",
    [("discrete", {"decode": "autoregressive"}), ("discrete", {"decode": "parallel"}), ("diffusion", {})],
)
def test_policy_round_trip(tmp_path, head, kwargs):
    """Through the public policy API: train step, predict, save -> load -> identical actions."""
    pytest.importorskip("diffusers")
    from oft.bench.latency import fake_observation, neutral_stats
    from oft.data.normalize import NormStats
    from oft.model.build import build_policy
    from oft.model.loading import load_policy
    from oft.observation import Batch
    from oft.spec import get_spec

    spec = get_spec("libero").replace(chunk_len=2)
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim))
    torch.manual_seed(0)
    policy = build_policy(spec, stats, INSTRUCTIONS, arch="tiny", head=head, head_kwargs=kwargs)
    obs = fake_observation(policy, INSTRUCTIONS[0], 0)
    images = torch.from_numpy(np.stack(obs.images))[None]
    batch = Batch(images, torch.from_numpy(obs.proprio).float()[None], [obs.instruction],
                  torch.zeros(1, 2, spec.action_dim), None)  # fmt: skip
    loss, _ = policy(batch)
    loss.backward()
    policy.eval()
    torch.manual_seed(1)
    before = policy.predict_action_chunk(obs)
    assert before.shape == (2, spec.action_dim)
    loaded = load_policy(policy.save(tmp_path / "ckpt"))
    assert loaded.head.config() == policy.head.config()
    torch.manual_seed(1)
    np.testing.assert_array_equal(loaded.predict_action_chunk(obs), before)
