"""Several datasets read as one (``oft train --dataset A --dataset B``), without loading them into memory."""

from __future__ import annotations

import bisect

from oft.conventions import merge_conventions
from oft.data.dataset import EpisodeDataset, mixture_part_name


class ConcatDataset(EpisodeDataset):
    """Episodes of ``datasets`` in order; they must agree on cameras, action and proprio sizes."""

    def __init__(self, datasets: list) -> None:
        if not datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        first = datasets[0]
        for d in datasets[1:]:
            same = (list(d.cameras), d.action_dim, d.proprio_dim) == (
                list(first.cameras),
                first.action_dim,
                first.proprio_dim,
            )
            if not same:
                raise ValueError(
                    f"dataset {d.path} has cameras {list(d.cameras)}, action_dim {d.action_dim}, proprio_dim "
                    f"{d.proprio_dim}; expected those of {first.path}: {list(first.cameras)}, "
                    f"{first.action_dim}, {first.proprio_dim}"
                )
        self.datasets = list(datasets)
        # one run, one meaning of its actions: datasets that record different conventions are refused
        named = [(str(d.path), getattr(d, "conventions", None)) for d in datasets]
        self.conventions = merge_conventions(named)
        self.path = first.path
        self.cameras = list(first.cameras)
        self.fps = first.fps
        self.action_dim = first.action_dim
        self.proprio_dim = first.proprio_dim
        self._starts = []
        total = 0
        for d in self.datasets:
            self._starts.append(total)
            total += d.num_episodes
        self._total = total

    @property
    def keys(self) -> list[str]:
        """The name of each dataset, in order: the keys of their statistics in the checkpoint (``dataset_k``
        for a dataset with neither name nor path). Names must differ: statistics are kept by name."""
        keys = [mixture_part_name(d, k) for k, d in enumerate(self.datasets)]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(
                f"datasets {[str(d.path) for d in self.datasets]} share the names {repeated}; the statistics "
                "of a mixture are kept by dataset name, so each dataset needs its own (rename a directory, "
                "or mixture_stats=merged for one set over all of them)"
            )
        return keys

    @property
    def num_episodes(self) -> int:
        return self._total

    def _locate(self, i: int):
        k = bisect.bisect_right(self._starts, i) - 1
        return self.datasets[k], i - self._starts[k]

    def _episode(self, i: int):
        d, j = self._locate(i)
        return d.episode(j)

    def episode_arrays(self, i: int):
        d, j = self._locate(self._check_index(i))
        return d.episode_arrays(j)

    def where(self, i: int) -> str:
        d, j = self._locate(i)
        return d.where(j)

    def episode_lengths(self):
        import numpy as np

        return np.concatenate([d.episode_lengths() for d in self.datasets])

    @property
    def instructions(self) -> list[str]:
        return [text for d in self.datasets for text in d.instructions]

    @property
    def stats(self):
        """None: the statistics of the union must be computed over all of it (``compute_stats``)."""
        return None
