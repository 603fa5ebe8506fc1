"""Does a policy read its instruction? An offline probe on a dataset, with no simulator.

A language-conditioned policy can learn to ignore its instruction and still reach a low training loss: after
the first moves, the scene itself shows which task is under way (the arm already heads for one cube), so the
instruction only matters in the few frames where start states look alike. Closed-loop evaluation then finds
the policy doing *a* task, not the one it was told. This probe asks the question directly on the
demonstrations, in seconds, for any dataset a policy can read (a real robot's included). Distances are mean
absolute differences over the chunk's (K, D) actions in the policy's normalized units ([-1, 1] for "bounds"
and "bounds_q99"), so dimensions of different units weigh alike; dimensions the spec leaves unnormalized
(``action_norm_mask``, or ``normalization="none"``) count in robot units. One set of units for every
instruction, so chunks under different instructions compare: the policy's ``norm_stats`` (for a policy with
per-task statistics, its default task's; another task's actions beyond that range clip to it).

* **instruction swap.** At chosen frames of chosen episodes, the policy predicts its action chunk under the
  episode's own instruction and under every other instruction of the dataset. ``swap_change`` is how far the
  other instructions' chunks lie from the own one; ``own_error`` how far the own one lies from the
  demonstration (over the chunk steps the demonstration has: none are padded). A policy that ignores its
  instruction has ``swap_change`` near zero however small its error. Past the first frames a large swap
  change is weaker evidence: the scene already shows the task, and the policy is asked to do another from
  a state no demonstration of it passed through.

* **shared start states** (the clean test). When episodes with different instructions start from the same
  images (``oft collect --instruction A --instruction B`` demonstrates each start state under each), the
  demonstrations say what each instruction should do from the very same observation. At frame 0 of each such
  start state: ``alignment`` is how much of the demonstrations' difference the predictions reproduce — the
  projection of (pred_b - pred_a) on (demo_b - demo_a), divided by |demo_b - demo_a|², averaged over
  instruction pairs: 1 when the predictions differ as the demonstrations do, 0 when the instruction changes
  nothing, negative when they are swapped. A start state is ``followed`` when every instruction's prediction
  lies nearer its own demonstration than any other's; the count is over start states (independent), with its
  95% Wilson interval. A policy that ignores its instruction follows none. ``demo_change`` is how far the
  demonstrations' chunks lie apart (the swap change of a policy that reproduces them); where the policy's own
  error at frame 0 is as large, the nearest-demonstration count is decided by its error more than by the
  instruction, and the alignment is the figure to read.

Start states are found by the bytes of frame 0 in every camera (decoded, as the policy sees them), read for
every episode, so the probe needs no metadata and finds them wherever the dataset stores them; demonstrations
of one start state stored as video decode to the same bytes when the encoder saw the same frames (it did on
``oft collect``'s LeRobot videos). Only frame 0 of every episode and the probed frames of the probed episodes
are decoded (:class:`oft.data.frames.FrameSource`, as the streaming loader reads them), so a real robot's
long, high-resolution episodes are never held in memory whole.
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
    episodes: int  # episodes probed
    samples: int  # (episode, frame) observations probed
    own_error: float  # |pred(own instruction) - demonstration|
    swap_change: float  # |pred(other instruction) - pred(own instruction)|
    per_frame: dict[int, dict[str, float]] = field(default_factory=dict)  # frame -> own_error, swap_change
    start_states: int = 0  # probed start states demonstrated under more than one instruction
    followed: int = 0  # of them: every instruction's prediction nearest its own demonstration
    alignment: float | None = None  # share of the demonstrations' difference the predictions reproduce
    demo_change: float | None = None  # |demo(b) - demo(a)| at those start states
    start_swap_change: float | None = None  # |pred(b) - pred(a)| there
    start_own_error: float | None = None  # |pred(own) - demo(own)| there

    @property
    def swap_ratio(self) -> float:
        """swap_change / own_error: near 0 when the instruction changes nothing the policy does."""
        return self.swap_change / max(self.own_error, 1e-12)

    @property
    def followed_ci95(self) -> tuple[float, float] | None:
        return wilson_interval(self.followed, self.start_states) if self.start_states else None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["per_frame"] = {str(t): v for t, v in self.per_frame.items()}
        d["swap_ratio"] = self.swap_ratio
        d["followed_rate"] = self.followed / self.start_states if self.start_states else None
        d["followed_ci95"] = list(self.followed_ci95) if self.start_states else None
        return d


def check_probe_dataset(dataset: EpisodeDataset, names: list[str] | None = None) -> list[str]:
    """The dataset's distinct instructions (``names``: its per-episode instructions, read here when None),
    sorted; ValueError when there are fewer than two (nothing to swap). Cheap where the format indexes its
    instructions, so a command can refuse before loading a large checkpoint."""
    instructions = sorted(set(dataset.instructions if names is None else names))
    if len(instructions) < 2:
        raise ValueError(
            f"{dataset.path}: every episode has the instruction {instructions!r}; the probe swaps "
            "instructions and needs a dataset with at least two"
        )
    return instructions


def probe_instructions(
    policy, dataset: EpisodeDataset, *, episodes: int = 20, frames: Sequence[int] = (0, 25, 50)
) -> ProbeResult:
    """Swap each probed observation's instruction for every other instruction of ``dataset``; see the module
    docstring for what is measured.

    policy: an :class:`oft.model.policy.Policy` whose cameras the dataset records (by name).
    episodes: how many episodes to probe: whole shared start states first (all their demonstrations), spread
        over the dataset, then other episodes spread evenly; all of them when the dataset has fewer.
    frames: frame indices probed in each episode (those past an episode's end are skipped for it).
    Raises ValueError when the dataset has fewer than two distinct instructions, lacks one of the policy's
    cameras, has another action size, when ``episodes`` / ``frames`` are out of range, or when every probed
    episode ends before the first frame asked.
    """
    names = dataset.instructions  # per episode; read once (a reader without an index decodes episodes for it)
    instructions = check_probe_dataset(dataset, names)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    frames = sorted({int(t) for t in frames})
    if not frames or frames[0] < 0:
        raise ValueError(f"frames must be non-empty indices >= 0, got {frames}")
    _check_matches(policy, dataset)
    cameras = list(policy.spec.cameras)
    source = FrameSource(dataset, cameras)
    try:
        keys = [_start_key(source.read(i, np.zeros(1, np.int64))) for i in range(dataset.num_episodes)]
        chosen = _choose_episodes(keys, names, episodes)
        loaded = _read(dataset, source, chosen, frames, names)
    finally:
        source.close()
    result = ProbeResult(instructions, frames, len(loaded), 0, 0.0, 0.0)
    _swap(policy, loaded, instructions, frames, result)
    _shared_starts(policy, loaded, keys, chosen, result)
    return result


def _check_matches(policy, dataset: EpisodeDataset) -> None:
    missing = [c for c in policy.spec.cameras if c not in dataset.cameras]
    if missing:
        raise ValueError(
            f"{dataset.path} records cameras {dataset.cameras}; the policy reads {list(policy.spec.cameras)} "
            f"({missing} missing)"
        )
    if dataset.action_dim != policy.spec.action_dim:
        raise ValueError(
            f"{dataset.path} has {dataset.action_dim}-D actions; the policy predicts "
            f"{policy.spec.action_dim}-D ({policy.spec.name})"
        )


def _start_key(per_camera: list[np.ndarray]) -> str:
    """A start state's identity: the hash of frame 0's bytes in every camera."""
    h = hashlib.sha1()
    for frames in per_camera:
        h.update(np.ascontiguousarray(frames[0]).tobytes())
    return h.hexdigest()


def _spread(items: list, n: int) -> list:
    """``n`` of ``items`` spread evenly (all when there are no more)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, num=n).round().astype(int)]


def _choose_episodes(keys: list[str], names: list[str], n: int) -> list[int]:
    """Up to ``n`` episode indices: whole shared start states first, then the rest, each spread evenly."""
    total = len(keys)
    if n >= total:
        if n > total:
            log.info("probing all %d episodes of the dataset (%d asked)", total, n)
        return list(range(total))
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    shared = [g for g in groups.values() if len({names[i] for i in g}) > 1]
    chosen: list[int] = []
    if shared:
        size = max(len(g) for g in shared)
        for group in _spread(shared, max(n // size, 1)):
            chosen += group[: n - len(chosen)]
    taken = set(chosen)
    chosen += _spread([i for i in range(total) if i not in taken], n - len(chosen))
    return sorted(chosen)


def _read(
    dataset: EpisodeDataset, source: FrameSource, chosen: list[int], frames: list[int], names: list[str]
) -> list[_Probed]:
    """The probed frames (and frame 0) of each chosen episode, read without decoding the rest where the
    format allows."""
    out = []
    for i in chosen:
        actions, proprio = dataset.episode_arrays(i)
        wanted = sorted({0, *(t for t in frames if t < len(actions))})
        per_camera = source.read(i, np.asarray(wanted))  # per camera (n, H, W, 3)
        images = {t: [cam[k] for cam in per_camera] for k, t in enumerate(wanted)}
        out.append(_Probed(names[i], np.asarray(actions, np.float32), np.asarray(proprio), images))
    return out


def _normalized(policy, actions: np.ndarray) -> np.ndarray:
    """(..., D) robot-unit actions -> the policy's normalized units."""
    spec = policy.spec
    return np.asarray(normalize(actions, policy.norm_stats.action, spec.normalization, spec.mask))


def _observation(policy, ep: _Probed, t: int, instruction: str) -> Observation:
    return Observation(ep.images[t], ep.proprio[t] if policy.uses_proprio else None, instruction)


def _predict(policy, ep: _Probed, t: int, instructions: list[str]) -> np.ndarray:
    """(I, K, D) normalized chunks predicted at frame ``t`` of ``ep`` under each instruction."""
    obs = [_observation(policy, ep, t, s) for s in instructions]
    return _normalized(policy, policy.predict_action_chunk(obs))


def _swap(policy, loaded: list[_Probed], instructions: list[str], frames: list[int], out: ProbeResult):
    """Own-instruction error and instruction-swap change at every (episode, frame)."""
    k = policy.spec.chunk_len
    by_frame: dict[int, list[tuple[float, float]]] = {}
    for ep in loaded:
        for t in (t for t in frames if t < len(ep.actions)):
            pred = _predict(policy, ep, t, instructions)  # (I, K, D)
            own = instructions.index(ep.instruction)
            demo = _normalized(policy, ep.actions[t : t + k])  # (<=K, D): the steps the demonstration has
            err = float(np.abs(pred[own, : len(demo)] - demo).mean())
            others = [j for j in range(len(instructions)) if j != own]
            change = float(np.mean([np.abs(pred[j] - pred[own]).mean() for j in others]))
            by_frame.setdefault(t, []).append((err, change))
    if not by_frame:
        lengths = [len(ep.actions) for ep in loaded]
        raise ValueError(
            f"frames {frames}: every probed episode ends before frame {frames[0]} "
            f"(they have {min(lengths)} to {max(lengths)} frames)"
        )
    skipped = [t for t in frames if len(by_frame.get(t, [])) < len(loaded)]
    if skipped:
        log.info("frames %s are past the end of some probed episodes: skipped there", skipped)
    rows = [r for v in by_frame.values() for r in v]
    out.samples = len(rows)
    out.own_error, out.swap_change = (float(x) for x in np.mean(rows, axis=0))
    out.per_frame = {
        t: {"own_error": float(np.mean([r[0] for r in v])), "swap_change": float(np.mean([r[1] for r in v]))}
        for t, v in sorted(by_frame.items())
    }


def _shared_starts(
    policy, loaded: list[_Probed], keys: list[str], chosen: list[int], out: ProbeResult
) -> None:
    """At frame 0 of every probed start state demonstrated under several instructions: alignment with the
    demonstrations' difference, and whether each instruction's prediction is nearest its own demonstration."""
    groups: dict[str, dict[str, _Probed]] = {}
    for i, ep in zip(chosen, loaded, strict=True):
        groups.setdefault(keys[i], {}).setdefault(ep.instruction, ep)
    k = policy.spec.chunk_len
    align, demo_change, swap, own_err = [], [], [], []
    for group in (g for g in groups.values() if len(g) > 1):
        names = sorted(group)
        m = min(k, *(len(group[s].actions) for s in names))  # steps every demonstration has
        pred = _predict(policy, group[names[0]], 0, names)[:, :m]  # (I, m, D)
        demos = np.stack([_normalized(policy, group[s].actions[:m]) for s in names])  # (I, m, D)
        dist = np.abs(pred[:, None] - demos[None]).mean(axis=(2, 3))  # (I pred, I demo)
        out.start_states += 1
        others = dist + np.diag(np.full(len(names), np.inf))  # each prediction's distance to the other demos
        out.followed += int(np.all(np.diag(dist) < others.min(axis=1)))
        own_err.append(float(np.mean(np.diag(dist))))
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                dd, dp = demos[b] - demos[a], pred[b] - pred[a]
                align.append(float((dp * dd).sum() / max(float((dd * dd).sum()), 1e-12)))
                demo_change.append(float(np.abs(dd).mean()))
                swap.append(float(np.abs(dp).mean()))
    if out.start_states:
        out.alignment, out.demo_change = float(np.mean(align)), float(np.mean(demo_change))
        out.start_swap_change, out.start_own_error = float(np.mean(swap)), float(np.mean(own_err))
    log.info("%d probed start states are demonstrated under more than one instruction", out.start_states)
