"""What ``predict_action_chunk`` lets out: finite actions, optionally clipped; prompts that fit the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.safety import PromptTooLongError
from oft.observation import Observation
from oft.spec import RobotSpec

SPEC = RobotSpec("toy", action_dim=3, proprio_dim=0, chunk_len=2, cameras=("a",))


def _policy(lo=-1.0, hi=1.0):
    d = np.ones(3)
    stats = NormStats(Stats(0 * d, d, lo * d, hi * d, lo * d, hi * d), None)
    torch.manual_seed(0)
    return build_policy(SPEC, stats, ["do it"], arch="tiny", use_proprio=False).eval()


def _obs(text="do it"):
    return Observation([np.zeros((32, 32, 3), np.uint8)], None, text)


def test_clip_keeps_actions_in_the_training_range(caplog):
    policy = _policy()
    with torch.no_grad():  # push the head's output far outside [-1, 1] (normalized) -> outside [lo, hi]
        policy.head.model.fc2.bias.fill_(5.0)
    raw = policy.predict_action_chunk(_obs())
    assert raw.max() > 1.0
    clipped = policy.predict_action_chunk(_obs(), clip=True)
    assert clipped.max() <= 1.0 and clipped.min() >= -1.0
    assert "clipped" in caplog.text


def test_prompt_longer_than_the_model_positions_is_refused():
    policy = _policy()
    words = " ".join(["do it"] * 3000)  # ~6000 tokens; the tiny model has 4096 positions
    with pytest.raises(PromptTooLongError, match="tokens"):
        policy.predict_action_chunk(_obs(words))


def test_a_short_prompt_is_tokenized_once(monkeypatch):
    """The length check tokenizes only prompts whose byte length could exceed the budget (speed)."""
    policy = _policy()
    tok = policy.vla.tokenizer
    calls = []
    real = tok.encode_prompt
    monkeypatch.setattr(tok, "encode_prompt", lambda text: calls.append(text) or real(text))
    policy.predict_action_chunk(_obs())
    assert len(calls) == 1
