"""`oft eval-curve` reuses a point only if it was evaluated with the same loading options (dtype,
statistics, crop): a rerun with another ``--unnorm-key``, ``--dtype`` or ``--center-crop`` used to read old
points back."""

from __future__ import annotations

import json
import logging

import pytest
import torch

pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")

from oft.study import curve

TASK = "drawer-open-v3"


class Loaded:
    def eval(self):
        return self


@pytest.fixture
def calls(monkeypatch):
    """Stand-ins for load_policy and evaluate (the real ones are tested elsewhere): each call recorded, each
    evaluation written as ``evaluate`` writes it."""
    seen = {"loaded": [], "evaluated": 0}

    def load_policy(checkpoint, device="cpu", **kwargs):
        seen["loaded"].append(kwargs)
        return Loaded()

    def evaluate(policy, env, tasks, episodes, *, out, open_loop_steps, max_steps, seed,
                 temporal_ensemble_coeff, policy_source, **kwargs):  # fmt: skip
        seen["evaluated"] += 1
        row = {"successes": 0, "episodes": episodes, "success_rate": 0.0, "ci95": [0.0, 0.5]}
        results = {"env": env, "policy": policy_source, "statistics": None, "episodes_per_task": episodes,
                   "seed": seed, "open_loop_steps": open_loop_steps, "max_steps": max_steps,
                   "temporal_ensemble_coeff": temporal_ensemble_coeff, "overall": row,
                   "tasks": {t: row for t in tasks}}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results))
        return results

    monkeypatch.setattr("oft.model.loading.load_policy", load_policy)
    monkeypatch.setattr("oft.sim.evaluate.evaluate", evaluate)
    return seen


def _config(tmp_path, **loading):
    load_kwargs = {"dtype": torch.float32, "unnorm_key": None, "center_crop": None} | loading
    return curve.CurveConfig(run=tmp_path, env="metaworld", tasks=TASK, episodes=1, out=tmp_path / "c",
                             max_steps=8, load_kwargs=load_kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("center_crop", True, "center_crop None (now True)"),
     ("dtype", torch.bfloat16, "dtype 'float32' (now 'bfloat16')"),
     ("unnorm_key", "other", "unnorm_key None (now 'other')")],
)  # fmt: skip
def test_a_point_loaded_otherwise_is_evaluated_again(option, value, named, tmp_path, calls, caplog):
    ckpt, point = tmp_path / "checkpoints" / "step_0000006", tmp_path / "c" / "step_0000006"
    curve._point_results(_config(tmp_path), ckpt, point)
    curve._point_results(_config(tmp_path), ckpt, point)
    assert calls["evaluated"] == 1  # the same options: read back

    with caplog.at_level(logging.WARNING, logger="oft.study.curve"):
        curve._point_results(_config(tmp_path, **{option: value}), ckpt, point)
    assert calls["evaluated"] == 2 and calls["loaded"][-1][option] == value
    assert f"was evaluated otherwise: {named}; evaluating again" in caplog.text
    default = {"dtype": "float32", "unnorm_key": None, "center_crop": None}
    shown = str(value).removeprefix("torch.") if option == "dtype" else value
    assert json.loads((point / "results.json").read_text())["loading"] == default | {option: shown}


def test_points_written_before_loading_was_recorded(tmp_path, calls, caplog):
    """An older results.json is read back, warned; the statistics it records still refuse another key."""
    ckpt, point = tmp_path / "checkpoints" / "step_0000006", tmp_path / "c" / "step_0000006"
    curve._point_results(_config(tmp_path), ckpt, point)
    done = point / "results.json"
    old = json.loads(done.read_text())
    del old["loading"]
    old["statistics"] = "mine"
    done.write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="oft.study.curve"):
        curve._point_results(_config(tmp_path, center_crop=True), ckpt, point)
    assert calls["evaluated"] == 1 and "does not record the loading options" in caplog.text
    curve._point_results(_config(tmp_path, unnorm_key="mine"), ckpt, point)
    assert calls["evaluated"] == 1
    with caplog.at_level(logging.WARNING, logger="oft.study.curve"):
        curve._point_results(_config(tmp_path, unnorm_key="other"), ckpt, point)
    assert calls["evaluated"] == 2 and "statistics 'mine' (now unnorm_key 'other')" in caplog.text


def test_a_study_point_loaded_otherwise_is_evaluated_again(tmp_path, monkeypatch, caplog):
    seen = []
    monkeypatch.setattr("oft.model.loading.load_policy", lambda checkpoint, device, **kw: Loaded())
    monkeypatch.setattr("oft.study.run.evaluate_variant", lambda ctx, policy, out: seen.append(1) or {"r": 1})
    ckpt, point = tmp_path / "step_0000002", tmp_path / "c" / "step_0000002"
    assert curve._study_point_results(None, ckpt, point, "cpu", {"dtype": None}) == {"r": 1}
    curve._study_point_results(None, ckpt, point, "cuda", None)  # the device is not compared
    assert len(seen) == 1
    with caplog.at_level(logging.WARNING, logger="oft.study.curve"):
        curve._study_point_results(None, ckpt, point, "cpu", {"center_crop": False})
    assert len(seen) == 2 and "center_crop None (now False)" in caplog.text
    record = json.loads((point / "study_point.json").read_text())
    assert record["loading"] == {"dtype": "float32", "unnorm_key": None, "center_crop": False}
