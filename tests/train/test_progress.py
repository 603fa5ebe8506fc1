"""Progress bars and log lines in a log file: each log line starts its own line (it was glued to the bar)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from oft.progress import FILE_MININTERVAL_S, progress_bar


def test_a_log_line_under_a_bar_starts_its_own_line(tiny_dataset_dir, tmp_path):
    """`oft train … 2> run.log`: the INFO lines written while the train bar is up (checkpoints, the lr
    decay) each begin a line of the file, whether it is read with line breaks or carriage returns."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "oft.cli", "train", "--dataset", str(tiny_dataset_dir), "--out", str(out),
         "--base", "tiny", "--steps", "4", "--set", "batch_size=2", "--set", "num_threads=1",
         "--set", "save_every=2", "--set", "decay_at=0.5"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    segments = re.split(r"[\r\n]", result.stderr)
    logged = [s for s in segments if " INFO oft." in s]
    assert any("lr decayed" in s for s in logged), result.stderr  # a line written while the bar is drawn
    glued = [s for s in logged if not re.match(r"\d\d:\d\d:\d\d INFO ", s)]
    assert not glued, glued
    assert any(s.startswith("train:") for s in segments)  # the bar is still shown


def test_a_bar_into_a_file_redraws_rarely(monkeypatch):
    """Not a terminal: at most one redraw per FILE_MININTERVAL_S; the TQDM_MININTERVAL variable or an
    explicit mininterval wins; a disabled bar takes the calls and draws nothing."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    log = io.StringIO()
    assert progress_bar(10, desc="x", unit="it", file=log).mininterval == FILE_MININTERVAL_S
    assert progress_bar(10, desc="x", unit="it", file=log, mininterval=1.0).mininterval == 1.0
    # tqdm reads its environment when imported: a fresh process
    code = (
        "import io; from oft.progress import progress_bar; "
        "print(progress_bar(1, desc='x', unit='it', file=io.StringIO()).mininterval)"
    )
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
        == "5.0"
    )
    off = progress_bar(10, desc="x", unit="it", enabled=False)
    off.update(3)
    off.set_postfix(loss=1.0)
    off.close()
