"""``oft eval --demonstration-layouts DATASET``: a policy evaluated where it was trained (fitting, not
generalization), from the seeds ``oft collect`` recorded."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("metaworld")

from oft.cli import main
from oft.sim.collect import SIDECAR, CollectConfig, collect, demonstration_seeds
from oft.sim.evaluate import evaluate
from oft.sim.rollout import ExpertPolicy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "ds"
    collect("metaworld", ["reach-v3"], 3, out, CollectConfig(image_size=32, workers=1, video=False))
    return out


def _sidecar_seeds(dataset, task="reach-v3"):
    return [e["seed"] for e in json.loads((dataset / SIDECAR).read_text())["episodes"] if e["task"] == task]


def test_eval_runs_on_the_recorded_demonstration_seeds(dataset, tmp_path, capsys):
    recorded = _sidecar_seeds(dataset)
    assert demonstration_seeds(dataset) == ("metaworld", {"reach-v3": recorded})
    out = tmp_path / "eval"
    args = ["eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert", "--episodes", "2",
            "--image-size", "32", "--video-episodes", "0", "--workers", "1", "--out", str(out)]  # fmt: skip
    assert main([*args, "--demonstration-layouts", str(dataset)]) == 0
    printed = capsys.readouterr().out
    assert "not unseen" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["reach-v3"]["seeds"] == recorded[:2]  # the demonstrations' own layouts
    assert results["layouts"] == f"demonstrations of {dataset}"
    # without the flag: the unseen layouts, recorded as such
    assert main([*args]) == 0
    unseen = json.loads((out / "results.json").read_text())
    assert unseen["layouts"] == "evaluation" and min(unseen["tasks"]["reach-v3"]["seeds"]) >= 1_000_000


def test_seeds_past_the_commit_point_are_not_demonstrations(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    side = json.loads((copy / SIDECAR).read_text())
    late = {"index": 3, "task": "reach-v3", "seed": 99, "steps": 40}  # in the sidecar, never committed
    side["episodes"].append(late)
    (copy / SIDECAR).write_text(json.dumps(side))
    assert 99 not in demonstration_seeds(copy)[1]["reach-v3"]
    (copy / SIDECAR).unlink()
    with pytest.raises(ValueError, match="not written by `oft collect`"):
        demonstration_seeds(copy)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--tasks", "reach-v3", "--episodes", "4"], "has 3 reset seeds given, expected at least 4"),
        (["--tasks", "push-v3", "--episodes", "1"], "task 'push-v3' has no reset seeds given"),
        (["--tasks", "reach-v3", "--episodes", "1", "--seed", "2"], "--seed 2 offsets the unseen layouts"),
        (["--env", "aloha", "--tasks", "transfer-cube", "--episodes", "1"], "collected in env 'metaworld'"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_before_any_episode(dataset, tmp_path, capsys, extra, says):
    out = tmp_path / "eval"
    argv = ["eval", "--expert", "--out", str(out), "--demonstration-layouts", str(dataset), *extra]
    if "--env" not in extra:
        argv += ["--env", "metaworld"]
    assert main(argv) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_refuses_too_few_seeds_and_an_offset():
    with pytest.raises(ValueError, match="has 1 reset seeds given, expected at least 2"):
        evaluate(ExpertPolicy, "metaworld", ["reach-v3"], 2, reset_seeds={"reach-v3": [0]})
    with pytest.raises(ValueError, match="seed is 3: it offsets the evaluation layouts"):
        evaluate(ExpertPolicy, "metaworld", ["reach-v3"], 1, seed=3, reset_seeds={"reach-v3": [0]})
