"""``oft serve CHECKPOINT``: serve a policy to robots, or ``--benchmark`` the serving overhead."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
from pathlib import Path

from oft.cli import COUNT, NONNEGATIVE, POSITIVE, Bounded, comma_list
from oft.model.commands import add_loading_arguments, load_from_args

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8000
# the serving benchmark's settings when --benchmark is given without them
DEFAULT_REQUESTS = 50
DEFAULT_CLIENTS = "1,4,16"
DEFAULT_SECONDS = 5.0
# dest -> flag of the options only the benchmark reads: refused without --benchmark
BENCHMARK_ONLY = {
    "image_size": "--image-size",
    "requests": "--requests",
    "clients": "--clients",
    "seconds": "--seconds",
    "json": "--json",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="policy checkpoint directory (oft, OpenVLA or OpenVLA-OFT)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; 0.0.0.0 for all)")
    p.add_argument(
        "--port", type=Bounded(int, ge=0, le=65535), default=None,
        help=f"TCP port (default {DEFAULT_PORT}; with --benchmark, a free one unless given)",
    )  # fmt: skip
    p.add_argument(
        "--api-key",
        default=os.environ.get("OFT_API_KEY"),
        help="require this key ('Authorization: Bearer KEY', 'X-API-Key' or ?api_key=); default $OFT_API_KEY",
    )
    p.add_argument("--max-batch", type=COUNT, default=8, help="most concurrent requests run as one batch")
    p.add_argument(
        "--batch-wait-ms", type=NONNEGATIVE, default=0.0, help="wait this long for a batch to fill"
    )
    p.add_argument(  # the bound is ServerConfig's 1 KiB, so the benchmark's server takes any config's size
        "--max-message-mb", type=Bounded(float, ge=1 / 1024), default=16.0,
        help="largest request accepted, MB (at least 1 KiB)",
    )  # fmt: skip
    limits = p.add_argument_group("limits a client can hit (see oft.serve.server.ServerConfig)")
    limits.add_argument("--max-prompt-tokens", type=COUNT, default=256, help="prompt tokens per request")
    limits.add_argument("--max-connections", type=COUNT, default=256, help="open connections; more get 503")
    limits.add_argument(
        "--idle-timeout", type=POSITIVE, default=30.0,
        help="s until an HTTP connection without a complete request head is closed (header + keep-alive)",
    )  # fmt: skip
    limits.add_argument("--body-timeout", type=POSITIVE, default=30.0, help="s to receive a request body")
    limits.add_argument("--ws-idle-timeout", type=POSITIVE, default=300.0, help="s of websocket silence")
    limits.add_argument(
        "--ws-heartbeat", type=NONNEGATIVE, default=20.0, help="websocket ping interval (0: off)"
    )
    limits.add_argument(
        "--clip-actions", action="store_true",
        help="clamp actions to the policy's training [min, max] (replies count the clipped values)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    p.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads")
    add_loading_arguments(p)  # --dtype (default: the checkpoint's), --unnorm-key, --center-crop
    bench = p.add_argument_group(
        "serving benchmark", "the options below need --benchmark; its server runs with every option above"
    )
    bench.add_argument("--benchmark", action="store_true", help="measure serving overhead and throughput")
    bench.add_argument(
        "--image-size",
        type=COUNT,
        default=None,
        help="benchmark image side (default: what the policy renders)",
    )
    bench.add_argument(
        "--requests", type=COUNT, default=None, help=f"latency samples per path (default {DEFAULT_REQUESTS})"
    )
    bench.add_argument(
        "--clients", default=None,
        help=f"concurrent clients for the throughput runs (default {DEFAULT_CLIENTS})",
    )  # fmt: skip
    bench.add_argument(
        "--seconds", type=POSITIVE, default=None,
        help=f"duration of each throughput run (default {DEFAULT_SECONDS:g})",
    )  # fmt: skip
    bench.add_argument("--json", type=Path, default=None, help="write the benchmark result as JSON")


def load(args: argparse.Namespace):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    policy = load_from_args(args, args.checkpoint, device=args.device)
    policy.eval()
    return policy


def _config(args: argparse.Namespace):
    from oft.serve.server import ServerConfig

    if args.api_key is not None and not args.api_key.strip():  # from the environment; --api-key "" is refused
        raise ValueError(  # by oft.cli before this
            "OFT_API_KEY is set but empty, which would serve without authentication; set a key, or unset "
            "OFT_API_KEY to serve without one"
        )
    return ServerConfig(
        host=args.host,
        port=DEFAULT_PORT if args.port is None else args.port,
        api_key=args.api_key or None,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_prompt_tokens=args.max_prompt_tokens,
        max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout,
        body_timeout_s=args.body_timeout,
        ws_idle_timeout_s=args.ws_idle_timeout,
        ws_heartbeat_s=args.ws_heartbeat,
        clip_actions=args.clip_actions,
    )


def _checkpoint_name(policy, checkpoint: str) -> str:
    """The served checkpoint as clients see it (``GET /metadata`` and the websocket handshake's metadata): the
    directory's name, and for an ``oft train`` run directory the step it stood for
    (``train/checkpoints/step_0008000``), never the server's full path."""
    from oft.model.commands import loaded_source

    source, given = Path(loaded_source(policy, checkpoint)), Path(checkpoint).absolute()
    if source != given and source.is_relative_to(given):
        return (given.resolve().name / source.relative_to(given)).as_posix()
    return given.resolve().name if given.exists() else str(checkpoint)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from oft.hub import is_hub_id

    _check_benchmark_flags(args)
    if not Path(args.checkpoint).exists() and not is_hub_id(args.checkpoint):  # Hub ids: load_policy fetches
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    config = _config(args)
    if args.benchmark:
        _check_connections(_bench_clients(args), config.max_connections)  # before the checkpoint is loaded
    policy = load(args)
    if args.benchmark:
        return _benchmark(args, policy, config)
    from oft.serve.server import serve_forever

    if not _is_loopback(args.host) and not config.api_key:
        logger.warning("serving on %s without an API key: anyone who can reach this port can drive the robot",
                       args.host)  # fmt: skip
    info = {"checkpoint": _checkpoint_name(policy, args.checkpoint), "device": args.device}
    serve_forever(policy, config, policy_info=info)
    return 0


def _check_benchmark_flags(args: argparse.Namespace) -> None:
    """ValueError for a benchmark option without ``--benchmark``: the command would serve forever and never
    read it."""
    if args.benchmark:
        return
    given = [f"{flag} {getattr(args, dest)}" for dest, flag in BENCHMARK_ONLY.items()
             if getattr(args, dest) is not None]  # fmt: skip
    if given:
        what, need, them = (
            ("these configure", "need", "them") if len(given) > 1 else ("this configures", "needs", "it")
        )
        raise ValueError(
            f"{', '.join(given)}: {what} the serving benchmark and {need} --benchmark; without it oft serve "
            f"only serves, ignoring {them}"
        )


def _bench_clients(args: argparse.Namespace) -> tuple[int, ...]:
    return _clients(DEFAULT_CLIENTS if args.clients is None else args.clients)


def _check_connections(clients: tuple[int, ...], max_connections: int) -> None:
    """ValueError when the benchmark would open more connections than ``--max-connections`` lets the server
    accept: the throughput run holds one per client, the latency run two (websocket and HTTP)."""
    needed = max(2, *clients)
    if needed > max_connections:
        raise ValueError(
            f"--max-connections {max_connections}: the benchmark (--clients {','.join(map(str, clients))}) "
            f"opens up to {needed} connections at once; raise --max-connections or lower --clients"
        )


def _loading_flags(args: argparse.Namespace) -> list[str]:
    """The ``oft serve`` flags that load the policy as ``args`` asks (device, threads, dtype, statistics,
    crop): the benchmark's server process gets them, the server options travel in its ServerConfig."""
    flags = ["--device", args.device]
    if args.dtype:
        flags += ["--dtype", args.dtype]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    if args.unnorm_key:
        flags += ["--unnorm-key", args.unnorm_key]
    if args.center_crop is not None:
        flags.append("--center-crop" if args.center_crop else "--no-center-crop")
    return flags


def _clients(text: str) -> tuple[int, ...]:
    """``--clients 1,4,16`` -> (1, 4, 16); ValueError naming the text for anything else."""

    clients = comma_list(text, "--clients", int)
    if min(clients) < 1:
        raise ValueError(f"--clients {text!r}: expected client counts >= 1")
    return clients


def _benchmark(args: argparse.Namespace, policy, config) -> int:
    from oft.serve.bench_serving import benchmark_serving, format_report
    from oft.serve.server import ServerConfig

    # the server runs as asked, API key included (its clients send it); port 0: a free one
    bench_config = ServerConfig(**{**config.__dict__, "port": 0 if args.port is None else args.port})
    from oft.model.commands import loaded_source

    source = loaded_source(policy, args.checkpoint)  # the server process loads this same step
    result = benchmark_serving(
        policy,
        bench_config,
        checkpoint=source,
        image_size=args.image_size,
        n=DEFAULT_REQUESTS if args.requests is None else args.requests,
        clients=_bench_clients(args),
        seconds=DEFAULT_SECONDS if args.seconds is None else args.seconds,
        server_args=_loading_flags(args),
    )
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": source, **result.to_dict()}, indent=2))
        print(f"wrote {args.json}")
    return 0
