"""The dataset interface every format reader implements, and an in-memory one built from episodes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from oft.conventions import Conventions
from oft.data.episode import Episode
from oft.data.normalize import NormStats

log = logging.getLogger(__name__)


class EpisodeDataset:
    """A sequence of episodes. Readers override ``episode``; statistics use the cheaper ``episode_arrays``.

    Attributes every reader sets: ``path``, ``cameras`` (names, in the order images are stored), ``fps``,
    ``action_dim``, ``proprio_dim``; and ``conventions`` (:mod:`oft.conventions`: gripper scale, delta or
    absolute) when the source's are known — training copies them into the policy's spec. ``name``: the key of
    its statistics in a checkpoint (OpenVLA's ``unnorm_key``); None: :attr:`key` falls back to the directory.
    """

    path: Path | None = None
    name: str | None = None
    conventions: Conventions | None = None
    cameras: list[str]
    fps: float
    action_dim: int
    proprio_dim: int

    @property
    def num_episodes(self) -> int:
        raise NotImplementedError

    def _episode(self, i: int) -> Episode:
        raise NotImplementedError

    def episode(self, i: int) -> Episode:
        """Episode ``i`` (0-based; negative indices count from the end). A malformed episode (cameras with
        different frame counts, non-finite values, ...) raises ValueError naming the dataset and episode."""
        j = self._check_index(i)
        try:
            return self._episode(j)
        except ValueError as e:
            if type(e) is not ValueError or str(e).startswith(self.where(j)):
                raise  # CorruptFileError & co. already name their file
            raise ValueError(f"{self.where(j)}: {e}") from e

    @property
    def key(self) -> str:
        """The dataset's name: ``name`` when set (``oft train`` sets the Hub id or the directory given), else
        its directory name."""
        if self.name:
            return self.name
        return Path(self.path).name if self.path is not None else "dataset"

    def where(self, i: int) -> str:
        """How errors name episode ``i``: the dataset's path and the episode index."""
        return f"{self.path}: episode {i}" if self.path is not None else f"episode {i}"

    def episode_lengths(self) -> np.ndarray:
        """(E,) int64 frames per episode, from the numeric arrays (no image is decoded)."""
        return np.asarray([len(self.episode_arrays(i)[0]) for i in range(self.num_episodes)], np.int64)

    def episode_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions (T, D), proprio (T, P)) of episode ``i`` without decoding images."""
        ep = self.episode(i)
        return ep.actions, ep.proprio

    @property
    def instructions(self) -> list[str]:
        return [self.episode(i).instruction for i in range(self.num_episodes)]

    @property
    def stats(self) -> NormStats | None:
        """Statistics saved with the dataset (``oft stats`` writes them), or None."""
        path = self.stats_path
        if path is None or not path.exists():
            return None
        try:
            return NormStats.from_dict(json.loads(path.read_text()), where=str(path))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    @property
    def stats_path(self) -> Path | None:
        """Where :func:`oft.data.stats.save_stats` writes the statistics of this dataset."""
        return None

    def _check_index(self, i: int) -> int:
        n = self.num_episodes
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"episode index must be an int, got {type(i).__name__}")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"episode index {i} out of range for a dataset of {n} episodes")
        return j

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self.path)!r}, episodes={self.num_episodes}, "
            f"cameras={self.cameras}, action_dim={self.action_dim}, proprio_dim={self.proprio_dim})"
        )


class ListDataset(EpisodeDataset):
    """Episodes already in memory (a test, a freshly collected batch)."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        fps: float = 10.0,
        stats: NormStats | None = None,
        conventions: Conventions | str | None = None,
    ):
        self.conventions = Conventions.from_dict(conventions)
        if not episodes:
            raise ValueError("ListDataset needs at least one episode")
        self._episodes = list(episodes)
        first = self._episodes[0]
        self.cameras = first.cameras
        self.fps = fps
        self.action_dim = first.actions.shape[1]
        self.proprio_dim = first.proprio.shape[1]
        self._stats = stats
        for k, ep in enumerate(self._episodes):
            if ep.cameras != self.cameras or ep.actions.shape[1] != self.action_dim:
                raise ValueError(
                    f"episode {k} has cameras {ep.cameras} and action dim {ep.actions.shape[1]}, "
                    f"expected {self.cameras} and {self.action_dim} like episode 0"
                )

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def _episode(self, i: int) -> Episode:
        return self._episodes[i]

    @property
    def stats(self) -> NormStats | None:
        return self._stats

    @property
    def instructions(self) -> list[str]:
        return [ep.instruction for ep in self._episodes]


def mixture_part_name(dataset: EpisodeDataset, k: int) -> str:
    """How a mixture names its ``k``-th dataset: its :attr:`EpisodeDataset.key`, or ``dataset_k`` for a
    dataset with neither name nor path (the keys of per-dataset statistics, and the loader's mixture log)."""
    return dataset.key if dataset.name or dataset.path is not None else f"dataset_{k}"
