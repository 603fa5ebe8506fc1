"""``oft probe-instructions``: does a policy read its instruction? Swap instructions on dataset frames.

oft probe-instructions --checkpoint runs/twocube --dataset data/twocube_paired
oft probe-instructions --checkpoint runs/mt10 --dataset data/mt10 --episodes 40 --frames 0 --out probe.json

No simulator: the policy predicts at a few frames of a few episodes under the episode's own instruction and
under each other instruction of the dataset (:mod:`oft.model.probe`). Works on any dataset ``oft train``
reads, so a real robot's policy can be checked before it is run.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from oft.cli import COUNT, RawDescriptionHelpFormatter, comma_list
from oft.model.commands import add_loading_arguments, load_from_args

log = logging.getLogger(__name__)

EPILOG = """what it prints (normalized action units, mean over the chunk):
  own error     how far the policy's chunk is from the demonstration, under the episode's own instruction
  swap change   how far its chunks under the other instructions are from that one: ~0 = the instruction
                changes nothing. Past the first frames the scene already shows the task, so there a large
                swap change is weaker evidence than at the start.
  shared start states (the clean test; oft collect --instruction A --instruction B records them): at frame 0,
  where only the instruction tells the demonstrations apart,
    alignment   how much of the demonstrations' difference the predictions reproduce: 1 = as the
                demonstrations differ, 0 = the instruction changes nothing, < 0 = swapped
    followed    start states where every instruction's prediction is nearest its own demonstration
                (95% Wilson interval); a policy that ignores its instruction follows none
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = RawDescriptionHelpFormatter
    p.add_argument(  # a str: Path would turn a Hub id's '/' into '\\' on Windows
        "--checkpoint", required=True, help="checkpoint directory, training run or Hub id (oft.load_policy)"
    )
    p.add_argument("--dataset", required=True, help="dataset directory (any format oft train reads)")
    p.add_argument("--format", default=None, help="dataset format (default: detected)")
    p.add_argument(
        "--episodes", type=COUNT, default=20,
        help="episodes probed: whole shared start states first, spread over the dataset (default 20)",
    )  # fmt: skip
    p.add_argument(
        "--frames",
        default="0,25,50",
        help="comma-separated frame indices probed per episode, skipped past its end (default 0,25,50)",
    )
    p.add_argument("--device", default="cpu", help="device for the policy")
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    add_loading_arguments(p)


def parse_frames(text: str) -> list[int]:
    """``"0,25,50"`` -> [0, 25, 50]; ValueError naming the text otherwise."""

    frames = list(comma_list(text, "--frames", int))
    if min(frames) < 0:
        raise ValueError(f"--frames {text!r}: expected comma-separated frame indices >= 0, e.g. 0,25,50")
    return frames


def run(args: argparse.Namespace) -> int:
    from oft.data.formats import open_dataset
    from oft.model.probe import check_probe_dataset, probe_instructions

    frames = parse_frames(args.frames)
    dataset = open_dataset(args.dataset, format=args.format)
    check_probe_dataset(dataset)  # before loading a checkpoint that may take minutes
    policy = load_from_args(args, args.checkpoint, device=args.device)
    result = probe_instructions(policy, dataset, episodes=args.episodes, frames=frames)
    print(format_probe(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from oft.model.commands import loaded_source

        record = {"checkpoint": loaded_source(policy, args.checkpoint), **result.to_dict()}
        args.out.write_text(json.dumps(record, indent=2))
        log.info("wrote %s", args.out)
    return 0


def format_probe(r) -> str:
    """The probe as text: per frame the error and the swap change, then the shared start states."""
    lines = [
        f"instructions: {len(r.instructions)}  episodes: {r.episodes}  observations: {r.samples}  "
        "(normalized action units)",
        f"{'frame':>6}  {'own error':>10}  {'swap change':>11}",
    ]
    for t, v in r.per_frame.items():
        lines.append(f"{t:>6}  {v['own_error']:>10.4f}  {v['swap_change']:>11.4f}")
    lines.append(f"{'all':>6}  {r.own_error:>10.4f}  {r.swap_change:>11.4f}")
    if not r.start_states:
        lines.append(
            "no probed start state is demonstrated under two instructions (oft collect --instruction records "
            "such data): the swap change has no reference here; ~0 means the instruction changes nothing"
        )
        return "\n".join(lines)
    lo, hi = r.followed_ci95
    lines += [
        f"at frame 0 of {r.start_states} start states demonstrated under several instructions:",
        f"  demonstrations differ by {r.demo_change:.4f}, the policy's predictions by "
        f"{r.start_swap_change:.4f}; alignment {r.alignment:.2f} (1 = as the demonstrations differ, 0 = the "
        "instruction changes nothing)",
        f"  followed (every instruction's prediction nearest its own demonstration): "
        f"{r.followed}/{r.start_states} ({100 * r.followed / r.start_states:.0f}% "
        f"[{100 * lo:.0f}, {100 * hi:.0f}])",
    ]
    if r.start_own_error >= r.demo_change:
        lines.append(
            f"  its error there ({r.start_own_error:.4f}) is as large as the demonstrations' difference: the "
            "followed count is decided by its error more than by the instruction; read the alignment"
        )
    if r.alignment < 0.25:
        lines.append(
            "at the start, where only the instruction tells the demonstrations apart, the policy barely acts "
            "on it (alignment under 0.25)"
        )
    return "\n".join(lines)
