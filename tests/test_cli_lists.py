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
    assert comma_list(" a, b,,c ", "--x") == ("a", "b", "c")
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
    elif command in ("eval --tasks", "quickstart --tasks"):
        assert "no metaworld tasks in ' , '" in err, err
    else:
        assert f"{flag} ' , ' names nothing" in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["eval", "--expert", "--tasks", "drawer-open-v3", "--out", ""], "--out"),
        (["eval", "--expert", "--tasks", "drawer-open-v3", "--out="], "--out"),
        (["train", "--preset", "", "--dataset", "d", "--out", "o"], "--preset"),
        (["serve", ""], "a positional argument"),
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
