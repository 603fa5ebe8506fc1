"""``oft info <checkpoint>``: architecture, parameter counts, robot spec, normalization statistics.

Also the checkpoint-loading options every command that loads a policy shares (``oft eval``, ``oft serve``,
``oft info``): :func:`add_loading_arguments` and :func:`load_from_args`, so ``--dtype``, ``--unnorm-key`` and
``--center-crop`` mean the same everywhere and default to what the checkpoint itself says.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from oft.model.policy import Policy

DTYPES = ("float32", "bfloat16", "float16")


def add_loading_arguments(p: argparse.ArgumentParser) -> None:
    """``--dtype``, ``--unnorm-key``, ``--center-crop/--no-center-crop``: ``load_policy``'s options."""
    p.add_argument(
        "--dtype", choices=DTYPES, default=None,
        help="model dtype (default: the checkpoint's: its saved weights, or its config's torch_dtype)",
    )  # fmt: skip
    p.add_argument(
        "--unnorm-key",
        default=None,
        help="dataset statistics to use when the checkpoint holds several (default: each observation's "
        "instruction's, for a policy trained with per-task statistics or on datasets with their own "
        "instructions)",
    )
    p.add_argument(
        "--center-crop", action=argparse.BooleanOptionalAction, default=None,
        help="feed the model the 90%%-area center crop (default: the checkpoint's own: on for policies "
        "trained with crop augmentation, e.g. the paper's OpenVLA-OFT fine-tunes)",
    )  # fmt: skip


def resolve_dtype(name: str | None, checkpoint) -> torch.dtype:
    """``--dtype NAME``, or the dtype ``checkpoint`` stores its weights in when none is given."""
    import torch

    from oft.model.loading import checkpoint_dtype

    return getattr(torch, name) if name else checkpoint_dtype(checkpoint)


def load_from_args(args: argparse.Namespace, checkpoint, device="cpu") -> Policy:
    """``load_policy`` with the options of :func:`add_loading_arguments`."""
    from oft.model.loading import load_policy, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)  # once: dtype and weights from the same step of a training run
    try:
        return load_policy(
            path,
            device=device,
            dtype=resolve_dtype(args.dtype, path),
            unnorm_key=args.unnorm_key,
            center_crop=args.center_crop,
        )
    except ValueError as e:
        if args.unnorm_key is None and "unnorm_key" in str(e):  # several datasets' statistics, none chosen
            raise ValueError(f"{e} (on the command line: --unnorm-key KEY)") from e
        raise


def loaded_source(policy: Policy, checkpoint) -> str:
    """What a result should name as its policy: the checkpoint directory ``load_policy`` read (an ``oft
    train`` run directory becomes ``<run>/checkpoints/step_XXXXXXX``, so the step is on record), or
    ``checkpoint`` itself for a Hub id or a policy with no directory."""
    from oft.hub import is_hub_id

    if policy.checkpoint_dir is None or is_hub_id(checkpoint):
        return str(checkpoint)
    return str(policy.checkpoint_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="checkpoint directory (oft, OpenVLA or OpenVLA-OFT)")
    parser.add_argument("--arch", choices=["openvla-7b"], help="describe a named architecture (meta device)")
    add_loading_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    if args.arch and args.checkpoint:
        raise ValueError(
            f"give a checkpoint ({args.checkpoint}) or --arch {args.arch}, not both: one model is described"
        )
    if args.arch:
        crop = {True: "--center-crop", False: "--no-center-crop"}.get(args.center_crop)
        loading = [f for f, v in (("--dtype", args.dtype), ("--unnorm-key", args.unnorm_key), (crop, crop))
                   if v is not None]  # fmt: skip
        if loading:
            raise ValueError(
                f"{', '.join(loading)}: options of a loaded checkpoint; --arch {args.arch} loads none"
            )
        from oft.model.arch import openvla_7b_meta

        policy = openvla_7b_meta()
    elif args.checkpoint:
        policy = load_from_args(args, args.checkpoint)
    else:
        raise ValueError("oft info needs a checkpoint directory or --arch")
    info = describe(policy)
    if args.checkpoint:
        info = {"checkpoint": loaded_source(policy, args.checkpoint), **info}
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def count(module: torch.nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def describe(policy: Policy) -> dict:
    vla = policy.vla
    total, trainable = count(policy)
    lora = sum(p.numel() for n, p in policy.named_parameters() if ".lora_" in n)
    parts = {
        "vision_backbone": count(vla.vision_backbone)[0],
        "projector": count(vla.projector)[0],
        "language_model": count(vla.language_model)[0],
        "head": count(policy.head)[0],
    }
    if vla.config.proprio_dim:
        parts["proprio_projector"] = count(vla.proprio_projector)[0]
    stats = policy.norm_stats
    return {
        "source": policy.config.source,
        "head": policy.config.head,
        "vision": [v.to_dict() for v in vla.config.vits],
        "film": vla.config.use_film,
        "film_input": vla.config.film_input if vla.config.use_film else None,
        "action_slots": {"layout": vla.config.action_slots, "count": vla.num_action_slots},
        "llm": {k: getattr(vla.language_model.model.config, k) for k in _LLM_FIELDS},
        "parameters": {"total": total, "trainable": trainable, "lora": lora, **parts},
        "spec": policy.spec.to_dict(),
        "norm_stats": None if stats is None else stats.to_dict(),
        # every set of statistics it holds, and whether each observation's instruction picks its own
        "dataset_stats": sorted(policy.dataset_stats),
        "unnorm_key": policy.unnorm_key,
        "act_by_instruction": policy.act_by_instruction,
        "dtype": str(policy.dtype),
        "center_crop": policy.config.center_crop,
    }


_LLM_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _short_count(n: int) -> str:
    """7_541_237_184 -> "7.54B", 1_110_000 -> "1.11M", 55_054 -> "55.1K"."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}" if n < 100 * scale else f"{n / scale:.0f}{unit}"
    return str(n)


def format_info(info: dict) -> str:
    p = info["parameters"]
    film = f"{info['film']} ({info['film_input']})" if info["film"] else str(info["film"])
    lines = [f"checkpoint: {info['checkpoint']}"] if "checkpoint" in info else []
    lines += [
        f"source: {info['source']}   head: {info['head']}   FiLM: {film}   dtype: {info['dtype']}   "
        f"center crop: {info['center_crop']}",
        "vision: " + " + ".join(f"ViT(d={v['embed_dim']}, depth={v['depth']}, patch={v['patch_size']}, "
                                f"img={v['img_size']})" for v in info["vision"]),
        "llm: " + ", ".join(f"{k}={v}" for k, v in info["llm"].items()),
        f"action slots: {info['action_slots']['count']} ({info['action_slots']['layout']})",
        f"parameters: total {p['total']:,} ({_short_count(p['total'])}), trainable {p['trainable']:,}, "
        f"LoRA {p['lora']:,}",
        "  " + ", ".join(f"{k} {v:,}" for k, v in p.items() if k not in ("total", "trainable", "lora")),
        "robot spec: " + ", ".join(f"{k}={v}" for k, v in info["spec"].items()),
    ]  # fmt: skip
    keys = info.get("dataset_stats") or []
    if len(keys) > 1:
        by_instruction = info.get("act_by_instruction")
        how = "each observation's instruction picks its own" if by_instruction else "--unnorm-key picks one"
        shown = ", ".join(repr(k) for k in keys[:5]) + (f", ... ({len(keys)})" if len(keys) > 5 else "")
        lines.append(f"statistics: {shown}; {how}; the norm stats below are {info.get('unnorm_key')!r}'s")
    if info["norm_stats"]:
        for part, s in info["norm_stats"].items():
            lines.append(f"norm stats [{part}]:")
            for k in ("q01", "q99", "min", "max"):
                lines.append(f"  {k}: " + " ".join(f"{x:+.4f}" for x in s[k]))
    return "\n".join(lines)
