"""Issue 13: what leaves for a robot is checked, and no client can hold the server or starve others."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import websockets.exceptions
import websockets.sync.client

import oft
from oft.data.normalize import Stats
from oft.model.safety import (
    NonFiniteActionError,
    PromptTooLongError,
    check_actions,
    check_prompt,
    clip_to_bounds,
    prompt_token_budget,
)
from oft.observation import Observation
from oft.serve import codec
from oft.serve.client import HttpClientPolicy, WebsocketClientPolicy
from oft.serve.server import BatchingPredictor, ServerConfig, ServerThread, _Pending
from oft.spec import get_spec


def libero_request(seed: int = 0, size: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": f"task number {seed}",
    }


def expected_actions(policy, request: dict) -> np.ndarray:
    obs = Observation(
        images=[request["observation/image"], request["observation/wrist_image"]],
        proprio=np.asarray(request["observation/state"], np.float32),
        instruction=request["prompt"],
    )
    return policy.predict_action_chunk(obs)


def http_body(request: dict) -> dict:
    return {
        "full_image": request["observation/image"],
        "wrist_image": request["observation/wrist_image"],
        "state": request["observation/state"],
        "instruction": request["prompt"],
    }


@pytest.fixture(scope="module")
def nan_policy(tiny_checkpoint):
    """The tiny policy with one NaN in ``vla.projector.fc1.weight`` (the issue's broken checkpoint)."""
    policy = oft.load_policy(tiny_checkpoint).eval()
    with torch.no_grad():
        policy.vla.projector.fc1.weight[0, 0] = float("nan")
    return policy


# ---------------------------------------------------------------- non-finite actions


def test_predict_action_chunk_refuses_nan_actions(nan_policy):
    obs = Observation(
        images=[np.zeros((64, 64, 3), np.uint8)] * 2,
        proprio=np.zeros(8, np.float32),
        instruction="task number",
    )
    with pytest.raises(NonFiniteActionError, match="non-finite actions"):
        nan_policy.predict_action_chunk(obs)
    with pytest.raises(NonFiniteActionError):
        nan_policy.predict_action_chunk([obs, obs])


def test_check_actions_names_the_first_bad_value():
    a = np.zeros((8, 7), np.float32)
    assert check_actions(a) is a
    a[3, 5] = np.inf
    with pytest.raises(
        NonFiniteActionError, match=r"1 of 56 values \(0 NaN, 1 inf\), first at index \(3, 5\)"
    ):
        check_actions(a)


def test_nan_model_gets_errors_on_both_protocols_and_health_says_so(nan_policy):
    with ServerThread(nan_policy, ServerConfig(port=0)) as srv:
        assert urllib.request.urlopen(srv.http_url + "/healthz", timeout=10).status == 200
        with WebsocketClientPolicy(srv.ws_url, None) as client:
            reply = client.send_raw(codec.packb(libero_request(1)))
        assert "actions" not in reply and reply["error"]["type"] == "non_finite_actions", reply
        status, reply = HttpClientPolicy(srv.http_url).post(
            codec.json_dumps(http_body(libero_request(2))).encode()
        )
        assert status == 503 and "actions" not in reply and reply["error"]["type"] == "non_finite_actions"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.http_url + "/healthz", timeout=10)
        assert e.value.code == 503
        health = json.loads(e.value.read())
        assert health["status"] == "failing" and health["consecutive_failures"] == 2
        assert health["last_error"]["type"] == "non_finite_actions"


class ConstantPolicy:
    """A ServablePolicy answering fixed actions (to test clipping and the server-side finite check)."""

    def __init__(self, value: float) -> None:
        self.spec = get_spec("libero")
        d = self.spec.action_dim
        self.norm_stats = type("NS", (), {"action": Stats(np.zeros(d), np.ones(d), -np.ones(d), np.ones(d),
                                                          -np.ones(d), np.ones(d))})()  # fmt: skip
        self.value = value

    def predict_action_chunk(self, obs):
        return np.full((len(obs), self.spec.chunk_len, self.spec.action_dim), self.value, np.float32)


def test_clip_to_training_bounds_is_optional_and_reported():
    policy = ConstantPolicy(3.0)
    request = libero_request(0)
    with ServerThread(policy, ServerConfig(port=0)) as srv, WebsocketClientPolicy(srv.ws_url, None) as c:
        out = c.infer(request)
        assert np.all(out["actions"] == 3.0) and "clipped" not in out["server_timing"]
    with ServerThread(policy, ServerConfig(port=0, clip_actions=True)) as srv:
        with WebsocketClientPolicy(srv.ws_url, None) as c:
            out = c.infer(request)
        assert np.all(out["actions"] == 1.0) and out["server_timing"]["clipped"] == 8 * 7
        assert srv.server.metadata["limits"]["clip_actions"] is True
    zeros, ones = np.zeros(3), np.ones(3)
    clipped, moved = clip_to_bounds(
        np.array([[0.5, -2.0, 2.0]]), Stats(zeros, ones, -ones, ones, zeros, ones)
    )
    np.testing.assert_array_equal(clipped, [[0.5, -1.0, 1.0]])
    assert moved == 2


class PerTaskPolicy(ConstantPolicy):
    """Acts by instruction (per-task statistics): task 0's actions are bounded by [-1, 1], task 1's by
    [-5, 5]."""

    def acting_stats(self, instructions):
        d = self.spec.action_dim
        wide = type("NS", (), {"action": Stats(np.zeros(d), np.ones(d), -5 * np.ones(d), 5 * np.ones(d),
                                               -5 * np.ones(d), 5 * np.ones(d))})()  # fmt: skip
        return [wide if t.endswith("1") else self.norm_stats for t in instructions]


def test_clip_uses_the_statistics_each_observation_acted_with():
    """A policy that normalizes each task with its own statistics is clipped to each task's bounds, not to
    its default set's (which would cut task 1's actions to task 0's range)."""
    config = ServerConfig(port=0, clip_actions=True)
    with ServerThread(PerTaskPolicy(3.0), config) as srv, WebsocketClientPolicy(srv.ws_url, None) as c:
        task0, task1 = c.infer(libero_request(0)), c.infer(libero_request(1))
    assert np.all(task0["actions"] == 1.0) and task0["server_timing"]["clipped"] == 8 * 7
    assert np.all(task1["actions"] == 3.0) and task1["server_timing"]["clipped"] == 0


def test_server_checks_finiteness_of_any_policy():
    nan = ConstantPolicy(float("nan"))
    with ServerThread(nan, ServerConfig(port=0)) as srv, WebsocketClientPolicy(srv.ws_url, None) as c:
        assert c.send_raw(codec.packb(libero_request(0)))["error"]["type"] == "non_finite_actions"


class RaisingPolicy(ConstantPolicy):
    def predict_action_chunk(self, obs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize(("policy", "kind"), [(ConstantPolicy(float("nan")), "non_finite_actions"),
                                              (RaisingPolicy(0.0), "internal_error")])  # fmt: skip
def test_a_failing_model_is_a_503_never_a_500(policy, kind):
    """No reply of the server is a 500: a model fault is 'service unavailable', as /healthz says."""
    with ServerThread(policy, ServerConfig(port=0)) as srv:
        status, reply = HttpClientPolicy(srv.http_url).post(
            codec.json_dumps(http_body(libero_request(0))).encode()
        )
        assert status == 503 and reply["error"]["type"] == kind and "actions" not in reply, reply
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.http_url + "/healthz", timeout=10)
        assert e.value.code == 503


# ---------------------------------------------------------------- prompt tokens


def test_prompt_is_limited_in_tokens_and_to_the_models_positions(tiny_policy):
    fixed_budget = prompt_token_budget(tiny_policy)
    positions = tiny_policy.vla.language_model.model.config.max_position_embeddings
    assert 0 < fixed_budget < positions
    assert prompt_token_budget(tiny_policy, 10**6) == fixed_budget  # the model's positions cap any setting
    emoji = " ".join(["\N{GRINNING FACE}"] * 2048)  # 4,095 characters: legal, but ~2,050 tokens
    with ServerThread(tiny_policy, ServerConfig(port=0, max_prompt_tokens=64)) as srv:
        assert srv.server.metadata["limits"]["max_prompt_tokens"] == 64
        with WebsocketClientPolicy(srv.ws_url, None) as c:
            reply = c.send_raw(codec.packb({**libero_request(0), "prompt": emoji}))
            assert reply["error"]["type"] == "prompt_too_long" and "at most 64" in reply["error"]["message"]
            request = libero_request(1)
            np.testing.assert_allclose(c.infer(request)["actions"], expected_actions(tiny_policy, request),
                                       atol=1e-4)  # fmt: skip
    with ServerThread(tiny_policy, ServerConfig(port=0, max_prompt_tokens=10**6)) as srv:
        assert srv.server.metadata["limits"]["max_prompt_tokens"] == fixed_budget
    # the server's 4,096-character cut comes first for this small model; the library check names positions
    with pytest.raises(PromptTooLongError, match=f"model positions {positions}"):
        check_prompt(tiny_policy, " ".join(["red"] * (fixed_budget + 10)), max_prompt_tokens=10**6)


def test_batches_group_prompts_of_similar_length():
    """A long prompt is never in the batch of a short one, and the rest keep their order."""

    async def run() -> list[list[int]]:
        predictor = BatchingPredictor(ConstantPolicy(0.0), max_batch=8)
        await predictor.start()
        predictor._task.cancel()  # drive _next_batch by hand
        loop = asyncio.get_running_loop()
        for tokens in (20, 200, 25, 30, 180, 21):
            predictor._pending.append(_Pending(None, loop.create_future(), 0.0, tokens))
        batches = [[p.tokens for p in await predictor._next_batch()] for _ in range(2)]
        await predictor.stop()
        return batches

    assert asyncio.run(run()) == [[20, 25, 30, 21], [200, 180]]


# ---------------------------------------------------------------- connections and timeouts


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (TimeoutError, ConnectionResetError):
        return False


FAST = {"idle_timeout_s": 0.5, "body_timeout_s": 0.5, "ws_idle_timeout_s": 0.7, "ws_heartbeat_s": 0.4}


@pytest.fixture(scope="module")
def fast_server(tiny_policy):
    with ServerThread(tiny_policy, ServerConfig(port=0, max_connections=6, **FAST)) as srv:
        yield srv


def test_idle_and_half_sent_connections_are_closed(fast_server):
    idle = socket.create_connection(("127.0.0.1", fast_server.port))
    half = socket.create_connection(("127.0.0.1", fast_server.port))
    half.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Le")  # a header that never ends
    started = time.monotonic()
    assert closed_within(idle, 3.0) and closed_within(half, 3.0)
    assert time.monotonic() - started < 2.5


def test_stalled_body_gets_408(fast_server):
    with socket.create_connection(("127.0.0.1", fast_server.port)) as s:
        s.sendall(b'POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"state": ')
        s.settimeout(5)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and b"body_timeout" in reply


def test_idle_websocket_is_closed_and_heartbeat_runs(fast_server):
    with websockets.sync.client.connect(fast_server.ws_url) as ws:
        ws.recv()  # metadata
        started = time.monotonic()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=5)
    assert e.value.rcvd.code == 1000 and e.value.rcvd.reason == "idle timeout"
    assert 0.5 < time.monotonic() - started < 3

    async def silent_client() -> float:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(fast_server.ws_url, autoping=False)  # never answers pings
            started = time.monotonic()
            kinds = []
            while not ws.closed and time.monotonic() - started < 5:
                msg = await ws.receive(timeout=5)
                kinds.append(msg.type)
            assert aiohttp.WSMsgType.PING in kinds
            return time.monotonic() - started

    assert asyncio.run(silent_client()) < 0.7  # the missed pong closes it before the idle timeout


def test_connection_cap_refuses_with_503_and_recovers(fast_server, tiny_policy):
    held = [socket.create_connection(("127.0.0.1", fast_server.port)) for _ in range(6)]
    time.sleep(0.1)
    try:
        with socket.create_connection(("127.0.0.1", fast_server.port)) as extra:
            extra.settimeout(5)
            reply = extra.recv(4096)
        assert reply.startswith(b"HTTP/1.1 503") and b"too_many_connections" in reply and len(reply) < 400
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    request = libero_request(7)
    out = HttpClientPolicy(fast_server.http_url).infer(http_body(request))
    np.testing.assert_allclose(out["actions"], expected_actions(tiny_policy, request), atol=1e-4)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_dropped_uploads_release_their_memory_and_log_one_line(tiny_policy, caplog):
    size, n = 8 * 2**20, 12
    with ServerThread(tiny_policy, ServerConfig(port=0, max_message_bytes=16 * 2**20)) as srv:
        chunk = b"x" * 2**20
        gc.collect()
        gc.disable()  # memory must come back without the garbage collector's help
        try:
            before = rss_mb()
            with caplog.at_level(logging.INFO, logger="oft.serve.server"):
                for _ in range(n):
                    with socket.create_connection(("127.0.0.1", srv.port)) as s:
                        s.sendall(f"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
                        for _ in range(6):
                            s.sendall(chunk)
                        time.sleep(0.05)
                deadline = time.monotonic() + 5
                while srv.server.stats.dropped_uploads < n and time.monotonic() < deadline:
                    time.sleep(0.05)
            after = rss_mb()
        finally:
            gc.enable()
        assert srv.server.stats.dropped_uploads == n
        assert after - before < 30, f"RSS grew {after - before:.0f} MB after {n} dropped 6 MB uploads"
    drops = [r for r in caplog.records if "dropped the connection" in r.getMessage()]
    assert len(drops) == n and all(r.exc_info is None for r in drops)
    assert "after 6291456 of 8388608 body bytes" in drops[0].getMessage()


def test_error_replies_stay_small(server):
    images = {f"camera_{i}": 0 for i in range(20_000)}
    with WebsocketClientPolicy(server.ws_url, None) as c:
        reply = c.send_raw(codec.packb({"images": images, "prompt": "x", "state": np.zeros(8)}))
    assert reply["error"]["type"] == "missing_key" and len(reply["error"]["message"]) <= 500


@pytest.fixture(scope="module")
def server(tiny_policy):
    with ServerThread(tiny_policy, ServerConfig(port=0)) as srv:
        yield srv
