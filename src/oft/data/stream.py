"""StreamLoader: the batches of :class:`~oft.data.loader.ChunkLoader`, decoded on demand in worker processes.

For datasets whose decoded frames do not fit in memory (a LIBERO suite at 224 px is ~15 GB per rank, ALOHA far
more). What stays in memory is the numeric part only — actions and proprio of every frame (a 100k-frame
14-D dataset: 11 MB) and the sample index; images are read per batch, only the frames a batch needs, through
:class:`~oft.data.frames.FrameSource` (MP4 seeks, parquet rows, HDF5 slices), resized by the policy's own
:class:`~oft.model.preprocess.ImagePipeline` and augmented, in ``torch.utils.data.DataLoader`` workers that
prefetch ``prefetch`` batches each. Peak memory is then the model + ``num_workers * prefetch`` batches + a few
open files per worker, whatever the dataset's size (LeRobot's ``LeRobotDataset`` + ``DataLoader`` is the
same design, with its numeric columns memory-mapped by ``datasets``).

Same samples, same order, same pixels: the sample order, the per-rank sharding and the augmentation generator
of batch ``b`` of epoch ``e`` on rank ``r`` are the in-memory loader's (inherited, not re-implemented), and a
batch is assembled by the same function, so for the same dataset both loaders yield identical batches
(``tests/data/test_stream.py``) and ``state_dict()`` is interchangeable: a run may resume with either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from oft.data.dataset import EpisodeDataset, ListDataset
from oft.data.episode import Episode
from oft.data.frames import FrameSource
from oft.data.loader import ChunkLoader, _checked, check_frame_size
from oft.data.samples import episode_bounds
from oft.observation import Batch

log = logging.getLogger(__name__)


class StreamLoader(ChunkLoader):
    """:class:`ChunkLoader`'s batches, with images decoded per batch. ``num_workers`` worker processes
    (0: decode in this process) prefetch ``prefetch`` batches each. Other arguments: see ChunkLoader."""

    def __init__(
        self,
        data: EpisodeDataset | Sequence[Episode],
        chunk_len: int,
        *args,
        num_workers: int = 2,
        prefetch: int = 2,
        **kwargs,
    ):
        if num_workers < 0 or prefetch < 1:
            raise ValueError(f"num_workers must be >= 0 and prefetch >= 1, got {num_workers} and {prefetch}")
        self.num_workers, self.prefetch = num_workers, prefetch
        self._dl: torch.utils.data.DataLoader | None = None
        self._it: Iterator | None = None
        data = data if isinstance(data, EpisodeDataset) else ListDataset(list(data))
        super().__init__(data, chunk_len, *args, **kwargs)

    # -- the index: numeric arrays only
    def _load(self, dataset: EpisodeDataset) -> None:
        actions, proprio, lengths = [], [], []
        for i in range(dataset.num_episodes):
            a, p = dataset.episode_arrays(i)
            actions.append(_checked(a, "actions", dataset, i, dataset.action_dim))
            proprio.append(_checked(p, "proprio", dataset, i, p.shape[1] if p.ndim == 2 else -1, len(a)))
            lengths.append(len(a))
        self.instructions = list(dataset.instructions)
        self.actions = torch.from_numpy(np.concatenate(actions))  # (F, D)
        self.proprio = torch.from_numpy(np.concatenate(proprio))  # (F, P)
        self.lengths = np.asarray(lengths, np.int64)
        self.episode_start, ends = episode_bounds(self.lengths)
        self.frame_episode = np.repeat(np.arange(len(lengths)), self.lengths)
        self.frame_end = ends[self.frame_episode]
        self.source = FrameSource(dataset, self.cameras)
        self.where = dataset.where
        first = int(np.flatnonzero(self.lengths)[0]) if self.lengths.any() else 0
        probe = self.source.read(first, np.zeros(1, np.int64))  # the stored size of every camera
        self.frame_sizes = {
            c: (int(f.shape[1]), int(f.shape[2])) for c, f in zip(self.cameras, probe, strict=True)
        }
        self.source.close()  # nothing opened here is inherited by the workers
        log.info(
            "StreamLoader: %d episodes, %d frames, cameras %s, %d workers (numeric arrays %.1f MB)",
            len(lengths), len(self.frame_episode), self.frame_sizes, self.num_workers,
            (self.actions.numel() + self.proprio.numel()) * 4 / 2**20,
        )  # fmt: skip

    # -- one batch's images, read and resized
    def _images(self, starts: np.ndarray) -> torch.Tensor:
        episodes = self.frame_episode[starts]
        local = starts - self.episode_start[episodes]
        per_sample: list[list[torch.Tensor]] = [[] for _ in starts]
        for e in np.unique(episodes):
            rows = np.flatnonzero(episodes == e)
            frames = self.source.read(int(e), local[rows])
            for cam, x in zip(self.cameras, frames, strict=True):
                self._check_size(cam, x, int(e))
                t = torch.from_numpy(np.ascontiguousarray(x))
                t = self.pipeline.resize(t) if self.pipeline is not None else t
                for k, r in enumerate(rows):
                    per_sample[r].append(t[k])
        return torch.stack([torch.stack(cams) for cams in per_sample])  # (B, N, H, W, 3)

    def _check_size(self, cam: str, frames: np.ndarray, episode: int) -> None:
        hw, seen = (int(frames.shape[1]), int(frames.shape[2])), self.frame_sizes[cam]
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"{self.where(episode)}: camera {cam!r} gives {frames.shape} {frames.dtype} "
                             "frames, expected (n, H, W, 3) uint8")  # fmt: skip
        check_frame_size(cam, hw, seen, self.where(episode))

    # -- iteration through worker processes
    def __next__(self) -> Batch:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        if self.num_workers == 0:
            out = self.make_batch(
                self.batch_starts(self.epoch, self.batch), self._generator(self.epoch, self.batch)
            )
        else:
            if self._it is None:
                self._start()
            out = next(self._it)
        self.batch += 1
        return out

    def _start(self) -> None:
        """Workers that produce the batches from the current (epoch, batch) on, in order."""
        self._dl = torch.utils.data.DataLoader(
            _BatchAt(self),
            sampler=_Positions(self.epoch, self.batch, self.batches_per_epoch),
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch,
            persistent_workers=True,
        )
        self._it = iter(self._dl)

    def close(self) -> None:
        """Stop the worker processes (a new iteration starts them again)."""
        self._it, self._dl = None, None

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.close()  # workers already prefetching from the old position are dropped

    def __getstate__(self) -> dict:  # spawn-started workers get the index, not the parent's workers
        return {k: v for k, v in self.__dict__.items() if k not in ("_dl", "_it")} | {
            "_dl": None,
            "_it": None,
        }


class _BatchAt(torch.utils.data.Dataset):
    """Batch ``(epoch, batch)`` of the loader, built in whichever process asks."""

    def __init__(self, loader: StreamLoader) -> None:
        self.loader = loader

    def __getitem__(self, position: tuple[int, int]) -> Batch:
        epoch, batch = position
        ld = self.loader
        return ld.make_batch(ld.batch_starts(epoch, batch), ld._generator(epoch, batch))


class _Positions(torch.utils.data.Sampler):
    """(epoch, batch) from a start position on, forever; epochs roll over as ``ChunkLoader.__next__`` does."""

    def __init__(self, epoch: int, batch: int, per_epoch: int) -> None:
        self.epoch, self.batch, self.per_epoch = epoch, batch, per_epoch

    def __iter__(self):
        epoch, batch = self.epoch, self.batch
        while True:
            if batch >= self.per_epoch:
                epoch, batch = epoch + 1, 0
            yield epoch, batch
            batch += 1


def _identity(x):
    return x


__all__ = ["StreamLoader"]
