"""``evaluate_instructions`` / ``oft eval --instruction``: every start state once per instruction, each row
judged by what it asks; envs that take no instruction refused before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oft.cli import main
from oft.sim.evaluate import check_takes_instruction, evaluate_instructions

try:
    from oft.sim import aloha
except ImportError as e:  # the aloha extra (gym-aloha, dm-control) is optional
    aloha = None
    _REASON = f"ALOHA sim not installed ({e.name}): pip install gym-aloha==0.1.5 dm-control==1.0.28"

needs_aloha = pytest.mark.skipif(aloha is None, reason=_REASON if aloha is None else "")
RED, BLUE = "transfer the red cube", "transfer the blue cube"


class AlwaysRed:
    """A policy that ignores its instruction: it replays the expert's trajectory to the red cube."""

    needs_images = False

    def __init__(self, env):
        self.env, self.traj, self.t = env, None, 0

    def reset(self):
        self.traj, self.t = None, 0

    def predict_action_chunk(self, obs):
        if self.traj is None:  # the layout is known once the episode has been reset
            self.traj = aloha.record_expert_trajectory("two-cube", self.env._object_pose, target="red")
        self.t += 1
        return self.traj[min(self.t - 1, len(self.traj) - 1)][None]


@needs_aloha
def test_a_policy_that_ignores_its_instruction_passes_one_row_only(tmp_path):
    res = evaluate_instructions(
        AlwaysRed, "aloha", "two-cube", [RED, BLUE], episodes=2, out=tmp_path, env_kwargs={"cameras": ()}
    )
    red, blue = res["tasks"][f"two-cube: {RED}"], res["tasks"][f"two-cube: {BLUE}"]
    assert (red["successes"], blue["successes"]) == (2, 0)
    assert red["seeds"] == blue["seeds"]  # the same start states under both instructions
    overall = {k: res["overall"][k] for k in ("success_rate", "successes", "episodes", "followed")}
    assert overall == {"success_rate": 0.5, "successes": 2, "episodes": 4, "followed": 2}
    assert res["instructions"] == [RED, BLUE]
    # which cube it moved, episode by episode: the red one under both instructions
    assert [e["outcome"]["moved"] for e in red["episode_results"] + blue["episode_results"]] == ["red"] * 4
    assert (red["followed"], blue["followed"], res["overall"]["followed"]) == (2, 0, 2)
    assert blue["episode_results"][0]["outcome"]["max_stages"] == {"red": 4, "blue": 0}
    assert res["same_object"] == {"two-cube": {"start_states": 2, "same": 2}}  # red whatever it was told
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert list(on_disk["tasks"]) == [f"two-cube: {RED}", f"two-cube: {BLUE}"]
    assert (tmp_path / "success.png").stat().st_size > 0
    for slug in ("transfer-the-red-cube", "transfer-the-blue-cube"):  # each row's own oft eval directory
        row = json.loads((tmp_path / "instructions" / f"two-cube__{slug}" / "results.json").read_text())
        assert row["tasks"]["two-cube"]["seeds"] == red["seeds"]


@needs_aloha
def test_cli_eval_instruction_runs_the_expert_under_each(tmp_path, capsys):
    rc = main([
        "eval", "--env", "aloha", "--tasks", "two-cube", "--expert", "--episodes", "1", "--workers", "1",
        "--video-episodes", "0", "--out", str(tmp_path), "--instruction", RED, "--instruction", BLUE,
    ])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"two-cube: {RED}" in printed and f"two-cube: {BLUE}" in printed
    res = json.loads((tmp_path / "results.json").read_text())
    successes = {t: (r["successes"], r["followed"]) for t, r in res["tasks"].items()}
    assert successes == {f"two-cube: {RED}": (1, 1), f"two-cube: {BLUE}": (1, 1)}
    assert "followed (what the instruction names)" in printed
    assert res["tasks"][f"two-cube: {RED}"]["stages"] == {
        "touched": 1, "lifted": 1, "attempted transfer": 1, "transferred": 1}  # fmt: skip
    assert f"two-cube: {BLUE}: episodes reaching each stage: touched 1/1, lifted 1/1," in printed
    assert res["same_object"] == {"two-cube": {"start_states": 1, "same": 0}}  # the expert: red, then blue
    assert "1 start states with an object moved under every instruction, 0 of them the same one" in printed


class SaysWhatItSees:
    """Records the instruction of every observation; zero actions."""

    def __init__(self):
        from oft.spec import get_spec

        self.spec, self.seen = get_spec("metaworld").replace(cameras=("corner",)), []

    def reset(self):
        pass

    def predict_action_chunk(self, obs):
        self.seen.append(obs.instruction)
        return np.zeros((4, 4), np.float32)


def test_metaworld_observations_carry_each_instruction():
    pytest.importorskip("metaworld")
    policy = SaysWhatItSees()
    res = evaluate_instructions(
        policy, "metaworld", ["drawer-open-v3"], ["open it", ""], episodes=1, max_steps=4,
        env_kwargs={"image_size": 32},
    )  # fmt: skip
    assert list(res["tasks"]) == ["drawer-open-v3: open it", "drawer-open-v3: "]
    assert policy.seen == ["open it"] * 1 + [""] * 1


def test_instructions_are_checked_before_anything_runs(monkeypatch, tmp_path, capsys):
    from oft.sim import base

    def no_language_env(task, cameras=(), image_size=64):  # like LIBERO: its tasks carry their language
        raise AssertionError("must not be built")

    base._import_adapters()
    monkeypatch.setitem(base.ENVS, "nolang", no_language_env)
    monkeypatch.setitem(base.SUITE_TASKS, "nolang", lambda: ["t"])
    with pytest.raises(ValueError, match=r"env 'nolang' takes no instruction.*metaworld"):
        check_takes_instruction("nolang")
    with pytest.raises(ValueError, match="expected one or more"):
        evaluate_instructions(SaysWhatItSees(), "metaworld", "drawer-open-v3", [], episodes=1)
    with pytest.raises(ValueError, match="share a folder name"):  # one run would overwrite the other's
        evaluate_instructions(SaysWhatItSees(), "metaworld", "drawer-open-v3", ["Open it", "open it!"],
                              episodes=1, out=tmp_path / "o")  # fmt: skip
    with pytest.raises(ValueError, match=r"\['a'\] given more than once"):
        evaluate_instructions(SaysWhatItSees(), "metaworld", "drawer-open-v3", ["a", "b", "a"], episodes=1)
    # the CLI refuses before loading the (here missing) checkpoint
    rc = main([
        "eval", "--env", "nolang", "--tasks", "t", "--checkpoint", str(tmp_path / "none"), "--out",
        str(tmp_path / "o"), "--instruction", "x",
    ])  # fmt: skip
    assert rc == 2
    assert "env 'nolang' takes no instruction" in capsys.readouterr().err


@needs_aloha
def test_two_cube_outcome_names_the_cube_moved_furthest():
    out = aloha.two_cube_outcome("blue", {"red": 1, "blue": 2})
    assert out == {"target": "blue", "max_stages": {"red": 1, "blue": 2}, "moved": "blue", "followed": True}
    assert aloha.two_cube_outcome("red", {"red": 1, "blue": 2})["followed"] is False
    assert aloha.two_cube_outcome("red", {"red": 0, "blue": 0})["moved"] is None  # neither touched
    assert aloha.two_cube_outcome("red", {"red": 2, "blue": 2})["moved"] is None  # a tie names no cube


def test_tasks_without_an_outcome_count_nothing_followed():
    pytest.importorskip("metaworld")
    policy = SaysWhatItSees()
    res = evaluate_instructions(policy, "metaworld", "drawer-open-v3", ["a"], episodes=1, max_steps=2,
                                env_kwargs={"image_size": 32})  # fmt: skip
    assert "followed" not in res["tasks"]["drawer-open-v3: a"] and "followed" not in res["overall"]
    assert "outcome" not in res["tasks"]["drawer-open-v3: a"]["episode_results"][0]
    assert "same_object" not in res
