"""`oft bench`: the paper's Table II (latency, throughput per decoding scheme) on one model and machine."""

from __future__ import annotations

import argparse
import logging

import torch

from oft.bench.latency import ALL_ROWS, BenchOptions, check_rows, ratios, run_bench
from oft.bench.timing import format_table, write_json

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="checkpoint directory (omit to use --arch)")
    parser.add_argument(
        "--arch", default="small", help="named architecture built from scratch (default small)"
    )
    parser.add_argument("--spec", default="libero", help="robot preset for --arch (default libero: K=8, D=7)")
    parser.add_argument("--variants", nargs="+", default=list(ALL_ROWS), metavar="NAME",
                        help=f"rows to measure (default all): {' '.join(ALL_ROWS)}")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=sorted(DTYPES),
        help="model dtype (default: the checkpoint's weights / config torch_dtype; float32 for --arch)",
    )  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="torch.compile the vision backbone and LLM")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per row (default 3)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per row (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", metavar="FILE", help="write one JSON row per variant to FILE")


def load_base(args: argparse.Namespace):
    """The policy whose trunk every row shares: a checkpoint, or a randomly initialized named arch."""
    if args.checkpoint:
        from oft.model.loading import checkpoint_dtype, load_policy

        dtype = DTYPES[args.dtype] if args.dtype else checkpoint_dtype(args.checkpoint)
        return load_policy(args.checkpoint, device=args.device, dtype=dtype)
    dtype = DTYPES[args.dtype or "float32"]
    from oft.bench.latency import neutral_stats
    from oft.data.normalize import NormStats
    from oft.model.build import build_policy
    from oft.spec import get_spec

    spec = get_spec(args.spec)
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim or 1))
    options = BenchOptions()
    policy = build_policy(
        spec, stats, [options.instruction], arch=args.arch, use_proprio=spec.proprio_dim > 0
    )
    return policy.to(device=args.device, dtype=dtype)


def run(args: argparse.Namespace) -> int:
    check_rows(args.variants)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = load_base(args)
    options = BenchOptions(warmup=args.warmup, iters=args.iters, compile=args.compile)
    source = args.checkpoint or f"arch={args.arch} spec={args.spec}"
    dtype = str(base.dtype).removeprefix("torch.")
    setup = f"{dtype}, {torch.get_num_threads()} threads, compile={args.compile}"
    print(
        f"oft bench: {source} on {args.device} ({setup}); {options.warmup}+{options.iters} warmup+timed calls"
    )
    rows = run_bench(base, args.variants, options)
    print(format_table(rows, reference="bare_forward"))
    for name, value in ratios(rows).items():
        print(f"{name}: {value:.2f}")
    if args.json:
        write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0
