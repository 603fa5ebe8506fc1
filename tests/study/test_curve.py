"""`oft eval-curve`: a run's checkpoints evaluated on the same seeds, on the minutes axis, resumable."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")

from oft.cli import main
from oft.study.curve import choose_checkpoints
from oft.train.feedback import seconds_trained


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny real training run that kept checkpoints at steps 3 and 6."""
    from tests.train.conftest import make_episodes, tiny_config

    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    out = tmp_path_factory.mktemp("run")
    train(tiny_config(max_steps=6, save_every=3, keep_last=5), out, dataset=ListDataset(make_episodes(n=2)))
    return out


def _argv(run, out, *extra):
    return ["eval-curve", "--run", str(run), "--env", "metaworld", "--tasks", "drawer-open-v3",
            "--episodes", "1", "--max-steps", "8", "--workers", "1", "--out", str(out), *extra]  # fmt: skip


def test_curve_evaluates_each_checkpoint_and_resumes(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "curve"
    assert main(_argv(run_dir, out)) == 0
    assert "| minutes | step | drawer-open-v3 | all [95% CI] |" in capsys.readouterr().out
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [3, 6]
    assert curve["tasks"] == ["drawer-open-v3"] and curve["episodes"] == 1
    minutes = [p["train_minutes"] for p in curve["points"]]
    assert 0 < minutes[0] < minutes[1]
    assert minutes[1] == pytest.approx(seconds_trained(run_dir, 4, up_to_step=6) / 60.0)
    for p in curve["points"]:
        ev = json.loads((out / f"step_{p['step']:07d}" / "results.json").read_text())
        assert ev["policy"].endswith(f"step_{p['step']:07d}") and ev["policy_step"] == p["step"]
        assert ev["tasks"]["drawer-open-v3"]["seeds"] == [1_000_000]  # a layout no demonstration used
        assert ev["max_steps"] == 8 and p["episodes"] == 1
        lo, hi = p["ci95"]
        assert 0.0 <= lo <= p["success_rate"] <= hi <= 1.0
    assert (out / "curve.png").stat().st_size > 0
    assert (out / "curve.md").read_text().count("\n| ") == 3  # the header and two points

    # a rerun evaluates nothing again; other settings are evaluated anew, not read back
    def refuse(*args, **kwargs):
        raise AssertionError("an evaluated point was evaluated again")

    monkeypatch.setattr("oft.sim.evaluate.evaluate", refuse)
    assert main(_argv(run_dir, out)) == 0
    assert json.loads((out / "curve.json").read_text()) == curve
    with pytest.raises(AssertionError, match="evaluated again"):
        main(_argv(run_dir, out, "--seed", "1"))
    other_run = tmp_path / "other"  # the same steps of another run are not read back either
    shutil.copytree(run_dir, other_run)
    with pytest.raises(AssertionError, match="evaluated again"):
        main(_argv(other_run, out))


def test_curve_rerun_with_other_loading_options_evaluates_again(run_dir, tmp_path, monkeypatch):
    """--center-crop or --dtype change what a checkpoint does: points evaluated without them are not read back
    (they were, with only an INFO line); the device is not compared (it changes rounding only)."""
    out = tmp_path / "curve"
    assert main(_argv(run_dir, out, "--steps", "6")) == 0

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluated point was evaluated again")

    monkeypatch.setattr("oft.sim.evaluate.evaluate", refuse)
    assert main(_argv(run_dir, out, "--steps", "6", "--dtype", "float32", "--device", "cpu")) == 0
    for flags in (["--center-crop"], ["--no-center-crop"], ["--dtype", "bfloat16"]):
        with pytest.raises(AssertionError, match="evaluated again"):
            main(_argv(run_dir, out, "--steps", "6", *flags))
    loading = json.loads((out / "step_0000006" / "results.json").read_text())["loading"]
    assert loading == {"dtype": "float32", "unnorm_key": None, "center_crop": None}  # what a rerun compares


def test_curve_of_a_run_removing_checkpoints_while_evaluated(run_dir, tmp_path, monkeypatch, caplog):
    """A run still training removes its oldest checkpoints (keep_last) after eval-curve listed them: the curve
    skips them, names them and keeps the rest (it stopped on FileNotFoundError)."""
    import oft.study.curve as curve_mod

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    evaluate_one = curve_mod._point_results

    def prune_the_next(config, checkpoint, point_dir):
        results = evaluate_one(config, checkpoint, point_dir)
        shutil.rmtree(run / "checkpoints" / "step_0000006")  # removed before its turn
        return results

    monkeypatch.setattr(curve_mod, "_point_results", prune_the_next)
    out = tmp_path / "curve"
    assert main(_argv(run, out)) == 0
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [3] and curve["pruned_steps"] == [6]
    assert "step_0000006 was removed before it was evaluated" in caplog.text
    assert "removed by the run before their turn): steps [6]" in (out / "curve.md").read_text()

    # removed while its turn began (the loader finds no directory): the same; none left: a clear error
    run2 = tmp_path / "run2"
    shutil.copytree(run_dir, run2)

    def removed_on_load(config, checkpoint, point_dir):
        shutil.rmtree(checkpoint)
        return evaluate_one(config, checkpoint, point_dir)

    monkeypatch.setattr(curve_mod, "_point_results", removed_on_load)
    config = curve_mod.CurveConfig(
        run=run2, env="metaworld", tasks="drawer-open-v3", episodes=1, out=tmp_path / "c2", max_steps=8
    )
    with pytest.raises(FileNotFoundError, match=r"every chosen checkpoint .* \(steps \[3, 6\]\) was removed"):
        curve_mod.evaluate_curve(config)


def test_choosing_points_and_errors(run_dir, tmp_path, capsys):
    assert [s for s, _ in choose_checkpoints(run_dir, None, 6)] == [6]
    assert [s for s, _ in choose_checkpoints(run_dir, None, 4)] == [6]  # the last is always a point
    assert [s for s, _ in choose_checkpoints(run_dir, (3,), None)] == [3]
    assert main(_argv(run_dir, tmp_path / "c", "--steps", "5")) == 2
    assert "no checkpoint at step(s) [5]; it kept [3, 6]" in capsys.readouterr().err
    assert main(_argv(run_dir, tmp_path / "c", "--steps", "3,x")) == 2
    assert "--steps '3,x': expected comma-separated int values" in capsys.readouterr().err
    # an empty --steps (an unset shell variable) and --every 0 were an IndexError / ZeroDivisionError
    assert main(_argv(run_dir, tmp_path / "c", "--steps", "")) == 2
    assert "--steps is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_argv(run_dir, tmp_path / "c", "--every", "0"))
    assert "argument --every: expected an integer >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps names no checkpoint"):
        choose_checkpoints(run_dir, (), None)
    assert main(_argv(tmp_path, tmp_path / "c")) == 2
    assert "holds no complete checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written on a refused call


def test_curve_under_instructions_has_a_row_per_instruction_and_resumes(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "curve"
    said = ["--instruction", "open the drawer", "--instruction", ""]
    assert main(_argv(run_dir, out, "--steps", "6", *said)) == 0
    curve = json.loads((out / "curve.json").read_text())
    rows = ["drawer-open-v3: ", "drawer-open-v3: open the drawer"]
    assert curve["tasks"] == rows and curve["points"][0]["episodes"] == 2
    ev = json.loads((out / "step_0000006" / "results.json").read_text())
    assert ev["instructions"] == ["open the drawer", ""]
    for slug in ("open-the-drawer", "empty"):  # each instruction's own oft eval directory
        assert (out / "step_0000006" / "instructions" / f"drawer-open-v3__{slug}" / "results.json").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluated point was evaluated again")

    monkeypatch.setattr("oft.sim.evaluate.evaluate", refuse)
    assert main(_argv(run_dir, out, "--steps", "6", *said)) == 0  # read back
    with pytest.raises(AssertionError, match="evaluated again"):  # other instructions: evaluated anew
        main(_argv(run_dir, out, "--steps", "6", *said[:2]))
    with pytest.raises(AssertionError, match="evaluated again"):  # each task's own instruction
        main(_argv(run_dir, out, "--steps", "6"))


def test_curve_refuses_instructions_where_the_env_takes_none(run_dir, tmp_path, capsys, monkeypatch):
    from oft.sim import base

    base._import_adapters()
    monkeypatch.setitem(base.ENVS, "nolang", lambda task, cameras=(): None)
    monkeypatch.setitem(base.SUITE_TASKS, "nolang", lambda: ["t"])
    argv = ["eval-curve", "--run", str(run_dir), "--env", "nolang", "--tasks", "t",
            "--out", str(tmp_path / "c"), "--instruction", "x"]  # fmt: skip
    assert main(argv) == 2
    assert "env 'nolang' takes no instruction" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.fixture(scope="module")
def language_study(tmp_path_factory):
    """A toy language study (tiny model, 2 steps, 1 demonstration per task, 1 layout per direction) that kept
    its checkpoints at steps 1 and 2."""
    from oft.study.run import StudyConfig, run_study

    out = tmp_path_factory.mktemp("lang_study")
    overrides = ("base=tiny", "batch_size=4", "save_every=1", "keep_last=5", "log_every=1")
    config = StudyConfig(suite="language", out=str(out), variants=("pdac_l1",), overrides=overrides,
                         steps=2, demos=1, episodes=1, eval_max_steps=8, collect_workers=1,
                         timing_iters=2)  # fmt: skip
    return out, run_study(config)["variants"][0]


def _study_argv(study, out, *extra):
    return ["eval-curve", "--study", str(study), "--variant", "pdac_l1", "--workers", "1", "--out", str(out),
            *extra]  # fmt: skip


@pytest.mark.slow
def test_study_curve_evaluates_as_the_study_did(language_study, tmp_path, monkeypatch):
    study, row = language_study
    out = tmp_path / "curve"
    assert main(_study_argv(study, out)) == 0
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [1, 2]
    assert curve["study"] == str(study) and curve["variant"] == "pdac_l1"
    last = curve["points"][-1]
    # the study's evaluation: every start state under every instruction (the env's defaults would give one row
    # per task), on the study's seeds, with its env options, so the last point is the study's own row
    assert set(last["per_task"]) == set(row["per_task"]) and last["episodes"] == row["episodes"] == 4
    assert last["success_rate"] == row["success_rate"]
    study_eval = study / "variants" / "pdac_l1" / "eval"
    directions = sorted(p.relative_to(study_eval) for p in study_eval.glob("*/*/results.json"))
    assert len(directions) == 8  # 4 directions followed, 4 withheld
    for direction in directions:
        told = json.loads((study_eval / direction).read_text())
        point = json.loads((out / "step_0000002" / direction).read_text())
        for task, r in told["tasks"].items():
            assert point["tasks"][task]["seeds"] == r["seeds"]
            assert [e["actions_sha1"] for e in point["tasks"][task]["episode_results"]] == [
                e["actions_sha1"] for e in r["episode_results"]
            ]  # the same start states and pixels in, the same actions out

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluated point was evaluated again")

    monkeypatch.setattr("oft.study.run.evaluate_variant", refuse)
    assert main(_study_argv(study, out)) == 0  # a rerun reads the points back
    assert json.loads((out / "curve.json").read_text()) == curve


@pytest.mark.slow
def test_study_curve_errors_and_the_run_of_a_study_warned(language_study, tmp_path, capsys, caplog):
    study, _ = language_study
    c = str(tmp_path / "c")
    run = study / "variants" / "pdac_l1" / "train"
    refused = {
        "--tasks, --episodes: the study decides these": _study_argv(
            study, c, "--tasks", "faucet-open-v3", "--episodes", "3"
        ),
        "needs --variant NAME": ["eval-curve", "--study", str(study), "--out", c],
        "no training run of variant 'pdac_l1_film' (trained: pdac_l1)": [
            "eval-curve", "--study", str(study), "--variant", "pdac_l1_film", "--out", c],
        "study.json does not exist": ["eval-curve", "--study", str(tmp_path), "--variant", "pdac_l1",
                                      "--out", c],
        "names a variant of a study": ["eval-curve", "--run", str(run), "--variant", "pdac_l1", "--tasks",
                                       "faucet-open-v3", "--out", c],
        "--tasks is required with --run": ["eval-curve", "--run", str(run), "--out", c],
    }  # fmt: skip
    for message, argv in refused.items():
        assert main(argv) == 2, message
        assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written on a refused call
    argv = ["eval-curve", "--run", str(run), "--tasks", "faucet-open-v3", "--episodes", "1",
            "--max-steps", "4", "--workers", "1", "--steps", "2",
            "--out", str(tmp_path / "plain")]  # fmt: skip
    with caplog.at_level("WARNING", logger="oft.study.commands_curve"):
        assert main(argv) == 0
    assert f"--study {study} --variant pdac_l1 evaluates it as the study did" in caplog.text


def test_a_curve_from_relative_paths_records_absolute_ones_and_reads_old_points(
    run_dir, tmp_path, monkeypatch
):
    """``oft eval-curve --run runs/x --out c`` recorded ``runs/x`` and each point's checkpoint relative to the
    directory it ran in; read from anywhere else, curve.json named nothing. Points recorded that way before
    are still read back, not evaluated again."""
    shutil.copytree(run_dir, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(_argv("run", "curve", "--steps", "6")) == 0
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert curve["run"] == str(tmp_path / "run") and curve["points"][0]["eval"] == str(
        tmp_path / "curve" / "step_0000006"
    )
    done = tmp_path / "curve" / "step_0000006" / "results.json"
    ev = json.loads(done.read_text())
    assert ev["policy"] == str(tmp_path / "run" / "checkpoints" / "step_0000006")

    ev["policy"] = "run/checkpoints/step_0000006"  # as a curve written before recorded it
    done.write_text(json.dumps(ev))

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluated point was evaluated again")

    monkeypatch.setattr("oft.sim.evaluate.evaluate", refuse)
    assert main(_argv("run", "curve", "--steps", "6")) == 0


def test_curve_refuses_seeds_past_the_envs_limit_before_loading(run_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("gym_aloha")
    import oft.model.loading

    def no_loading(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the seeds were checked")

    monkeypatch.setattr(oft.model.loading, "load_policy", no_loading)
    seed = str(2**32 - 1_000_000 - 1)  # ALOHA's last 32-bit layout seed: one episode fits, two do not
    argv = ["eval-curve", "--run", str(run_dir), "--env", "aloha", "--tasks", "insertion", "--episodes", "2",
            "--seed", seed, "--workers", "1", "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 2
    assert "(at most 1 episode from seed" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
