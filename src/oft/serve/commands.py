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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="policy checkpoint directory (oft, OpenVLA or OpenVLA-OFT)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; 0.0.0.0 for all)")
    p.add_argument("--port", type=Bounded(int, ge=0, le=65535), default=8000)
    p.add_argument(
        "--api-key",
        default=os.environ.get("OFT_API_KEY"),
        help="require this key ('Authorization: Bearer KEY', 'X-API-Key' or ?api_key=); default $OFT_API_KEY",
    )
    p.add_argument("--max-batch", type=COUNT, default=8, help="most concurrent requests run as one batch")
    p.add_argument(
        "--batch-wait-ms", type=NONNEGATIVE, default=0.0, help="wait this long for a batch to fill"
    )
    p.add_argument(
        "--max-message-mb", type=Bounded(float, ge=0.001), default=16.0, help="largest request accepted"
    )
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
    bench = p.add_argument_group("serving benchmark")
    bench.add_argument("--benchmark", action="store_true", help="measure serving overhead and throughput")
    bench.add_argument(
        "--image-size",
        type=COUNT,
        default=None,
        help="benchmark image side (default: what the policy renders)",
    )
    bench.add_argument("--requests", type=COUNT, default=50, help="latency samples per path")
    bench.add_argument("--clients", default="1,4,16", help="concurrent clients for the throughput runs")
    bench.add_argument("--seconds", type=POSITIVE, default=5.0, help="duration of each throughput run")
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
        port=args.port,
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

    if not Path(args.checkpoint).exists() and not is_hub_id(args.checkpoint):  # Hub ids: load_policy fetches
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    config = _config(args)
    if args.benchmark:
        _clients(args.clients)  # before the checkpoint is loaded
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


def _clients(text: str) -> tuple[int, ...]:
    """``--clients 1,4,16`` -> (1, 4, 16); ValueError naming the text for anything else."""

    clients = comma_list(text, "--clients", int)
    if min(clients) < 1:
        raise ValueError(f"--clients {text!r}: expected client counts >= 1")
    return clients


def _benchmark(args: argparse.Namespace, policy, config) -> int:
    from oft.serve.bench_serving import benchmark_serving, format_report
    from oft.serve.server import ServerConfig

    clients = _clients(args.clients)
    bench_config = ServerConfig(**{**config.__dict__, "port": 0, "api_key": None})
    server_args = ["--device", args.device, "--max-message-mb", str(args.max_message_mb)]
    if args.dtype:
        server_args += ["--dtype", args.dtype]
    if args.threads:
        server_args += ["--threads", str(args.threads)]
    if args.unnorm_key:
        server_args += ["--unnorm-key", args.unnorm_key]
    if args.center_crop is not None:
        server_args.append("--center-crop" if args.center_crop else "--no-center-crop")
    from oft.model.commands import loaded_source

    source = loaded_source(policy, args.checkpoint)  # the server process loads this same step
    result = benchmark_serving(
        policy,
        bench_config,
        checkpoint=source,
        image_size=args.image_size,
        n=args.requests,
        clients=clients,
        seconds=args.seconds,
        server_args=server_args,
    )
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": source, **result.to_dict()}, indent=2))
        print(f"wrote {args.json}")
    return 0
