"""Serving benchmark: what does the network hop cost, and how many requests/s does one server sustain?

* latency: ``predict_action_chunk`` called in-process vs the loopback round trip of the same observation
  through the websocket (openpi) and HTTP (``/act``) protocols. The difference is the serving overhead
  (msgpack/json encoding, the socket, the asyncio hop to the worker thread); the goal is <= 10 ms for two
  224x224 images. The transport time is the same thing measured per request, free of run-to-run drift:
  round trip minus the server's own ``server_timing.infer_ms`` (predict_action_chunk timed in the server).
* throughput: 1, 4 and 16 clients each send requests back to back for a few seconds; requests/s, actions/s
  (requests/s x chunk length) and the mean batch the server formed.

The server runs in a subprocess (``oft serve CHECKPOINT``) when a checkpoint path is given, as on a robot
where client and server are different processes; otherwise in a thread of this process. Either way it runs
with every option of the given :class:`ServerConfig` (API key included: the benchmark's clients send it), so
the numbers are those of the configuration asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from oft.observation import Observation
from oft.serve.client import HttpClientPolicy, WebsocketClientPolicy
from oft.serve.server import ServablePolicy, ServerConfig, ServerThread
from oft.spec import RobotSpec

logger = logging.getLogger(__name__)


# the keys the paper's deploy-server clients send, by number of cameras (LIBERO: 2, ALOHA: 3)
DEPLOY_IMAGE_KEYS = {
    1: ["full_image"],
    2: ["full_image", "wrist_image"],
    3: ["full_image", "left_wrist_image", "right_wrist_image"],
}


@dataclass
class LatencyStats:
    median_ms: float
    p90_ms: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        ms = np.asarray(seconds) * 1000.0
        return cls(float(np.median(ms)), float(np.percentile(ms, 90)), len(ms))


@dataclass
class ThroughputRow:
    clients: int
    requests_per_s: float
    actions_per_s: float
    latency_median_ms: float
    mean_batch: float


@dataclass
class ServingBenchResult:
    image_size: int
    num_cameras: int
    in_process: LatencyStats
    websocket: LatencyStats
    http: LatencyStats
    websocket_transport_median_ms: float
    throughput: list[ThroughputRow] = field(default_factory=list)

    @property
    def websocket_overhead_ms(self) -> float:
        return self.websocket.median_ms - self.in_process.median_ms

    @property
    def http_overhead_ms(self) -> float:
        return self.http.median_ms - self.in_process.median_ms

    def to_dict(self) -> dict:
        d = asdict(self)
        d["websocket_overhead_ms"] = self.websocket_overhead_ms
        d["http_overhead_ms"] = self.http_overhead_ms
        return d


def fake_request(spec: RobotSpec, image_size: int | dict[str, tuple[int, int]] = 224, seed: int = 0) -> dict:
    """An openpi-style request (``images`` dict by camera name) with random uint8 images and state.

    image_size: one square side, or {camera: (H, W)} (a policy's ``render_sizes``)."""
    rng = np.random.default_rng(seed)
    square = (image_size, image_size)
    sizes = image_size if isinstance(image_size, dict) else dict.fromkeys(spec.cameras, square)
    images = {cam: rng.integers(0, 256, (*sizes[cam], 3), dtype=np.uint8) for cam in spec.cameras}
    request = {"images": images, "prompt": "pick up the red block"}
    if spec.proprio_dim:
        request["state"] = rng.normal(size=spec.proprio_dim).astype(np.float32)
    return request


def request_to_observation(spec: RobotSpec, request: dict) -> Observation:
    state = request.get("state")
    return Observation([request["images"][c] for c in spec.cameras], state, request["prompt"])


def _time_interleaved(fns: dict, n: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn each round: on a shared, noisy machine a slow
    stretch then hits every path alike instead of whichever was being measured at the time."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + n):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def deploy_request(spec: RobotSpec, request: dict) -> dict:
    """The same observation under the keys the paper's deploy-server clients send."""
    cams = spec.cameras
    names = DEPLOY_IMAGE_KEYS.get(len(cams), [f"image_{i}" for i in range(len(cams))])
    body = {name: request["images"][cam] for name, cam in zip(names, cams, strict=True)}
    body.update(state=request.get("state"), instruction=request["prompt"])
    return body


def measure_latency(
    policy: ServablePolicy,
    ws_url: str,
    http_url: str,
    request: dict,
    n: int,
    warmup: int,
    api_key: str | None = None,
):
    """(in-process, websocket, http) times and the websocket transport time (round trip - server infer_ms).

    In-process calls run in a phase of their own, while the server is idle: interleaved with round trips, a
    CPU run's predict competes with the server process's OpenMP threads still spinning after their last job.
    """
    obs = request_to_observation(policy.spec, request)
    in_process = _time_interleaved({"in_process": lambda: policy.predict_action_chunk(obs)}, n, warmup)
    http_request = deploy_request(policy.spec, request)
    transport: list[float] = []
    http_client = HttpClientPolicy(http_url, api_key)
    with WebsocketClientPolicy(ws_url, None, api_key) as client:

        def ws_call() -> None:
            t0 = time.perf_counter()
            out = client.infer(request)
            transport.append(time.perf_counter() - t0 - out["server_timing"]["infer_ms"] / 1000.0)

        fns = {
            "websocket": ws_call,
            "http": lambda: http_client.infer(http_request),
        }
        times = _time_interleaved(fns, n, warmup)
    http_client.close()
    return in_process["in_process"], times["websocket"], times["http"], transport[warmup:]


def measure_throughput(
    ws_url: str, request: dict, clients: int, seconds: float, chunk_len: int, api_key: str | None = None
) -> ThroughputRow:
    """``clients`` threads, one connection each, sending back to back for ``seconds``."""
    conns = [WebsocketClientPolicy(ws_url, None, api_key) for _ in range(clients)]
    for c in conns:
        c.infer(request)  # warm each connection
    latencies: list[list[float]] = [[] for _ in range(clients)]
    batches: list[list[int]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            out = conns[i].infer(request)
            latencies[i].append(time.perf_counter() - t0)
            batches[i].append(out["server_timing"]["batch_size"])

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t_start = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    for c in conns:
        c.close()
    all_lat = [x for lat in latencies for x in lat]
    total = len(all_lat)
    return ThroughputRow(
        clients=clients,
        requests_per_s=total / elapsed,
        actions_per_s=total * chunk_len / elapsed,
        latency_median_ms=statistics.median(all_lat) * 1000.0 if all_lat else float("nan"),
        mean_batch=float(np.mean([b for bs in batches for b in bs])) if total else float("nan"),
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_flags(config: ServerConfig) -> list[str]:
    """The ``oft serve`` flags that give its server ``config``, every field but ``api_key`` (it would show in
    process lists; :func:`server_subprocess` passes it as ``$OFT_API_KEY``). ValueError for a field no flag
    sets (a ``hard_limit_factor`` other than the default), rather than a server configured otherwise."""
    if config.hard_limit_factor != ServerConfig.hard_limit_factor:
        raise ValueError(
            f"hard_limit_factor {config.hard_limit_factor}: oft serve has no flag for it (it always uses "
            f"{ServerConfig.hard_limit_factor}), so a server subprocess cannot run this config"
        )
    flags = ["--host", config.host, "--port", str(config.port), "--max-batch", str(config.max_batch)]
    flags += ["--batch-wait-ms", str(config.batch_wait_ms)]
    flags += ["--max-message-mb", str(config.max_message_bytes / 2**20)]  # exact: a power-of-2 division
    flags += ["--max-prompt-tokens", str(config.max_prompt_tokens)]
    flags += ["--max-connections", str(config.max_connections)]
    flags += ["--idle-timeout", str(config.idle_timeout_s), "--body-timeout", str(config.body_timeout_s)]
    flags += ["--ws-idle-timeout", str(config.ws_idle_timeout_s)]
    flags += ["--ws-heartbeat", str(config.ws_heartbeat_s)]
    if config.clip_actions:
        flags.append("--clip-actions")
    return flags


@contextlib.contextmanager
def server_subprocess(checkpoint: str | Path, config: ServerConfig, extra_args: list[str]) -> Iterator[str]:
    """``oft serve CHECKPOINT`` in a child process, configured as ``config`` (port 0: a free one) plus
    ``extra_args`` (e.g. the loading flags ``--device``, ``--dtype``); yields its base URL once ``/healthz``
    answers."""
    port = config.port or free_port(config.host)
    cmd = [sys.executable, "-m", "oft.cli", "serve", str(checkpoint)]
    cmd += [*serve_flags(replace(config, port=port)), *extra_args]
    env = os.environ.copy()
    if config.api_key:
        env["OFT_API_KEY"] = config.api_key
    else:  # a key in this environment is not the config's: the child would demand it
        env.pop("OFT_API_KEY", None)
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://{config.host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}: {' '.join(cmd)}")
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server did not answer {url}/healthz within 120 s") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _server(policy: ServablePolicy, config: ServerConfig, checkpoint, extra_args) -> Iterator[str]:
    if checkpoint is not None:
        with server_subprocess(checkpoint, config, extra_args) as url:
            yield url
    else:
        with ServerThread(policy, ServerConfig(**{**asdict(config), "port": 0})) as srv:
            yield srv.http_url


def benchmark_serving(
    policy: ServablePolicy,
    config: ServerConfig | None = None,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    n: int = 50,
    warmup: int = 5,
    clients: tuple[int, ...] = (1, 4, 16),
    seconds: float = 5.0,
    server_args: list[str] | None = None,
) -> ServingBenchResult:
    """Run both measurements against one server (see the module docstring).

    image_size: the camera images' side; None sends what a robot would: the policy's ``render_sizes`` (the
    size of its training frames)."""
    config = config or ServerConfig(port=0)
    sizes = getattr(policy, "render_sizes", None) if image_size is None else None
    request = fake_request(policy.spec, sizes or image_size or 224)
    if getattr(policy, "act_by_instruction", False):  # per-task statistics: a prompt it has statistics for
        request["prompt"] = next(iter(policy.instruction_keys))
    image_size = image_size or max(h for h, _ in (sizes or {"": (224, 224)}).values())
    with _server(policy, config, checkpoint, server_args or []) as url:
        ws_url = url.replace("http://", "ws://") + "/"
        key = config.api_key
        in_proc, ws, http, transport = measure_latency(policy, ws_url, url, request, n, warmup, key)
        rows = []
        for c in clients:
            logger.info("throughput with %d concurrent clients for %.1f s", c, seconds)
            rows.append(measure_throughput(ws_url, request, c, seconds, policy.spec.chunk_len, key))
    return ServingBenchResult(
        image_size=image_size,
        num_cameras=policy.spec.num_cameras,
        in_process=LatencyStats.of(in_proc),
        websocket=LatencyStats.of(ws),
        http=LatencyStats.of(http),
        websocket_transport_median_ms=float(np.median(transport) * 1000.0),
        throughput=rows,
    )


def format_report(r: ServingBenchResult) -> str:
    lines = [
        f"serving benchmark: {r.num_cameras} camera(s) at {r.image_size}x{r.image_size}",
        f"{'path':<26}{'median ms':>11}{'p90 ms':>10}{'overhead ms':>13}",
        f"{'in-process predict':<26}{r.in_process.median_ms:>11.2f}{r.in_process.p90_ms:>10.2f}{'':>13}",
        f"{'websocket round trip':<26}{r.websocket.median_ms:>11.2f}{r.websocket.p90_ms:>10.2f}"
        f"{r.websocket_overhead_ms:>+13.2f}",
        f"{'HTTP /act round trip':<26}{r.http.median_ms:>11.2f}{r.http.p90_ms:>10.2f}"
        f"{r.http_overhead_ms:>+13.2f}",
        "websocket overhead per request (round trip - predict time inside the server, same request): "
        f"{r.websocket_transport_median_ms:.2f} ms median",
        "",
        f"{'clients':>8}{'requests/s':>12}{'actions/s':>11}{'median ms':>11}{'mean batch':>12}",
    ]
    for t in r.throughput:
        lines.append(
            f"{t.clients:>8}{t.requests_per_s:>12.1f}{t.actions_per_s:>11.1f}"
            f"{t.latency_median_ms:>11.2f}{t.mean_batch:>12.2f}"
        )
    return "\n".join(lines)


__all__ = [
    "ServingBenchResult",
    "benchmark_serving",
    "fake_request",
    "format_report",
    "serve_flags",
    "server_subprocess",
]
