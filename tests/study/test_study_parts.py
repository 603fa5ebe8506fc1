"""The study's pieces without a simulator: suites, variants as training recipes, settings, budget, reports."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from oft.spec import get_spec
from oft.study.report import markdown_tables, write_chart
from oft.study.run import StudyConfig
from oft.study.suites import SUITES, get_suite
from oft.study.variants import PAPER_VARIANTS, VARIANTS, resolve_variants
from oft.train.config import TrainConfig, apply_overrides
from oft.train.feedback import seconds_trained


def test_suites_are_registered_with_a_did_you_mean():
    assert set(SUITES) >= {"mt10", "language"}
    language = get_suite("language")
    assert language.instruction_swap
    assert language.env_options == {"show_goal": False, "shared_layouts": True}
    with pytest.raises(KeyError, match="Did you mean 'mt10'"):
        get_suite("mt1O")


def test_variants_are_the_bench_rows_in_the_papers_order():
    assert list(VARIANTS)[:7] == ["ar_discrete", "pd_discrete", "pdac_discrete", "pdac_l1", "pdac_diffusion",
                                  "pdac_l1_extra_inputs", "pdac_l1_film"]  # fmt: skip
    assert tuple(VARIANTS)[:7] == PAPER_VARIANTS  # the ALOHA suite's OFT+ pair is trained only when asked
    assert [v.name for v in resolve_variants("pdac_l1, ar_discrete,pdac_l1")] == ["pdac_l1", "ar_discrete"]
    with pytest.raises(KeyError, match="Did you mean 'pdac_l1'"):
        resolve_variants("pdac_l2")
    with pytest.raises(ValueError, match="names nothing"):
        resolve_variants(" , ")
    with pytest.raises(ValueError, match="no variants"):
        resolve_variants([])
    with pytest.raises(ValueError, match="has an empty item"):
        resolve_variants("pdac_l1,")


@pytest.mark.parametrize("name", list(PAPER_VARIANTS))
def test_every_variant_is_a_valid_training_config(name):
    spec = get_spec("metaworld")
    cfg = apply_overrides(TrainConfig(base="tiny", robot="metaworld"), VARIANTS[name].overrides(spec))
    cfg.validate(check_paths=False)
    extra = name == "pdac_l1_extra_inputs"
    assert cfg.cameras == (("corner", "gripperPOV") if extra else ("corner",))  # primary camera only
    assert cfg.proprio is extra
    assert cfg.film is (name == "pdac_l1_film")
    assert cfg.chunk_len == (1 if name in ("ar_discrete", "pd_discrete") else None)  # None: the spec's K
    expected = {
        "ar_discrete": ("discrete", "autoregressive"),
        "pd_discrete": ("discrete", "parallel"),
        "pdac_discrete": ("discrete", "parallel"),
        "pdac_diffusion": ("diffusion", "parallel"),
    }
    assert (cfg.head, cfg.decode) == expected.get(name, ("l1", "parallel"))


def test_study_config_refuses_what_would_erase_the_comparison():
    ok = StudyConfig(suite="mt10", out="x", overrides=("base=tiny", "chunk_len=4"))
    assert ok.validate() is ok
    with pytest.raises(ValueError, match="head is set by the study"):
        StudyConfig(suite="mt10", out="x", overrides=("head=l1",)).validate()
    with pytest.raises(ValueError, match="minutes or as steps"):
        StudyConfig(suite="mt10", out="x", budget_minutes=1.0, steps=5).validate()
    # what a flag of the study sets: the --set was dropped (num_threads, max_steps) or left study.json wrong
    with pytest.raises(ValueError, match=r"num_threads is set by the study \(--threads\)"):
        StudyConfig(suite="mt10", out="x", overrides=("num_threads=4",)).validate()
    with pytest.raises(ValueError, match=r"seed is set by the study \(--seed\)"):
        StudyConfig(suite="mt10", out="x", overrides=("seed=3",)).validate()
    with pytest.raises(ValueError, match=r"max_steps is set by the study \(--steps\)"):
        StudyConfig(suite="mt10", out="x", steps=5, overrides=("max_steps=9",)).validate()
    capped = StudyConfig(suite="mt10", out="x", budget_minutes=1.0, overrides=("max_steps=9",))
    assert capped.validate() is capped  # a step cap inside a time budget is the user's to set
    with pytest.raises(KeyError, match="study variant"):
        StudyConfig(suite="mt10", out="x", variants=("pdac_l3",)).validate()


def test_seconds_trained_counts_up_to_the_last_checkpoint(tmp_path):
    assert seconds_trained(tmp_path, 8) == 0.0  # a new run
    rows = [{"step": 1, "samples_per_s": 8.0}, {"step": 11, "samples_per_s": 40.0},
            {"step": 21, "samples_per_s": 80.0}, {"step": 31, "samples_per_s": 80.0}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step in (10, 20):  # checkpoint 20 is the latest; step 31 was lost with the kill
        d = tmp_path / "checkpoints" / f"step_{step:07d}"
        d.mkdir(parents=True)
        (d / "trainer_state.pt").write_bytes(b"")
    # 1 step at 8/s (1 s) + 10 steps at 40/s (2 s); step 21 is past the checkpoint
    assert seconds_trained(tmp_path, 8) == pytest.approx(3.0)


def _row(name, rate, per_task, withheld=None):
    row = {"name": name, "success_rate": rate, "ci95": [rate / 2, min(1.0, rate + 0.1)], "episodes": 40,
           "per_task": per_task, "per_task_episodes": {t: 20 for t in per_task}, "throughput_hz": 123.4,
           "latency_s": 0.0648, "chunk_len": 8, "train_minutes": 12.25, "steps": 900,
           "train_samples_per_s": 98.7}  # fmt: skip
    if withheld is not None:
        row |= {"withheld": withheld, "withheld_success_rate": 0.5, "withheld_ci95": [0.3, 0.7]}
    return row


def test_markdown_has_the_papers_two_tables(tmp_path):
    rows = [
        _row("pdac_l1", 0.9, {"reach-v3": 0.85, "push-v3": 0.95}),
        _row("ar_discrete", 0.5, {"reach-v3": 0.5, "push-v3": 0.5}),
    ]
    results = {"suite": "mt10", "variants": rows}
    md = markdown_tables(results)
    assert "| Variant | reach | push | Average [95% CI] |" in md
    assert "| pdac_l1 | 85 | 95 | 90.0 [45.0, 100.0] |" in md
    assert "| ar_discrete | 123.4 | 0.0648 | 8 | 12.2 | 900 | 99 |" in md
    assert "20 episodes per task" in md and "withheld" not in md
    assert write_chart(results, tmp_path / "r.png").stat().st_size > 0


def test_markdown_language_suite_adds_the_withheld_control(tmp_path):
    dirs = {"told faucet-open-v3 @ faucet-close-v3": 1.0, "told faucet-close-v3 @ faucet-close-v3": 0.0}
    results = {"suite": "language", "variants": [_row("pdac_l1_film", 0.5, dirs, withheld=dirs)]}
    md = markdown_tables(results)
    assert "told faucet-open @ faucet-close" in md and "Instruction withheld" in md
    assert "| pdac_l1_film | 100 | 0 | 50.0 [25.0, 60.0] | 50.0 [30.0, 70.0] |" in md
    assert write_chart(results, tmp_path / "r.png").stat().st_size > 0


def test_chart_shows_every_throughput_bar_with_its_value(tmp_path, monkeypatch):
    """Two close rates on a log axis: the axis spans whole decades around them (not matplotlib's default,
    which left a 1,265 Hz bar as a sliver beside 2,050 Hz with no labels) and each bar carries its value."""
    import matplotlib.figure

    saved = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig) or savefig(fig, *a, **k)
    )
    rows = [_row("pdac_l1", 0.3, {"reach-v3": 0.3}), _row("pdac_l1_extra_inputs", 0.55, {"reach-v3": 0.55})]
    rows[0]["throughput_hz"], rows[1]["throughput_hz"] = 2049.7, 1265.3
    write_chart({"suite": "mt10", "variants": rows}, tmp_path / "r.png")
    throughput = saved[0].axes[1]
    assert throughput.get_xlim() == (100.0, 10000.0)
    assert [t.get_text() for t in throughput.texts] == ["2050", "1265"]


def test_a_study_trains_where_oft_train_would():
    """``oft study`` forced the CPU when the preset's device was "auto", so on a GPU machine every variant
    trained on the CPU unless ``--set device=cuda`` was given."""
    from oft.study.run import StudyConfig, base_train_config

    assert base_train_config(StudyConfig(suite="mt10", out="x")).device == "auto"
    forced = StudyConfig(suite="mt10", out="x", overrides=("device=cpu",))
    assert base_train_config(forced).device == "cpu"


def test_study_cameras_choose_what_is_recorded_and_what_each_variant_sees(tmp_path, monkeypatch):
    """``--cameras`` replaces the robot's camera list: the first is the base variants' primary camera, the
    first two the extra-inputs variants'. A camera the simulator cannot render is refused before the study
    directory records it; an empty or repeated list is refused by the config."""
    pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")
    from oft.cli import main
    from oft.study import run as study_run
    from oft.study.variants import VARIANTS

    cfg = StudyConfig(suite="mt10", out="x", cameras=("workspace", "gripperPOV"))
    spec = study_run._robot_spec(cfg)
    assert spec.cameras == ("workspace", "gripperPOV")
    assert "cameras=workspace" in VARIANTS["pdac_l1"].overrides(spec)
    assert "cameras=workspace,gripperPOV" in VARIANTS["pdac_l1_extra_inputs"].overrides(spec)
    assert study_run._robot_spec(StudyConfig(suite="mt10", out="x")).cameras == ("corner", "gripperPOV")
    # a preset naming its cameras is studied with them, unless --cameras says otherwise
    mt10 = StudyConfig(suite="mt10", out="x", preset="metaworld-mt10")
    assert study_run._robot_spec(mt10).cameras == ("workspace", "gripperPOV")
    assert study_run._robot_spec(replace(mt10, cameras=("corner",))).cameras == ("corner",)

    for bad in ((), ("corner", "corner")):
        with pytest.raises(ValueError, match="distinct cameras"):
            StudyConfig(suite="mt10", out="x", cameras=bad).validate()
    out = tmp_path / "study"
    with pytest.raises(KeyError, match=r"metaworld camera 'workspce'.*workspace"):
        study_run.run_study(StudyConfig(suite="mt10", out=str(out), cameras=("workspce",)))
    assert not (out / "study.json").exists()

    seen = {}

    def run_study(config):
        seen["config"] = config
        return {"variants": []}

    monkeypatch.setattr(study_run, "run_study", run_study)
    argv = ["study", "--suite", "mt10", "--out", str(out), "--cameras", "workspace, gripperPOV"]
    assert main(argv) == 0
    assert seen["config"].cameras == ("workspace", "gripperPOV")


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"preset": "metaworld-tiyn"}, r"unknown training preset 'metaworld-tiyn'.*metaworld-tiny"),
        ({"overrides": ("lr=abc",)}, r"TrainConfig.lr='abc' is invalid"),
        ({"overrides": ("base=openvla/openvla-7b",)}, r"from scratch: base must be one of"),
        ({"overrides": ("batch_size=0",)}, r"TrainConfig.batch_size=0 is invalid: expected an integer >= 1"),
        ({"suite": "aloha", "preset": "metaworld-tiny"}, r"aloha camera 'corner'"),
    ],
)
def test_a_study_refused_for_its_training_settings_writes_nothing(settings, error, tmp_path):
    """Refused before study.json records the study: a recorded study refuses reruns with other settings, so a
    typo written down would also block the corrected command in the same --out."""
    from oft.study import run as study_run

    out = tmp_path / "study"
    with pytest.raises((KeyError, ValueError), match=error):
        small = {"suite": "mt10", "variants": ("pdac_l1",), "tasks": ("drawer-close-v3",), "demos": 1,
                 "episodes": 1}  # fmt: skip
        if settings.get("suite") == "aloha":
            small.update(variants=("oft_plus",), tasks=("transfer-cube",))
        study_run.run_study(StudyConfig(out=str(out), **{**small, **settings}))
    assert not out.exists()
