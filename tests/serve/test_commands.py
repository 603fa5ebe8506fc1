"""``oft serve``: the command line around the server and the serving benchmark."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oft.serve.commands import _is_loopback


def oft(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "oft.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_missing_checkpoint_is_one_clean_error(tmp_path):
    result = oft("serve", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_loopback_detection():
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.2")


@pytest.mark.slow
def test_serve_benchmark_end_to_end(tiny_checkpoint, tmp_path):
    """`oft serve CKPT --benchmark` starts `oft serve` in a subprocess and measures it over loopback."""
    out = tmp_path / "bench.json"
    args = ["--threads", "1", "--requests", "5", "--clients", "1,2", "--seconds", "0.5", "--image-size", "64"]
    result = oft("serve", str(tiny_checkpoint), "--benchmark", *args, "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "websocket round trip" in result.stdout
    r = json.loads(out.read_text())
    assert r["in_process"]["n"] == 5 and r["websocket"]["median_ms"] > 0 and r["http"]["median_ms"] > 0
    assert [t["clients"] for t in r["throughput"]] == [1, 2]
    assert all(t["requests_per_s"] > 0 and t["actions_per_s"] == pytest.approx(8 * t["requests_per_s"])
               for t in r["throughput"])  # fmt: skip
    assert r["websocket_overhead_ms"] == pytest.approx(
        r["websocket"]["median_ms"] - r["in_process"]["median_ms"]
    )


def test_every_limit_is_a_flag():
    import argparse

    from oft.serve.commands import _config, add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = "ckpt --max-prompt-tokens 32 --max-connections 9 --idle-timeout 1.5 --body-timeout 2.5"
    flags += " --ws-idle-timeout 3.5 --ws-heartbeat 0 --clip-actions"
    c = _config(p.parse_args(flags.split()))
    got = (c.max_prompt_tokens, c.max_connections, c.idle_timeout_s, c.body_timeout_s, c.ws_idle_timeout_s)
    assert got == (32, 9, 1.5, 2.5, 3.5) and c.ws_heartbeat_s == 0 and c.clip_actions
