"""Diffusion fine-tunes (``noisy_action_projector--*``) reproduce the reference's noise prediction and its
DDIM chunk.

Weights: the shared fixture's model with our own random diffusion head written in the reference's layout
(``action_head--*`` = ``DiffusionActionHead.state_dict()``: ``noise_predictor.mlp_resnet.*``;
``noisy_action_projector--*`` = ``NoisyActionProjector``: ``fc1`` (1 -> H), GELU, ``fc2``; DDP ``module.``
prefix). The expected values re-implement the reference math here (``predict_action``'s diffusion branch):
timestep token = ``SinusoidalPositionalEncoding`` appended after the proprio token, noisy actions projected
one scalar per action slot, ``MLPResNet`` on the (K, D*H) hidden states, and diffusers' DDIM step
(squared-cosine betas, epsilon prediction, eta 0, x0 clipped to [-1, 1], final alpha 1) written out.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers", reason="the diffusion head's DDIM scheduler comes from diffusers")

from safetensors.torch import load_file

from oft import load_policy
from oft.observation import Observation

TOL = 2e-4
T_TRAIN, STEPS = 50, 10


def _mlp_resnet(g, prefix, d_in, hidden, d_out):
    sd = {}

    def lin(name, o, i, scale):
        sd[f"{prefix}{name}.weight"] = torch.randn(o, i, generator=g) * scale
        sd[f"{prefix}{name}.bias"] = torch.randn(o, generator=g) * 0.1

    def ln(name, n):
        sd[f"{prefix}{name}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        sd[f"{prefix}{name}.bias"] = 0.1 * torch.randn(n, generator=g)

    ln("layer_norm1", d_in)
    lin("fc1", hidden, d_in, d_in**-0.5)
    for b in range(2):
        ln(f"mlp_resnet_blocks.{b}.ffn.0", hidden)
        lin(f"mlp_resnet_blocks.{b}.ffn.1", hidden, hidden, hidden**-0.5)
    ln("layer_norm2", hidden)
    lin("fc2", d_out, hidden, hidden**-0.5)
    return sd


@pytest.fixture(scope="module")
def setup(fixture_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("diffusion") / "ckpt"
    shutil.copytree(fixture_dir, d)
    (d / "action_head--100_checkpoint.pt").unlink()
    g = torch.Generator().manual_seed(0)
    H, D = 64, 7
    head = _mlp_resnet(g, "noise_predictor.mlp_resnet.", H * D, H, D)
    proj = {
        "fc1.weight": torch.randn(H, 1, generator=g),
        "fc1.bias": 0.1 * torch.randn(H, generator=g),
        "fc2.weight": torch.randn(H, H, generator=g) * H**-0.5,
        "fc2.bias": 0.1 * torch.randn(H, generator=g),
    }
    torch.save({f"module.{k}": v for k, v in head.items()}, d / "action_head--100_checkpoint.pt")
    torch.save({f"module.{k}": v for k, v in proj.items()}, d / "noisy_action_projector--100_checkpoint.pt")
    tensors = load_file(str(fixture_dir / "case.safetensors"))
    meta = json.loads((fixture_dir / "case.json").read_text())
    obs = Observation([im.numpy() for im in tensors["images_224_uint8"]], tensors["proprio_raw"].numpy(),
                      meta["instruction"])  # fmt: skip
    policy = load_policy(d, center_crop=False)
    policy.head.num_inference_steps = STEPS
    return policy, obs, head, proj


def _ref_time_embedding(t: float, dim: int) -> torch.Tensor:
    half = dim // 2
    emb = torch.exp(torch.arange(half) * -math.log(10000) / (half - 1))
    emb = torch.tensor([t])[:, None] * emb[None, :]
    return torch.cat((emb.sin(), emb.cos()), dim=-1)  # (1, dim)


def _ref_mlp_resnet(sd, p, x):
    x = F.layer_norm(x, x.shape[-1:], sd[f"{p}layer_norm1.weight"], sd[f"{p}layer_norm1.bias"])
    x = F.relu(F.linear(x, sd[f"{p}fc1.weight"], sd[f"{p}fc1.bias"]))
    for b in range(2):
        q = f"{p}mlp_resnet_blocks.{b}.ffn."
        y = F.layer_norm(x, x.shape[-1:], sd[f"{q}0.weight"], sd[f"{q}0.bias"])
        x = x + F.relu(F.linear(y, sd[f"{q}1.weight"], sd[f"{q}1.bias"]))
    x = F.layer_norm(x, x.shape[-1:], sd[f"{p}layer_norm2.weight"], sd[f"{p}layer_norm2.bias"])
    return F.linear(x, sd[f"{p}fc2.weight"], sd[f"{p}fc2.bias"])


def _ref_noise(policy, inputs, head, proj, noisy, t):
    """The reference's noise prediction for a (1, K, D) noisy chunk at timestep t."""
    H = proj["fc2.weight"].shape[0]
    t_tok = _ref_time_embedding(float(t), H).unsqueeze(1)  # (1, 1, H), after the proprio token
    x = noisy.reshape(1, -1).unsqueeze(-1)  # (1, K*D, 1)
    slots = F.linear(
        F.gelu(F.linear(x, proj["fc1.weight"], proj["fc1.bias"])), proj["fc2.weight"], proj["fc2.bias"]
    )
    with torch.no_grad():
        hidden = policy.vla.action_hidden_states(inputs, slot_embeds=slots, extra_tokens=t_tok)  # (1, K*D, H)
    K = noisy.shape[1]
    return _ref_mlp_resnet(head, "noise_predictor.mlp_resnet.", hidden.reshape(1, K, -1))


def _ref_ddim(eps_fn, x):
    """diffusers DDIMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2") defaults, eta 0."""

    def alpha_bar(s):
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - alpha_bar((i + 1) / T_TRAIN) / alpha_bar(i / T_TRAIN), 0.999)
                          for i in range(T_TRAIN)], dtype=torch.float32)  # fmt: skip
    acp = torch.cumprod(1.0 - betas, dim=0)
    ratio = T_TRAIN // STEPS
    for t in (np.arange(0, STEPS) * ratio).round()[::-1].astype(np.int64):
        eps = eps_fn(x, int(t))
        a_t = acp[t]
        a_prev = acp[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
        x0 = ((x - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
        x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    return x


def test_noise_prediction_matches_the_reference(setup):
    policy, obs, head, proj = setup
    images, proprio = policy._stack_observations([obs])
    inputs = policy.prepare(images, proprio, [obs.instruction])
    g = torch.Generator().manual_seed(3)
    for t in (0, 17, 49):
        noisy = torch.randn(1, 8, 7, generator=g)
        with torch.no_grad():
            got = policy.head.predict_noise(policy.vla, inputs, noisy, torch.tensor([t]))
        err = float((got - _ref_noise(policy, inputs, head, proj, noisy, t)).abs().max())
        assert err < TOL, f"t={t}: max |noise - reference| = {err:.3g}"


def test_ddim_chunk_matches_the_reference_for_a_given_initial_noise(setup):
    policy, obs, head, proj = setup
    images, proprio = policy._stack_observations([obs])
    inputs = policy.prepare(images, proprio, [obs.instruction])
    noise = torch.randn(1, 8, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = _ref_ddim(lambda x, t: _ref_noise(policy, inputs, head, proj, x, t), noise.clone())
        got = policy.head.predict(policy.vla, inputs, initial_noise=noise)
    assert float((got - expected).abs().max()) < TOL
    assert float((expected - noise).abs().max()) > 0.1  # the denoising did something
    # through the public API: predict_action_chunk draws x_T with torch.randn from the global generator
    torch.manual_seed(11)
    x_t = torch.randn(1, 8, 7)
    with torch.no_grad():
        ref_norm = _ref_ddim(lambda x, t: _ref_noise(policy, inputs, head, proj, x, t), x_t)
    s = policy.norm_stats.action
    ref = np.where(
        s.mask, 0.5 * (ref_norm[0].numpy() + 1) * (s.q99 - s.q01 + 1e-8) + s.q01, ref_norm[0].numpy()
    )
    torch.manual_seed(11)
    np.testing.assert_allclose(policy.predict_action_chunk(obs), ref, atol=TOL)
