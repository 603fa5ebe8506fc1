"""Progress bars (tqdm) that keep log lines whole and log files short.

Every bar of the CLI (``collect``, ``eval``, ``train``) comes from :func:`progress_bar`, and ``oft``'s entry
point runs each command inside :func:`bars_and_logs`, which routes log records through ``tqdm.write`` so a
log line printed while a bar is drawn starts on its own line instead of being glued to the bar's text.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager

# When stderr is a file or a pipe (``nohup oft train … > run.log``), a bar redraws at most this often:
# tqdm's default (0.1 s) writes ~18,000 bar states into the log of a 30-minute run; this writes ~60.
FILE_MININTERVAL_S = 30.0


class _NoBar:
    """What :func:`progress_bar` returns when bars are off: the calls the commands make, doing nothing."""

    total = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, desc: str, unit: str, initial: int = 0, enabled: bool = True, **kwargs):
    """A ``tqdm`` bar on stderr counting ``total`` items of ``unit`` from ``initial``; a no-op when not
    ``enabled``. On a terminal it redraws at tqdm's pace; when its stream (``file``, default stderr) is not a
    terminal, at most once per ``FILE_MININTERVAL_S`` seconds (an explicit ``mininterval`` or the
    ``TQDM_MININTERVAL`` environment variable wins). Extra keyword arguments go to ``tqdm``."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    if (
        "mininterval" not in kwargs
        and "TQDM_MININTERVAL" not in os.environ
        and not _is_terminal(kwargs.get("file") or sys.stderr)
    ):
        kwargs["mininterval"] = FILE_MININTERVAL_S
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, **kwargs)


def bars_and_logs() -> AbstractContextManager:
    """A context in which log records to the console are written with ``tqdm.write`` (tqdm's
    ``logging_redirect_tqdm``): the bar is cleared, the line printed, the bar redrawn below it."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


__all__ = ["FILE_MININTERVAL_S", "bars_and_logs", "progress_bar"]
