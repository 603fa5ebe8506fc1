"""The paper's "bench" architecture, rebuilt with random weights (its weights are not public).

OpenVLA-OFT's fused DINOv2-reg4 + SigLIP vision backbone at 224 px, both ViTs shrunk with
``timm_override_kwargs`` (embed_dim 192, depth 6, 3 heads), as the shared fixture's ``config.json`` does with
smaller numbers; a 4-layer Llama (hidden 256, intermediate 688, 4 heads, vocab 32064); K=8, D=7, proprio 8,
two images; a 28-token prompt, so the LLM sees 1 + 2*256 + 1 + 28 + 56 + 1 = 599 positions.
"""

from __future__ import annotations

import numpy as np

from oft.data.normalize import NormStats, Stats
from oft.model.assemble import assemble_policy
from oft.model.loading import vla_config_from_openvla
from oft.model.policy import Policy, PolicyConfig
from oft.model.tokenizer import build_word_tokenizer
from oft.spec import get_spec

BENCH_CONFIG = {
    "model_type": "openvla",
    "use_fused_vision_backbone": True,
    "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
    "timm_override_kwargs": [{"embed_dim": 192, "depth": 6, "num_heads": 3}] * 2,
    "image_sizes": [224, 224],
    "text_config": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688,
                    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
                    "pad_token_id": 32000, "vocab_size": 32064},
}  # fmt: skip
BENCH_POSITIONS = 599
PROMPT_TOKENS = 28  # after BOS


def bench_instruction(n_words: int) -> str:
    return " ".join(f"w{i}" for i in range(n_words))


def _tokenizer():
    return build_word_tokenizer([bench_instruction(64)])


def bench_prompt() -> str:
    """An instruction whose prompt is :data:`PROMPT_TOKENS` tokens after BOS under the bench tokenizer."""
    tokenizer = _tokenizer()
    for k in range(1, 64):
        if len(tokenizer.encode_prompt(bench_instruction(k))) - 1 == PROMPT_TOKENS:
            return bench_instruction(k)
    raise RuntimeError(f"no instruction gives a {PROMPT_TOKENS}-token prompt with the word tokenizer")


def bench_policy(head: str = "l1") -> tuple[Policy, str]:
    """(policy, instruction): the bench architecture with random weights, and the 28-token instruction."""
    spec = get_spec("libero")  # K=8, D=7, proprio 8, two cameras
    vla = vla_config_from_openvla(BENCH_CONFIG, spec.chunk_len, spec.action_dim, spec.proprio_dim, False)
    z, o = np.zeros(spec.action_dim), np.ones(spec.action_dim)
    zp, op = np.zeros(spec.proprio_dim), np.ones(spec.proprio_dim)
    stats = NormStats(Stats(z, o, -o, o, -o, o), Stats(zp, op, -op, op, -op, op))
    config = PolicyConfig(vla, spec, head, source="bench architecture (random weights)")
    return assemble_policy(config, _tokenizer(), stats).eval(), bench_prompt()


__all__ = ["BENCH_CONFIG", "BENCH_POSITIONS", "bench_policy", "bench_prompt"]
