"""The ``diffusion`` action head: DDIM denoising of the whole chunk, conditioned through the LLM.

This is OpenVLA-OFT's diffusion variant (``DiffusionActionHead`` + ``NoisyActionProjector`` in the paper's
code): the noisy chunk is projected one scalar per action slot into the LLM embedding space and replaces the
slot embeddings, a sinusoidal embedding of the diffusion timestep is inserted as one extra token right after
the proprio token, and the same MLP-ResNet as the L1 head predicts the noise from the hidden states before the
slots. Every denoising step therefore costs a full LLM forward -- which is exactly what the paper's Table II
measures against L1 regression (one forward in total).

Parameter names follow the reference (``noise_predictor.mlp_resnet.*``, ``noisy_action_projector.fc1/fc2``)
so ``action_head--*_checkpoint.pt`` loads into this module and ``noisy_action_projector--*_checkpoint.pt``
into :attr:`DiffusionHead.noisy_action_projector`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from oft.model.heads import (
    SAMPLE_LOSS,
    ActionHead,
    MLPResNet,
    chunk_features,
    masked_mean,
    per_sample_mean,
    register_head,
)

if TYPE_CHECKING:
    from oft.model.vla import VLA, Sequence, VLAInputs


class SinusoidalPositionalEncoding(nn.Module):
    """Sine/cosine embedding of a batch of diffusion timesteps: (B,) -> (B, dim).

    The reference (after diffusion_policy) divides by ``half_dim - 1`` rather than ``half_dim``; kept so that
    released checkpoints see the embedding they were trained with.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2 != 0 or dim < 4:
            raise ValueError(f"timestep embedding dim must be even and >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        # the reference's operation order ((i * -log 1e4) / (half - 1)), so the float32 rounding matches too
        freqs = torch.exp(torch.arange(half, device=t.device) * -math.log(10000) / (half - 1))  # (dim/2,)
        args = t.float()[:, None] * freqs[None, :]  # (B, dim/2)
        return torch.cat((args.sin(), args.cos()), dim=-1)  # (B, dim)


class NoisyActionProjector(nn.Module):
    """One noisy action scalar -> one LLM embedding (each of the K*D slots holds one action dimension)."""

    def __init__(self, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(1, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, noisy_actions: torch.Tensor) -> torch.Tensor:
        # (B, K*D, 1) -> (B, K*D, H)
        return self.fc2(self.act_fn1(self.fc1(noisy_actions)))


class NoisePredictionModel(nn.Module):
    """Wrapper kept for the reference's parameter prefix ``noise_predictor.mlp_resnet``."""

    def __init__(self, input_dim: int, hidden_dim: int, action_dim: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.mlp_resnet = MLPResNet(num_blocks, input_dim, hidden_dim, action_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # (B, K, D*H) -> (B, K, D) predicted noise
        return self.mlp_resnet(features)


def make_ddim_scheduler(num_train_timesteps: int):
    """DDIM with squared-cosine betas, the reference's configuration (diffusers defaults otherwise).

    Imported lazily: diffusers costs seconds to import and only this head needs it.
    """
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    # the scheduler's tables are plain tensors, not buffers: keep them real even when the policy is built
    # under ``torch.device("meta")`` (memory-aware loading)
    with torch.device("cpu"):
        return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2")


@register_head
class DiffusionHead(ActionHead):
    """Epsilon-prediction DDIM head; ``num_inference_steps`` may be changed between calls to ``predict``."""

    name = "diffusion"
    num_extra_tokens = 1  # the timestep token, inserted after the proprio token

    def __init__(
        self,
        llm_dim: int,
        action_dim: int,
        chunk_len: int,
        hidden_dim: int | None = None,
        num_blocks: int = 2,
        num_train_timesteps: int = 50,
        num_inference_steps: int = 50,
    ) -> None:
        super().__init__(llm_dim, action_dim, chunk_len)
        self.hidden_dim = hidden_dim or llm_dim
        self.num_blocks = num_blocks
        self.noise_predictor = NoisePredictionModel(
            llm_dim * action_dim, self.hidden_dim, action_dim, num_blocks
        )
        self.noisy_action_projector = NoisyActionProjector(llm_dim)
        self.time_encoder = SinusoidalPositionalEncoding(llm_dim)
        self.noise_scheduler = make_ddim_scheduler(num_train_timesteps)
        self.num_train_timesteps = num_train_timesteps
        self.num_inference_steps = num_inference_steps

    @property
    def num_inference_steps(self) -> int:
        return self._num_inference_steps

    @num_inference_steps.setter
    def num_inference_steps(self, steps: int) -> None:
        if not isinstance(steps, int) or not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be an int in [1, {self.num_train_timesteps}] "
                f"(num_train_timesteps), got {steps!r}"
            )
        self._num_inference_steps = steps

    def config(self) -> dict:
        return {
            "hidden_dim": self.hidden_dim,
            "num_blocks": self.num_blocks,
            "num_train_timesteps": self.num_train_timesteps,
            "num_inference_steps": self.num_inference_steps,
        }

    @classmethod
    def kwargs_from_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> dict:
        sd = parts["action_head"]
        prefix = "noise_predictor.mlp_resnet."
        blocks = {k.split(".")[3] for k in sd if k.startswith(prefix + "mlp_resnet_blocks.")}
        return {"hidden_dim": int(sd[prefix + "fc1.weight"].shape[0]), "num_blocks": len(blocks)}

    @classmethod
    def matches_reference(cls, parts: dict[str, dict[str, torch.Tensor]]) -> bool:
        """The paper's ``DiffusionActionHead``: ``action_head--*`` + ``noisy_action_projector--*``."""
        return "action_head" in parts and "noisy_action_projector" in parts

    def reference_parts(self) -> dict[str, dict[str, torch.Tensor]]:
        sd, prefix = self.state_dict(), "noisy_action_projector."
        noisy = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
        return {
            "action_head": {k: v for k, v in sd.items() if not k.startswith(prefix)},
            "noisy_action_projector": noisy,
        }

    def load_reference(self, parts: dict[str, dict[str, torch.Tensor]]) -> None:
        """``action_head--*`` holds the noise predictor, ``noisy_action_projector--*`` the projector."""
        if "noisy_action_projector" not in parts:
            raise ValueError("a diffusion head needs a noisy_action_projector--*_checkpoint.pt next to it")
        state = dict(parts["action_head"])
        state.update({f"noisy_action_projector.{k}": v for k, v in parts["noisy_action_projector"].items()})
        self.load_state_dict(state)

    def predict_noise(
        self,
        vla: VLA,
        inputs: VLAInputs,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        sequence: Sequence | None = None,
    ) -> torch.Tensor:
        """One conditioned LLM forward: noisy chunk (B, K, D) at ``timesteps`` (B,) -> noise (B, K, D).

        sequence: the sequence of ``inputs`` already assembled (with a timestep token): only the slots and
        the timestep token are replaced, so the T denoising steps assemble it once.
        """
        batch = noisy.shape[0]
        dtype = self.noisy_action_projector.fc1.weight.dtype
        t_token = self.time_encoder(timesteps).to(dtype).unsqueeze(1)  # (B, 1, H)
        slots = self.noisy_action_projector(noisy.reshape(batch, -1, 1).to(dtype))  # (B, K*D, H)
        if sequence is None:
            sequence = vla.build_sequence(inputs, slot_embeds=slots, extra_tokens=t_token)
        else:
            sequence = vla.replace_tokens(sequence, slot_embeds=slots, extra_tokens=t_token)
        hidden = vla.slot_hidden_states(sequence)  # (B, K*D, H)
        return self.noise_predictor(chunk_features(hidden, self.chunk_len).to(dtype))  # (B, K, D)

    def compute_loss(
        self, vla: VLA, inputs: VLAInputs, target: torch.Tensor, is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Noise the chunk at a random timestep per sample and regress the noise (MSE), as the reference."""
        batch = target.shape[0]
        target = target.float()
        noise = torch.randn_like(target)  # (B, K, D)
        timesteps = torch.randint(0, self.num_train_timesteps, (batch,), device=target.device)
        noisy = self.noise_scheduler.add_noise(target, noise, timesteps)  # (B, K, D)
        pred = self.predict_noise(vla, inputs, noisy, timesteps).float()
        loss = masked_mse(pred, noise, is_pad)
        with torch.no_grad():
            sample_loss = per_sample_mean((pred - noise).square(), is_pad)
        return loss, {SAMPLE_LOSS: sample_loss, "diffusion_mse_loss": loss.detach()}

    @torch.no_grad()
    def predict(
        self,
        vla: VLA,
        inputs: VLAInputs,
        generator: torch.Generator | None = None,
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reverse DDIM from pure noise in ``num_inference_steps`` LLM forwards -> (B, K, D) normalized.

        initial_noise: (B, K, D) starting sample x_T (the reference's ``torch.randn`` draw); default a float32
        ``torch.randn`` from ``generator`` (the global generator when None).
        """
        batch = _batch_size(inputs)
        device = self.noisy_action_projector.fc1.weight.device
        shape = (batch, self.chunk_len, self.action_dim)
        if initial_noise is None:
            x = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)  # (B, K, D)
        elif tuple(initial_noise.shape) != shape:
            raise ValueError(f"initial_noise has shape {tuple(initial_noise.shape)}, expected {shape}")
        else:
            x = initial_noise.to(device, torch.float32)
        self.noise_scheduler.set_timesteps(self.num_inference_steps, device=device)
        # assembled once: each step swaps in its noisy slots and timestep token (zeros until then)
        sequence = vla.build_sequence(
            inputs, extra_tokens=inputs.prefix_embeds.new_zeros(batch, 1, vla.llm_dim)
        )
        for t in self.noise_scheduler.timesteps:
            eps = self.predict_noise(vla, inputs, x, t.expand(batch), sequence).float()
            x = self.noise_scheduler.step(eps, int(t), x).prev_sample  # int: its tables stay on the CPU
        return x


def masked_mse(pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over (B, K, D), excluding padded chunk steps."""
    return masked_mean((pred - target).square(), is_pad)


def _batch_size(inputs: VLAInputs) -> int:
    """Batch size of prepared inputs (the first tensor field with a batch dimension)."""
    for value in vars(inputs).values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError("cannot infer the batch size: VLAInputs holds no tensor")
