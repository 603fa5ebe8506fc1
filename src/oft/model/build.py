"""Named small architectures of the OpenVLA-OFT shape, built from scratch.

The quickstart model: 64 px images, patch 8, ViT width 128, a 3-layer Llama over
[patches, proprio, prompt, K·D action slots], L1 head. It trains on 2 CPU cores at ~100 samples/s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from oft.data.normalize import NormStats
from oft.model.assemble import assemble_policy
from oft.model.lora import LoraSpec
from oft.model.policy import Policy, PolicyConfig
from oft.model.tokenizer import build_word_tokenizer
from oft.model.vision import HALF, ViTConfig
from oft.model.vla import VLAConfig
from oft.spec import RobotSpec, unknown_name_message

log = logging.getLogger(__name__)

# name -> vision config kwargs, llama kwargs, head kwargs. One ViT (no fusion) with a class token.
ARCHITECTURES: dict[str, dict] = {
    "tiny": {
        "vit": dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
        "llm": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        "head": dict(hidden_dim=32),
    },
    "small": {
        "vit": dict(img_size=64, patch_size=8, embed_dim=128, depth=3, num_heads=4, mlp_ratio=2.0),
        "llm": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
        "head": dict(hidden_dim=128),
    },
    # "small" at twice the resolution with patches twice as wide: the same 64 tokens per camera (the same
    # sequence, nearly the same cost) over 4x the pixels -- for targets of a pixel or two at 64 px
    # (MetaWorld's goal spheres and pucks, ALOHA's cubes seen from the top camera)
    "small-128": {
        "vit": dict(img_size=128, patch_size=16, embed_dim=128, depth=3, num_heads=4, mlp_ratio=2.0),
        "llm": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
        "head": dict(hidden_dim=128),
    },
    # "small-128" with a convolutional stem (oft.model.vision.ConvStem) for the linear patch projection: the
    # same 64 tokens per camera, for targets of a few pixels that attention must find (ALOHA's cube)
    "small-128-conv": {
        "vit": dict(
            img_size=128, patch_size=16, embed_dim=128, depth=3, num_heads=4, mlp_ratio=2.0, stem="conv"
        ),
        "llm": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
        "head": dict(hidden_dim=128),
    },
    # "small" with a spatial-softmax token per camera (oft.model.vision.SpatialSoftmax, robomimic's 32
    # keypoints): expected patch coordinates, a readout made for positions, beside the 64 patch tokens
    "small-keypoints": {
        "vit": dict(
            img_size=64, patch_size=8, embed_dim=128, depth=3, num_heads=4, mlp_ratio=2.0, keypoints=32
        ),
        "llm": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4),
        "head": dict(hidden_dim=128),
    },
    # "small" twice as wide (ViT and Llama width 256, head dim 64; about 3.6x the parameters) at the same
    # 64 px, 64 tokens per camera and depth: capacity alone, for tasks that lose precision when they share
    # the model with others (MetaWorld's random-target tasks inside MT10)
    "small-wide": {
        "vit": dict(img_size=64, patch_size=8, embed_dim=256, depth=3, num_heads=4, mlp_ratio=2.0),
        "llm": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4),
        "head": dict(hidden_dim=256),
    },
    "base": {
        "vit": dict(img_size=128, patch_size=16, embed_dim=256, depth=4, num_heads=4, mlp_ratio=4.0),
        "llm": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4),
        "head": dict(hidden_dim=256),
    },
}


def input_size(arch: str) -> int:
    """The square image side (pixels) architecture ``arch`` takes: simulators render demos at it."""
    if arch not in ARCHITECTURES:
        raise KeyError(unknown_name_message("architecture", arch, ARCHITECTURES))
    return int(ARCHITECTURES[arch]["vit"]["img_size"])


def film_instructions(film_input: str, instructions: Iterable[str]) -> list[str] | None:
    """The instructions a ``film_input`` of "mean_centered" centers on (sorted, each once); None otherwise."""
    return sorted(set(instructions)) if film_input == "mean_centered" else None


def build_policy(
    spec: RobotSpec,
    norm_stats: NormStats,
    instructions: Iterable[str],
    arch: str = "small",
    head: str = "l1",
    use_proprio: bool = True,
    use_film: bool = False,
    lora: LoraSpec | None = None,
    center_crop: bool = False,
    head_kwargs: dict | None = None,
    action_slots: str = "per_dimension",
    film_input: str = "mean",
) -> Policy:
    """A randomly initialized policy of architecture ``arch`` (:data:`ARCHITECTURES`) for ``spec``.

    spec: robot sizes (K, D, proprio dim, cameras) — the policy takes ``spec.num_cameras`` images.
    norm_stats: action (and proprio) statistics of the training data; stored inside the policy.
    instructions: task texts used to build the word-level tokenizer (unseen words map to <unk>).
    head: registered action head name ("l1", "diffusion", "discrete"); head_kwargs override its defaults.
    use_proprio: add the proprio token (needs ``spec.proprio_dim > 0`` and proprio stats).
    use_film: FiLM in every ViT block (identity at init).
    lora: apply LoRA adapters to the trunk (rarely useful from scratch; for tests and experiments).
    center_crop: evaluate on a 90%-area center crop (pair with random-crop training augmentation).
    action_slots: "per_dimension" (OpenVLA-OFT: K*D empty action slots) or "per_step" (K slots, each read into
        D actions by the head; L1 head only).
    film_input: what FiLM reads (:data:`oft.model.vla.FILM_INPUTS`): "mean" (the paper's mean prompt
        embedding), "mean_rms" (that mean at unit RMS) or "mean_centered" (centered on ``instructions``'
        means, then at unit RMS).
    """
    if arch not in ARCHITECTURES:
        raise KeyError(unknown_name_message("architecture", arch, ARCHITECTURES))
    a = ARCHITECTURES[arch]
    instructions = list(instructions)
    tokenizer = build_word_tokenizer(instructions)
    proprio_dim = spec.proprio_dim if use_proprio else 0
    if proprio_dim and norm_stats.proprio is None:
        raise ValueError("use_proprio=True but norm_stats has no proprio statistics")
    heads_per_llm = a["llm"]["num_attention_heads"]
    llm = dict(a["llm"], num_key_value_heads=heads_per_llm, vocab_size=tokenizer.vocab_size,
               max_position_embeddings=4096, pad_token_id=tokenizer.pad_id)  # fmt: skip
    vit = ViTConfig(**a["vit"], class_token=True, mean=HALF, std=HALF)
    vla_cfg = VLAConfig([vit], llm, spec.chunk_len, spec.action_dim, proprio_dim, use_film=use_film,
                        action_slots=action_slots, film_input=film_input,
                        film_instructions=film_instructions(film_input, instructions))  # fmt: skip
    kwargs = dict(a["head"]) if head == "l1" else {}
    kwargs.update(head_kwargs or {})
    lora_meta = None
    if lora is not None:
        lora_meta = {"rank": lora.rank, "alpha": lora.alpha, "dropout": lora.dropout}
    config = PolicyConfig(vla_cfg, spec, head, kwargs, center_crop=center_crop, lora=lora_meta)
    policy = assemble_policy(config, tokenizer, norm_stats)
    config.head_kwargs = policy.head.config()
    n = sum(p.numel() for p in policy.parameters())
    log.info("built %s policy (%s head): %.2fM parameters", arch, head, n / 1e6)
    return policy
