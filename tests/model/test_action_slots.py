"""Issue 11: one empty action slot per chunk step (K slots) as an option beside the paper's K*D layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.heads import get_head_class, head_names
from oft.observation import Observation
from oft.spec import RobotSpec
from oft.train.config import TrainConfig

K, D, P = 5, 3, 2
SPEC = RobotSpec("toy", action_dim=D, proprio_dim=P, chunk_len=K, cameras=("a",))


def _stats(dim: int) -> Stats:
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def _policy(action_slots: str, head: str = "l1"):
    torch.manual_seed(0)
    stats = NormStats(_stats(D), _stats(P))
    return build_policy(SPEC, stats, ["do it"], arch="tiny", head=head, action_slots=action_slots).eval()


def _obs() -> Observation:
    rng = np.random.default_rng(0)
    return Observation([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)], np.zeros(P), "do it")


def _sequence_length(policy) -> int:
    with torch.no_grad():
        images = torch.from_numpy(np.stack(_obs().images))[None]
        inputs = policy.prepare(images, torch.zeros(1, P), ["do it"])
        return int(policy.vla.build_sequence(inputs).embeds.shape[1])


def test_per_step_has_one_slot_per_chunk_step_and_a_head_reading_one_state_each():
    paper, per_step = _policy("per_dimension"), _policy("per_step")
    assert (paper.vla.num_action_slots, per_step.vla.num_action_slots) == (K * D, K)
    assert _sequence_length(paper) - _sequence_length(per_step) == K * D - K
    H = per_step.vla.llm_dim
    assert per_step.head.model.fc1.in_features == H and paper.head.model.fc1.in_features == D * H
    assert per_step.predict_action_chunk(_obs()).shape == (K, D)


def test_per_step_trains_and_round_trips_through_a_checkpoint(tmp_path):
    policy = _policy("per_step").train()
    images = torch.randint(0, 256, (2, 1, 32, 32, 3), dtype=torch.uint8)
    loss, _ = policy.forward_normalized(images, torch.zeros(2, P), ["do it"] * 2, torch.rand(2, K, D) * 2 - 1)
    loss.backward()
    grads = [p.grad for p in policy.head.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    policy.eval().save(tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert loaded.vla.config.action_slots == "per_step" and loaded.vla.num_action_slots == K
    np.testing.assert_array_equal(policy.predict_action_chunk(_obs()), loaded.predict_action_chunk(_obs()))


def test_a_checkpoint_without_the_field_loads_with_the_papers_layout(tmp_path):
    """Checkpoints written before the option existed record no ``action_slots``: they are K*D."""
    import json

    path = _policy("per_dimension").save(tmp_path / "p")
    meta = json.loads((path / "oft_config.json").read_text())
    del meta["vla"]["action_slots"]
    (path / "oft_config.json").write_text(json.dumps(meta))
    loaded = load_policy(path, verify=False)  # edited after saving: its checksums no longer match
    assert loaded.vla.config.action_slots == "per_dimension" and loaded.vla.num_action_slots == K * D


PER_DIMENSION_ONLY = [h for h in head_names() if "per_step" not in get_head_class(h).action_slot_layouts]


@pytest.mark.parametrize("head", PER_DIMENSION_ONLY)
def test_heads_that_read_one_slot_per_dimension_refuse_per_step(head):
    with pytest.raises(ValueError, match=r"action_slots='per_step'.*\['l1'\]"):
        _policy("per_step", head=head)


def test_an_unknown_layout_names_the_choices():
    policy = _policy("per_dimension")
    config = dataclasses.replace(policy.vla.config, action_slots="per_token")
    from oft.model.vla import VLA

    with pytest.raises(ValueError, match=r"'per_token'.*per_dimension.*per_step"):
        VLA(config, policy.vla.tokenizer)


def test_train_config_checks_the_layout_against_the_head():
    TrainConfig(action_slots="per_step").validate(check_paths=False)
    with pytest.raises(ValueError, match=r"action_slots='per_step' needs head 'l1'; head 'discrete' takes "):
        TrainConfig(head="discrete", action_slots="per_step").validate(check_paths=False)
    with pytest.raises(ValueError, match=r"unknown action slot layout 'per_token'; known: per_dim"):
        TrainConfig(action_slots="per_token").validate(check_paths=False)
    with pytest.raises(ValueError, match=r"decode='autoregressive' needs head 'discrete'; head 'l1' takes "):
        TrainConfig(decode="autoregressive").validate(check_paths=False)


def test_oft_info_shows_the_slot_layout_and_a_readable_size(tmp_path, capsys):
    from oft.cli import main

    _policy("per_step").save(tmp_path / "p")
    assert main(["info", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert f"action slots: {K} (per_step)" in out
    assert "0.000 B" not in out and "K)," in out  # a tiny model's size in thousands, not "0.000 B"
