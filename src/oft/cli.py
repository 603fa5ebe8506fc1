"""`oft` command line: a thin dispatcher.

Each subcommand lives next to the library code it drives, as a module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``oft --help`` stays fast and a
missing optional extra (simulators, RLDS) breaks only the commands that need it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
import textwrap

from oft.progress import bars_and_logs

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("oft.train.quickstart", "collect demos, train a small OFT policy on the CPU, evaluate it"),
    "train": ("oft.train.commands", "fine-tune a policy with the OFT recipe"),
    "eval": ("oft.sim.commands_eval", "evaluate a policy (or the expert) in a simulator"),
    "eval-compare": ("oft.sim.commands_compare", "do two eval results differ beyond chance (per task)"),
    "eval-curve": ("oft.study.commands_curve", "success against training minutes over a run's checkpoints"),
    "probe-instructions": (
        "oft.model.commands_probe",
        "does a policy read its instruction: swap instructions on dataset frames (no simulator)",
    ),
    "study": ("oft.study.commands", "train + evaluate the paper's design variants on one budget"),
    "collect": ("oft.sim.commands_collect", "collect expert demonstrations into a LeRobot v3 dataset"),
    "stats": ("oft.data.commands", "compute normalization statistics of a dataset"),
    "info": ("oft.model.commands", "describe a checkpoint: architecture, parameters, robot spec, stats"),
    "serve": ("oft.serve.commands", "serve a policy over websocket (openpi) and HTTP (/act)"),
    "bench": ("oft.bench.commands", "measure latency and throughput like the paper's Table II"),
    "verify": ("oft.commands_verify", "check a dataset or checkpoint against its sha256 checksums"),
}


# options where an empty value means something: an instruction withheld (the language control)
EMPTY_ALLOWED = frozenset({"--instruction"})


def empty_argument(
    argv: list[str], no_value: frozenset[str] = frozenset(), positional: str = ""
) -> str | None:
    """The option (or ``"the positional argument"``) given an empty value in ``argv``, or None.

    ``--out "$DIR"`` with the variable unset is ``--out ""``: argparse takes it, and ``Path("")`` is the
    current directory, ``--api-key ""`` turns authentication off, ``--preset ""`` means the default preset.
    Only the options in :data:`EMPTY_ALLOWED` may be empty. no_value: the flags that take no value (an empty
    string after ``--json`` is a positional); positional: the name to give a positional (``"checkpoint"``).
    """
    for i, token in enumerate(argv):
        if token.startswith("--") and "=" in token:
            flag, _, value = token.partition("=")
            if not value.strip() and flag not in EMPTY_ALLOWED:
                return flag
        elif not token.strip():
            before = argv[i - 1] if i else ""
            if not (before.startswith("-") and "=" not in before) or before in no_value:
                return f"the positional argument{f' ({positional})' if positional else ''}"
            if before not in EMPTY_ALLOWED:
                return before
    return None


def comma_list(text: str, flag: str, convert=str) -> tuple:
    """``"a, b,c"`` -> ("a", "b", "c"), each item through ``convert`` (``int`` for steps).

    ValueError naming ``flag`` and the text when an item does not convert, when nothing is named, or when an
    item is empty: ``--cameras "$CAMS"`` or ``--tasks "a,$B"`` with a variable unset is refused rather than
    read as the default or as half the list.
    """
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError(f"{flag} {text!r} names nothing; expected a comma-separated list")
    if not all(items):  # "a,$B" with B unset: half the list, silently
        raise ValueError(f"{flag} {text!r} has an empty item; expected a comma-separated list without gaps")
    try:
        return tuple(convert(t) for t in items)
    except ValueError:
        kind = getattr(convert, "__name__", "value")
        raise ValueError(f"{flag} {text!r}: expected comma-separated {kind} values") from None


class Bounded:
    """An argparse ``type`` for a number flag that states its valid range, so a value outside it is refused
    while parsing, before any work, with argparse naming the flag:
    ``oft eval: error: argument --episodes: expected an integer >= 1, got '0'``. (Numbers in comma lists,
    ``--clients 1,4``, are checked by the command before any work, through :func:`comma_list`.)

    kind: ``int`` or ``float``. ge / gt: the lowest value allowed / the bound it must exceed; le / lt: the
    same above (None: unbounded). nan and inf are always refused. ``__call__`` raises
    argparse.ArgumentTypeError. Library functions keep their own checks, named by their parameters.
    """

    def __init__(
        self,
        kind: type = int,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
    ) -> None:
        self.kind, self.ge, self.gt, self.le, self.lt = kind, ge, gt, le, lt
        self.__name__ = kind.__name__  # argparse's fallback name for the type

    def describe(self) -> str:
        """``"an integer >= 1"``, ``"a number > 0 and < 1"``: what the flag expects."""
        what = "an integer" if self.kind is int else "a number"
        lo = f">= {self.ge}" if self.ge is not None else f"> {self.gt}" if self.gt is not None else None
        hi = f"<= {self.le}" if self.le is not None else f"< {self.lt}" if self.lt is not None else None
        return " ".join(x for x in (what, " and ".join(b for b in (lo, hi) if b)) if x)

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        # an int too large for a float would make isfinite raise OverflowError, a traceback through argparse
        ok = value is not None and (self.kind is int or math.isfinite(value))
        ok = ok and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        ok = ok and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value


COUNT = Bounded(int, ge=1)  # episodes, workers, steps, threads: at least one
COUNT_OR_ZERO = Bounded(int, ge=0)  # videos, warm-up calls; seeds
POSITIVE = Bounded(float, gt=0)  # minutes, seconds
NONNEGATIVE = Bounded(float, ge=0)  # waits where 0 means none or off


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, wrapped at spaces only: a name such as ``small-128-conv``,
    ``peg-insert-side-v3`` or ``--action-noise`` is never split at one of its hyphens (argparse wraps with
    textwrap's default, which breaks there), so a name copied from ``--help`` is the name the command
    takes."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.fill(
            text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )


class RawDescriptionHelpFormatter(HelpFormatter):
    """:class:`HelpFormatter` that keeps a command's description and epilog as written (argparse's
    ``RawDescriptionHelpFormatter``); argument help is still wrapped at spaces only."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oft", description="Optimized Fine-Tuning for VLA robot policies.", formatter_class=HelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        # only the chosen subcommand's module is imported (its arguments are needed to parse)
        if name in argv:
            importlib.import_module(module).add_arguments(p)
    return parser


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` inside :func:`build_parser`'s ``parser`` (its arguments are there
    only when ``command`` was in the argv it was built for); KeyError for a name not in :data:`COMMANDS`."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def _flag_kinds(parser: argparse.ArgumentParser, command: str) -> tuple[frozenset[str], str]:
    """(the flags of ``command`` that take no value, the names of its positionals joined by '/')."""
    sub = command_parser(parser, command)
    no_value = frozenset(o for a in sub._actions if a.nargs == 0 for o in a.option_strings)
    return no_value, "/".join(a.dest for a in sub._actions if not a.option_strings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        parser.print_help()
        return 2
    empty = empty_argument(argv, *_flag_kinds(parser, args.command))
    if empty is not None:
        print(f"oft {args.command}: error: {empty} is empty; expected a value (an unset shell variable?)",
              file=sys.stderr)  # fmt: skip
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        with bars_and_logs():  # a log line printed under a progress bar starts its own line
            return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        # user errors: one clear line, no traceback (use -v for it)
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"oft {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: what the command keeps on stopping it has logged (an evaluation's finished episodes, a
        # collection's committed ones, a run's checkpoints); the shell's convention, 128 + SIGINT
        if args.verbose:
            raise
        print(f"oft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
