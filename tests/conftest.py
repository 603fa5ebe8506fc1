"""Shared test setup: headless rendering, few threads, and the path to ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
# Tests use tiny models: one thread is as fast as two and does not collapse when the machine is shared
# (spinning OpenMP threads made some tests 20x slower under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` beside the checkout; tests that need it skip in a user's clone."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {SHARED_FIXTURES} (a user clone has none)")
    return SHARED_FIXTURES


@pytest.fixture
def interrupt_when():
    """``interrupt_when(cmd, marker)``: see :func:`_interrupt_when`."""
    return _interrupt_when


def _interrupt_when(cmd: list[str], ready, timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd``, and once it is ``ready`` send SIGINT to its whole process group, as a terminal's Ctrl-C
    does; returns (exit status, stderr). ``ready``: text its stderr shows, or a function of nothing that
    returns True; waited for at most ``timeout`` s."""
    import signal
    import subprocess
    import threading
    import time

    # a terminal's Ctrl-C reaches a process whose SIGINT is at its default; a shell's background job
    # (`make test &`) starts its children with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: restore the default in the child
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        is_ready = ready if callable(ready) else lambda: ready in "".join(err)
        while not is_ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert is_ready(), f"{cmd} never got ready ({ready!r}); its stderr:\n{''.join(err)}"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, "".join(err)
