"""Serve a policy on one port: openpi's websocket protocol at ``/``, the paper's ``POST /act``, ``/healthz``.

Why aiohttp: a websocket endpoint and ordinary HTTP routes (``/act`` takes a JSON body) share one asyncio
server and one port, so robot code written for either openpi or the OpenVLA-OFT deploy server connects
unchanged.

Requests from all connections go through one :class:`BatchingPredictor`: whatever arrives while the model is
busy (up to ``max_batch``, prompts of similar token length only) is run as one
``predict_action_chunk(list[obs])`` call in a worker thread, so the event loop keeps accepting, decoding and
validating requests while the model computes. A bad request is answered with ``{"error": {"type",
"message"}}`` (HTTP 4xx) and never reaches the model. A model fault (an exception, or NaN/inf actions) is
answered as ``internal_error``/``non_finite_actions`` (HTTP 503: the service cannot answer now; no reply is
ever a 500) to the requests it concerned, never as numbers, and ``/healthz`` turns to 503 until the model
answers correctly again.

Every limit a client can hit is a :class:`ServerConfig` field (and an ``oft serve`` flag): message size,
prompt tokens, open connections, idle/header, body and websocket idle timeouts, websocket heartbeat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from oft.model.safety import (
    NonFiniteActionError,
    PromptTooLongError,
    check_prompt,
    clip_to_bounds,
    finite_rows,
    prompt_token_budget,
)
from oft.observation import Observation
from oft.serve import codec
from oft.serve.protocol import RequestError, error_reply, parse_observation, server_metadata
from oft.spec import RobotSpec

logger = logging.getLogger(__name__)


class ServablePolicy(Protocol):
    """What the server needs of a policy (``oft.model`` policies satisfy it)."""

    spec: RobotSpec

    def predict_action_chunk(self, obs: Observation | list[Observation]) -> np.ndarray: ...


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8
    batch_wait_ms: float = 0.0
    # A request above this gets a structured ``payload_too_large`` error (connection kept open); one above
    # ``hard_limit_factor`` times it is refused by the websocket layer (close code 1009) before buffering.
    max_message_bytes: int = 16 * 2**20
    hard_limit_factor: int = 2
    # Prompt ids (BOS + template + instruction) a request may use; also capped by the model's positions.
    max_prompt_tokens: int = 256
    # Open connections (HTTP and websocket); one more is answered 503 and closed at once.
    max_connections: int = 256
    # HTTP: a connection must deliver a complete request head within this long after it opens or after its
    # previous response, else it is closed (the header timeout and the keep-alive idle timeout in one).
    idle_timeout_s: float = 30.0
    # HTTP: the whole request body must arrive within this long (a slow or stalled upload gets 408).
    body_timeout_s: float = 30.0
    # websocket: closed after this long without a message from the client ...
    ws_idle_timeout_s: float = 300.0
    # ... or as soon as it misses a pong to our ping (sent every this many seconds; 0 = off)
    ws_heartbeat_s: float = 20.0
    # clamp actions to the training [min, max] of the policy's action statistics (reply says how many moved)
    clip_actions: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        for name in ("max_prompt_tokens", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("idle_timeout_s", "body_timeout_s", "ws_idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.ws_heartbeat_s < 0:
            raise ValueError(f"ws_heartbeat_s must be >= 0 (0 = off), got {self.ws_heartbeat_s}")

    @property
    def hard_limit_bytes(self) -> int:
        return self.max_message_bytes * self.hard_limit_factor

    def limits(self) -> dict:
        """The limits a client can hit, as the metadata message reports them."""
        names = ("max_message_bytes", "max_prompt_tokens", "max_connections", "idle_timeout_s",
                 "body_timeout_s", "ws_idle_timeout_s", "ws_heartbeat_s", "clip_actions")  # fmt: skip
        return {n: getattr(self, n) for n in names}


@dataclass
class ModelHealth:
    """Whether the model has started failing: set by the batcher, read by ``/healthz``."""

    consecutive_failures: int = 0
    total_failures: int = 0
    total_ok: int = 0
    last_error: dict | None = None
    failing_since: float | None = None  # unix time of the first failure of the current run

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0

    def record_ok(self) -> None:
        self.total_ok += 1
        self.consecutive_failures = 0
        self.failing_since = None

    def record_failure(self, type_: str, message: str) -> None:
        self.total_failures += 1
        self.consecutive_failures += 1
        self.last_error = {"type": type_, "message": message[:400]}
        if self.failing_since is None:
            self.failing_since = time.time()


class ModelError(RuntimeError):
    """The model failed on a request (not the request's fault); ``type`` goes into the error reply."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


@dataclass
class _Pending:
    obs: Observation
    future: asyncio.Future
    enqueued: float
    tokens: int = 0


def _length_bucket(tokens: int) -> int:
    """Requests whose prompt lengths are within a factor of two share a batch (padding stays small)."""
    return max(int(tokens), 1).bit_length()


class BatchingPredictor:
    """Collects concurrent requests into batched ``predict_action_chunk`` calls run in one worker thread."""

    def __init__(
        self, policy: ServablePolicy, max_batch: int, batch_wait_ms: float = 0.0, clip_actions: bool = False
    ) -> None:
        self.policy = policy
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.clip_actions = clip_actions
        self.health = ModelHealth()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # one thread: the model is not re-entrant, and batching is how concurrency is used
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oft-policy")
        if clip_actions and getattr(policy, "norm_stats", None) is None:
            raise ValueError("clip_actions needs a policy with norm_stats (its training bounds)")

    async def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run_forever(), name="oft-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def predict(self, obs: Observation, tokens: int = 0) -> tuple[np.ndarray, dict]:
        """(K, D) actions and timing for one observation, batched with whatever else is waiting.

        ``tokens``: the request's prompt length, so that it is batched only with prompts of similar length.
        """
        assert self._ready is not None, "BatchingPredictor.start() was not awaited"
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(obs, future, time.perf_counter(), tokens))
        self._ready.set()
        return await future

    async def _next_batch(self) -> list[_Pending]:
        while True:
            while not self._pending:
                self._ready.clear()
                await self._ready.wait()
            if self.batch_wait_s > 0 and self.max_batch > 1:
                await asyncio.sleep(self.batch_wait_s)
            first = self._pending.popleft()
            if first.future.done():  # the client went away while queued
                continue
            batch, others, bucket = [first], [], _length_bucket(first.tokens)
            while self._pending and len(batch) < self.max_batch:
                p = self._pending.popleft()
                if p.future.done():
                    continue
                (batch if _length_bucket(p.tokens) == bucket else others).append(p)
            self._pending.extendleft(reversed(others))  # keep their order for the next batch
            return batch

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            started = time.perf_counter()
            results, infer_s = await loop.run_in_executor(self._executor, self._timed, [p.obs for p in batch])
            for pending, result in zip(batch, results, strict=True):
                self._record(result)
                if pending.future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    pending.future.set_exception(result)
                    continue
                timing = {
                    "infer_ms": infer_s * 1000.0,  # predict_action_chunk itself, in the worker thread
                    "queue_ms": (started - pending.enqueued) * 1000.0,
                    "batch_size": len(batch),
                }
                if self.clip_actions:
                    bounds = self._action_stats(pending.obs)
                    result, timing["clipped"] = clip_to_bounds(result, bounds)
                pending.future.set_result((result, timing))

    def _action_stats(self, obs: Observation):
        """The action statistics ``obs`` was answered with: its instruction's for a policy that acts by
        instruction (per-task statistics), else the policy's ``norm_stats``."""
        choose = getattr(self.policy, "acting_stats", None)
        stats = choose([obs.instruction])[0] if choose is not None else self.policy.norm_stats
        return stats.action

    def _record(self, result: np.ndarray | Exception) -> None:
        if isinstance(result, ModelError):
            self.health.record_failure(result.type, result.message)
        elif not isinstance(result, Exception):
            self.health.record_ok()

    def _timed(self, observations: list[Observation]) -> tuple[list[np.ndarray | Exception], float]:
        t0 = time.perf_counter()
        results = self._predict_batch(observations)
        return results, time.perf_counter() - t0

    def _predict_batch(self, observations: list[Observation]) -> list[np.ndarray | Exception]:
        """Runs in the worker thread. Falls back to one call per observation if the batched call fails,
        so one observation the model rejects (or one non-finite result) does not fail the others."""
        try:
            return self._predict(observations)
        except Exception as e:
            if len(observations) == 1:
                return [self._as_error(e)]
            logger.warning("batched predict failed (%s); retrying the %d requests one by one",
                           type(e).__name__, len(observations))  # fmt: skip
            return [self._predict_one_safely(obs) for obs in observations]

    def _predict_one_safely(self, obs: Observation) -> np.ndarray | Exception:
        try:
            return self._predict([obs])[0]
        except Exception as e:
            return self._as_error(e)

    @staticmethod
    def _as_error(e: Exception) -> Exception:
        if isinstance(e, NonFiniteActionError):
            logger.error("model produced non-finite actions: %s", e)  # one line: it may repeat per request
            return ModelError("non_finite_actions", str(e))
        if isinstance(e, ValueError):
            return RequestError("invalid_request", f"the policy rejected the observation: {e}")
        logger.exception("policy failed on a request")
        return ModelError("internal_error", f"{type(e).__name__}: {e}")

    def _predict(self, observations: list[Observation]) -> list[np.ndarray | Exception]:
        import torch  # the server process has torch anyway; keep it out of this module's import

        spec = self.policy.spec
        with torch.inference_mode():
            out = np.asarray(self.policy.predict_action_chunk(observations), dtype=np.float32)
        expected = (len(observations), spec.chunk_len, spec.action_dim)
        if out.shape != expected:
            raise RuntimeError(f"policy returned actions of shape {out.shape}, expected {expected}")
        # checked here too: a ServablePolicy that is not an oft Policy may not check its own output
        ok = finite_rows(out)
        return [
            out[i]
            if ok[i]
            else self._as_error(
                NonFiniteActionError(f"policy produced NaN/inf actions: {out[i].tolist()}"[:300])
            )
            for i in range(len(observations))
        ]  # (K, D) each


class _RefuseConnection(asyncio.Protocol):
    """Answers one small HTTP 503 and closes: what a client over ``max_connections`` gets."""

    def __init__(self, limit: int) -> None:
        body = json.dumps(error_reply("too_many_connections", f"server holds its maximum of {limit} "
                                      "connections; retry later")).encode()  # fmt: skip
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")  # fmt: skip
        self._reply = head.encode() + body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._reply)  # type: ignore[attr-defined]
        transport.close()


class _BodyError(Exception):
    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


@dataclass
class ServerStats:
    """Counters for logs, tests and the soak."""

    refused_connections: int = 0
    dropped_uploads: int = 0
    idle_websockets_closed: int = 0
    dropped_websockets: int = 0
    bad_requests: int = 0


class PolicyServer:
    """The aiohttp application around a policy. ``await start()``/``stop()``, or :func:`serve_forever`."""

    def __init__(self, policy: ServablePolicy, config: ServerConfig, policy_info: dict | None = None) -> None:
        self.policy = policy
        self.config = config
        self.spec: RobotSpec = policy.spec
        self.predictor = BatchingPredictor(
            policy, config.max_batch, config.batch_wait_ms, config.clip_actions
        )
        limits = config.limits()
        limits["max_prompt_tokens"] = prompt_token_budget(policy, config.max_prompt_tokens)
        self.metadata = server_metadata(
            self.spec, config.max_message_bytes, config.max_batch, policy_info, limits=limits
        )
        self.stats = ServerStats()
        self._runner: web.AppRunner | None = None
        self._tcp_server: asyncio.AbstractServer | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.port: int | None = None

    # ------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_message_bytes)
        app.router.add_get("/", self._websocket)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metadata", self._get_metadata)
        app.router.add_post("/act", self._act)
        return app

    async def start(self) -> None:
        await self.predictor.start()
        # keepalive_timeout also runs from the moment a connection opens until its first request head is
        # complete (aiohttp >= 3.10), so it is the header timeout too
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     keepalive_timeout=self.config.idle_timeout_s)  # fmt: skip
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._tcp_server = await loop.create_server(
            self._protocol_factory, self.config.host, self.config.port, reuse_address=True
        )
        self.port = self._tcp_server.sockets[0].getsockname()[1]
        logger.info("serving %s on ws://%s:%d/ and http://%s:%d/act", self.spec.name, self.config.host,
                    self.port, self.config.host, self.port)  # fmt: skip

    def _protocol_factory(self) -> asyncio.Protocol:
        """aiohttp's handler for a new connection, or a 503 when ``max_connections`` are open."""
        server = self._runner.server
        if len(server.connections) >= self.config.max_connections:
            self.stats.refused_connections += 1
            if self.stats.refused_connections % 100 == 1:  # a flood must not flood the log
                logger.warning("refusing connections: %d open (max_connections); %d refused so far",
                               len(server.connections), self.stats.refused_connections)  # fmt: skip
            return _RefuseConnection(self.config.max_connections)
        return server()

    @property
    def open_connections(self) -> int:
        server = None if self._runner is None else self._runner.server
        return 0 if server is None else len(server.connections)

    async def stop(self) -> None:
        # open websockets would hold the shutdown for its timeout; tell their clients we are going away
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.predictor.stop()

    # ------------------------------------------------------------ auth

    def _authorized(self, request: web.Request) -> bool:
        """API key from ``Authorization: Bearer|Api-Key KEY`` (openpi sends ``Api-Key``), ``X-API-Key`` or
        ``?api_key=`` (for websocket clients that cannot set headers)."""
        key = self.config.api_key
        if not key:
            return True
        offered = []
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "api-key") and value:
            offered.append(value.strip())
        offered += [request.headers.get("X-API-Key", ""), request.query.get("api_key", "")]
        return any(o and hmac.compare_digest(o.encode(), key.encode()) for o in offered)

    @staticmethod
    def _json_error(status: int, type_: str, message: str) -> web.Response:
        return web.json_response(error_reply(type_, message), status=status)

    def _unauthorized(self) -> web.Response:
        message = "missing or wrong API key (send 'Authorization: Bearer KEY')"
        return self._json_error(401, "unauthorized", message)

    # ------------------------------------------------------------ shared request path

    def _parse(self, decode) -> tuple[Observation, int] | dict:
        """Decode and validate a request -> (observation, prompt tokens), or a control reply (openpi's
        ``__ctrl__``). Raises RequestError/DecodeError; anything else a request triggers while being parsed
        is still the request's fault (400), never a 500."""
        try:
            payload = decode()
            if isinstance(payload, dict) and "__ctrl__" in payload:
                ctrl = payload["__ctrl__"]
                if not isinstance(ctrl, str) or len(ctrl) > 64:
                    raise RequestError("invalid_request", "'__ctrl__' must be a short string")
                return {"__ack__": ctrl}  # openpi episode_start/episode_end
            obs = parse_observation(payload, self.spec)
            tokens = check_prompt(self.policy, obs.instruction, self.config.max_prompt_tokens)
        except (RequestError, codec.DecodeError):
            raise
        except PromptTooLongError as e:
            raise RequestError("prompt_too_long", str(e)) from None
        except Exception as e:
            logger.warning("unexpected %s while parsing a request: %s", type(e).__name__, str(e)[:200])
            raise RequestError("invalid_request", f"malformed request ({type(e).__name__})") from None
        return obs, tokens

    async def _actions_or_error(self, decode) -> tuple[int, dict]:
        """-> (HTTP status, reply): ``{"actions": (K, D), "server_timing": {...}}`` or an error reply."""
        try:
            parsed = self._parse(decode)
            if isinstance(parsed, dict):
                return 200, parsed
            actions, timing = await self.predictor.predict(*parsed)
        except codec.DecodeError as e:
            self.stats.bad_requests += 1
            return 400, error_reply("decode_error", str(e))
        except RequestError as e:
            self.stats.bad_requests += 1
            return 400, error_reply(e.type, e.message)
        except ModelError as e:  # the model failed, not the request: 503, as /healthz reports it
            return 503, error_reply(e.type, e.message)
        except Exception as e:  # the batcher itself failed: a server fault, reported as one (never a 500)
            logger.exception("request failed")
            return 503, error_reply("internal_error", f"{type(e).__name__}: {e}")
        return 200, {"actions": actions, "server_timing": timing}

    # ------------------------------------------------------------ HTTP routes

    async def _healthz(self, request: web.Request) -> web.Response:
        """200 ``OK`` while the model answers; 503 with the last model error once it has started failing."""
        health = self.predictor.health
        if not health.failing:
            return web.Response(text="OK\n")
        return web.json_response({"status": "failing", **asdict(health)}, status=503)

    async def _get_metadata(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response(self.metadata)

    async def _read_body(self, request: web.Request) -> bytearray:
        """The request body within ``max_message_bytes`` and ``body_timeout_s``; _BodyError otherwise.

        Read chunk by chunk into one buffer that is emptied on every failure, so a dropped upload's
        memory goes back at once instead of waiting in an exception's traceback for the garbage collector.
        """
        limit, declared = self.config.max_message_bytes, request.content_length
        if declared is not None and declared > limit:
            raise _BodyError(413, "payload_too_large", f"body is {declared} bytes; max {limit}")
        body = bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                while chunk := await request.content.readany():
                    if len(body) + len(chunk) > limit:
                        raise _BodyError(413, "payload_too_large", f"body exceeds {limit} bytes")
                    body += chunk
        except TimeoutError:
            n = len(body)
            body.clear()
            raise _BodyError(408, "body_timeout", f"body not complete after {self.config.body_timeout_s:g} "
                             f"s ({n} bytes received)") from None  # fmt: skip
        except ConnectionError as e:
            n = len(body)
            body.clear()
            raise ConnectionResetError(f"client dropped the connection after {n} of {declared} body bytes "
                                       f"({type(e).__name__})") from None  # fmt: skip
        except BaseException:
            body.clear()
            raise
        if declared is not None and len(body) < declared:  # EOF before the declared length
            n = len(body)
            body.clear()
            raise ConnectionResetError(f"client dropped the connection after {n} of {declared} body bytes")
        return body

    async def _act(self, request: web.Request) -> web.StreamResponse:
        """The OpenVLA-OFT deploy server's endpoint: json-numpy observation in, list of K (D,) actions out."""
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await self._read_body(request)
        except _BodyError as e:
            response = self._json_error(e.status, e.type, e.message)
            if e.status == 408:
                response.force_close()
            return response
        except ConnectionResetError as e:
            self.stats.dropped_uploads += 1
            logger.info("POST /act from %s: %s", request.remote, e)  # one line, no traceback
            return web.Response(status=400)  # nobody reads it
        double_encoded = [False]

        def decode() -> Any:
            payload, double_encoded[0] = self._decode_act_body(body)
            body.clear()  # the decoded arrays are copies; the text is not needed any more
            return payload

        status, reply = await self._actions_or_error(decode)
        body.clear()
        if status != 200:
            return web.json_response(reply, status=status)
        if "__ack__" in reply:
            return web.json_response(reply)
        # like deploy.py: a JSON list of K json-numpy (D,) arrays; timing goes in the standard header
        actions, timing = reply["actions"], reply["server_timing"]
        text = codec.json_dumps([actions[i] for i in range(len(actions))])
        if double_encoded[0]:
            text = json.dumps(text)
        headers = {"Server-Timing": f"infer;dur={timing['infer_ms']:.3f}, queue;dur={timing['queue_ms']:.3f}"}
        if "clipped" in timing:
            headers["X-OFT-Clipped"] = str(timing["clipped"])
        return web.Response(text=text, content_type="application/json", headers=headers)

    @staticmethod
    def _decode_act_body(body: bytes | bytearray) -> tuple[Any, bool]:
        payload = codec.json_loads(body)
        # deploy.py also accepts {"encoded": "<json-numpy string>"} for clients without json_numpy installed
        if isinstance(payload, dict) and "encoded" in payload:
            if len(payload) != 1 or not isinstance(payload["encoded"], str):
                raise RequestError("invalid_request", "'encoded' must be the only key and hold a JSON string")
            return codec.json_loads(payload["encoded"]), True
        return payload, False

    # ------------------------------------------------------------ websocket (openpi)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.config.hard_limit_bytes, compress=False,
                                   heartbeat=self.config.ws_heartbeat_s or None)  # fmt: skip
        if not ws.can_prepare(request).ok:
            return self._json_error(
                426, "upgrade_required", "GET / is the websocket endpoint; use POST /act for HTTP requests"
            )
        if not self._authorized(request):
            return self._unauthorized()  # refused before the upgrade: the client sees HTTP 401
        peer = request.remote
        self._sockets.add(ws)
        try:
            await ws.prepare(request)
            logger.info("websocket connection from %s", peer)
            await ws.send_bytes(codec.packb(self.metadata))
            await self._serve_socket(ws, peer)
        except ConnectionError as e:  # the client vanished mid-reply: one line, not a traceback
            self.stats.dropped_websockets += 1
            logger.info("websocket %s dropped (%s)", peer, type(e).__name__)
        finally:
            self._sockets.discard(ws)
        if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
            logger.warning("closed %s: message above %d bytes", peer, self.config.hard_limit_bytes)
        logger.info("websocket connection from %s closed (code %s)", peer, ws.close_code)
        return ws

    async def _serve_socket(self, ws: web.WebSocketResponse, peer: str | None) -> None:
        """One request at a time per connection, as in openpi; concurrency comes from many connections."""
        prev_total_ms = None
        while True:
            try:
                # one deadline for the whole wait: aiohttp's own receive timeout restarts at every pong
                async with asyncio.timeout(self.config.ws_idle_timeout_s):
                    msg = await ws.receive()
            except TimeoutError:
                self.stats.idle_websockets_closed += 1
                logger.info("closing websocket %s: no message for %g s", peer, self.config.ws_idle_timeout_s)
                await ws.close(code=WSCloseCode.OK, message=b"idle timeout")
                return
            started = time.perf_counter()
            if msg.type == WSMsgType.BINARY:
                reply = await self._ws_reply(msg.data)
            elif msg.type == WSMsgType.TEXT:
                reply = error_reply("invalid_frame", "expected a binary msgpack frame, got a text frame")
            else:
                return
            if prev_total_ms is not None and "server_timing" in reply:
                reply["server_timing"]["prev_total_ms"] = prev_total_ms
            await ws.send_bytes(codec.packb(reply))
            prev_total_ms = (time.perf_counter() - started) * 1000.0

    async def _ws_reply(self, data: bytes) -> dict:
        limit = self.config.max_message_bytes
        if len(data) > limit:
            return error_reply("payload_too_large", f"message is {len(data)} bytes; max {limit}")
        _, reply = await self._actions_or_error(lambda: codec.unpackb(data))
        return reply


def serve_forever(policy: ServablePolicy, config: ServerConfig, policy_info: dict | None = None) -> None:
    """Run the server until interrupted (Ctrl-C)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a clean shutdown (clients see close code 1001)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        server = PolicyServer(policy, config, policy_info)
        await server.start()
        try:
            await stop.wait()
            logger.info("shutting down")
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        logger.info("stopped")


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks, notebooks).

    ``with ServerThread(policy, ServerConfig(port=0)) as srv: ...`` — ``srv.port`` is the bound port.
    """

    def __init__(self, policy: ServablePolicy, config: ServerConfig, policy_info: dict | None = None) -> None:
        self.server = PolicyServer(policy, config, policy_info)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oft-server", daemon=True)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def ws_url(self) -> str:
        return f"ws://{self.server.config.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.server.config.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "BatchingPredictor",
    "PolicyServer",
    "ServablePolicy",
    "ServerConfig",
    "ServerThread",
    "serve_forever",
]
