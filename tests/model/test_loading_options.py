"""Every command that loads a policy (``oft eval``, ``oft serve``, ``oft info``, ``oft bench``) takes
``load_policy``'s options the same way: ``--dtype`` defaults to the checkpoint's own dtype (the help said so,
the code used float32), ``--unnorm-key`` picks a dataset's statistics, ``--center-crop/--no-center-crop``
overrides the checkpoint's crop default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from oft.cli import build_parser, main
from oft.data.normalize import NormStats, Stats
from oft.spec import get_spec

PAPER = "openvla-oft-tiny-libero"
COMMANDS = ("eval", "serve", "info", "bench")


def _stats(dim: int) -> Stats:
    o = np.ones(dim)
    return Stats(mean=0 * o, std=o, min=-2 * o, max=2 * o, q01=-o, q99=o)


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory) -> Path:
    """A tiny oft policy saved in bf16 (what a bf16 training run writes), center crop recorded on."""
    from oft.model import build_policy

    torch.manual_seed(0)
    spec = get_spec("libero")
    stats = NormStats(action=_stats(spec.action_dim), proprio=_stats(spec.proprio_dim))
    policy = build_policy(spec, stats, ["pick up the block"], arch="tiny", center_crop=True)
    path = tmp_path_factory.mktemp("bf16") / "policy"
    policy.to(torch.bfloat16).save(path)
    return path


@pytest.fixture(scope="module")
def two_datasets(shared_fixtures, tmp_path_factory) -> tuple[Path, str, dict]:
    """The paper-format fixture with statistics for a second dataset (files linked, statistics rewritten).

    Returns (checkpoint, the added key, its action statistics)."""
    src = shared_fixtures / PAPER
    dst = tmp_path_factory.mktemp("two") / PAPER
    for f in src.rglob("*"):
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.is_file() and f.name != "dataset_statistics.json":
            target.symlink_to(f)
    stats = json.loads((src / "dataset_statistics.json").read_text())
    (key,) = stats
    other = json.loads(json.dumps(stats[key]))
    for name in ("q01", "q99", "min", "max", "mean", "std"):
        other["action"][name] = [2.0 * v + 0.5 for v in other["action"][name]]
    stats["other_suite"] = other
    (dst / "dataset_statistics.json").write_text(json.dumps(stats))
    return dst, "other_suite", other["action"]


@pytest.fixture
def loaded(monkeypatch, tmp_path):
    """``loaded(command, checkpoint, *flags)`` runs the command's loading path; -> the policy it loaded."""
    import oft.model.loading as loading
    import oft.sim.evaluate as evaluate_module

    real, seen = loading.load_policy, []

    def recording(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    def no_rollouts(policy, *args, **kwargs):
        row = {"successes": 0, "episodes": 0, "success_rate": 0.0, "ci95": [0.0, 1.0]}
        return {"tasks": {"t": row}, "overall": row, "wall_s": 0.0, "env_steps_per_s": 0.0,
                "episodes_per_s": 0.0, "workers": 1}  # fmt: skip

    monkeypatch.setattr(loading, "load_policy", recording)
    monkeypatch.setattr(evaluate_module, "evaluate", no_rollouts)

    def run(command: str, checkpoint: Path, *flags: str):
        if command == "eval":
            out = ["--env", "metaworld", "--tasks", "drawer-open-v3", "--out", str(tmp_path / "ev")]
            assert main(["eval", "--checkpoint", str(checkpoint), *out, *flags]) == 0
        elif command == "info":
            assert main(["info", str(checkpoint), "--json", *flags]) == 0
        elif command == "serve":
            from oft.serve.commands import load

            argv = ["serve", str(checkpoint), *flags]
            load(build_parser(argv).parse_args(argv))
        else:
            from oft.bench.commands import load_base

            argv = ["bench", str(checkpoint), "--device", "cpu", *flags]
            load_base(build_parser(argv).parse_args(argv))
        assert seen, f"oft {command} did not load through load_policy"
        return seen[-1]

    return run


@pytest.mark.parametrize("command", COMMANDS)
def test_dtype_defaults_to_the_checkpoints(command, loaded, bf16_checkpoint, capsys):
    assert loaded(command, bf16_checkpoint).dtype == torch.bfloat16
    if command == "info":
        assert json.loads(capsys.readouterr().out)["dtype"] == "torch.bfloat16"
    assert loaded(command, bf16_checkpoint, "--dtype", "float32").dtype == torch.float32


@pytest.mark.parametrize("command", COMMANDS)
def test_dtype_of_a_paper_checkpoint_is_its_configs(command, loaded, shared_fixtures):
    """The paper's checkpoints record ``torch_dtype: bfloat16`` (its deployment loads them so)."""
    assert loaded(command, shared_fixtures / PAPER).dtype == torch.bfloat16


@pytest.mark.parametrize("command", ["eval", "serve", "info"])
def test_center_crop_flag_overrides_the_checkpoint(command, loaded, bf16_checkpoint, capsys):
    assert loaded(command, bf16_checkpoint).config.center_crop is True  # recorded in the checkpoint
    capsys.readouterr()
    assert loaded(command, bf16_checkpoint, "--no-center-crop").config.center_crop is False
    if command == "info":
        assert json.loads(capsys.readouterr().out)["center_crop"] is False
    assert loaded(command, bf16_checkpoint, "--center-crop").config.center_crop is True


@pytest.mark.parametrize("command", ["eval", "serve", "info"])
def test_unnorm_key_selects_a_datasets_statistics(command, loaded, two_datasets):
    checkpoint, key, action = two_datasets
    policy = loaded(command, checkpoint, "--unnorm-key", key, "--dtype", "float32")
    for name in ("q01", "q99"):
        np.testing.assert_allclose(getattr(policy.norm_stats.action, name), action[name], rtol=1e-6)


@pytest.mark.parametrize("command", ["eval", "info"])
def test_several_datasets_without_unnorm_key_is_one_clean_error(command, two_datasets, tmp_path, capsys):
    checkpoint, key, _ = two_datasets
    argv = ["info", str(checkpoint)]
    if command == "eval":
        argv = ["eval", "--checkpoint", str(checkpoint), "--tasks", "drawer-open-v3", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert key in err and "--unnorm-key KEY" in err and "Traceback" not in err


@pytest.fixture
def training_run(bf16_checkpoint, tmp_path) -> Path:
    """An ``oft train`` run directory: two checkpoints, the newest step 4."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (2, 4):
        (run / "checkpoints" / f"step_{step:07d}").symlink_to(bf16_checkpoint)
    return run


def test_a_run_directory_is_loaded_as_its_newest_step_and_says_so(training_run, caplog):
    from oft.model.loading import load_policy

    with caplog.at_level("INFO", logger="oft.model.loading"):
        policy = load_policy(training_run)
    newest = training_run / "checkpoints" / "step_0000004"
    assert policy.checkpoint_dir == newest
    assert "is a training run: loading its newest checkpoint checkpoints/step_0000004" in caplog.text
    assert load_policy(newest).checkpoint_dir == newest


def _no_rollouts(sources: list):
    """An ``evaluate`` stand-in that runs no episodes and appends the ``policy_source`` it was given."""

    def no_rollouts(policy, *args, policy_source=None, **kwargs):
        sources.append(policy_source)
        row = {"successes": 0, "episodes": 0, "success_rate": 0.0, "ci95": [0.0, 1.0]}
        return {"tasks": {"t": row}, "overall": row, "wall_s": 0.0, "env_steps_per_s": 0.0,
                "episodes_per_s": 0.0, "workers": 1}  # fmt: skip

    return no_rollouts


def test_every_command_records_the_step_a_run_directory_stood_for(
    training_run, monkeypatch, tmp_path, capsys
):
    """``oft eval --checkpoint RUN`` wrote RUN as its policy, so a results.json never said which step it
    measured; ``oft serve`` reported the run's name, ``oft bench`` and ``oft info`` the directory given."""
    import oft.bench.commands as bench_commands
    import oft.serve.server as server_module
    import oft.sim.evaluate as evaluate_module

    sources, served = [], {}

    monkeypatch.setattr(evaluate_module, "evaluate", _no_rollouts(sources))
    out = ["--env", "metaworld", "--tasks", "drawer-open-v3", "--out", str(tmp_path / "ev")]
    assert main(["eval", "--checkpoint", str(training_run), *out]) == 0
    newest = training_run / "checkpoints" / "step_0000004"
    assert sources == [str(newest)]

    monkeypatch.setattr(
        server_module, "serve_forever", lambda policy, config, policy_info: served.update(policy_info)
    )
    assert main(["serve", str(training_run)]) == 0
    assert served["checkpoint"] == "run/checkpoints/step_0000004"  # the step, not the server's full path
    assert main(["serve", str(newest)]) == 0
    assert served["checkpoint"] == newest.resolve().name  # a step given: its name, as before

    capsys.readouterr()
    assert main(["info", str(training_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(newest)

    monkeypatch.setattr(bench_commands, "_matmul", lambda args: 1.0)
    monkeypatch.setattr(bench_commands, "system_rows", lambda *args: [])
    assert main(["bench", str(training_run), "--device", "cpu", "--variants", ""]) == 2  # empty: refused
    assert main(["bench", str(training_run), "--device", "cpu", "--variants", "bare_forward", "--warmup", "0",
                 "--iters", "1", "--json", str(tmp_path / "b.json")]) == 0  # fmt: skip
    assert f"oft bench: {newest} " in capsys.readouterr().out
    assert {r["source"].split(" ")[0] for r in json.loads((tmp_path / "b.json").read_text())} == {str(newest)}


def test_the_newest_step_is_the_highest_number(bf16_checkpoint, tmp_path):
    from oft.model.loading import load_policy

    run = tmp_path / "long"
    (run / "checkpoints").mkdir(parents=True)
    for step in (9_999_999, 10_000_000):  # by name, step_9999999 sorts last
        (run / "checkpoints" / f"step_{step:07d}").symlink_to(bf16_checkpoint)
    assert load_policy(run).checkpoint_dir.name == "step_10000000"


def test_a_relative_checkpoint_is_recorded_so_it_can_be_found_from_anywhere(
    training_run, monkeypatch, tmp_path
):
    """``oft eval --checkpoint runs/x`` recorded ``runs/x/checkpoints/...`` relative to the directory the
    command ran in: a results.json read from elsewhere (eval-compare, a notebook) named no checkpoint. The
    recorded directory is absolute; symlinks are kept, so the step's name stays on record; the served name
    still says the step a relative run directory stood for."""
    import oft.serve.server as server_module
    import oft.sim.evaluate as evaluate_module
    from oft.model.loading import load_policy

    monkeypatch.chdir(training_run.parent)
    newest = training_run / "checkpoints" / "step_0000004"
    assert load_policy("run").checkpoint_dir == newest  # absolute, and not resolved to the symlink's target

    sources, served = [], {}

    monkeypatch.setattr(evaluate_module, "evaluate", _no_rollouts(sources))
    argv = ["eval", "--checkpoint", "run", "--env", "metaworld", "--tasks", "drawer-open-v3", "--out", "ev"]
    assert main(argv) == 0
    assert sources == [str(newest)]
    monkeypatch.setattr(
        server_module, "serve_forever", lambda policy, config, policy_info: served.update(policy_info)
    )
    assert main(["serve", "run"]) == 0
    assert served["checkpoint"] == "run/checkpoints/step_0000004"
