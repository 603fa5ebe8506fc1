"""Every comma-separated option refuses a value that names nothing, before anything runs or is written.

An unset shell variable (``--cameras "$CAMS"``) used to mean the default cameras in ``oft eval`` and ``oft
collect``, the default variants in ``oft study``, an IndexError in ``oft eval-curve --steps`` and an
evaluation of no task in ``oft eval --tasks``; ``oft quickstart`` created its output directory before
finding out that its tasks were misspelled.
"""

from __future__ import annotations

import pytest

from oft.cli import comma_list, main


def test_comma_list_parses_and_names_the_flag():
    assert comma_list(" a, b,c ", "--x") == ("a", "b", "c")
    with pytest.raises(ValueError, match=r"--x ' a, b,,c ' has an empty item"):
        comma_list(" a, b,,c ", "--x")
    assert comma_list("3,10", "--steps", int) == (3, 10)
    with pytest.raises(ValueError, match=r"--x ' , ' names nothing; expected a comma-separated list"):
        comma_list(" , ", "--x")
    with pytest.raises(ValueError, match=r"--steps '3,x': expected comma-separated int values"):
        comma_list("3,x", "--steps", int)


def _argv(command: str, value: str, out: str) -> tuple[list[str], str]:
    """(argv, the flag given ``value``) for one command."""
    mw = ["--env", "metaworld"]
    return {
        "eval --cameras": (["eval", *mw, "--expert", "--tasks", "drawer-open-v3", "--cameras", value,
                            "--out", out], "--cameras"),
        "eval --tasks": (["eval", *mw, "--expert", "--tasks", value, "--out", out], "--tasks"),
        "collect --cameras": (["collect", "metaworld", "--tasks", "drawer-open-v3", "--episodes", "1",
                               "--cameras", value, "--out", out], "--cameras"),
        "study --variants": (["study", "--suite", "language", "--variants", value, "--out", out],
                             "--variants"),
        "study --tasks": (["study", "--suite", "language", "--tasks", value, "--out", out], "--tasks"),
        "quickstart --tasks": (["quickstart", "--tasks", value, "--out", out], "--tasks"),
        "eval-curve --steps": (["eval-curve", "--run", out, "--tasks", "drawer-open-v3", "--steps", value,
                                "--out", out], "--steps"),
        "serve --clients": (["serve", ".", "--benchmark", "--clients", value], "--clients"),
        "probe-instructions --frames": (["probe-instructions", "--checkpoint", out, "--dataset", out,
                                         "--frames", value, "--out", out], "--frames"),
    }[command]  # fmt: skip


COMMANDS = ["eval --cameras", "eval --tasks", "collect --cameras", "study --variants", "study --tasks",
            "quickstart --tasks", "eval-curve --steps", "serve --clients",
            "probe-instructions --frames"]  # fmt: skip


@pytest.mark.parametrize("value", ["", " , "])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_option_that_names_nothing_is_refused(command, value, tmp_path, capsys):
    out = tmp_path / "out"
    argv, flag = _argv(command, value, str(out))
    assert main(argv) == 2
    err = capsys.readouterr().err
    if value == "":  # oft.cli refuses any empty option before the command runs
        assert f"{flag} is empty; expected a value" in err, err
    elif command in ("eval --tasks", "quickstart --tasks"):  # the task parser's own message
        assert "tasks ' , ' names nothing" in err, err
    else:
        assert f"{flag} ' , ' names nothing" in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["eval", "--expert", "--tasks", "drawer-open-v3", "--out", ""], "--out"),
        (["eval", "--expert", "--tasks", "drawer-open-v3", "--out="], "--out"),
        (["train", "--preset", "", "--dataset", "d", "--out", "o"], "--preset"),
        (["serve", ""], "the positional argument (checkpoint)"),
        (["train", "--dataset", "d", "--out", "o", "--set", ""], "--set"),
    ],
)
def test_an_empty_option_is_refused_naming_it(argv, named, tmp_path, capsys, monkeypatch):
    """``--out ""`` wrote into the current directory (``Path("")``), ``--preset ""`` meant the default
    preset, ``oft serve ""`` served the current directory."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert f"{named} is empty; expected a value" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_empty_instruction_is_allowed_and_an_empty_api_key_from_the_environment_is_not(
    tmp_path, capsys, monkeypatch
):
    from oft.cli import empty_argument

    assert empty_argument(["eval", "--instruction", "", "--tasks", "t"]) is None  # the withheld control
    assert empty_argument(["eval", "--instruction=", "--tasks", "t"]) is None
    monkeypatch.setenv("OFT_API_KEY", "")
    assert main(["serve", str(tmp_path)]) == 2
    assert "OFT_API_KEY is set but empty" in capsys.readouterr().err


def test_quickstart_refuses_a_misspelled_task_before_writing(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--tasks", "drawer-opn-v3", "--out", str(out)]) == 2
    assert "Did you mean 'drawer-open-v3'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "text, flag",
    [
        ("drawer-open-v3,", "--tasks"),
        ("drawer-open-v3,,drawer-close-v3", "--tasks"),
        ("corner,", "--cameras"),
    ],
)
def test_an_empty_item_inside_a_list_is_refused(text, flag, tmp_path, capsys):
    """``--tasks "a,$B"`` with B unset evaluated half the tasks, silently (from a new-user trial)."""
    out = tmp_path / "out"
    tasks = text if flag == "--tasks" else "drawer-open-v3"
    argv = ["eval", "--env", "metaworld", "--expert", "--tasks", tasks, "--out", str(out)]
    argv += ["--cameras", text] if flag == "--cameras" else []
    assert main(argv) == 2
    assert "has an empty item" in capsys.readouterr().err
    assert not out.exists()


def test_an_empty_item_in_a_set_list_is_refused():
    from oft.train.config import TrainConfig, apply_overrides

    with pytest.raises(ValueError, match=r"TrainConfig\.cameras='corner,,gripperPOV' has an empty item"):
        apply_overrides(TrainConfig(), ["cameras=corner,,gripperPOV"])


def test_an_empty_positional_after_a_flag_without_value_is_named_as_the_positional(capsys):
    """``oft info --json ""`` blamed --json, which takes no value: the empty thing is the checkpoint."""
    assert main(["info", "--json", ""]) == 2
    assert "the positional argument (checkpoint) is empty" in capsys.readouterr().err
    assert main(["serve", "--clip-actions", ""]) == 2
    assert "the positional argument (checkpoint) is empty" in capsys.readouterr().err


def test_a_directory_that_is_not_a_checkpoint_says_what_it_probably_is(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert main(["info", str(run)]) == 2
    assert "this run has no complete checkpoint yet" in capsys.readouterr().err
    (tmp_path / "study.json").write_text("{}")
    assert main(["info", str(tmp_path)]) == 2
    assert "this is an oft study: give one variant's run" in capsys.readouterr().err
    variant = tmp_path / "variants" / "v"
    (variant / "train" / "checkpoints").mkdir(parents=True)
    assert main(["info", str(variant)]) == 2
    assert f"did you mean {variant / 'train'}?" in capsys.readouterr().err


def test_eval_refuses_zero_episodes_or_workers_before_loading(tmp_path, capsys):
    base = ["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--checkpoint", str(tmp_path / "nope")]
    for flag in ("--episodes", "--workers"):
        with pytest.raises(SystemExit):  # argparse, before the checkpoint is looked for
            main([*base, flag, "0", "--out", str(tmp_path / "o")])
        assert f"argument {flag}: expected an integer >= 1, got '0'" in capsys.readouterr().err
