"""Which frames start a training sample, and which actions its chunk holds.

A sample is the observation at frame t with the actions t .. t+K-1 of the same episode.

* Default (the paper's pipeline): only frames with K actions left in their episode start a sample — the
  last K-1 frames of each episode never do, so every chunk is real data. An episode shorter than K gives none.
* ``pad=True`` (LeRobot's ``delta_timestamps`` behaviour): every frame starts a sample; a chunk that runs
  past the episode end repeats the last action and marks those steps in ``action_is_pad``, so the loss can
  ignore them.
"""

from __future__ import annotations

import numpy as np


def episode_bounds(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) global frame index of each episode, end exclusive."""
    lengths = np.asarray(lengths, np.int64)
    ends = np.cumsum(lengths)
    return ends - lengths, ends


def chunk_starts(lengths: np.ndarray, chunk_len: int, pad: bool = False) -> np.ndarray:
    """Global frame indices that start a sample, in episode order. (S,) int64."""
    if chunk_len < 1:
        raise ValueError(f"chunk_len must be >= 1, got {chunk_len}")
    starts, ends = episode_bounds(lengths)
    last = ends if pad else ends - chunk_len + 1  # exclusive upper bound of start frames
    parts = [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, last, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def repeat_episode_starts(
    starts: np.ndarray, lengths: np.ndarray, start_frames: int, repeat: int
) -> np.ndarray:
    """``starts`` (global frame indices, from :func:`chunk_starts`) with every sample that starts within the
    first ``start_frames`` frames of its episode listed ``repeat`` times, sorted. An epoch then visits those
    samples ``repeat`` times as often as the others. (S',) int64.

    Why: a policy that runs whole chunks open-loop decides its course in the first chunk, from a still scene
    (where only the image and the instruction say which object to go for), yet those frames are about one
    sample in eight of an ALOHA episode; later frames can be predicted from the arm's own visible motion.
    Raises ValueError for ``start_frames < 1`` or ``repeat < 1``.
    """
    if start_frames < 1 or repeat < 1:
        raise ValueError(f"start_frames and repeat must be >= 1, got {start_frames} and {repeat}")
    starts = np.asarray(starts, np.int64)
    if repeat == 1:
        return starts
    first, ends = episode_bounds(lengths)
    episode = np.searchsorted(ends, starts, side="right")  # empty episodes share an end and are skipped
    early = starts[starts - first[episode] < start_frames]
    return np.sort(np.concatenate([starts, *([early] * (repeat - 1))]), kind="stable")


def chunk_indices(
    starts: np.ndarray, episode_end: np.ndarray, chunk_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of each sample's K actions (B, K), clamped to its episode's last frame, and the
    (B, K) mask of steps past the episode end. ``episode_end``: the exclusive end of each start's episode."""
    idx = np.asarray(starts)[:, None] + np.arange(chunk_len)[None, :]
    end = np.asarray(episode_end)[:, None]
    is_pad = idx >= end
    return np.minimum(idx, end - 1), is_pad
