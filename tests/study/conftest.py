"""Fixtures of the study tests."""

from __future__ import annotations

import argparse

import pytest


@pytest.fixture
def study_cli_config(monkeypatch):
    """``study_cli_config(argv)``: the StudyConfig that ``oft study ARGV`` would run (nothing runs)."""
    from oft.study import commands, run

    seen = {}

    def fake_study(config):
        seen["config"] = config
        return {"variants": []}

    monkeypatch.setattr(run, "run_study", fake_study)

    def parse(argv: list[str]):
        p = argparse.ArgumentParser()
        commands.add_arguments(p)
        commands.run(p.parse_args(argv))
        return seen["config"]

    return parse
