"""`oft quickstart` end to end at toy size: collect -> train -> evaluate -> results.json (not its success)."""

from __future__ import annotations

import json
import re

import pytest

from oft.cli import main


@pytest.mark.slow
def test_quickstart_runs_every_phase_and_reuses_its_data(tmp_path, capsys):
    pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), "--tasks", "drawer-close-v3", "--demos", "2", "--steps", "2",
            "--eval-episodes", "1", "--eval-max-steps", "16", "--videos", "1", "--threads", "1",
            "--set", "batch_size=4", "--set", "save_every=2"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == 1 and set(results["tasks"]) == {"drawer-close-v3"}
    assert results["goal_markers"] == "hidden"  # drawer-close needs no marker
    assert 0.0 <= results["success_rate"] <= 1.0
    assert {"collect_s", "train_s", "eval_s", "total_s"} <= set(results["wall_s"])
    assert results["policy"]["train_steps"] == 2 and results["policy"]["actions_per_s"]["actions_per_s"] > 0
    assert (out / "train" / "loss_curve.png").is_file() and any((out / "eval" / "videos").rglob("*.mp4"))
    assert "action throughput" in capsys.readouterr().out
    # the policy records the scene its demonstrations show; a plain `oft eval` renders that scene again
    from oft import load_policy

    hidden = {"show_goal": False, "shared_layouts": True}
    assert load_policy(out / "train").config.scene == {"env": "metaworld", "options": hidden}
    ev = tmp_path / "ev"
    argv_eval = ["eval", "--env", "metaworld", "--tasks", "drawer-close-v3", "--checkpoint",
                 str(out / "train"), "--episodes", "1", "--max-steps", "4", "--video-episodes", "0",
                 "--out", str(ev)]  # fmt: skip
    assert main(argv_eval) == 0
    assert hidden.items() <= json.loads((ev / "results.json").read_text())["env_options"].items()
    # a rerun reuses the demonstrations and the finished training run, recorded with what made them
    assert json.loads((out / "quickstart.json").read_text())["demos"] == 2
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["policy"]["train_steps"] == 2
    assert again["wall_s"]["collect_s"] < results["wall_s"]["collect_s"]


def test_goal_markers_are_hidden_only_when_no_task_needs_one():
    from oft.train.quickstart import show_goal_markers

    # faucet-open / -close: the markers would tell the tasks apart; hidden, only the instruction does
    assert show_goal_markers(["faucet-open-v3", "faucet-close-v3", "drawer-open-v3"]) is False
    assert show_goal_markers(["drawer-open-v3", "reach-v3"]) is True  # reach's target is its marker
    assert show_goal_markers(["reach-v3"], "hidden") is False
    assert show_goal_markers(["faucet-open-v3"], "shown") is True
    with pytest.raises(ValueError, match="'sometimes'"):
        show_goal_markers(["reach-v3"], "sometimes")


def test_hidden_markers_also_start_the_faucet_tasks_from_one_pool_of_layouts():
    from oft.train.quickstart import DEFAULT_TASKS, scene_options

    # without the pool a faucet beyond 5 cm would say "close" (MetaWorld's ranges: +-5 cm open, +-10 close)
    assert scene_options(list(DEFAULT_TASKS)) == {"show_goal": False, "shared_layouts": True}
    assert scene_options(["drawer-open-v3", "reach-v3"]) == {}
    assert scene_options(list(DEFAULT_TASKS), "shown") == {}


def test_the_quickstart_recipe_reads_its_instruction_with_film():
    from oft.train.presets import get_preset

    # language study: 92.5% of instructions followed with FiLM, 50.0% without (docs/results/study-language.md)
    assert get_preset("metaworld-tiny").film is True


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("lr=abc", "TrainConfig.lr='abc' is invalid"),
        ("batch_size=0", "TrainConfig.batch_size=0 is invalid: expected an integer >= 1"),
        ("base=openvla/openvla-7b", "trains from scratch: base must be one of"),
        ("cameras=workspce", "metaworld camera 'workspce'"),
        ("robot=aloha", "robot must be 'metaworld', got 'aloha'"),
        # what the quickstart sets itself: the --set was dropped (max_minutes, datasets) or fought its flag
        ("max_minutes=5", "override 'max_minutes=5': max_minutes is set by the quickstart (the budget:"),
        ("max-steps=5", "override 'max-steps=5': max_steps is set by the quickstart (--steps)"),
        ("head=diffusion", "override 'head=diffusion': head is set by the quickstart (--head)"),
        ("num_threads=2", "override 'num_threads=2': num_threads is set by the quickstart (--threads)"),
    ],
)
def test_a_quickstart_refused_for_its_training_settings_writes_nothing(setting, error, tmp_path, capsys):
    """Refused before the demonstrations are collected (minutes of work) and before --out is created."""
    pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), "--tasks", "drawer-close-v3", "--demos", "1", "--steps", "1",
            "--eval-episodes", "1", "--eval-max-steps", "4", "--threads", "1", "--set", setting]  # fmt: skip
    assert main(argv) == 2
    assert error in capsys.readouterr().err
    assert not out.exists()


def test_demonstrations_are_rendered_for_the_model_that_trains_on_them():
    """The frames the demonstrations are rendered with follow --set base (its input size) and --set cameras,
    so the quickstart's model reads them without a resize and finds the cameras it asks for."""
    import argparse

    from oft.train import quickstart

    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)

    def frames(*sets):
        args = parser.parse_args([a for s in sets for a in ("--set", s)])
        return quickstart.demo_frames([quickstart.train_config((args.head, args.decode, []), args)])

    assert frames() == (64, ("corner", "gripperPOV"))  # metaworld-tiny: 64 px, the spec's cameras
    assert frames("base=small-128", "cameras=workspace,gripperPOV") == (128, ("workspace", "gripperPOV"))


def test_the_baseline_keeps_what_makes_it_the_papers_baseline():
    """`--compare-baseline --set chunk_len=4`: the OFT run takes chunk_len=4; the baseline stays one action
    per query without FiLM (the --set used to win there too, and the run was still called the baseline)."""
    import argparse

    from oft.train import quickstart

    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)
    args = parser.parse_args(["--compare-baseline", "--set", "chunk_len=4", "--set", "film=true"])
    oft_run = quickstart.train_config((args.head, args.decode, []), args)
    baseline = quickstart.train_config(("discrete", "autoregressive", ["chunk_len=1", "film=false"]), args)
    assert (oft_run.chunk_len, oft_run.film) == (4, True)
    assert (baseline.chunk_len, baseline.film, baseline.head) == (1, False, "discrete")


def test_a_rerun_with_other_data_settings_is_refused(tmp_path, capsys):
    """A rerun keeps the demonstrations and the finished training: with more --demos (collected after training
    ended) or fewer --tasks (the policy also learned the others) its results described another policy."""
    pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")
    out = tmp_path / "qs"
    out.mkdir()
    made = {"tasks": ["drawer-close-v3", "drawer-open-v3"], "demos": 2, "seed": 0, "goal_markers": "hidden"}
    (out / "quickstart.json").write_text(json.dumps(made))
    argv = ["quickstart", "--out", str(out), "--tasks", "drawer-close-v3", "--demos", "3", "--steps", "1",
            "--eval-episodes", "1", "--threads", "1"]  # fmt: skip
    assert main(argv) == 2
    assert (
        f"--out {out} holds a quickstart made with tasks ['drawer-close-v3', 'drawer-open-v3'] (now "
        "['drawer-close-v3']); demos 2 (now 3): a rerun continues it" in capsys.readouterr().err
    )
    assert [p.name for p in out.iterdir()] == ["quickstart.json"]  # nothing collected, the record as it was
    assert json.loads((out / "quickstart.json").read_text()) == made
    # the markers as resolved: drawers need none, so auto is the hidden the record holds (no refusal for it)
    import argparse

    from oft.train import quickstart

    tasks = made["tasks"]
    shown = "goal_markers 'hidden' (now 'shown')"
    for choice, refused in (("auto", None), ("hidden", None), ("shown", shown)):
        args = argparse.Namespace(demos=2, seed=0, env_kwargs=quickstart.scene_options(tasks, choice))
        if refused is None:
            quickstart.check_rerun(out, quickstart.data_settings(tasks, args))
        else:
            with pytest.raises(ValueError, match=re.escape(refused)):
                quickstart.check_rerun(out, quickstart.data_settings(tasks, args))
