"""`oft study` end to end at toy size (tiny model, 3 steps, 2 demos, 1 episode): rows, reports, resuming."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")

from oft.cli import main
from oft.study.run import StudyConfig, run_study

ROW_FIELDS = {"name", "success_rate", "ci95", "episodes", "per_task", "throughput_hz", "latency_s",
              "train_minutes", "steps"}  # fmt: skip
TINY = ["--set", "base=tiny", "--set", "batch_size=4", "--set", "save_every=2", "--set", "log_every=1"]


def _argv(out, *extra):
    return ["study", "--suite", "mt10", "--out", str(out), "--tasks", "drawer-close-v3", "--steps", "3",
            "--demos", "2", "--episodes", "1", "--eval-max-steps", "16", "--threads", "1",
            "--collect-workers", "1", *TINY, *extra]  # fmt: skip


def _forbid(monkeypatch, *targets):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished variant was redone")

    for module, name in targets:
        monkeypatch.setattr(f"{module}.{name}", refuse)


@pytest.mark.slow
def test_study_runs_two_variants_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --out given relative: what the study records must hold from anywhere
    assert main(_argv("study", "--variants", "pdac_l1,ar_discrete")) == 0
    out = tmp_path / "study"
    printed = capsys.readouterr().out
    assert "**Table I: success rate (%)**" in printed and "| ar_discrete |" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == "mt10"
    rows = {r["name"]: r for r in results["variants"]}
    assert list(rows) == ["ar_discrete", "pdac_l1"]  # the paper's order, whatever order was asked
    for name, row in rows.items():
        assert set(row) >= ROW_FIELDS, name
        assert row["steps"] == 3 and row["episodes"] == 1 and set(row["per_task"]) == {"drawer-close-v3"}
        lo, hi = row["ci95"]
        assert 0.0 <= lo <= row["success_rate"] <= hi <= 1.0
        assert row["throughput_hz"] > 0 and row["latency_s"] > 0 and row["train_minutes"] > 0
        ev = json.loads((out / "variants" / name / "eval" / "results.json").read_text())
        assert ev["tasks"]["drawer-close-v3"]["seeds"] == [1_000_000]  # a layout no demonstration used
        assert "/variants/" + name + "/train/checkpoints/step_" in ev["policy"]  # the step evaluated
        assert ev["policy_step"] == 3
    assert rows["ar_discrete"]["chunk_len"] == 1 and rows["pdac_l1"]["chunk_len"] == 8
    assert rows["pdac_l1"]["recipe"]["head"] == "l1" and not rows["pdac_l1"]["recipe"]["extra_inputs"]
    assert rows["pdac_l1"]["recipe"]["action_slots"] == "per_dimension"
    trained = json.loads((out / "variants" / "pdac_l1" / "train.json").read_text())
    assert (
        trained["checkpoint"].startswith(str(tmp_path))
        and rows["pdac_l1"]["checkpoint"] == trained["checkpoint"]
    )
    cfg = trained["config"]
    assert cfg["datasets"] == [str(out / "data")]
    assert cfg["cameras"] == ["corner"] and cfg["proprio"] is False and cfg["base"] == "tiny"
    assert (out / "results.md").read_text().startswith("# Study: mt10")
    assert (out / "results.png").stat().st_size > 0

    # a rerun redoes nothing: no collection beyond what exists, no training, no evaluation
    _forbid(monkeypatch, ("oft.train.loop", "train"), ("oft.sim.evaluate", "evaluate"))
    again = run_study(StudyConfig(suite="mt10", out=str(out), variants=("pdac_l1", "ar_discrete"),
                                  tasks=("drawer-close-v3",), overrides=tuple(TINY[1::2]), steps=3, demos=2,
                                  episodes=1, eval_max_steps=16, collect_workers=1))  # fmt: skip
    assert again == results
    monkeypatch.undo()

    # an interrupted variant (no result, no finished training) continues from its checkpoint
    (out / "variants" / "ar_discrete" / "result.json").unlink()
    (out / "variants" / "ar_discrete" / "train.json").unlink()
    assert main(_argv(out, "--variants", "ar_discrete")) == 0
    resumed = {r["name"]: r for r in json.loads((out / "results.json").read_text())["variants"]}
    assert set(resumed) == {"ar_discrete", "pdac_l1"} and resumed["ar_discrete"]["steps"] == 3
    assert resumed["pdac_l1"] == rows["pdac_l1"]

    # other settings in the same directory are refused, naming what changed
    assert main(_argv(out, "--variants", "pdac_l1", "--demos", "3")) == 2
    assert "demos: 2 -> 3" in capsys.readouterr().err


@pytest.mark.slow
def test_language_study_reports_following_and_the_withheld_control(tmp_path):
    out = tmp_path / "lang"
    config = StudyConfig(suite="language", out=str(out), variants=("pdac_l1",), overrides=tuple(TINY[1::2]),
                         steps=2, demos=1, episodes=1, eval_max_steps=8, collect_workers=1,
                         timing_iters=2, videos=1)  # fmt: skip
    results = run_study(config)
    (row,) = results["variants"]
    videos = sorted(p.relative_to(out / "variants" / "pdac_l1" / "eval").parts[:2]
                    for p in (out / "variants" / "pdac_l1" / "eval").rglob("*.mp4"))  # fmt: skip
    assert len(videos) == 8 and ("following", "faucet-open-v3__faucet-close-v3") in videos  # --videos 1 each
    assert len(row["per_task"]) == 4 and row["episodes"] == 4  # 2 layouts x 2 instructions
    assert "told faucet-close-v3 @ faucet-open-v3" in row["per_task"]
    assert set(row["withheld"]) == set(row["per_task"]) and 0.0 <= row["withheld_success_rate"] <= 1.0
    ev = json.loads((out / "variants" / "pdac_l1" / "eval" / "results.json").read_text())
    assert ev["instruction_swap"] and ev["overall"]["episodes"] == 4
    assert ev["policy"].endswith("step_0000002") or "/checkpoints/step_" in ev["policy"]
    assert "Instruction withheld" in (out / "results.md").read_text()
