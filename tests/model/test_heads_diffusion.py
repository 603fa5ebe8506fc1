from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the diffusion head's DDIM scheduler comes from diffusers")

from oft.model.heads import make_head
from oft.model.heads_diffusion import DiffusionHead, SinusoidalPositionalEncoding
from oft.model.tokenizer import build_word_tokenizer
from oft.model.vision import ViTConfig
from oft.model.vla import VLA, VLAConfig

INSTRUCTIONS = ["open the drawer", "press the red button now please"]


def tiny_vla(chunk_len: int, action_dim: int, proprio_dim: int = 2, seed: int = 0) -> VLA:
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


def tiny_inputs(vla: VLA):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(len(INSTRUCTIONS), 1, 3, 16, 16, generator=g)
    proprio = torch.rand(len(INSTRUCTIONS), vla.config.proprio_dim, generator=g) * 2 - 1
    return vla.prepare(pixels, proprio, INSTRUCTIONS)


def test_registered_with_reference_parameter_names():
    head = make_head("diffusion", 32, 3, 2)
    assert isinstance(head, DiffusionHead) and head.num_extra_tokens == 1
    keys = set(head.state_dict())
    assert "noise_predictor.mlp_resnet.layer_norm1.weight" in keys
    assert "noise_predictor.mlp_resnet.mlp_resnet_blocks.1.ffn.1.weight" in keys
    assert {"noisy_action_projector.fc1.weight", "noisy_action_projector.fc2.bias"} <= keys
    assert head.noise_predictor.mlp_resnet.fc1.in_features == 32 * 3  # D*H features per chunk step
    sched = head.noise_scheduler.config
    assert sched.num_train_timesteps == 50 and sched.beta_schedule == "squaredcos_cap_v2"
    assert sched.prediction_type == "epsilon"


def test_loads_reference_component_state_dicts():
    src = DiffusionHead(32, 3, 2, hidden_dim=24, num_blocks=3)
    sd = src.state_dict()
    parts = {
        "action_head": {k: v for k, v in sd.items() if k.startswith("noise_predictor.")},
        "noisy_action_projector": {
            k.removeprefix("noisy_action_projector."): v
            for k, v in sd.items()
            if k.startswith("noisy_action_")
        },
    }
    kwargs = DiffusionHead.kwargs_from_reference(parts)
    assert kwargs == {"hidden_dim": 24, "num_blocks": 3}
    dst = DiffusionHead(32, 3, 2, **kwargs)
    dst.load_reference(parts)
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in sd.items())
    with pytest.raises(ValueError, match="noisy_action_projector"):
        dst.load_reference({"action_head": parts["action_head"]})


def test_sinusoidal_encoding_reference_formula():
    enc = SinusoidalPositionalEncoding(8)(torch.tensor([0.0, 3.0]))
    half = 4
    freqs = np.exp(np.arange(half) * -math.log(10000) / (half - 1))
    expected = np.concatenate([np.sin(3.0 * freqs), np.cos(3.0 * freqs)])
    np.testing.assert_allclose(enc[1].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(enc[0].numpy(), [0] * 4 + [1] * 4)


def test_timestep_token_placed_after_proprio():
    vla = tiny_vla(2, 3)
    inputs = tiny_inputs(vla)
    token = torch.full((2, 1, vla.llm_dim), 7.0)
    seq = vla.build_sequence(inputs, extra_tokens=token)
    n_prefix = inputs.prefix_embeds.shape[1]  # patches + proprio
    assert torch.equal(seq.embeds[:, 1 + n_prefix], token[:, 0])
    assert torch.equal(seq.embeds[:, n_prefix], inputs.prefix_embeds[:, -1])  # the proprio token


@pytest.mark.parametrize("steps", [50, 10, 2, 1])
def test_ddim_sampling_step_counts_deterministic(steps):
    K, D = 2, 3
    vla = tiny_vla(K, D)
    head = DiffusionHead(vla.llm_dim, D, K)
    head.num_inference_steps = steps
    inputs = tiny_inputs(vla)
    calls = []
    hook = vla.language_model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        a = head.predict(vla, inputs, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert len(calls) == steps  # one LLM forward per denoising step
    b = head.predict(vla, inputs, generator=torch.Generator().manual_seed(0))
    c = head.predict(vla, inputs, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, K, D) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.abs().max() <= 1 + 1e-5  # DDIM clips its x0 estimate to [-1, 1]
    torch.manual_seed(5)
    d = head.predict(vla, inputs)
    torch.manual_seed(5)
    assert torch.equal(d, head.predict(vla, inputs))


def test_scheduler_real_when_built_on_meta():
    with torch.device("meta"):
        head = DiffusionHead(32, 3, 2)
    assert head.noise_scheduler.alphas_cumprod.device.type == "cpu"
    assert head.noise_predictor.mlp_resnet.fc1.weight.device.type == "meta"


def test_inference_steps_validated():
    head = DiffusionHead(32, 3, 2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        head.num_inference_steps = 0
    with pytest.raises(ValueError, match="num_inference_steps"):
        DiffusionHead(32, 3, 2, num_inference_steps=51)
    assert DiffusionHead(32, 3, 2, **head.config()).config() == head.config()


def test_diffusion_loss_decreases_on_overfit():
    K, D = 2, 3
    vla = tiny_vla(K, D).train()
    head = DiffusionHead(vla.llm_dim, D, K)
    target = torch.rand(2, K, D, generator=torch.Generator().manual_seed(3)) * 2 - 1
    params = list(vla.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(80):
        loss, metrics = head.compute_loss(vla, tiny_inputs(vla), target, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and "diffusion_mse_loss" in metrics
    # the loss is noisy (random timestep and noise per step): compare averages of the first/last 15
    assert np.mean(losses[-15:]) < 0.6 * np.mean(losses[:15]), losses


def test_sequence_assembled_once_per_chunk(monkeypatch):
    """Only the noisy slots and the timestep token change between denoising steps: one assembly per chunk,
    and the same chunk as assembling the sequence anew at every step."""
    K, D = 2, 3
    vla = tiny_vla(K, D)
    head = DiffusionHead(vla.llm_dim, D, K, num_inference_steps=5)
    inputs = tiny_inputs(vla)
    noise = torch.randn(len(INSTRUCTIONS), K, D, generator=torch.Generator().manual_seed(0))
    built = []
    original = VLA.build_sequence
    monkeypatch.setattr(
        VLA, "build_sequence", lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    )
    cached = head.predict(vla, inputs, initial_noise=noise)
    assert len(built) == 1
    # reference: a full assembly inside every step
    head.noise_scheduler.set_timesteps(5)
    x = noise.clone()
    with torch.no_grad():
        for t in head.noise_scheduler.timesteps:
            eps = head.predict_noise(vla, inputs, x, t.expand(len(INSTRUCTIONS)))
            x = head.noise_scheduler.step(eps, int(t), x).prev_sample
    torch.testing.assert_close(cached, x, rtol=0, atol=1e-6)
