"""Every `oft` command in a code block of the README and docs/ parses with the current command line.

Parsing only, nothing runs: each option spelled in full (argparse would also take an abbreviation such as
``--episode`` for ``--episodes``, which reads as another option), every ``--set`` a real training-config
field with a valid value, every ``--preset`` a known one. Shell variables (``$S``) stand
for ``1``; schematic lines (``…``, ``...``, ``[--opt]``, ``a|b``) are skipped.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from oft.cli import COMMANDS, build_parser, command_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# a command starts its line (after an optional "$ " prompt) or follows a shell separator; "oft eval" inside
# a directory listing's comment does not
_NAMES = "|".join(map(re.escape, COMMANDS))
_COMMAND = re.compile(rf"(?:^\s*(?:\$\s+)?|[;&|(]\s*)(oft\s+(?:{_NAMES})(?=\s|$).*)")
_SHELL_END = {"&&", "||", "|", ";", "&"}


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) for each `oft …` line inside a fenced code block, continuation lines joined."""
    found = []
    for path in DOCS:
        lines = path.read_text().split("\n")
        fenced, i = False, 0
        while i < len(lines):
            line = lines[i]
            if line.strip().startswith("```"):
                fenced = not fenced
            elif fenced and not line.lstrip().startswith("#"):
                start = i
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                match = _COMMAND.search(line)
                if match:
                    found.append((f"{path.relative_to(REPO)}:{start + 1}", match.group(1).strip()))
            i += 1
    return found


def _argv(command: str) -> list[str] | None:
    """The arguments after ``oft``, or None for a schematic line."""
    if any(s in command for s in ("…", "...", "[--", "<<")) or re.search(r"\S\|\S", command):
        return None
    command = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", command)
    tokens = shlex.split(command, comments=True)
    for i, token in enumerate(tokens):
        if token in _SHELL_END or token.startswith((">", "2>")):
            tokens = tokens[:i]
            break
    return tokens[1:]


COMMANDS_IN_DOCS = documented_commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS_IN_DOCS) >= 50, COMMANDS_IN_DOCS  # the extraction still finds the code blocks


@pytest.mark.parametrize(("where", "command"), COMMANDS_IN_DOCS, ids=[w for w, _ in COMMANDS_IN_DOCS])
def test_documented_command_parses(where, command):
    from oft.train.config import TrainConfig, apply_overrides
    from oft.train.presets import PRESETS

    argv = _argv(command)
    if argv is None:
        pytest.skip("schematic")
    parser = build_parser(argv)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: {command}\n{errors.getvalue()}")
    sub = command_parser(parser, argv[0])
    options = {o for a in sub._actions for o in a.option_strings} | {"-v", "--verbose"}
    spelled = [t.split("=", 1)[0] for t in argv if t.startswith("--")]
    abbreviated = [t for t in spelled if t not in options]
    assert not abbreviated, f"{where}: {abbreviated} abbreviate an option; spell it in full"
    sets = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--set"]
    apply_overrides(TrainConfig(), sets)  # an unknown field or a bad value raises, naming it
    presets = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--preset"]
    assert set(presets) <= set(PRESETS), f"{where}: unknown preset in {presets}"
