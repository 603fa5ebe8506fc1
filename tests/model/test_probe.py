"""The instruction probe: a policy that ignores its instruction is told apart from one that follows it on
paired start states (known values, with a policy stand-in); the command runs on a saved checkpoint."""

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
    """What the probe uses of a Policy; ``reads`` decides whether its actions depend on the instruction."""

    def __init__(self, reads: bool) -> None:
        self.reads = reads
        self.spec = SPEC
        self.uses_proprio = False
        self.norm_stats = NormStats(_stats(D), _stats(0))

    def predict_action_chunk(self, obs: list[Observation]) -> np.ndarray:
        value = [TARGET[o.instruction] if self.reads else 0.0 for o in obs]
        return np.stack([np.full((K, D), v, np.float32) for v in value])  # (B, K, D)


def test_a_policy_that_follows_its_instruction_is_nearer_each_demonstration():
    r = probe_instructions(StandIn(reads=True), ListDataset(_paired_episodes()), episodes=4, frames=[0, 5])
    assert r.instructions == ["go left", "go right"]
    assert r.samples == 8  # 4 episodes x 2 frames
    assert r.own_error == pytest.approx(0.0)
    assert r.swap_change == pytest.approx(1.0)  # |0.5 - (-0.5)| in [-1, 1] units
    assert (r.pairs, r.followed) == (4, 4)  # 2 start states x 2 ordered instruction pairs
    assert r.demo_change == pytest.approx(1.0) and r.pair_swap_change == pytest.approx(1.0)
    lo, hi = r.followed_ci95
    assert lo == pytest.approx(0.5101, abs=1e-4) and hi == 1.0  # Wilson 95% for 4/4


def test_a_policy_that_ignores_its_instruction_changes_nothing_and_follows_nothing():
    r = probe_instructions(StandIn(reads=False), ListDataset(_paired_episodes()), episodes=4, frames=[0])
    assert r.own_error == pytest.approx(0.5)
    assert r.swap_change == 0.0 and r.swap_ratio == 0.0
    assert (r.pairs, r.followed) == (4, 0)  # equidistant from both demonstrations is not "nearer"
    assert r.demo_change == pytest.approx(1.0) and r.pair_swap_change == 0.0


def test_start_states_that_differ_are_not_paired():
    eps = _paired_episodes(starts=2)
    eps[1].images["top"] = eps[1].images["top"].copy()
    eps[1].images["top"][0, 0, 0] ^= 1  # one byte of the first frame
    r = probe_instructions(StandIn(reads=True), ListDataset(eps), episodes=4, frames=[0])
    assert r.pairs == 2  # only the second start state's two orders


def test_episodes_are_chosen_in_aligned_blocks_so_pairs_stay_together():
    data = ListDataset(_paired_episodes(starts=10))
    r = probe_instructions(StandIn(reads=True), data, episodes=6, frames=[0])
    assert r.samples == 6 and r.pairs == 6  # 3 start states, each with both of its demonstrations


def test_frames_past_an_episode_end_are_skipped_and_chunks_pad_with_the_last_action():
    data = ListDataset(_paired_episodes())
    r = probe_instructions(StandIn(reads=True), data, episodes=4, frames=[T - 1, T + 5])
    assert r.samples == 4 and list(r.per_frame) == [T - 1]
    assert r.own_error == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("episodes", "kwargs", "match"),
    [
        ([Episode({"top": np.zeros((T, 4, 4, 3), np.uint8)}, np.zeros((T, 0)), np.zeros((T, D)), "go")],
         {}, "at least two"),
        (_paired_episodes(), {"episodes": 0}, "episodes must be >= 1"),
        (_paired_episodes(), {"frames": [-1]}, "frames must be"),
    ],
)  # fmt: skip
def test_bad_input_is_named(episodes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        probe_instructions(StandIn(reads=True), ListDataset(episodes), **kwargs)


def test_a_dataset_without_the_policys_camera_is_refused():
    eps = [
        Episode({"side": e.images["top"]}, e.proprio, e.actions, e.instruction) for e in _paired_episodes(1)
    ]
    with pytest.raises(ValueError, match=r"cameras \['side'\].*\['top'\] missing"):
        probe_instructions(StandIn(reads=True), ListDataset(eps), episodes=4)


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
    assert saved["samples"] == 8 and saved["pairs"] == 4  # PNG frames decode to the bytes written
    assert saved["swap_change"] > 0.0  # a random tiny model's tokens reach its actions
    assert "paired start states" in capsys.readouterr().out
    assert main([*args, "--frames", "0,x"]) == 2
    assert "--frames '0,x'" in capsys.readouterr().err
