"""The streaming loader gives the in-memory loader's batches, resumes exactly, and names bad episodes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from oft.data.dataset import ListDataset
from oft.data.episode import Episode
from oft.data.loader import ChunkLoader
from oft.data.stream import StreamLoader
from oft.model.preprocess import ImagePipeline


def _load_helper():
    """tests/data has no package: take the synthetic episodes from its conftest by path."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("data_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_episode


synthetic_episode = _load_helper()

KW = dict(chunk_len=4, batch_size=5, pad=True, seed=3)


def _lerobot(root, video: bool, n: int = 4):
    from oft.data.lerobot import LeRobotDataset, LeRobotWriter

    w = LeRobotWriter(root, fps=10, cameras=("corner", "wrist"), image_shape=(32, 32), action_dim=4,
                      proprio_dim=3, video=video)  # fmt: skip
    for s in range(n):
        w.add_episode(synthetic_episode(length=10 + s, seed=s))
    w.finalize()
    return LeRobotDataset(root)


def _robomimic(path, n: int = 3):
    from oft.data.hdf5 import open_hdf5

    with h5py.File(path, "w") as f:
        for i in range(n):
            ep = synthetic_episode(length=9 + i, seed=i, action_dim=7)
            g = f.create_group(f"data/demo_{i}")
            g["actions"] = ep.actions
            g["obs/agentview_rgb"] = ep.images["corner"]
            g["obs/eye_in_hand_rgb"] = ep.images["wrist"]
            g["obs/joint_states"] = ep.proprio
    return open_hdf5(path)


def _same(a, b):
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.actions, b.actions) and a.instructions == b.instructions
    assert (a.proprio is None and b.proprio is None) or torch.equal(a.proprio, b.proprio)
    assert (a.action_is_pad is None) or torch.equal(a.action_is_pad, b.action_is_pad)


@pytest.mark.parametrize("kind", ["mp4", "png", "hdf5", "list"])
def test_stream_batches_equal_in_memory_batches(kind, tmp_path):
    """Same samples, order, pixels (resize + augmentation) as ChunkLoader, for every way frames are read."""
    if kind == "hdf5":
        data = _robomimic(tmp_path / "demo.hdf5")
    elif kind == "list":
        data = ListDataset([synthetic_episode(length=8 + s, seed=s) for s in range(3)])
    else:
        data = _lerobot(tmp_path / "ds", video=kind == "mp4")
    pipe = ImagePipeline(24, crop_scale=0.9)
    mem = ChunkLoader(data, pipeline=pipe, **KW)
    stream = StreamLoader(data, pipeline=pipe, num_workers=0, **KW)
    assert stream.frame_sizes == mem.frame_sizes
    for _ in range(2 * mem.batches_per_epoch + 1):
        _same(next(mem), next(stream))


def test_workers_resume_and_shard(tmp_path):
    """Worker processes keep the order; a state_dict taken mid-run continues exactly, also in the other
    loader; two ranks see disjoint samples."""
    data = _lerobot(tmp_path / "ds", video=True)
    mem = ChunkLoader(data, image_size=16, **KW)
    ref = [next(mem) for _ in range(9)]
    first = StreamLoader(data, image_size=16, num_workers=1, **KW)
    got = [next(first) for _ in range(4)]
    second = StreamLoader(data, image_size=16, num_workers=2, **KW)
    second.load_state_dict(first.state_dict())
    got += [next(second) for _ in range(3)]
    other = ChunkLoader(data, image_size=16, **KW)
    other.load_state_dict(second.state_dict())
    got += [next(other) for _ in range(2)]
    for a, b in zip(ref, got, strict=True):
        _same(a, b)
    ranks = [StreamLoader(data, image_size=16, num_workers=0, rank=r, world_size=2, **KW) for r in (0, 1)]
    seen = [set(ld.batch_starts(0, b).tolist()) for ld in ranks for b in range(ld.batches_per_epoch)]
    half = len(seen) // 2
    assert not set().union(*seen[:half]) & set().union(*seen[half:])


def test_mixture_weights_follow_the_weights():
    from oft.train._concat import ConcatDataset

    a = ListDataset([synthetic_episode(length=20, seed=s) for s in range(4)])
    b = ListDataset([synthetic_episode(length=20, seed=10 + s, instruction="other") for s in range(1)])
    data = ConcatDataset([a, b])
    ld = StreamLoader(data, chunk_len=4, batch_size=8, num_workers=0, augment=False, weights=(1.0, 1.0))
    picks = np.concatenate([ld.batch_starts(e, k) for e in range(3) for k in range(ld.batches_per_epoch)])
    share_b = np.mean(ld.frame_episode[picks] == 4)
    assert 0.4 < share_b < 0.6  # b has 1/5 of the samples but half the weight
    assert ld.state_dict()["weights"] == [0.5, 0.5]
    with pytest.raises(ValueError, match="one a dataset"):
        StreamLoader(data, chunk_len=4, num_workers=0, weights=(1.0,))


def test_mixture_weights_are_logged_against_the_unweighted_shares(caplog):
    """The run's log says what the weights change: each dataset's share of the draws and of the samples."""
    from oft.train._concat import ConcatDataset

    a = ListDataset([synthetic_episode(length=20, seed=s) for s in range(3)])
    b = ListDataset([synthetic_episode(length=20, seed=10 + s, instruction="other") for s in range(1)])
    a.name, b.name = "four", "six"
    with caplog.at_level("INFO", logger="oft.data.loader"):
        ChunkLoader(ConcatDataset([a, b]), chunk_len=4, batch_size=8, augment=False, weights=(0.8, 0.2))
    expected = "mixture: four 80.0% of draws (75.0% unweighted), six 20.0% of draws (25.0% unweighted)"
    assert expected in caplog.text


# ------------------------------------------------------------ quirks: errors name the dataset and episode
def _bad_list(kind: str) -> ListDataset:
    eps = [synthetic_episode(length=10, seed=s) for s in range(3)]
    if kind == "nan":
        eps[2].actions[4, 1] = np.nan  # set after construction, as a reader's arrays could hold it
    if kind == "frames":
        eps[1].images["wrist"] = eps[1].images["wrist"][:7]
    if kind == "size":
        eps[2].images["wrist"] = np.zeros((10, 16, 16, 3), np.uint8)
    return ListDataset(eps)


@pytest.mark.parametrize("loader", [ChunkLoader, StreamLoader])
@pytest.mark.parametrize(
    ("kind", "match"),
    [("nan", r"episode 2.*non-finite"), ("frames", "episode 1"), ("size", "episode 2")],
)
def test_quirks_name_the_episode(loader, kind, match):
    data = _bad_list(kind)
    if kind == "frames" and loader is StreamLoader:
        data._episodes[1] = data._episodes[1]  # the cameras disagree only when images are read
    kw = {"num_workers": 0} if loader is StreamLoader else {}
    with pytest.raises(ValueError, match=match):
        ld = loader(data, chunk_len=2, batch_size=4, augment=False, **kw)
        for _ in range(3 * ld.batches_per_epoch):
            next(ld)


def test_missing_camera_and_short_episodes(caplog):
    data = ListDataset([synthetic_episode(length=n, seed=n) for n in (3, 12)])
    with pytest.raises(ValueError, match="no camera"):
        StreamLoader(data, chunk_len=2, cameras=["corner", "top"], num_workers=0)
    with caplog.at_level("WARNING"):
        ChunkLoader(data, chunk_len=5, batch_size=2)
    assert "shorter than chunk_len=5" in caplog.text and "[0]" in caplog.text
    with pytest.raises(ValueError, match="too few"):
        StreamLoader(ListDataset([synthetic_episode(length=3)]), chunk_len=5, num_workers=0)


def test_episode_errors_name_the_dataset():
    eps = [synthetic_episode(length=5, seed=s) for s in range(2)]
    bad = Episode.__new__(Episode)  # a reader that skipped validation
    bad.__dict__.update(eps[1].__dict__)

    class Reader(ListDataset):
        def _episode(self, i):
            if i == 1:
                return Episode(eps[1].images, eps[1].proprio, np.full((5, 4), np.inf), "x")
            return super()._episode(i)

    with pytest.raises(ValueError, match=r"episode 1: Episode\.actions contains NaN or inf"):
        Reader(eps).episode(1)


@pytest.mark.parametrize("data_loader", ["memory", "stream"])
def test_train_config_start_repeat_reaches_either_loader(data_loader):
    """``TrainConfig.start_repeat``/``start_frames`` shape the epoch of the loader training builds, in memory
    or streamed, and both loaders still give the same batches."""
    from oft.spec import PRESETS
    from oft.train.config import TrainConfig
    from oft.train.distributed import DistInfo
    from oft.train.loop import make_loader

    data = ListDataset([synthetic_episode(length=8 + s, seed=s) for s in range(3)])
    cfg = TrainConfig(batch_size=5, start_repeat=3, start_frames=2, data_loader=data_loader, num_workers=0)
    spec = PRESETS["metaworld"].replace(chunk_len=4, cameras=("corner", "wrist"))
    loader = make_loader(cfg, data, spec, ImagePipeline(24), DistInfo())
    assert isinstance(loader, StreamLoader) == (data_loader == "stream")
    plain = ChunkLoader(data, chunk_len=4, cameras=["corner", "wrist"], batch_size=5, pad=cfg.pad_chunks)
    assert len(loader.starts) == len(plain.starts) + 2 * 2 * 3  # two frames x two extra visits x 3 episodes
    mem = ChunkLoader(data, chunk_len=4, cameras=["corner", "wrist"], batch_size=5, image_size=24,
                      start_repeat=3, start_frames=2, pad=cfg.pad_chunks)  # fmt: skip
    for _ in range(mem.batches_per_epoch + 1):
        _same(next(mem), next(loader))


def test_auto_loader_keeps_frames_in_memory_up_to_half_the_available_memory(monkeypatch):
    """``data_loader=auto``: in memory while every local rank's decoded frames fit in half the available
    memory (the memory loader holds them once), streamed beyond."""
    from oft.spec import PRESETS
    from oft.train import loop

    data = ListDataset([synthetic_episode(length=10, seed=s) for s in range(4)])  # 40 frames
    spec = PRESETS["metaworld"].replace(cameras=("corner", "wrist"))
    need = 40 * 2 * 64 * 64 * 3  # frames x cameras x 64 px x 64 px x RGB bytes
    cases = [(2.5, 1, "memory"), (2, 1, "memory"), (1.9, 1, "stream"), (2.5, 2, "stream"), (4, 2, "memory")]
    for available, ranks, kind in cases:  # available memory in multiples of one rank's frames
        monkeypatch.setattr(loop, "_available_memory", lambda a=available: int(a * need))
        assert loop.choose_loader(data, spec, 64, ranks) == kind, (available, ranks)
