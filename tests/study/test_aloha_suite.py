"""Issue 11: `oft study --suite aloha` (transfer-cube, insertion, two-cube; OFT+ with and without FiLM),
`oft collect --help` naming each suite's cameras, and a short train -> eval of the aloha preset end to end."""

from __future__ import annotations

import argparse
import json

import pytest

from oft.spec import get_spec
from oft.study.suites import get_suite
from oft.study.variants import VARIANTS
from oft.train.config import TrainConfig, apply_overrides
from oft.train.presets import get_preset

try:
    from oft.sim import aloha
except ImportError as e:
    aloha, _REASON = None, f"ALOHA sim not installed ({e.name})"
needs_aloha = pytest.mark.skipif(aloha is None, reason=_REASON if aloha is None else "")


def test_aloha_suite_is_registered_with_its_preset_and_film_pair():
    suite = get_suite("aloha")
    assert (suite.env, suite.tasks, suite.preset) == ("aloha", "transfer-cube,insertion,two-cube", "aloha")
    assert dict(suite.instructions) == {"two-cube": ("transfer the red cube", "transfer the blue cube")}
    spec = get_spec(get_preset(suite.preset).robot)
    for name in suite.variants:
        cfg = apply_overrides(get_preset("aloha"), VARIANTS[name].overrides(spec)).validate(check_paths=False)
        assert cfg.cameras == ("cam_high", "cam_left_wrist", "cam_right_wrist") and cfg.proprio
        assert (cfg.head, cfg.decode, cfg.chunk_len) == ("l1", "parallel", None)  # K = 25, the spec's
        assert cfg.film is (name != "oft_plus_no_film")
        assert cfg.action_slots == ("per_step" if name == "oft_plus_per_step" else "per_dimension")
    assert set(suite.variants) == {"oft_plus", "oft_plus_no_film", "oft_plus_per_step"}


def test_study_cli_defaults_come_from_the_suite(study_cli_config):
    config = study_cli_config(["--suite", "aloha", "--out", "x"])
    assert config.preset == "aloha"
    assert config.variants == ("oft_plus", "oft_plus_no_film", "oft_plus_per_step")
    config = study_cli_config(["--suite", "mt10", "--out", "y"])
    assert config.preset == "metaworld-tiny" and "oft_plus" not in config.variants


def test_collect_help_lists_each_suites_cameras():
    from oft.sim import commands_collect

    p = argparse.ArgumentParser()
    commands_collect.add_arguments(p)
    text = " ".join(p.format_help().split())
    for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist", "corner", "gripperPOV"):
        assert cam in text
    if aloha is not None:
        assert all(c in commands_collect.EXPERT_SUITES["aloha"] for c in aloha.CAMERAS)
    try:
        from oft.sim import metaworld
    except ImportError:
        return
    assert all(c in commands_collect.EXPERT_SUITES["metaworld"] for c in metaworld.CAMERAS)


@needs_aloha
@pytest.mark.slow
def test_aloha_preset_trains_and_evaluates_end_to_end(tmp_path):
    """1 demo per task -> 3 steps of the aloha preset (tiny architecture), K*D and K action slots -> 1 episode
    per task and per two-cube instruction, each with its video; then `oft eval --open-loop-steps` reaches the
    rollout."""
    from oft.cli import main
    from oft.study.run import StudyConfig, run_study

    config = StudyConfig(suite="aloha", out=str(tmp_path / "study"),
                         variants=("oft_plus", "oft_plus_per_step"),
                         preset="aloha", overrides=("base=tiny", "batch_size=2", "data_loader=memory"),
                         steps=3, demos=1, episodes=1, eval_max_steps=50, collect_workers=1,
                         timing_iters=1, videos=1)  # fmt: skip
    results = run_study(config)
    info = json.loads((tmp_path / "study" / "data" / "meta" / "info.json").read_text())
    assert (info["robot_type"], info["fps"], info["total_episodes"]) == ("aloha", 50, 3)
    rows = {r["name"]: r for r in results["variants"]}
    assert set(rows) == {"oft_plus", "oft_plus_per_step"}
    for name, row in rows.items():
        assert row["steps"] == 3 and row["chunk_len"] == 25 and row["episodes"] == 4
        assert set(row["per_task"]) == {"transfer-cube", "insertion", "two-cube: transfer the red cube",
                                        "two-cube: transfer the blue cube"}  # fmt: skip
        trained = TrainConfig.from_dict(json.loads((tmp_path / "study" / "variants" / name / "train.json")
                                                   .read_text())["config"])  # fmt: skip
        assert trained.film and trained.robot == "aloha"
        assert trained.action_slots == ("per_step" if name == "oft_plus_per_step" else "per_dimension")
        # --videos: every row's first episode, the two instructions' in folders of their own
        ev = tmp_path / "study" / "variants" / name / "eval"
        for row_dir, task in (("tasks", "transfer-cube"), ("tasks", "insertion"),
                              ("instructions/two-cube__transfer-the-red-cube", "two-cube"),
                              ("instructions/two-cube__transfer-the-blue-cube", "two-cube")):  # fmt: skip
            assert len(list((ev / row_dir / "videos" / task).glob("*.mp4"))) == 1, (row_dir, task)

    ckpt = rows["oft_plus"]["checkpoint"]
    out = tmp_path / "eval"
    assert main(["eval", "--env", "aloha", "--tasks", "two-cube", "--checkpoint", ckpt, "--episodes", "1",
                 "--max-steps", "20", "--open-loop-steps", "5", "--video-episodes", "0",
                 "--out", str(out)]) == 0  # fmt: skip
    episode = json.loads((out / "results.json").read_text())["tasks"]["two-cube"]["episode_results"][0]
    assert episode["steps"] == 20 and episode["chunk_queries"] == 4  # 5 of each 25-step chunk, then re-query


def test_study_records_demonstrations_past_success_when_asked(study_cli_config, monkeypatch, tmp_path):
    """`oft study --after-success N|end` reaches the collection, as `oft collect --after-success` does."""
    argv = ["--suite", "aloha", "--out", "x"]
    assert study_cli_config(argv).after_success == 0
    assert study_cli_config([*argv, "--after-success", "50"]).after_success == 50
    assert study_cli_config([*argv, "--after-success", "end"]).after_success is None
    with pytest.raises(SystemExit):
        study_cli_config([*argv, "--after-success", "-3"])

    from oft.sim import collect as collect_module
    from oft.study import run

    seen = {}

    def fake_collect(env, tasks, n, out, cfg, progress=False):
        seen["cfg"] = cfg
        return {"num_episodes": 0}

    monkeypatch.setattr(collect_module, "collect", fake_collect)
    config = run.StudyConfig(suite="aloha", out=str(tmp_path), preset="aloha", after_success=50)
    suite, data = get_suite("aloha"), tmp_path / "data"
    ctx = run._Context(config, suite, ["two-cube"], tmp_path, data, get_spec("aloha"))
    run.collect_demos(ctx)
    assert seen["cfg"].after_success == 50


def test_study_collects_with_action_noise_when_asked(study_cli_config, monkeypatch, tmp_path):
    """`oft study --action-noise STD` reaches the collection (DART), as `oft collect --action-noise` does; a
    bad value is refused by the flag and by the config."""
    from oft.sim import collect as collect_module
    from oft.study import run

    argv = ["--suite", "mt10", "--out", "x"]
    assert study_cli_config(argv).action_noise == 0.0
    assert study_cli_config([*argv, "--action-noise", "0.3"]).action_noise == 0.3
    with pytest.raises(SystemExit):
        study_cli_config([*argv, "--action-noise", "-1"])
    with pytest.raises(ValueError, match=r"finite standard deviation >= 0, got nan"):
        run.StudyConfig(suite="mt10", out="x", action_noise=float("nan")).validate()

    seen = {}

    def fake_collect(env, tasks, n, out, cfg, progress=False):
        seen["cfg"] = cfg
        return {"num_episodes": 0}

    monkeypatch.setattr(collect_module, "collect", fake_collect)
    config = run.StudyConfig(suite="mt10", out=str(tmp_path), action_noise=0.3)
    spec, suite = get_spec("metaworld"), get_suite("mt10")
    run.collect_demos(run._Context(config, suite, ["reach-v3"], tmp_path, tmp_path / "data", spec))
    assert seen["cfg"].action_noise == 0.3
