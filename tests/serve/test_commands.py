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
    """`oft serve CKPT --benchmark` starts `oft serve` in a subprocess and measures it over loopback (with an
    API key and clipping, as asked: its clients send the key)."""
    out = tmp_path / "bench.json"
    args = ["--threads", "1", "--requests", "5", "--clients", "1,2", "--seconds", "0.5", "--image-size", "64"]
    args += ["--api-key", "k3y", "--clip-actions"]
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


def serve_args(*argv: str):
    import argparse

    from oft.serve.commands import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


class NotLoaded(AssertionError):
    pass


def refuse_to_load(args):
    raise NotLoaded("oft serve loaded the checkpoint (and would then serve forever)")


@pytest.mark.parametrize(
    "flag", ["--json b.json", "--image-size 64", "--requests 5", "--clients 1,2", "--seconds 1.5"]
)
def test_benchmark_options_without_benchmark_are_refused(flag, tmp_path, monkeypatch):
    """They were read only under --benchmark: without it the command served forever, ignoring them."""
    from oft.serve import commands

    monkeypatch.setattr(commands, "load", refuse_to_load)
    with pytest.raises(ValueError, match="needs --benchmark") as err:
        commands.run(serve_args(str(tmp_path), *flag.split()))
    assert str(err.value).startswith(f"{flag}: ")


def test_benchmark_options_without_benchmark_are_named_together(tmp_path, monkeypatch):
    from oft.serve import commands

    monkeypatch.setattr(commands, "load", refuse_to_load)
    with pytest.raises(ValueError, match=r"--requests 5, --seconds 2.0: these .* need --benchmark"):
        commands.run(serve_args(str(tmp_path), "--requests", "5", "--seconds", "2"))


class FakePolicy:
    spec = None  # set per test
    checkpoint_dir = None


def run_benchmark(tmp_path, monkeypatch, *flags: str) -> dict:
    """``oft serve CKPT --benchmark FLAGS`` with a fake policy and ``benchmark_serving`` recorded, not run."""
    from oft.serve import bench_serving, commands
    from oft.spec import get_spec

    policy = FakePolicy()
    policy.spec = get_spec("libero")
    seen = {}

    def recording(policy, config, **kwargs):
        seen.update(config=config, **kwargs)
        raise NotLoaded("recorded")

    monkeypatch.setattr(commands, "load", lambda args: policy)
    monkeypatch.setattr(bench_serving, "benchmark_serving", recording)
    with pytest.raises(NotLoaded, match="recorded"):
        commands.run(serve_args(str(tmp_path), "--benchmark", *flags))
    return seen


def test_benchmark_defaults_when_not_given(tmp_path, monkeypatch):
    seen = run_benchmark(tmp_path, monkeypatch)
    assert (seen["n"], seen["clients"], seen["seconds"], seen["image_size"]) == (50, (1, 4, 16), 5.0, None)
    assert seen["config"].port == 0  # a free port


def test_benchmark_refuses_more_clients_than_connections(tmp_path, monkeypatch):
    from oft.serve import commands

    monkeypatch.setattr(commands, "load", refuse_to_load)
    args = serve_args(str(tmp_path), "--benchmark", "--clients", "1,16", "--max-connections", "8")
    with pytest.raises(ValueError, match=r"--max-connections 8: .* opens up to 16 connections"):
        commands.run(args)


@pytest.fixture
def popened(monkeypatch) -> list[tuple[list[str], dict]]:
    """(command line, environment) of each server process the benchmark starts; each exits at once."""
    from oft.serve import bench_serving

    seen = []

    class ExitingServer:
        returncode = 1

        def __init__(self, cmd, env=None, **kwargs):
            seen.append((cmd, env))

        def poll(self):
            return self.returncode

        def terminate(self):
            pass

        def wait(self, timeout=None):
            return self.returncode

    monkeypatch.setattr(bench_serving.subprocess, "Popen", ExitingServer)
    return seen


def test_benchmark_server_runs_with_every_option_given(tmp_path, monkeypatch, popened):
    """The benchmarked server process used to get only some options (--clip-actions, --max-connections,
    the timeouts, --ws-heartbeat, --api-key ... were dropped): it must be configured as the command asked."""
    from oft.serve import commands
    from oft.spec import get_spec

    policy = FakePolicy()
    policy.spec = get_spec("libero")
    monkeypatch.setattr(commands, "load", lambda args: policy)
    monkeypatch.delenv("OFT_API_KEY", raising=False)
    server = ["--host", "localhost", "--port", "8123", "--api-key", "s3cret", "--max-batch", "3"]
    server += ["--batch-wait-ms", "1.5", "--max-message-mb", "0.001", "--max-prompt-tokens", "32"]
    server += ["--max-connections", "20", "--idle-timeout", "1.5", "--body-timeout", "2.5"]
    server += ["--ws-idle-timeout", "3.5", "--ws-heartbeat", "0", "--clip-actions"]
    loading = ["--device", "cpu", "--threads", "2", "--dtype", "float32", "--unnorm-key", "k"]
    loading += ["--no-center-crop"]
    bench = ["--requests", "1", "--clients", "1", "--seconds", "0.1", "--image-size", "32"]
    asked = serve_args(str(tmp_path), "--benchmark", *server, *loading, *bench)
    with pytest.raises(RuntimeError, match="server exited"):
        commands.run(asked)

    (cmd, env), *_ = popened
    assert cmd[1:4] == ["-m", "oft.cli", "serve"] and "s3cret" not in cmd  # the key is not in process lists
    if "OFT_API_KEY" in env:  # the child reads its key from its environment
        monkeypatch.setenv("OFT_API_KEY", env["OFT_API_KEY"])
    child = serve_args(*cmd[4:])
    assert commands._config(child) == commands._config(asked)
    for name in ("device", "threads", "dtype", "unnorm_key", "center_crop"):
        assert getattr(child, name) == getattr(asked, name), name
    assert not child.benchmark


def test_benchmark_server_gets_no_key_from_the_environment_when_none_is_asked(monkeypatch, popened):
    """A stray $OFT_API_KEY in this shell is not the config's: the child would demand a key no client sent."""
    from oft.serve import bench_serving
    from oft.serve.server import ServerConfig

    monkeypatch.setenv("OFT_API_KEY", "stray")
    with (
        pytest.raises(RuntimeError, match="server exited"),
        bench_serving.server_subprocess("ckpt", ServerConfig(port=8123), []),
    ):
        pass
    (_, env), *_ = popened
    assert "OFT_API_KEY" not in env
