"""Chunk sampling semantics, ChunkLoader determinism, sharding and resumption."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from oft.data.lerobot import LeRobotWriter
from oft.data.loader import ChunkLoader
from oft.data.samples import chunk_indices, chunk_starts, repeat_episode_starts


def test_chunk_starts_paper_default_and_padding():
    # episodes of 5 and 3 frames, K = 3
    assert chunk_starts([5, 3], 3).tolist() == [0, 1, 2, 5]  # the last K-1 frames never start a sample
    assert chunk_starts([5, 3], 3, pad=True).tolist() == list(range(8))
    assert chunk_starts([2], 3).tolist() == []  # too short for one full chunk
    idx, is_pad = chunk_indices(np.array([3, 6]), np.array([5, 8]), 3)
    assert idx.tolist() == [[3, 4, 4], [6, 7, 7]]  # past the end: the last action repeats
    assert is_pad.tolist() == [[False, False, True], [False, False, True]]


def test_repeat_episode_starts():
    # episodes of 5, 0 and 4 frames (global frames 0-4 and 5-8), K = 2: starts 0-3 and 5-7
    starts = chunk_starts([5, 0, 4], 2)
    assert repeat_episode_starts(starts, [5, 0, 4], 2, 1).tolist() == starts.tolist()
    three = [0, 0, 0, 1, 1, 1, 2, 3, 5, 5, 5, 6, 6, 6, 7]
    assert repeat_episode_starts(starts, [5, 0, 4], 2, 3).tolist() == three
    for bad in ((0, 2), (2, 0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            repeat_episode_starts(starts, [5, 0, 4], *bad)


def test_start_repeat_draws_first_frames_more_often_and_resumes_only_with_it(make_episode):
    eps = [make_episode(12, seed=k, instruction=f"task {k}") for k in range(3)]
    kw = dict(chunk_len=3, batch_size=4, augment=False)
    plain, heavy = ChunkLoader(eps, **kw), ChunkLoader(eps, **kw, start_repeat=4, start_frames=2)
    early = {0, 1, 12, 13, 24, 25}  # the first two frames of each episode
    assert len(heavy.starts) == len(plain.starts) + 3 * len(early)
    seen = np.concatenate([heavy.batch_starts(0, b) for b in range(len(heavy))])
    counts = {f: int((seen == f).sum()) for f in set(heavy.starts.tolist())}
    assert len(seen) == len(heavy.starts) == 48  # 12 batches of 4: nothing trimmed
    assert counts == {f: (4 if f in early else 1) for f in plain.starts.tolist()}
    # the first chunk by default
    assert len(ChunkLoader(eps, **kw, start_repeat=2).starts) == len(plain.starts) + 3 * 3
    with pytest.raises(ValueError, match="saved for"):
        plain.load_state_dict(heavy.state_dict())
    assert "start_repeat" not in plain.state_dict()  # checkpoints of earlier runs still resume


def _episodes(make_episode, n=4, length=10):
    return [make_episode(length + k, seed=k, instruction=f"task {k}") for k in range(n)]


def test_batch_content(make_episode):
    eps = _episodes(make_episode)
    k = 4
    loader = ChunkLoader(eps, chunk_len=k, cameras=["wrist", "corner"], batch_size=6, augment=False)
    assert len(loader.starts) == sum(len(e) - k + 1 for e in eps)
    batch = next(loader)
    assert batch.images.shape == (6, 2, 32, 32, 3) and batch.images.dtype == torch.uint8
    assert batch.actions.shape == (6, k, 4) and batch.proprio.shape == (6, 3) and batch.action_is_pad is None
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in eps])])
    for b in range(6):
        ep_i = next(i for i in range(len(eps)) if batch.instructions[b] == f"task {i}")
        t = int(np.flatnonzero(np.all(eps[ep_i].proprio == batch.proprio[b].numpy(), axis=1))[0])
        assert offsets[ep_i] + t in loader.starts
        np.testing.assert_array_equal(batch.actions[b].numpy(), eps[ep_i].actions[t : t + k])
        np.testing.assert_array_equal(
            batch.images[b, 0].numpy(), eps[ep_i].images["wrist"][t]
        )  # camera order
        np.testing.assert_array_equal(batch.images[b, 1].numpy(), eps[ep_i].images["corner"][t])


def test_padding_mask(make_episode):
    eps = _episodes(make_episode, n=1, length=5)
    loader = ChunkLoader(eps, chunk_len=3, batch_size=5, augment=False, pad=True)
    batch = loader.make_batch(np.array([3, 4]))
    assert batch.action_is_pad.tolist() == [[False, False, True], [False, True, True]]
    np.testing.assert_array_equal(batch.actions[1].numpy(), np.repeat(eps[0].actions[4:5], 3, 0))


def test_determinism_resume_and_epochs(make_episode):
    eps = _episodes(make_episode)
    kw = dict(chunk_len=3, batch_size=5, augment=True, seed=7)
    a, b = ChunkLoader(eps, **kw), ChunkLoader(eps, **kw)
    steps = len(a) + 3  # crosses an epoch boundary
    run_a = [next(a) for _ in range(steps)]
    for x in run_a:
        y = next(b)
        assert torch.equal(x.images, y.images) and torch.equal(x.actions, y.actions)
    # resume: a fresh loader restored from the state after 4 steps continues identically
    c = ChunkLoader(eps, **kw)
    for _ in range(4):
        next(c)
    state = c.state_dict()
    d = ChunkLoader(eps, **kw)
    d.load_state_dict(state)
    for x in run_a[4:]:
        y = next(d)
        assert torch.equal(x.images, y.images) and torch.equal(x.actions, y.actions)
    assert d.epoch == 1
    with pytest.raises(ValueError, match="saved for"):
        ChunkLoader(eps, **{**kw, "seed": 8}).load_state_dict(state)
    # a new epoch reshuffles
    order0, order1 = a._epoch_order(0).copy(), a._epoch_order(1).copy()
    assert not np.array_equal(order0, order1)


def test_shards_are_disjoint(make_episode):
    eps = _episodes(make_episode)
    shards = [
        ChunkLoader(eps, chunk_len=3, batch_size=2, augment=False, rank=r, world_size=3) for r in range(3)
    ]
    orders = [set(s._epoch_order(0).tolist()) for s in shards]
    assert all(len(o) == shards[0].per_rank for o in orders)
    assert not (orders[0] & orders[1]) and not (orders[1] & orders[2]) and not (orders[0] & orders[2])
    assert len(set().union(*orders)) == 3 * shards[0].per_rank
    with pytest.raises(ValueError, match="too few"):
        ChunkLoader(eps, chunk_len=3, batch_size=1000)


def test_loader_from_lerobot_dataset_with_resize(tmp_path, make_episode):
    eps = _episodes(make_episode, n=2)
    w = LeRobotWriter(tmp_path / "ds", 10, ["corner", "wrist"], (32, 32), 4, 3, video=False)
    for ep in eps:
        w.add_episode(ep)
    from oft.data import open_dataset

    loader = ChunkLoader(open_dataset(tmp_path / "ds"), chunk_len=2, batch_size=4, image_size=16)
    batch = next(loader)
    assert batch.images.shape == (4, 2, 16, 16, 3)
    assert batch.instructions[0] in {"task 0", "task 1"}


_PEAK_SCRIPT = r"""
import numpy as np
from oft.data.dataset import EpisodeDataset
from oft.data.episode import Episode
from oft.data.loader import ChunkLoader

class Decoding(EpisodeDataset):
    # every episode() call makes fresh frames, as decoding a video does: nothing is held between calls
    cameras, fps, action_dim, proprio_dim, conventions = ["top", "wrist"], 50.0, 2, 3, None
    num_episodes = 24

    def episode_lengths(self):
        return np.full(self.num_episodes, 100, np.int64)

    def _episode(self, i):
        images = {c: np.full((100, 128, 128, 3), i, np.uint8) for c in self.cameras}
        return Episode(images, np.zeros((100, 3), np.float32), np.zeros((100, 2), np.float32), "task")

def hwm():
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) * 1024

before = hwm()
loader = ChunkLoader(Decoding(), chunk_len=4, batch_size=8, augment=False)
assert int(loader.images[-1].max()) == 23 and int(loader.images[0].max()) == 0
print(loader.images.numel(), hwm() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_memory_loader_peak_is_the_frames_once_not_twice():
    """Decoding into one preallocated tensor: the load's peak is the frames plus about one episode. Gathering
    per-episode copies and concatenating them held every frame twice (14.9 GB resident for 7.1 GB of frames
    in a 150-episode ALOHA run)."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    frames, peak = map(int, out.stdout.split())  # 24 episodes x 2 cameras x 100 frames of 128 x 128 = 236 MB
    assert peak < 1.3 * frames, f"loading {frames / 1e6:.0f} MB of frames peaked {peak / 1e6:.0f} MB higher"
