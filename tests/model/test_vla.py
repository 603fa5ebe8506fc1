"""Properties of the trunk and policy on tiny from-scratch models (milliseconds, CPU float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.heads import SAMPLE_LOSS, make_head
from oft.observation import Batch, Observation
from oft.spec import RobotSpec

SPEC = RobotSpec("toy", action_dim=3, proprio_dim=4, chunk_len=2, cameras=("a", "b"))


def _stats(dim):
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return build_policy(
        SPEC, NormStats(_stats(3), _stats(4)), ["open the drawer", "press the button"], arch="tiny"
    )


def _inputs(policy, instructions=("open the drawer",)):
    B = len(instructions)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 255, (4, 2, 32, 32, 3), dtype=torch.uint8, generator=g)
    return policy.prepare(images[:B], torch.rand(4, 4, generator=g)[:B], list(instructions))


def _obs(seed=0, **kw):
    rng = np.random.default_rng(seed)
    d = dict(images=[rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)],
             proprio=rng.normal(size=4), instruction="open the drawer")  # fmt: skip
    d.update(kw)
    return Observation(**d)


def test_last_slot_influences_first_slot(policy):
    """Bidirectional: the first slot's hidden state sees the last slot (impossible with causal attention)."""
    vla = policy.vla
    inputs = _inputs(policy)
    slots = torch.zeros(1, vla.num_action_slots, vla.llm_dim)
    changed = slots.clone()
    changed[0, -1] = 1.0
    with torch.no_grad():
        h0, h1 = vla.action_hidden_states(inputs, slots), vla.action_hidden_states(inputs, changed)
        c0, c1 = (vla.action_hidden_states(inputs, s, causal=True) for s in (slots, changed))
    assert (h0[0, 0] - h1[0, 0]).abs().max() > 1e-4
    assert torch.equal(c0[0, 0], c1[0, 0])


def test_padding_has_no_influence(policy):
    with torch.no_grad():
        alone = policy.vla.action_hidden_states(_inputs(policy, ["open the drawer"]))
        padded = policy.vla.action_hidden_states(
            _inputs(policy, ["open the drawer", "press the button and then open the drawer please"])
        )
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_eager_equals_sdpa(policy, causal):
    inputs = _inputs(policy, ["open the drawer", "press the red button now"])
    with torch.no_grad():
        policy.vla.set_attn_implementation("sdpa")
        a = policy.vla.action_hidden_states(inputs, causal=causal)
        policy.vla.set_attn_implementation("eager")
        b = policy.vla.action_hidden_states(inputs, causal=causal)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_film_is_identity_at_init():
    torch.manual_seed(0)
    stats = NormStats(_stats(3), _stats(4))
    film = build_policy(SPEC, stats, ["open the drawer"], arch="tiny", use_film=True)
    torch.manual_seed(0)
    plain = build_policy(SPEC, stats, ["open the drawer"], arch="tiny", use_film=False)
    missing = plain.load_state_dict(film.state_dict(), strict=False)
    assert all(
        k.endswith((".scale.weight", ".scale.bias", ".shift.weight", ".shift.bias")) for k in missing[1]
    )
    assert len(missing[1]) > 0
    obs = _obs()
    np.testing.assert_array_equal(film.predict_action_chunk(obs), plain.predict_action_chunk(obs))
    # and FiLM does act once its maps are non-zero
    with torch.no_grad():
        film.vla.vision_backbone.featurizer.blocks[0].shift.bias.fill_(0.5)
    assert np.abs(film.predict_action_chunk(obs) - plain.predict_action_chunk(obs)).max() > 1e-6


def test_save_load_roundtrip_identical(policy, tmp_path):
    obs = [_obs(0), _obs(1, instruction="press the button")]
    before = policy.predict_action_chunk(obs)
    policy.save(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.predict_action_chunk(obs), before)
    assert loaded.spec == policy.spec


def test_forward_gives_finite_loss_and_gradients(policy):
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        images=torch.randint(0, 255, (3, 2, 32, 32, 3), dtype=torch.uint8, generator=g),
        proprio=torch.randn(3, 4, generator=g),
        instructions=["open the drawer", "press the button", "open"],
        actions=torch.randn(3, 2, 3, generator=g),
        action_is_pad=torch.tensor([[False, False], [False, True], [False, False]]),
    )
    loss, metrics = policy(batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics["l1_loss"] > 0
    assert policy.head.model.fc1.weight.grad is not None
    assert policy.vla.vision_backbone.featurizer.patch_embed.proj.weight.grad is not None


def test_lora_roundtrip_and_merge(tmp_path):
    from oft.model.lora import LoraSpec, merge_lora

    torch.manual_seed(0)
    p = build_policy(
        SPEC, NormStats(_stats(3), _stats(4)), ["open"], arch="tiny", lora=LoraSpec(rank=4, alpha=8)
    )
    with torch.no_grad():
        for n, t in p.named_parameters():
            if "lora_B" in n:
                t.normal_(0, 0.05)
    obs = _obs()
    before = p.predict_action_chunk(obs)
    p.save(tmp_path / "lora")
    np.testing.assert_array_equal(load_policy(tmp_path / "lora").predict_action_chunk(obs), before)
    merge_lora(p.vla)
    np.testing.assert_allclose(p.predict_action_chunk(obs), before, atol=1e-5)


@pytest.mark.parametrize(
    ("obs_kw", "match"),
    [
        (dict(images=[np.zeros((32, 32, 3), np.uint8)]), "1 images, expected 2"),
        (dict(images=[np.zeros((32, 32), np.uint8)] * 2), r"shape \(32, 32\), expected \(H, W, 3\)"),
        (dict(proprio=np.zeros(5)), r"proprio has shape \(5,\), expected \(4,\)"),
        (dict(proprio=np.array([0.0, np.nan, 0.0, 0.0])), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(policy, obs_kw, match):
    with pytest.raises(ValueError, match=match):
        policy.predict_action_chunk(_obs(**obs_kw))


def test_unknown_head_name():
    with pytest.raises(KeyError, match=r"unknown action head .l1x.*[Dd]id you mean .l1."):
        make_head("l1x", 32, 3, 2)


def test_unknown_arch_name():
    with pytest.raises(KeyError, match=r"[Dd]id you mean .small."):
        build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch="smal")


def _loop_sequence(vla, inputs, slots, extra, stop=True):
    """The per-example assembly (the old ``build_sequence``): [BOS, prefix, extra, prompt[1:], slots, </s>]"""
    eos = vla.embed_tokens(torch.tensor([vla.tokenizer.eos_id]))
    rows = []
    for b in range(inputs.batch_size):
        L = int(inputs.text_lengths[b])
        parts = [inputs.text_embeds[b, :1], inputs.prefix_embeds[b]]
        parts += [extra[b]] if extra is not None else []
        parts += [inputs.text_embeds[b, 1:L], slots[b]] + ([eos] if stop else [])
        rows.append(torch.cat(parts))
    S = max(r.shape[0] for r in rows)
    return torch.stack([torch.cat([r, r.new_zeros(S - r.shape[0], r.shape[1])]) for r in rows])


@pytest.mark.parametrize("stop", [True, False])
@pytest.mark.parametrize("with_extra", [True, False])
def test_build_sequence_equals_per_example_assembly(policy, stop, with_extra):
    """The batched (tensor-op) assembly puts every token where the per-example loop did, padding zero."""
    vla = policy.vla
    prompts = ["open", "press the red button now please", "open the drawer"]
    with torch.no_grad():
        inputs = _inputs(policy, prompts)
        B, n, H = len(prompts), vla.num_action_slots, vla.llm_dim
        slots = torch.randn(B, n, H)
        extra = torch.randn(B, 2, H) if with_extra else None
        seq = vla.build_sequence(inputs, slots, extra, stop_token=stop)
        expected = _loop_sequence(vla, inputs, slots, extra, stop)
    torch.testing.assert_close(seq.embeds, expected, rtol=0, atol=0)
    lengths = (expected.abs().sum(-1) > 0).sum(1)
    assert seq.lengths.tolist() == lengths.tolist() == seq.attention_mask.sum(1).tolist()
    for b in range(B):  # the slots sit at slot_index
        assert torch.equal(seq.embeds[b, seq.slot_index[b]], slots[b])
        assert int(seq.slot_start[b]) == int(seq.slot_index[b, 0])


def test_replace_tokens_equals_a_fresh_assembly(policy):
    vla = policy.vla
    with torch.no_grad():
        inputs = _inputs(policy, ["open", "press the red button now please"])
        n, H = vla.num_action_slots, vla.llm_dim
        seq = vla.build_sequence(inputs, extra_tokens=torch.zeros(2, 1, H))
        slots, extra = torch.randn(2, n, H), torch.randn(2, 1, H)
        swapped = vla.replace_tokens(seq, slot_embeds=slots, extra_tokens=extra)
        fresh = vla.build_sequence(inputs, slots, extra)
    assert torch.equal(swapped.embeds, fresh.embeds)
    assert all(seq.embeds[b, seq.slot_index[b]].abs().sum() == 0 for b in range(2))  # original left alone
    with pytest.raises(ValueError, match="slot_embeds"):
        vla.replace_tokens(seq, slot_embeds=torch.randn(2, n + 1, H))


def test_one_embedding_lookup_per_chunk(policy):
    """The prompt and </s> are embedded in one call (not once more per assembled sequence)."""
    calls = []
    hook = policy.vla.language_model.model.embed_tokens.register_forward_hook(lambda *a: calls.append(1))
    try:
        policy.predict_action_chunk(_obs())
    finally:
        hook.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("head", ["l1", "diffusion", "discrete"])
def test_loss_metrics_stay_on_the_device(head):
    """Metrics come back as detached 0-dim tensors (a float() per micro-step would wait for the device), and
    each sample's loss as a detached (B,) tensor."""
    if head == "diffusion":
        pytest.importorskip("diffusers", reason="the diffusion head's DDIM scheduler comes from diffusers")
    torch.manual_seed(0)
    policy = build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["open the drawer"], arch="tiny", head=head)
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        images=torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8, generator=g),
        proprio=torch.randn(2, 4, generator=g),
        instructions=["open the drawer", "open"],
        actions=torch.randn(2, 2, 3, generator=g),
        action_is_pad=torch.tensor([[False, False], [True, True]]),
    )
    loss, metrics = policy(batch)
    sample = metrics.pop(SAMPLE_LOSS)
    assert torch.is_tensor(sample) and sample.shape == (2,) and not sample.requires_grad
    assert metrics and all(
        torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad for v in metrics.values()
    )
    assert all(torch.isfinite(v) for v in metrics.values()) and torch.isfinite(loss)
    assert torch.isfinite(sample).all() and sample[1] == 0  # every step of sample 1 is padding


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("causal", [False, True])
def test_rows_forward_equals_the_full_forward_at_those_rows(attn, causal):
    """The last layer computed for the rows read only (keys/values from all) gives the full forward's states,
    in a padded batch with grouped-query attention, and passes gradients."""
    from oft.model.tokenizer import build_word_tokenizer
    from oft.model.vision import ViTConfig
    from oft.model.vla import VLA, VLAConfig

    torch.manual_seed(0)
    tok = build_word_tokenizer(["open the drawer", "press the red button now please"])
    vit = ViTConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    llm = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=tok.vocab_size, max_position_embeddings=256)  # fmt: skip
    vla = VLA(VLAConfig([vit], llm, 2, 3, 0, attn_implementation=attn), tok)
    inputs = vla.prepare(torch.randn(2, 1, 3, 16, 16), None, ["open the drawer", "press the red button now"])
    seq = vla.build_sequence(inputs, torch.randn(2, 6, 32))
    rows = seq.slot_index - 1
    full, _ = vla.llm_forward(seq.embeds, seq.attention_mask, causal=causal)
    expected = torch.gather(full, 1, rows.unsqueeze(-1).expand(-1, -1, 32))
    mlp_rows = []
    hook = vla.language_model.model.layers[-1].mlp.register_forward_hook(
        lambda m, a, out: mlp_rows.append(a[0].shape[1])
    )
    try:
        got = vla.llm_forward_rows(seq.embeds, seq.attention_mask, rows, causal)
    finally:
        hook.remove()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert mlp_rows == [6]  # the last layer's MLP ran on the 6 rows read, not on all positions
    got.sum().backward()
    assert vla.language_model.model.layers[0].mlp.up_proj.weight.grad is not None


def test_small_128_sees_four_times_the_pixels_through_the_same_number_of_tokens():
    from oft.model.build import input_size

    small, hires = (
        build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch=a).eval()
        for a in ("small", "small-128")
    )
    assert (input_size("small"), input_size("small-128")) == (64, 128)
    assert small.vla.vision_backbone.num_patches == hires.vla.vision_backbone.num_patches == 64
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    obs = Observation([image] * SPEC.num_cameras, np.zeros(4), "x")
    assert hires.predict_action_chunk(obs).shape == (SPEC.chunk_len, SPEC.action_dim)


def test_small_wide_is_small_at_twice_the_width_on_the_same_tokens():
    from oft.model.build import input_size

    small, wide = (
        build_policy(SPEC, NormStats(_stats(3), _stats(4)), ["x"], arch=a).eval()
        for a in ("small", "small-wide")
    )
    assert input_size("small-wide") == input_size("small") == 64
    assert wide.vla.vision_backbone.num_patches == small.vla.vision_backbone.num_patches == 64
    assert wide.vla.config.llm["hidden_size"] == 2 * small.vla.config.llm["hidden_size"] == 256
    n_small, n_wide = (sum(p.numel() for p in m.parameters()) for m in (small, wide))
    assert 3 * n_small < n_wide < 4 * n_small
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    obs = Observation([image] * SPEC.num_cameras, np.zeros(4), "x")
    assert wide.predict_action_chunk(obs).shape == (SPEC.chunk_len, SPEC.action_dim)
