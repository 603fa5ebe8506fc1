"""ChunkLoader: training batches of (observation, action chunk) from episodes held in memory.

Why in memory: on 2 CPU cores, decoding video or PNG per step would starve even a small model. Every frame
is decoded once (and resized once, by the policy's own :class:`~oft.model.preprocess.ImagePipeline`: the same
kernel inference uses) into one uint8 tensor; a batch is then an index gather plus the pipeline's training
augmentation, whose random crop has the area of the policy's inference center crop.

Determinism: epoch ``e`` visits the samples in ``permutation(seed, e)``; rank ``r`` of ``world_size`` takes
every ``world_size``-th of them (after trimming to a multiple of ``world_size``, so all ranks run the same
number of steps); the augmentation of batch ``b`` of epoch ``e`` on rank ``r`` draws from a generator seeded
with ``(seed, e, b, r)``. ``state_dict()`` is (epoch, batch), so a resumed run sees exactly the batches the
uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import torch

from oft.data.augment import AugmentConfig, augment_images
from oft.data.dataset import EpisodeDataset, ListDataset, mixture_part_name
from oft.data.episode import Episode
from oft.data.samples import chunk_indices, chunk_starts, episode_bounds, repeat_episode_starts
from oft.model.preprocess import ImagePipeline
from oft.observation import Batch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run the augmentation's many small ops on ``n`` threads. On a shared 2-core machine a 2-thread OpenMP
    barrier per op waits out whole scheduler slices whenever a core is busy: measured 10 samples/s with 2
    threads vs 169 with 1 under a load of 7."""
    prev = torch.get_num_threads()
    if n is None or n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


BY_INSTRUCTION = "instruction"
"""``norm_keys`` value naming each sample's statistics by its instruction (``mixture_stats="per_task"``)."""


class ChunkLoader:
    """Infinite iterator of :class:`~oft.observation.Batch` (images (B, N, H, W, 3) uint8, actions (B, K, D)).

    ``cameras``: which cameras, in the policy's order (default: the dataset's). ``pipeline``: the policy's
    :attr:`~oft.model.policy.Policy.image_pipeline` — frames are resized by it once at load and augmented
    through it (so its random crop is the area the policy center-crops at inference). ``image_size`` (an int)
    is shorthand for ``ImagePipeline(image_size)`` (no crop); with neither, frames keep their stored size.
    ``augment``: True for the paper's augmentation, False for none, or an :class:`AugmentConfig` (its
    ``crop_scale`` is replaced by the pipeline's). ``aug_threads``: torch threads while augmenting (None:
    leave the setting alone). ``weights``: sampling weight of each dataset of a mixture (a ConcatDataset).
    ``norm_keys``: one name per dataset of a mixture; each batch then carries the name of every sample's
    dataset (``Batch.norm_keys``), so the policy normalizes it with that dataset's statistics.
    :data:`BY_INSTRUCTION` (``"instruction"``) names each sample by its own instruction instead (per-task
    statistics).
    ``start_repeat``: samples that start within the first ``start_frames`` frames of an episode (default
    ``chunk_len``: the first chunk) are visited that many times per epoch (1: once, like every other sample;
    :func:`~oft.data.samples.repeat_episode_starts`).
    After loading, ``frame_sizes`` is {camera: (H, W)} of the stored frames.
    """

    def __init__(
        self,
        data: EpisodeDataset | Sequence[Episode],
        chunk_len: int,
        cameras: Sequence[str] | None = None,
        batch_size: int = 32,
        image_size: int | None = None,
        augment: bool | AugmentConfig = True,
        pad: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        aug_threads: int | None = 1,
        pipeline: ImagePipeline | None = None,
        weights: Sequence[float] | None = None,
        norm_keys: Sequence[str] | str | None = None,
        start_repeat: int = 1,
        start_frames: int | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dataset = data if isinstance(data, EpisodeDataset) else ListDataset(list(data))
        self.cameras = list(cameras) if cameras is not None else list(dataset.cameras)
        self.chunk_len, self.batch_size, self.pad = chunk_len, batch_size, pad
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.augment = AugmentConfig() if augment is True else (augment or None)
        self.aug_threads = aug_threads
        if pipeline is not None and image_size is not None and image_size != pipeline.size:
            raise ValueError(f"image_size={image_size} disagrees with pipeline.size={pipeline.size}")
        self.pipeline = pipeline or (ImagePipeline(image_size) if image_size is not None else None)
        self._load(dataset)
        self.start_repeat = start_repeat
        self.start_frames = chunk_len if start_frames is None else start_frames
        self.starts = repeat_episode_starts(
            chunk_starts(self.lengths, chunk_len, pad), self.lengths, self.start_frames, start_repeat
        )
        self._set_weights(dataset, weights)
        self.episode_norm_key = _episode_keys(dataset, norm_keys, self.instructions)
        _warn_short_episodes(dataset, self.lengths, chunk_len, pad)
        self.per_rank = len(self.starts) // world_size
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{len(self.starts)} samples (chunk_len={chunk_len}, pad={pad}) are too few for "
                f"batch_size={batch_size} x world_size={world_size}"
            )
        self.epoch, self.batch = 0, 0
        self._order_epoch, self._order = -1, np.zeros(0, np.int64)

    # -- loading

    def _load(self, dataset: EpisodeDataset) -> None:
        """Decode every episode into one preallocated (F, N, H, W, 3) uint8 tensor: the peak is the frames
        plus one decoded episode (concatenating per-episode copies would hold the frames twice)."""
        if dataset.num_episodes == 0:
            raise ValueError("the dataset has no episodes")
        expected = dataset.episode_lengths()
        self.images: torch.Tensor | None = None
        proprio, actions, self.instructions = [], [], []
        self.frame_sizes: dict[str, tuple[int, int]] = {}
        offset = 0
        for i in range(dataset.num_episodes):
            ep = dataset.episode(i)
            missing = [c for c in self.cameras if c not in ep.images]
            if missing:
                raise ValueError(f"{dataset.where(i)} has no camera {missing}; it has {ep.cameras}")
            _check_frame_counts({c: ep.images[c] for c in self.cameras}, len(ep), dataset.where(i))
            if len(ep) != expected[i]:
                raise ValueError(
                    f"{dataset.where(i)} decodes to {len(ep)} frames; its numeric columns have {expected[i]}"
                )
            frames = [torch.from_numpy(np.ascontiguousarray(ep.images[c])) for c in self.cameras]
            self._record_frame_sizes(i, frames)
            if self.pipeline is not None:
                frames = [self.pipeline.resize(f) for f in frames]
            if self.images is None:
                self.images = torch.empty(
                    (int(expected.sum()), len(frames), *frames[0].shape[1:]), dtype=torch.uint8
                )
            for n, f in enumerate(frames):
                self.images[offset : offset + len(ep), n] = f  # (T, H, W, 3) into (F, N, H, W, 3)
            offset += len(ep)
            actions.append(_checked(ep.actions, "actions", dataset, i, dataset.action_dim))
            proprio.append(_checked(ep.proprio, "proprio", dataset, i, ep.proprio.shape[1], len(ep)))
            self.instructions.append(ep.instruction)
            del frames, ep  # the decoded episode's buffers are reused by the next one
        self.proprio = torch.from_numpy(np.concatenate(proprio))  # (F, P)
        self.actions = torch.from_numpy(np.concatenate(actions))  # (F, D)
        self.lengths = np.asarray(expected, np.int64)  # each checked against its decoded episode above
        _, ends = episode_bounds(self.lengths)
        self.frame_episode = np.repeat(np.arange(len(self.lengths)), self.lengths)
        self.frame_end = ends[self.frame_episode]
        log.info(
            "ChunkLoader: %d episodes, %d frames, images %s (%.0f MB)",
            len(self.lengths),
            len(self.frame_episode),
            tuple(self.images.shape[1:]),
            self.images.numel() / 2**20,
        )

    def _record_frame_sizes(self, episode: int, frames: list[torch.Tensor]) -> None:
        """The stored (H, W) per camera; one size per camera across episodes, or an error naming both."""
        for cam, f in zip(self.cameras, frames, strict=True):
            hw = (int(f.shape[1]), int(f.shape[2]))
            check_frame_size(cam, hw, self.frame_sizes.setdefault(cam, hw), f"episode {episode}")

    # -- iteration

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> ChunkLoader:
        return self

    def _set_weights(self, dataset: EpisodeDataset, weights: Sequence[float] | None) -> None:
        """Sampling weights of a mixture (one per dataset of a ConcatDataset, in its order), normalized."""
        self.weights, self.sample_source = None, None
        if weights is None:
            return
        parts = getattr(dataset, "datasets", [dataset])
        w = np.asarray(weights, np.float64)
        if len(w) != len(parts) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"weights={list(weights)}: expected {len(parts)} finite non-negative numbers (one a dataset) "
                "with a positive sum"
            )
        episode_source = np.repeat(np.arange(len(parts)), [d.num_episodes for d in parts])
        self.sample_source = episode_source[self.frame_episode[self.starts]]  # (S,) dataset of each sample
        empty = [k for k in range(len(parts)) if w[k] > 0 and not np.any(self.sample_source == k)]
        if empty:
            raise ValueError(f"datasets {[str(parts[k].path) for k in empty]} have weight > 0 but no sample")
        self.weights = w / w.sum()
        # what the weights change: each dataset's share of the draws against its share of the samples
        # (unweighted, a dataset of long episodes is drawn more), as OpenVLA's RLDS mixture logs its weights
        unweighted = np.bincount(self.sample_source, minlength=len(parts)) / len(self.sample_source)
        log.info(
            "mixture: %s",
            ", ".join(
                f"{mixture_part_name(d, k)} {self.weights[k]:.1%} of draws ({unweighted[k]:.1%} unweighted)"
                for k, d in enumerate(parts)
            ),
        )

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's sample indices of ``epoch``: a permutation of all samples (seeded by (seed, epoch)), or
        for a weighted mixture, as many draws: a dataset by weight, then that dataset's next sample in its own
        permutation (so within a dataset every sample is seen before any repeats)."""
        if self._order_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            if self.weights is None:
                perm = rng.permutation(len(self.starts))
            else:
                pick = rng.choice(len(self.weights), size=len(self.starts), p=self.weights)
                perm = np.empty(len(self.starts), np.int64)
                for k in range(len(self.weights)):
                    where = np.flatnonzero(pick == k)
                    own = rng.permutation(np.flatnonzero(self.sample_source == k))
                    if len(where):
                        perm[where] = np.resize(own, len(where))
            perm = perm[: self.per_rank * self.world_size]
            self._order, self._order_epoch = perm[self.rank :: self.world_size], epoch
        return self._order

    def __next__(self) -> Batch:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        out = self.make_batch(
            self.batch_starts(self.epoch, self.batch), self._generator(self.epoch, self.batch)
        )
        self.batch += 1
        return out

    def batch_starts(self, epoch: int, batch: int) -> np.ndarray:
        """Global start frames of batch ``batch`` of ``epoch`` on this rank. (B,) int64."""
        order = self._epoch_order(epoch)
        return self.starts[order[batch * self.batch_size : (batch + 1) * self.batch_size]]

    def _generator(self, epoch: int, batch: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, epoch, batch, self.rank]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def make_batch(self, starts: np.ndarray, generator: torch.Generator | None = None) -> Batch:
        """The batch whose samples start at global frames ``starts``."""
        return assemble_batch(self, starts, self._images(starts), generator)

    def _images(self, starts: np.ndarray) -> torch.Tensor:
        return self.images[torch.from_numpy(starts)]  # (B, N, H, W, 3)

    # -- resuming

    def state_dict(self) -> dict:
        """(epoch, batch) and what they mean: the same for the in-memory and the streaming loader, so a run
        may resume with either."""
        return {"epoch": self.epoch, "batch": self.batch, **self._identity()}

    def _identity(self) -> dict:
        out = {"seed": self.seed, "num_samples": len(self.starts), "world_size": self.world_size}
        if self.weights is not None:
            out["weights"] = [float(w) for w in self.weights]
        if self.start_repeat != 1:
            out["start_repeat"], out["start_frames"] = self.start_repeat, self.start_frames
        return out

    def load_state_dict(self, state: dict) -> None:
        expect = self._identity()
        got = {k: state.get(k) for k in expect}
        if got != expect:
            raise ValueError(f"loader state was saved for {got}, this loader has {expect}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


def _episode_keys(
    dataset: EpisodeDataset, norm_keys: Sequence[str] | str | None, instructions: list[str]
) -> list[str] | None:
    """The ``norm_keys`` entry of each episode's dataset (E,), each episode's instruction (``instructions``,
    (E,), as the loader read them) for :data:`BY_INSTRUCTION`, or None. ValueError for another string, or a
    count that is not one per dataset."""
    if norm_keys is None:
        return None
    if isinstance(norm_keys, str):
        if norm_keys != BY_INSTRUCTION:
            raise ValueError(
                f"norm_keys={norm_keys!r}: expected one name per dataset or {BY_INSTRUCTION!r} (each "
                "sample's instruction)"
            )
        return list(instructions)
    parts = getattr(dataset, "datasets", [dataset])
    if len(norm_keys) != len(parts):
        raise ValueError(f"norm_keys={list(norm_keys)}: expected one name per dataset ({len(parts)})")
    return [key for key, d in zip(norm_keys, parts, strict=True) for _ in range(d.num_episodes)]


def check_frame_size(cam: str, hw: tuple[int, int], seen: tuple[int, int], where: str) -> None:
    """One stored size per camera: ValueError naming the camera, both sizes and where (both loaders)."""
    if hw != seen:
        raise ValueError(
            f"{where}: camera {cam!r} has {hw[0]}x{hw[1]} frames but {seen[0]}x{seen[1]} elsewhere in the "
            "dataset; one size per camera is expected (re-render or resize the dataset)"
        )


def _checked(x, name: str, dataset: EpisodeDataset, i: int, dim: int, length: int | None = None):
    """``x`` as (T, dim) float32, or a ValueError naming the dataset, episode and the bad value."""
    x = np.asarray(x)
    where = dataset.where(i)
    if x.ndim != 2 or x.shape[1] != dim or (length is not None and x.shape[0] != length):
        want = f"({length if length is not None else 'T'}, {dim})"
        raise ValueError(f"{where}: {name} has shape {x.shape}, expected {want}")
    x = np.asarray(x, np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        t, d = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"{where}: {name}[{t}, {d}] is {x[t, d]} (non-finite); clean or drop this episode")
    return x


def _check_frame_counts(images: dict, length: int, where: str) -> None:
    """Every camera holds one frame per action step, or a ValueError naming the camera and the counts."""
    for cam, frames in images.items():
        if len(frames) != length:
            raise ValueError(f"{where}: camera {cam!r} has {len(frames)} frames, the episode {length} steps")


def _warn_short_episodes(dataset, lengths: np.ndarray, chunk_len: int, pad: bool) -> None:
    """Episodes shorter than a chunk give no sample without ``pad_chunks``: say which, instead of silence."""
    short = np.flatnonzero(lengths < chunk_len)
    if len(short) and not pad:
        log.warning(
            "%s: %d of %d episodes are shorter than chunk_len=%d and give no sample (episodes %s%s); "
            "pad_chunks=True trains on them with padded chunks",
            getattr(dataset, "path", None), len(short), len(lengths), chunk_len,
            short[:10].tolist(), " ..." if len(short) > 10 else "",
        )  # fmt: skip


def assemble_batch(
    loader, starts: np.ndarray, images: torch.Tensor, generator: torch.Generator | None
) -> Batch:
    """A :class:`Batch` from the (B, N, H, W, 3) uint8 ``images`` of the samples starting at global frames
    ``starts`` and ``loader``'s numeric arrays; the training augmentation drawn from ``generator``. Shared by
    the in-memory and the streaming loader, so both give the same batch for the same samples."""
    idx, is_pad = chunk_indices(starts, loader.frame_end[starts], loader.chunk_len)
    starts_t = torch.from_numpy(starts)
    if loader.augment is not None:
        g = generator or torch.Generator().manual_seed(0)
        with _torch_threads(loader.aug_threads):
            if loader.pipeline is not None:  # the policy's crop area
                images = loader.pipeline(images, train=True, augment=loader.augment, generator=g)
            else:  # no policy: the augmentation config's own crop
                images = augment_images(images, g, loader.augment)
    proprio = loader.proprio[starts_t] if loader.proprio.shape[1] else None
    keys = getattr(loader, "episode_norm_key", None)
    return Batch(
        images=images,
        proprio=proprio,
        instructions=[loader.instructions[e] for e in loader.frame_episode[starts]],
        actions=loader.actions[torch.from_numpy(idx)],  # (B, K, D)
        action_is_pad=torch.from_numpy(is_pad) if loader.pad else None,
        norm_keys=None if keys is None else [keys[e] for e in loader.frame_episode[starts]],
    )
