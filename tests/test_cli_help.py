"""``--help`` never splits a name at one of its hyphens.

argparse wraps help with textwrap's default, which breaks lines after a hyphen: ``oft bench --help`` listed
the architecture ``small-wide`` as "small-" at the end of one line and "wide" on the next, and a task such
as ``peg-insert-side-v3`` or a flag such as ``--action-noise`` could split the same way at another width.
"""

from __future__ import annotations

import re

import pytest

from oft.cli import COMMANDS, build_parser, command_parser

SPLIT = re.compile(r"\w-$")  # a line ending inside a hyphenated word


def _helps(command: str | None) -> str:
    parser = build_parser([] if command is None else [command])
    if command is None:
        return parser.format_help()
    return command_parser(parser, command).format_help()


@pytest.mark.parametrize("columns", ["60", "80", "100", "120"])
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_wraps_at_spaces_only(command, columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)  # argparse's width (shutil.get_terminal_size)
    split = [line for line in _helps(command).splitlines() if SPLIT.search(line.rstrip())]
    assert not split, f"oft {command or ''} --help at {columns} columns splits a name: {split}"
