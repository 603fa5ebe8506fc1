"""``oft eval`` flags that another flag or the policy would silently override: refused, or recorded as run."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("metaworld")

from oft.cli import main
from oft.sim.evaluate import evaluate
from oft.sim.rollout import ExpertPolicy


class EightStepPolicy:
    """A stand-in learned policy with the metaworld spec: chunks of 8 zero actions."""

    def __init__(self):
        from oft.spec import get_spec

        self.spec = get_spec("metaworld")

    def reset(self):
        pass

    def predict_action_chunk(self, obs):
        return np.zeros((self.spec.chunk_len, self.spec.action_dim), np.float32)


def _no_episode(monkeypatch):
    """Any episode (its env) fails the test: what is refused is refused before one runs."""

    def no_env(*args, **kwargs):
        raise AssertionError("an episode started")

    monkeypatch.setattr("oft.sim.evaluate.make_env", no_env)


@pytest.mark.parametrize(
    "flags",
    [["--unnorm-key", "k"], ["--dtype", "bfloat16"], ["--center-crop"], ["--no-center-crop"],
     ["--device", "cuda"], ["--batch-policy"]],
)  # fmt: skip
def test_expert_refuses_the_options_of_a_loaded_policy(flags, tmp_path, capsys, monkeypatch):
    """--expert loads no policy: a loading option (or --batch-policy) beside it used to be ignored."""
    _no_episode(monkeypatch)
    argv = ["eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert", "--episodes", "1",
            "--workers", "1", "--out", str(tmp_path / "e"), *flags]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]}: options of a loaded policy (--checkpoint); --expert loads none" in err
    assert not (tmp_path / "e").exists()


def test_expert_names_every_ignored_option_at_once(tmp_path, capsys, monkeypatch):
    _no_episode(monkeypatch)
    argv = ["eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert", "--out", str(tmp_path),
            "--dtype", "float32", "--unnorm-key", "k", "--batch-policy"]  # fmt: skip
    assert main(argv) == 2
    assert "--dtype, --unnorm-key, --batch-policy: options of a loaded policy" in capsys.readouterr().err


def test_open_loop_longer_than_the_chunk_is_refused_before_any_episode(monkeypatch):
    """A horizon past the chunk ran the whole chunk while results.json recorded the horizon asked for."""
    _no_episode(monkeypatch)
    with pytest.raises(ValueError, match=r"open_loop_steps 50 is more .* chunk length 8"):
        evaluate(EightStepPolicy(), "metaworld", ["reach-v3"], episodes=1, open_loop_steps=50)
    with pytest.raises(ValueError, match=r"open_loop_steps 2 is more .* chunk length 1"):
        evaluate(ExpertPolicy, "metaworld", ["reach-v3"], episodes=1, open_loop_steps=2)
    with pytest.raises(AssertionError, match="an episode started"):  # the whole chunk is allowed
        evaluate(EightStepPolicy(), "metaworld", ["reach-v3"], episodes=1, open_loop_steps=8)


def test_cli_expert_with_a_longer_open_loop_is_refused(tmp_path, capsys, monkeypatch):
    _no_episode(monkeypatch)
    argv = ["eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert", "--episodes", "1",
            "--workers", "1", "--open-loop-steps", "4", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "open_loop_steps 4 is more than the policy's action chunk length 1" in capsys.readouterr().err


def test_batch_with_one_worker_is_recorded_as_not_batched(caplog):
    """One worker steps the episodes in this process, one prediction per observation: results said batch."""
    with caplog.at_level(logging.WARNING, logger="oft.sim.evaluate"):
        res = evaluate(EightStepPolicy(), "metaworld", ["reach-v3"], episodes=1, max_steps=2, workers=1,
                       batch=True, env_kwargs={"image_size": 32})  # fmt: skip
    assert res["batch"] is False and res["workers"] == 1
    assert "batch: one worker runs the episodes in this process" in caplog.text
