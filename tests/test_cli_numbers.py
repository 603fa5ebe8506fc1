"""Every number flag states its range, so a value outside it is refused while parsing, naming the flag.

Before, a bad number reached the library and came back named by a parameter a CLI user never typed
(``oft eval --open-loop-steps 0``: "open_loop_steps must be >= 1", after loading the checkpoint;
``oft collect --episodes 0``: "episodes_per_task must be >= 1"; ``oft serve --max-batch 0``: "max_batch
must be >= 1"), or was taken: ``oft eval --seed -1``, ``--video-episodes -1``, ``oft serve --port 70000``,
``oft study --budget-minutes nan``.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from oft.cli import COMMANDS, Bounded, main


def _parser(command: str) -> argparse.ArgumentParser:
    """``command``'s own parser, with nothing required, so one flag can be parsed alone."""
    p = argparse.ArgumentParser(prog=f"oft {command}")
    importlib.import_module(COMMANDS[command][0]).add_arguments(p)
    for action in p._actions:
        action.required = False
    for group in p._mutually_exclusive_groups:
        group.required = False
    return p


def _number_flags():
    for command in COMMANDS:
        for action in _parser(command)._actions:
            if action.option_strings and (action.type in (int, float) or isinstance(action.type, Bounded)):
                yield command, action


NUMBER_FLAGS = [pytest.param(c, a, id=f"{c} {a.option_strings[0]}") for c, a in _number_flags()]


def test_every_number_flag_states_its_range():
    bare = [f"oft {c} {a.option_strings[0]}" for c, a in _number_flags() if a.type in (int, float)]
    assert not bare, f"number flags without a range (use oft.cli.Bounded): {bare}"


def _outside(t: Bounded) -> list[str]:
    """Values just outside ``t``'s range, and what no number flag takes."""
    step = 1 if t.kind is int else 1e-9
    values = ["nan", "inf", "x"] + ([] if t.kind is float else ["1.5"])
    values += [str(t.ge - step)] if t.ge is not None else [str(t.gt)] if t.gt is not None else []
    values += [str(t.le + step)] if t.le is not None else [str(t.lt)] if t.lt is not None else []
    return values


@pytest.mark.parametrize(("command", "action"), NUMBER_FLAGS)
def test_a_number_outside_the_range_is_refused_naming_the_flag(command, action, capsys):
    p, flag, t = _parser(command), action.option_strings[0], action.type
    for bound in (t.ge, t.le):
        if bound is not None:
            assert getattr(p.parse_args([f"{flag}={bound}"]), action.dest) == bound
    for text in _outside(t):
        with pytest.raises(SystemExit) as e:
            p.parse_args([f"{flag}={text}"])  # "=": argparse would read "-1e-09" as an option
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}" in err and f"expected {t.describe()}, got {text!r}" in err, (text, err)


def test_describe_names_the_range():
    assert Bounded(int, ge=1).describe() == "an integer >= 1"
    assert Bounded(float, gt=0, lt=1).describe() == "a number > 0 and < 1"
    assert Bounded(float).describe() == "a number"
    assert Bounded(float, gt=0)("1e-3") == 1e-3 and Bounded(int, ge=0)(" 7 ") == 7
    assert Bounded(int, ge=0)("9" * 400) == int("9" * 400)  # too large for a float: was an OverflowError
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number, got '1e400'"):
        Bounded(float)("1e400")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--checkpoint", "nope", "--out", "o",
          "--open-loop-steps", "0"], "argument --open-loop-steps: expected an integer >= 1, got '0'"),
        (["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--expert", "--out", "o", "--seed=-1"],
         "argument --seed: expected an integer >= 0, got '-1'"),
        (["collect", "metaworld", "--tasks", "drawer-open-v3", "--episodes", "0", "--out", "d"],
         "argument --episodes: expected an integer >= 1, got '0'"),
        (["serve", "ckpt", "--max-batch", "0"], "argument --max-batch: expected an integer >= 1, got '0'"),
        (["serve", "ckpt", "--port", "70000"], "argument --port: expected an integer >= 0 and <= 65535"),
        (["study", "--suite", "mt10", "--out", "s", "--budget-minutes", "nan"],
         "argument --budget-minutes: expected a number > 0, got 'nan'"),
    ],
)  # fmt: skip
def test_the_cli_refuses_before_any_work(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and says in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a refused command wrote something"
