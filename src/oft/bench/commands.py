"""`oft bench`: the paper's Table II (latency, throughput per decoding scheme) on one model and machine, plus
what a user plans with: training step, data loader, simulator steps, and the FLOP fraction of the machine."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from oft.bench.latency import (
    ALL_ROWS,
    VARIANTS,
    BenchOptions,
    check_rows,
    fake_observation,
    ratios,
    run_bench,
)
from oft.bench.system import REFERENCE, SYSTEM_ROWS, SystemRow, format_system
from oft.bench.timing import format_table, write_json
from oft.cli import COUNT, COUNT_OR_ZERO
from oft.model.build import ARCHITECTURES
from oft.model.heads import get_head_class
from oft.model.vla import ACTION_SLOT_LAYOUTS

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="checkpoint directory (omit to use --arch)")
    parser.add_argument(
        "--checkpoint", dest="checkpoint_opt", metavar="PATH", help="a trained policy to bench"
    )
    parser.add_argument(
        "--arch", default=None,
        help=f"named architecture built from scratch: {', '.join(ARCHITECTURES)}, or 'bench' (the paper's "
        "bench architecture with random weights, compared with the reference's times) (default small)",
    )  # fmt: skip
    parser.add_argument("--spec", default=None, help="robot preset for --arch (default libero: K=8, D=7)")
    parser.add_argument(
        "--action-slots", default=None, choices=ACTION_SLOT_LAYOUTS,
        help="action slots of the --arch model: one per action dimension (K*D, the paper's, default) or one "
        "per chunk step (K, L1 rows only: discrete and diffusion rows keep K*D); a checkpoint has its own",
    )  # fmt: skip
    parser.add_argument("--variants", nargs="+", default=list(ALL_ROWS), metavar="NAME",
                        help=f"rows to measure (default all): {' '.join(ALL_ROWS)}")  # fmt: skip
    parser.add_argument(
        "--system", nargs="*", default=list(SYSTEM_ROWS), metavar="NAME",
        help=f"system rows (default all; none: --system): {' '.join(SYSTEM_ROWS)}",
    )  # fmt: skip
    parser.add_argument("--train-batch", type=COUNT, default=None, help="training-step batch (default 4 / 8)")
    parser.add_argument(
        "--lora-rank", type=COUNT_OR_ZERO, default=None,
        help="LoRA rank of the training step (default 32 for --arch bench, else 0: full)",
    )  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=sorted(DTYPES),
        help="model dtype (default: the checkpoint's weights / config torch_dtype; float32 for --arch)",
    )  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="torch.compile the vision backbone and LLM")
    parser.add_argument("--warmup", type=COUNT_OR_ZERO, default=3, help="untimed calls per row (default 3)")
    parser.add_argument("--iters", type=COUNT, default=20, help="timed calls per row (default 20)")
    parser.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", metavar="FILE", help="write one JSON row per variant to FILE")


def load_base(args: argparse.Namespace):
    """The policy whose trunk every row shares: a checkpoint, or a randomly initialized named arch."""
    checkpoint = getattr(args, "checkpoint", None) or getattr(args, "checkpoint_opt", None)
    if checkpoint:
        from oft.model.loading import checkpoint_dtype, load_policy, resolve_checkpoint

        path = resolve_checkpoint(checkpoint)  # once: dtype and weights from the same step
        dtype = DTYPES[args.dtype] if args.dtype else checkpoint_dtype(path)
        return load_policy(path, device=args.device, dtype=dtype)
    dtype = DTYPES[args.dtype or "float32"]
    arch = args.arch or "small"
    if arch == "bench":
        from oft.bench.arch import bench_policy

        return bench_policy()[0].to(device=args.device, dtype=dtype)
    from oft.bench.latency import neutral_stats
    from oft.data.normalize import NormStats
    from oft.model.build import build_policy
    from oft.spec import get_spec

    spec = get_spec(args.spec or "libero")
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim or 1))
    options = BenchOptions()
    policy = build_policy(
        spec, stats, [options.instruction], arch=arch, use_proprio=spec.proprio_dim > 0,
        action_slots=getattr(args, "action_slots", None) or "per_dimension",
    )  # fmt: skip
    return policy.to(device=args.device, dtype=dtype)


def check_model_options(args: argparse.Namespace) -> None:
    """ValueError for options the bench would not use, naming them: ``--arch`` / ``--spec`` with a checkpoint
    (it has its own model and robot), ``--spec`` or ``--action-slots per_step`` with ``--arch bench`` (the
    paper's LIBERO bench model: K=8, D=7, K*D slots), ``--lora-rank`` / ``--train-batch`` without a system
    row that reads them. Then fills the defaults (small, libero)."""
    checkpoint = getattr(args, "checkpoint", None) or getattr(args, "checkpoint_opt", None)
    if checkpoint:
        given = [f"--{k} {getattr(args, k)}" for k in ("arch", "spec") if getattr(args, k) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: the checkpoint {checkpoint} has its own model and robot")
    elif args.arch == "bench":
        if args.spec not in (None, "libero"):
            raise ValueError(f"--spec {args.spec}: --arch bench is the paper's LIBERO model (K=8, D=7)")
        if args.action_slots not in (None, "per_dimension"):
            raise ValueError(
                f"--action-slots {args.action_slots}: --arch bench has the paper's K*D slots (per_dimension)"
            )
    if args.lora_rank is not None and "train_step" not in args.system:
        raise ValueError(
            f"--lora-rank {args.lora_rank} sets the train_step row's LoRA: add train_step to --system"
        )
    if args.train_batch is not None and not {"train_step", "loader"} & set(args.system):
        raise ValueError(
            f"--train-batch {args.train_batch} sets the train_step and loader rows' batch: add one of them "
            "to --system"
        )
    args.arch = args.arch or "small"
    args.spec = args.spec or "libero"


def run(args: argparse.Namespace) -> int:
    check_model_options(args)
    check_rows(args.variants)
    for name in args.system:
        if name not in SYSTEM_ROWS:
            raise KeyError(f"unknown system row {name!r}; expected some of {SYSTEM_ROWS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    checkpoint = args.checkpoint or args.checkpoint_opt
    base = load_base(args)
    options = BenchOptions(warmup=args.warmup, iters=args.iters, compile=args.compile)
    if args.arch == "bench" and not checkpoint:
        from oft.bench.arch import bench_prompt

        options = BenchOptions(args.warmup, args.iters, args.compile, instruction=bench_prompt())
    if checkpoint:
        from oft.model.commands import loaded_source

        checkpoint = loaded_source(base, checkpoint)  # a run directory: the step it stood for
    source = checkpoint or f"arch={args.arch}" + ("" if args.arch == "bench" else f" spec={args.spec}")
    layout = base.vla.config.action_slots
    if checkpoint and args.action_slots not in (None, layout):
        log.warning("--action-slots %s ignored: the checkpoint's model has %s", args.action_slots, layout)
    source += f" action_slots={layout} ({base.vla.num_action_slots} slots)"
    kd_rows = [
        n
        for n in args.variants
        if n in VARIANTS and layout not in get_head_class(VARIANTS[n].head).action_slot_layouts
    ]
    dtype = str(base.dtype).removeprefix("torch.")
    setup = f"{dtype}, {torch.get_num_threads()} threads, compile={args.compile}"
    print(
        f"oft bench: {source} on {args.device} ({setup}); {options.warmup}+{options.iters} warmup+timed calls"
    )
    if kd_rows:
        print(f"rows whose head reads one slot per action dimension run with K*D slots: {', '.join(kd_rows)}")
    matmul_s = _matmul(args)
    rows = run_bench(base, args.variants, options) if args.variants else []
    if rows:
        print(format_table(rows, reference="bare_forward"))
        for name, value in ratios(rows).items():
            print(f"{name}: {value:.2f}")
    system = system_rows(base, args, options, matmul_s)
    if system:
        print(format_system(system))
    if args.arch == "bench" and not checkpoint:
        print_reference_comparison(rows, system, matmul_s)
    if args.json:
        write_json(rows, args.json, source=source)
        with open(args.json.removesuffix(".json") + ".system.json", "w") as f:
            json.dump([vars(r) for r in system] + [{"name": "matmul_1024", "seconds": matmul_s}], f, indent=2)
        print(f"wrote {args.json}")
    return 0


def _matmul(args) -> float:
    from oft.bench.system import matmul_seconds

    seconds = matmul_seconds(iters=max(args.iters, 5))
    print(f"matmul 1024x1024 fp32: {seconds * 1e3:.2f} ms ({2 * 1024**3 / seconds / 1e9:.1f} GFLOP/s)")
    return seconds


def system_rows(base, args, options: BenchOptions, matmul_s: float) -> list[SystemRow]:
    """The rows named by ``--system``, measured on the base policy (its own cameras and proprio)."""
    from oft.bench import system as S

    out: list[SystemRow] = []
    if "flops" in args.system:
        obs = fake_observation(base, options.instruction, options.seed)

        def chunk() -> None:
            base.predict_action_chunk(obs)

        with torch.inference_mode():
            latency = S.median_seconds(chunk, options.warmup, options.iters)
        flops = S.count_flops(chunk)
        rate = flops / latency
        frac = rate / (2 * 1024**3 / matmul_s)
        out.append(SystemRow("chunk", latency, rate, "FLOP/s",
                             f"{flops / 1e9:.2f} GFLOP/chunk = {frac:.2f} of the matmul rate"))  # fmt: skip
    if "train_step" in args.system:
        batch = args.train_batch or (4 if args.arch == "bench" else 8)
        rank = args.lora_rank if args.lora_rank is not None else (32 if args.arch == "bench" else 0)
        out.append(S.train_step_row(base, batch, rank, min(options.warmup, 2), max(3, options.iters // 4),
                                    args.compile))  # fmt: skip
    if "loader" in args.system:
        out.append(S.loader_row(base, args.train_batch or 32, max(5, options.iters)))
    if "sim" in args.system:
        try:
            out.extend(S.sim_rows(base, steps=max(20, options.iters * 5)))
        except ImportError as e:
            log.warning("sim rows skipped: %s", e)
    return out


def print_reference_comparison(rows, system: list[SystemRow], matmul_s: float) -> None:
    """Times on the bench architecture against the paper's code, both in units of the 1024² matmul."""
    scale = REFERENCE["matmul_s"] / matmul_s  # this machine's seconds -> the reference machine's
    by_row = {r.name: r.latency_median_s for r in rows}
    by_sys = {r.name: r.seconds for r in system}
    pairs = [("chunk (2 images + proprio)", by_sys.get("chunk"), "chunk_s"),
             ("LoRA training step", by_sys.get("train_step"), "train_step_s"),
             ("autoregressive action", by_row.get("ar_discrete"), "ar_action_s")]  # fmt: skip
    print(f"vs the reference implementation (normalised by the matmul: x{scale:.3f})")
    for label, seconds, key in pairs:
        if seconds is not None:
            ratio = seconds * scale / REFERENCE[key]
            print(f"  {label:<28} {seconds * scale:.3f} s vs {REFERENCE[key]:.3f} s = {ratio:.2f}x")
