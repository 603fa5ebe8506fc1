"""Does a policy read its instruction? An offline probe on a dataset, with no simulator.

A language-conditioned policy can learn to ignore its instruction and still reach a low training loss: after
the first moves, the scene itself shows which task is under way (the arm already heads for one cube), so the
instruction only matters in the few frames where start states look alike. Closed-loop evaluation then finds
the policy doing *a* task, not the one it was told. This probe asks the question directly on the
demonstrations, in seconds, for any dataset a policy can read (a real robot's included):

* **instruction swap.** At chosen frames of chosen episodes, the policy predicts its action chunk under the
  episode's own instruction and under every other instruction of the dataset. ``swap_change`` is the mean
  absolute difference between those chunks; ``own_error`` the mean absolute error of the own-instruction chunk
  against the demonstration. Both are in normalized action units (the policy's own statistics: [-1, 1] for
  "bounds" and "bounds_q99"), so dimensions of different units weigh alike. A policy that ignores its
  instruction has ``swap_change`` near zero however small its error.

* **paired start states.** When episodes with different instructions start from the same images (``oft
  collect --instruction A --instruction B`` demonstrates each start state under each), the demonstrations say
  what each instruction should do from the very same observation. For every such pair at frame 0, the
  prediction under instruction B is "followed" when it lies closer to B's demonstration than to A's; the
  count comes with its 95% Wilson interval. ``demo_change`` is how far the two demonstrations' chunks are
  apart: what ``swap_change`` would be for a policy that reproduces both.

Start states are paired by the bytes of their first frame in every camera (decoded, as the policy sees them),
so the probe needs no metadata; demonstrations of one start state stored with lossy video still decode to the
same bytes when the encoder saw the same frames.

Only the probed frames (and frame 0) of each probed episode are decoded (:class:`oft.data.frames.FrameSource`,
as the streaming loader reads them), so a real robot's long, high-resolution episodes cost what 20 x 4 frames
cost, not whole episodes in memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from oft.data.dataset import EpisodeDataset
from oft.data.frames import FrameSource
from oft.data.normalize import normalize
from oft.observation import Observation
from oft.sim.eval_stats import wilson_interval

log = logging.getLogger(__name__)


@dataclass
class _Probed:
    """What the probe keeps of one episode: its instruction, numeric arrays and the frames it probes."""

    instruction: str
    actions: np.ndarray  # (T, D) robot units
    proprio: np.ndarray  # (T, P)
    images: dict[int, list[np.ndarray]]  # frame -> one (H, W, 3) uint8 image per policy camera


@dataclass
class ProbeResult:
    """What :func:`probe_instructions` measured; distances in normalized action units, mean over (K, D)."""

    instructions: list[str]
    frames: list[int]
    samples: int  # (episode, frame) observations probed
    own_error: float  # |pred(own instruction) - demonstration|
    swap_change: float  # |pred(other instruction) - pred(own instruction)|
    per_frame: dict[int, dict[str, float]] = field(default_factory=dict)  # frame -> own_error, swap_change
    pairs: int = 0  # ordered (start state, own, other) pairs of paired demonstrations
    followed: int = 0  # of pairs: pred(other) nearer other's demonstration than own's
    demo_change: float | None = None  # |demo(other) - demo(own)| over the pairs
    pair_swap_change: float | None = None  # swap_change over the pairs' start frames

    @property
    def swap_ratio(self) -> float:
        """swap_change / own_error: near 0 when the instruction changes nothing the policy does."""
        return self.swap_change / max(self.own_error, 1e-12)

    @property
    def followed_ci95(self) -> tuple[float, float] | None:
        return wilson_interval(self.followed, self.pairs) if self.pairs else None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["per_frame"] = {str(t): v for t, v in self.per_frame.items()}
        d["swap_ratio"] = self.swap_ratio
        d["followed_rate"] = self.followed / self.pairs if self.pairs else None
        d["followed_ci95"] = list(self.followed_ci95) if self.pairs else None
        return d


def probe_instructions(
    policy, dataset: EpisodeDataset, *, episodes: int = 20, frames: Sequence[int] = (0, 25, 50)
) -> ProbeResult:
    """Swap each probed observation's instruction for every other instruction of ``dataset``; see the module
    docstring for what is measured.

    policy: an :class:`oft.model.policy.Policy` whose cameras the dataset records (by name).
    episodes: how many episodes to probe, spread evenly over the dataset (paired start states first: every
        episode sharing its first frame with another of a different instruction is probed, up to this many).
    frames: frame indices probed in each episode (those past an episode's end are skipped).
    Raises ValueError when the dataset has fewer than two distinct instructions, lacks one of the policy's
    cameras, or ``episodes`` / ``frames`` are out of range.
    """
    instructions = sorted(set(dataset.instructions))
    if len(instructions) < 2:
        raise ValueError(
            f"{dataset.path}: every episode has the instruction {instructions!r}; the probe swaps "
            "instructions and needs a dataset with at least two"
        )
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    frames = sorted({int(t) for t in frames})
    if not frames or frames[0] < 0:
        raise ValueError(f"frames must be non-empty indices >= 0, got {frames}")
    missing = [c for c in policy.spec.cameras if c not in dataset.cameras]
    if missing:
        raise ValueError(
            f"{dataset.path} records cameras {dataset.cameras}; the policy reads {policy.spec.cameras} "
            f"({missing} missing)"
        )
    chosen = _choose_episodes(dataset, episodes, len(instructions))
    loaded = _read(dataset, chosen, frames, list(policy.spec.cameras))
    result = ProbeResult(instructions, frames, 0, 0.0, 0.0)
    _swap(policy, loaded, instructions, frames, result)
    _paired(policy, loaded, result)
    return result


def _choose_episodes(dataset: EpisodeDataset, n: int, block: int) -> list[int]:
    """Up to ``n`` episode indices spread over the dataset, in aligned blocks of ``block`` consecutive
    episodes: ``oft collect`` with ``block`` instructions stores a start state's demonstrations together."""
    total = dataset.num_episodes
    if n >= total:
        return list(range(total))
    block = max(1, min(block, n))
    groups = total // block
    starts = np.unique(np.linspace(0, max(groups - 1, 0), num=max(n // block, 1)).round().astype(int)) * block
    return sorted({j for s in starts for j in range(s, min(s + block, total))})[:n]


def _read(dataset: EpisodeDataset, chosen: list[int], frames: list[int], cameras: list[str]) -> list[_Probed]:
    """The probed frames (and frame 0, which pairs start states) of each chosen episode, read without
    decoding the rest where the format allows (:class:`oft.data.frames.FrameSource`)."""
    source, names = FrameSource(dataset, cameras), dataset.instructions
    out = []
    try:
        for i in chosen:
            actions, proprio = dataset.episode_arrays(i)
            wanted = sorted({0, *(t for t in frames if t < len(actions))})
            per_camera = source.read(i, np.asarray(wanted))  # per camera (n, H, W, 3)
            images = {t: [cam[k] for cam in per_camera] for k, t in enumerate(wanted)}
            out.append(_Probed(names[i], np.asarray(actions, np.float32), np.asarray(proprio), images))
    finally:
        source.close()
    return out


def _normalized(policy, actions: np.ndarray) -> np.ndarray:
    """(..., D) robot-unit actions -> the policy's normalized units."""
    spec = policy.spec
    return np.asarray(normalize(actions, policy.norm_stats.action, spec.normalization, spec.mask))


def _demo_chunk(ep: _Probed, t: int, k: int) -> np.ndarray:
    """(K, D) actions t..t+K-1, the last repeated past the end (as training pads a chunk)."""
    idx = np.minimum(np.arange(t, t + k), len(ep.actions) - 1)
    return ep.actions[idx]


def _observation(policy, ep: _Probed, t: int, instruction: str) -> Observation:
    return Observation(ep.images[t], ep.proprio[t] if policy.uses_proprio else None, instruction)


def _swap(policy, loaded: list[_Probed], instructions: list[str], frames: list[int], out: ProbeResult):
    """Own-instruction error and instruction-swap change at every (episode, frame)."""
    k = policy.spec.chunk_len
    by_frame: dict[int, list[tuple[float, float]]] = {}
    for ep in loaded:
        for t in (t for t in frames if t < len(ep.actions)):
            obs = [_observation(policy, ep, t, s) for s in instructions]
            pred = _normalized(policy, policy.predict_action_chunk(obs))  # (I, K, D)
            own = instructions.index(ep.instruction)
            demo = _normalized(policy, _demo_chunk(ep, t, k))
            err = float(np.abs(pred[own] - demo).mean())
            change = float(np.mean([np.abs(pred[j] - pred[own]).mean() for j in range(len(obs)) if j != own]))
            by_frame.setdefault(t, []).append((err, change))
    rows = [r for v in by_frame.values() for r in v]
    out.samples = len(rows)
    out.own_error, out.swap_change = (float(x) for x in np.mean(rows, axis=0))
    out.per_frame = {
        t: {"own_error": float(np.mean([r[0] for r in v])), "swap_change": float(np.mean([r[1] for r in v]))}
        for t, v in sorted(by_frame.items())
    }


def _start_key(ep: _Probed) -> str:
    h = hashlib.sha1()
    for image in ep.images[0]:
        h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _paired(policy, loaded: list[_Probed], out: ProbeResult) -> None:
    """At frame 0 of start states demonstrated under several instructions: is the prediction under each
    other instruction nearer that instruction's demonstration than the own one's?"""
    groups: dict[str, dict[str, _Probed]] = {}
    for ep in loaded:
        groups.setdefault(_start_key(ep), {}).setdefault(ep.instruction, ep)
    k = policy.spec.chunk_len
    demo_changes, swaps = [], []
    for group in (g for g in groups.values() if len(g) > 1):
        names = sorted(group)
        any_ep = group[names[0]]
        obs = [_observation(policy, any_ep, 0, s) for s in names]
        pred = _normalized(policy, policy.predict_action_chunk(obs))  # (I, K, D)
        demos = [_normalized(policy, _demo_chunk(group[s], 0, k)) for s in names]
        for a in range(len(names)):
            for b in range(len(names)):
                if a == b:
                    continue
                out.pairs += 1
                out.followed += int(np.abs(pred[b] - demos[b]).mean() < np.abs(pred[b] - demos[a]).mean())
                demo_changes.append(float(np.abs(demos[b] - demos[a]).mean()))
                swaps.append(float(np.abs(pred[b] - pred[a]).mean()))
    if out.pairs:
        out.demo_change, out.pair_swap_change = float(np.mean(demo_changes)), float(np.mean(swaps))
    shared = sum(len(g) > 1 for g in groups.values())
    log.info("%d start states demonstrated under more than one instruction", shared)
