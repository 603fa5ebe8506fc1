"""Soak `oft serve` on loopback: mixed valid and malformed requests over both protocols, idle connections and
dropped uploads at the same time; report whether the server stayed correct (issue 13's acceptance run).

    .venv/bin/python scripts/soak_serve.py --requests 10000 --idle 200 --dropped 100      # the acceptance run
    .venv/bin/python scripts/soak_serve.py --requests 500 --idle 20 --dropped 10          # a quick check

The server runs in a subprocess (so its RSS is its own) on a tiny LIBERO-sized policy built here, or on
``--checkpoint``. Valid requests are checked against ``predict_action_chunk`` run in this process on the same
checkpoint. Everything is bounded: ``--max-seconds`` stops the attack phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

log = logging.getLogger("soak")


def build_tiny_checkpoint(path: Path) -> Path:
    import torch

    from oft.data.normalize import NormStats, Stats
    from oft.model import build_policy
    from oft.spec import get_spec

    spec = get_spec("libero")
    torch.manual_seed(0)

    def stats(dim: int) -> Stats:
        return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))

    policy = build_policy(spec, NormStats(stats(spec.action_dim), stats(spec.proprio_dim)),
                          ["pick up the red block", "task number"], arch="tiny")  # fmt: skip
    policy.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def valid_request(seed: int, size: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": f"task number {seed % 7}",
    }


def as_http(request: dict) -> dict:
    return {"full_image": request["observation/image"], "wrist_image": request["observation/wrist_image"],
            "state": request["observation/state"], "instruction": request["prompt"]}  # fmt: skip


def malformed(rng: random.Random) -> bytes:
    """One of the families of bad requests (both encodings: the server picks the protocol by route)."""
    from oft.serve import codec

    good = valid_request(rng.randrange(10**6), 16)
    kinds = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        lambda: codec.packb({**good, "observation/state": [float("inf")] * 8}),
        lambda: codec.packb({**good, "prompt": "\N{GRINNING FACE}" * 4096}),
        lambda: codec.packb({**good, "observation/image": np.zeros((16, 16), np.uint8)}),
        lambda: codec.packb({"images": {str(i): 0 for i in range(5000)}, "prompt": "x"}),
        lambda: codec.packb({"__ndarray__": True, "data": b"\0" * 3, "dtype": "|O", "shape": [3]}),
        lambda: codec.packb([[[[[[[[[[[]]]]]]]]]]] * 100),
        lambda: json.dumps({"full_image": {"__numpy__": "!!", "dtype": "<f4", "shape": [2]}}).encode(),
        lambda: b"[" * 50_000,
        lambda: codec.json_dumps({**as_http(good), "state": "nope"}).encode(),
        lambda: json.dumps({"encoded": 5}).encode(),
    ]
    return rng.choice(kinds)()


class Tally:
    def __init__(self) -> None:
        self.valid = self.wrong = self.status_500 = self.malformed = self.malformed_accepted = 0
        self.latency_ms: list[float] = []


async def ws_client(url: str, n: int, rng: random.Random, expected, tally: Tally, deadline: float) -> None:
    import websockets

    from oft.serve import codec

    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # metadata
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            if rng.random() < 0.5:
                seed = rng.randrange(len(expected))
                t0 = time.perf_counter()
                await ws.send(codec.packb(valid_request(seed)))
                reply = codec.str_keys(codec.unpackb(await ws.recv()))
                tally.latency_ms.append((time.perf_counter() - t0) * 1000)
                tally.valid += 1
                if "actions" not in reply or not np.allclose(reply["actions"], expected[seed], atol=1e-4):
                    tally.wrong += 1
            else:
                await ws.send(malformed(rng))
                reply = codec.str_keys(codec.unpackb(await ws.recv()))
                tally.malformed += 1
                err = reply.get("error", {}).get("type")
                if err in ("internal_error", "non_finite_actions"):  # what HTTP answers with 500
                    tally.status_500 += 1
                elif err is None:
                    tally.malformed_accepted += 1


async def http_client(base: str, n: int, rng: random.Random, expected, tally: Tally, deadline: float) -> None:
    import aiohttp

    from oft.serve import codec

    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            valid = rng.random() < 0.5
            seed = rng.randrange(len(expected))
            body = codec.json_dumps(as_http(valid_request(seed))).encode() if valid else malformed(rng)
            t0 = time.perf_counter()
            async with session.post(base + "/act", data=body) as r:
                text = await r.read()
                status = r.status
            if status >= 500:
                tally.status_500 += 1
            if valid:
                tally.latency_ms.append((time.perf_counter() - t0) * 1000)
                tally.valid += 1
                ok = status == 200 and np.allclose(
                    np.stack(codec.json_loads(text)), expected[seed], atol=1e-4
                )
                tally.wrong += not ok
            else:
                tally.malformed += 1
                tally.malformed_accepted += status == 200


async def idle_connections(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if i % 2:  # half send a header that never ends (slowloris), half nothing at all
            writer.write(b"POST /act HTTP/1.1\r\nHost: x\r\n")
        conns.append((reader, writer))
    return conns


async def closed_count(conns, wait_s: float) -> int:
    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            while await asyncio.wait_for(reader.read(4096), wait_s):
                pass
            return True
        except (TimeoutError, ConnectionError):
            return False

    results = await asyncio.gather(*(closed(r) for r, _ in conns))
    for _, w in conns:
        w.close()
    return sum(results)


async def dropped_uploads(port: int, n: int, size: int) -> None:
    chunk = b"x" * 2**20
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // len(chunk) - 1):
            writer.write(chunk)
            await writer.drain()
        writer.transport.abort()  # RST mid-upload
        await asyncio.sleep(0.01)


async def attack(args, port: int, expected) -> dict:
    rng = random.Random(0)
    tally = Tally()
    deadline = time.monotonic() + args.max_seconds
    per_client = max(1, args.requests // (2 * args.clients))
    ws_url, http_url = f"ws://127.0.0.1:{port}/", f"http://127.0.0.1:{port}"
    idle = await idle_connections(port, args.idle)
    t0 = time.monotonic()
    await asyncio.gather(
        *(ws_client(ws_url, per_client, random.Random(i), expected, tally, deadline)
          for i in range(args.clients)),
        *(http_client(http_url, per_client, random.Random(100 + i), expected, tally, deadline)
          for i in range(args.clients)),
        dropped_uploads(port, args.dropped, args.upload_mb * 2**20),
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    # idle connections: all must be closed by idle_timeout (+ slack) after they were opened
    closed = await closed_count(idle, max(0.1, args.idle_timeout + 2 - (time.monotonic() - t0)))
    lat = np.asarray(tally.latency_ms) if tally.latency_ms else np.zeros(1)
    del rng
    return {
        "requests": tally.valid + tally.malformed, "valid": tally.valid, "malformed": tally.malformed,
        "malformed_accepted": tally.malformed_accepted,
        "wrong_answers_to_valid": tally.wrong, "status_500": tally.status_500,
        "idle_connections": args.idle, "idle_closed_within_timeout": closed,
        "dropped_uploads": args.dropped, "attack_seconds": round(elapsed, 1),
        "valid_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "valid_p99_ms": round(float(np.percentile(lat, 99)), 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: a tiny LIBERO-sized policy")
    p.add_argument("--requests", type=int, default=10_000, help="total requests, half valid, both protocols")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per protocol")
    p.add_argument("--idle", type=int, default=200, help="connections that send nothing or half a header")
    p.add_argument("--dropped", type=int, default=100, help="uploads dropped mid-body")
    p.add_argument("--upload-mb", type=int, default=8, help="declared size of each dropped upload")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="the server's --idle-timeout for this run")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop the attack after this long")
    p.add_argument("--json", type=Path, default=None, help="write the report here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import oft

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or build_tiny_checkpoint(Path(tmp) / "tiny")
        policy = oft.load_policy(ckpt).eval()
        expected = [policy.predict_action_chunk(_obs(valid_request(s))) for s in range(16)]
        port = free_port()
        cmd = [sys.executable, "-m", "oft.cli", "serve", str(ckpt), "--port", str(port), "--threads", "1",
               "--max-connections", str(args.idle + 4 * args.clients + 50),
               "--idle-timeout", str(args.idle_timeout),
               "--body-timeout", str(args.idle_timeout)]  # fmt: skip
        server_log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 (closed below)
        server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(port, server)
            warm = _warm(port, expected)
            rss_before = rss_mb(server.pid)
            report = asyncio.run(attack(args, port, expected))
            time.sleep(1.0)
            report["rss_before_mb"] = round(rss_before, 1)
            report["rss_after_mb"] = round(rss_mb(server.pid), 1)
            report["rss_change_pct"] = round(100 * (report["rss_after_mb"] / rss_before - 1), 1)
            report["server_alive"] = server.poll() is None and _healthy(port)
            report["correct_after_attack"] = _warm(port, expected) and warm
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            log_lines = (Path(tmp) / "server.log").read_text().splitlines()
        report["server_log_lines"] = len(log_lines)
        report["server_tracebacks"] = sum("Traceback" in line for line in log_lines)
    report["pass"] = bool(report["server_alive"] and report["correct_after_attack"]
                          and report["wrong_answers_to_valid"] == 0 and report["status_500"] == 0
                          and report["idle_closed_within_timeout"] == args.idle
                          and abs(report["rss_change_pct"]) <= 10)  # fmt: skip
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if report["pass"] else 1


def _obs(request: dict):
    from oft.observation import Observation

    return Observation(images=[request["observation/image"], request["observation/wrist_image"]],
                       proprio=np.asarray(request["observation/state"], np.float32),
                       instruction=request["prompt"])  # fmt: skip


def _healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(port: int, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not come up (exit code {server.poll()})")
        time.sleep(0.2)


def _warm(port: int, expected) -> bool:
    from oft.serve.client import HttpClientPolicy

    client = HttpClientPolicy(f"http://127.0.0.1:{port}")
    return all(np.allclose(client.infer(as_http(valid_request(s)))["actions"], expected[s], atol=1e-4)
               for s in range(len(expected)))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
