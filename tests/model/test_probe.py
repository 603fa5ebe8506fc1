"""The instruction probe: a policy that ignores its instruction is told apart from one that follows it on
shared start states (known values, with a policy stand-in); the command runs on a saved checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oft.cli import main
from oft.data.dataset import ListDataset
from oft.data.episode import Episode
from oft.data.normalize import NormStats, Stats
from oft.model.probe import probe_instructions
from oft.observation import Observation
from oft.spec import RobotSpec

K, D, T = 4, 2, 12
SPEC = RobotSpec("toy", action_dim=D, proprio_dim=0, chunk_len=K, cameras=("top",), normalization="bounds")
# instruction -> the constant action its demonstrations take
TARGET = {"go left": -0.5, "go right": 0.5}


def _stats(dim: int) -> Stats:
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def _paired_episodes(starts: int = 2, size: int = 8) -> list[Episode]:
    """Each start state (its own random frames) demonstrated under both instructions, stored together."""
    eps = []
    for s in range(starts):
        frames = np.random.default_rng(s).integers(0, 256, (T, size, size, 3), dtype=np.uint8)
        for text, a in TARGET.items():
            actions = np.full((T, D), a, np.float32)
            eps.append(Episode({"top": frames.copy()}, np.zeros((T, 0)), actions, text))
    return eps


class StandIn:
    """What the probe uses of a Policy. ``mode``: "reads" (its instruction's action), "swapped" (the other
    instruction's), or a number: that action whatever it is told (ignores the instruction)."""

    def __init__(self, mode="reads") -> None:
        self.mode = mode
        self.spec = SPEC
        self.uses_proprio = False
        self.norm_stats = NormStats(_stats(D), _stats(0))

    def _value(self, text: str) -> float:
        if self.mode == "reads":
            return TARGET[text]
        if self.mode == "swapped":
            return -TARGET[text]
        return float(self.mode)

    def predict_action_chunk(self, obs: list[Observation]) -> np.ndarray:
        return np.stack([np.full((K, D), self._value(o.instruction), np.float32) for o in obs])  # (B, K, D)


def test_a_policy_that_follows_its_instruction_reproduces_the_demonstrations_difference():
    r = probe_instructions(StandIn("reads"), ListDataset(_paired_episodes()), episodes=4, frames=[0, 5])
    assert r.instructions == ["go left", "go right"]
    assert (r.episodes, r.samples) == (4, 8)  # 4 episodes x 2 frames
    assert r.own_error == pytest.approx(0.0)
    assert r.swap_change == pytest.approx(1.0)  # |0.5 - (-0.5)| in [-1, 1] units
    assert (r.start_states, r.followed) == (2, 2)
    assert r.alignment == pytest.approx(1.0)
    assert r.demo_change == pytest.approx(1.0) and r.start_swap_change == pytest.approx(1.0)
    lo, hi = r.followed_ci95
    assert lo == pytest.approx(0.3424, abs=1e-4) and hi == 1.0  # Wilson 95% for 2/2


@pytest.mark.parametrize("value", [0.0, -0.2, 0.45])
def test_a_policy_that_ignores_its_instruction_follows_no_start_state(value):
    """Wherever its one prediction lies, it is nearest one demonstration: the other instruction is not
    followed, so no start state is (counting ordered pairs would give exactly half, by construction)."""
    r = probe_instructions(StandIn(value), ListDataset(_paired_episodes()), episodes=4, frames=[0])
    assert r.swap_change == 0.0 and r.swap_ratio == 0.0
    assert (r.start_states, r.followed) == (2, 0)
    assert r.alignment == 0.0 and r.start_swap_change == 0.0
    assert r.demo_change == pytest.approx(1.0)


def test_a_policy_that_swaps_instructions_has_negative_alignment():
    r = probe_instructions(StandIn("swapped"), ListDataset(_paired_episodes()), episodes=4, frames=[0])
    assert r.alignment == pytest.approx(-1.0) and r.followed == 0
    assert r.swap_change == pytest.approx(1.0)  # as large a change as the follower's: only pairs tell


def test_start_states_are_found_by_their_first_frame_wherever_they_are_stored():
    """One collect run per instruction stores all "go left" episodes first: still paired."""
    eps = _paired_episodes(starts=6)
    by_instruction = eps[0::2] + eps[1::2]
    r = probe_instructions(StandIn("reads"), ListDataset(by_instruction), episodes=4, frames=[0])
    assert (r.episodes, r.start_states, r.followed) == (4, 2, 2)


def test_start_states_that_differ_in_one_byte_are_not_shared():
    eps = _paired_episodes(starts=2)
    eps[1].images["top"] = eps[1].images["top"].copy()
    eps[1].images["top"][0, 0, 0, 0] ^= 1
    r = probe_instructions(StandIn("reads"), ListDataset(eps), episodes=4, frames=[0])
    assert r.start_states == 1


def test_whole_start_states_are_probed_spread_over_the_dataset():
    r = probe_instructions(StandIn("reads"), ListDataset(_paired_episodes(starts=10)), episodes=6, frames=[0])
    assert (r.episodes, r.start_states) == (6, 3)


def test_own_error_counts_only_the_steps_the_demonstration_has():
    """At frame T-2 the chunk has 2 real steps; padding with the last action would weigh it 3 times."""
    eps = _paired_episodes()
    for ep in eps:
        ep.actions[-1] += 0.3
    r = probe_instructions(StandIn("reads"), ListDataset(eps), episodes=4, frames=[T - 2, T + 5])
    assert r.samples == 4 and list(r.per_frame) == [T - 2]
    assert r.own_error == pytest.approx(0.15)  # mean of 0 and 0.3, not (0 + 3 * 0.3) / 4


@pytest.mark.parametrize(
    ("episodes", "kwargs", "match"),
    [
        ([Episode({"top": np.zeros((T, 4, 4, 3), np.uint8)}, np.zeros((T, 0)), np.zeros((T, D)), "go")],
         {}, "at least two"),
        (_paired_episodes(), {"episodes": 0}, "episodes must be >= 1"),
        (_paired_episodes(), {"frames": [-1]}, "frames must be"),
        (_paired_episodes(), {"frames": [T, 100]}, r"ends before frame 12 \(they have 12 to 12"),
        ([Episode({"top": e.images["top"]}, e.proprio, np.zeros((T, D + 1)), e.instruction)
          for e in _paired_episodes(1)], {}, "3-D actions; the policy predicts 2-D"),
        ([Episode({"side": e.images["top"]}, e.proprio, e.actions, e.instruction)
          for e in _paired_episodes(1)], {}, r"cameras \['side'\].*\['top'\] missing"),
    ],
)  # fmt: skip
def test_bad_input_is_named(episodes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        probe_instructions(StandIn("reads"), ListDataset(episodes), **kwargs)


def test_the_command_probes_a_saved_checkpoint_and_writes_json(tmp_path, capsys):
    from oft.data.lerobot import LeRobotWriter
    from oft.model import build_policy

    torch.manual_seed(0)
    policy = build_policy(SPEC, NormStats(_stats(D), _stats(0)), list(TARGET), arch="tiny", use_film=True)
    ckpt = policy.save(tmp_path / "p")
    writer = LeRobotWriter(tmp_path / "d", fps=10, cameras=("top",), image_shape=(8, 8), action_dim=D,
                           proprio_dim=0, video=False)  # fmt: skip
    for ep in _paired_episodes():
        writer.add_episode(ep)
    writer.finalize()
    out = tmp_path / "probe.json"
    args = ["probe-instructions", "--checkpoint", str(ckpt), "--dataset", str(tmp_path / "d")]
    assert main([*args, "--frames", "0,3", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["samples"] == 8 and saved["start_states"] == 2  # PNG frames decode to the bytes written
    assert saved["checkpoint"] == str(ckpt)  # what was probed
    assert saved["swap_change"] > 0.0  # a random tiny model's tokens reach its actions
    assert "alignment" in capsys.readouterr().out
    assert main([*args, "--frames", "0,x"]) == 2
    assert "--frames '0,x'" in capsys.readouterr().err


def test_the_command_refuses_a_one_instruction_dataset_before_loading_the_checkpoint(tmp_path, capsys):
    from oft.data.lerobot import LeRobotWriter

    writer = LeRobotWriter(tmp_path / "d", fps=10, cameras=("top",), image_shape=(8, 8), action_dim=D,
                           proprio_dim=0, video=False)  # fmt: skip
    writer.add_episode(_paired_episodes(1)[0])
    writer.finalize()
    missing = tmp_path / "no-checkpoint-here"
    assert main(["probe-instructions", "--checkpoint", str(missing), "--dataset", str(tmp_path / "d")]) == 2
    assert "at least two" in capsys.readouterr().err
