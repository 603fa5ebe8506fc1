"""One function assembles every policy; continuous heads carry no LM head (failed on main 4f85ac9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.heads import get_head_class, head_names
from oft.observation import Observation
from oft.spec import RobotSpec

SPEC = RobotSpec("toy", action_dim=3, proprio_dim=2, chunk_len=2, cameras=("a",))


def _stats(dim: int) -> Stats:
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def _policy(head: str):
    torch.manual_seed(0)
    return build_policy(SPEC, NormStats(_stats(3), _stats(2)), ["do it"], arch="tiny", head=head).eval()


def _predict(policy) -> np.ndarray:
    torch.manual_seed(0)  # the diffusion head's initial noise
    return policy.predict_action_chunk(_obs())


def _obs() -> Observation:
    rng = np.random.default_rng(0)
    return Observation([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)], np.zeros(2), "do it")


@pytest.mark.parametrize("head", head_names())
def test_lm_head_only_where_logits_are_read(head, tmp_path):
    policy = _policy(head)
    wants = get_head_class(head).uses_lm_head
    names = [n for n, _ in policy.named_parameters() if "lm_head" in n]
    assert bool(names) == wants and policy.config.vla.lm_head == wants
    policy.save(tmp_path / "p")
    saved = load_file(str(tmp_path / "p" / "model.safetensors"))
    assert any("lm_head" in k for k in saved) == wants
    loaded = load_policy(tmp_path / "p")
    np.testing.assert_array_equal(_predict(policy), _predict(loaded))


def test_old_checkpoint_with_an_unused_lm_head_still_loads(tmp_path):
    """oft 0.1 saved L1 policies with their (never read) LM head: it is skipped on load."""
    policy = _policy("l1")
    path = policy.save(tmp_path / "p")
    tensors = load_file(str(path / "model.safetensors"))
    vocab, hidden = policy.vla.language_model.model.embed_tokens.weight.shape
    tensors["vla.language_model.lm_head.weight"] = torch.randn(vocab, hidden)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "oft-policy"})
    loaded = load_policy(path, verify=False)  # edited after saving: its recorded checksums no longer match
    assert loaded.vla.language_model.lm_head is None
    np.testing.assert_array_equal(_predict(policy), _predict(loaded))


def test_a_continuous_head_asking_for_logits_gets_a_clear_error():
    policy = _policy("l1")
    with pytest.raises(ValueError, match="without an LM head"):
        policy.vla.lm_logits(torch.zeros(1, 1, policy.vla.llm_dim))
