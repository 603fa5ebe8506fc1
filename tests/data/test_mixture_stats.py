"""A mixture of two robots: each dataset's samples normalized with its own statistics, every dataset's kept in
the checkpoint under its name (OpenVLA's ``norm_stats`` dict), one chosen at inference with ``unnorm_key``;
``mixture_stats="merged"`` keeps one set over the union."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import oft
from oft.data.dataset import ListDataset
from oft.data.episode import Episode
from oft.data.loader import ChunkLoader
from oft.data.normalize import normalize
from oft.observation import Observation
from oft.spec import get_spec
from oft.train._concat import ConcatDataset
from oft.train.build import training_stats

CAMS = ("corner", "gripperPOV")  # the metaworld spec's
RANGES = {"robot_a": (0.0, 1.0), "robot_b": (10.0, 20.0)}  # action ranges far apart


def _episodes(lo: float, hi: float, n: int = 3, length: int = 12, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            {c: rng.integers(0, 255, (length, 24, 24, 3), dtype=np.uint8) for c in CAMS},
            rng.uniform(lo, hi, (length, 4)).astype(np.float32),  # proprio in the same range
            rng.uniform(lo, hi, (length, 4)).astype(np.float32),
            f"task {i}",
        )
        for i in range(n)
    ]


def _mixture() -> ConcatDataset:
    parts = []
    for k, (name, (lo, hi)) in enumerate(RANGES.items()):
        d = ListDataset(_episodes(lo, hi, seed=k))
        d.name = name
        parts.append(d)
    return ConcatDataset(parts)


def test_a_mixed_batch_is_normalized_per_dataset():
    from oft.model.build import build_policy

    data = _mixture()
    key, stats = training_stats(data, "per_dataset")
    assert key == "robot_a" and list(stats) == ["robot_a", "robot_b"]
    spec = get_spec("metaworld").replace(chunk_len=4)
    policy = build_policy(spec, stats[key], data.instructions, arch="tiny")
    policy.set_dataset_stats(stats, key)
    ld = ChunkLoader(data, chunk_len=4, batch_size=16, augment=False, norm_keys=data.keys, image_size=16)
    batch = next(ld)
    keys = batch.norm_keys
    assert set(keys) == {"robot_a", "robot_b"}  # the batch mixes both robots
    src = np.asarray(["robot_b" if a > 5 else "robot_a" for a in batch.actions[:, 0, 0].tolist()])
    assert list(src) == keys  # each sample is tagged with its own dataset
    from oft.data.stream import StreamLoader

    st = StreamLoader(data, chunk_len=4, batch_size=16, augment=False, norm_keys=data.keys, image_size=16,
                      num_workers=1)  # fmt: skip
    assert next(st).norm_keys == keys  # the worker processes tag samples the same way
    st.close()
    target = policy._normalize_rows(batch.actions, "action", keys)
    proprio = policy._normalize_rows(batch.proprio, "proprio", keys)
    for b, k in enumerate(keys):
        own = normalize(batch.actions[b], stats[k].action, spec.normalization, spec.mask)
        torch.testing.assert_close(target[b], own)
        torch.testing.assert_close(
            proprio[b], normalize(batch.proprio[b], stats[k].proprio, spec.normalization)
        )
    m = torch.as_tensor(spec.mask if spec.mask is not None else [True] * 4)  # the gripper passes through
    assert target[..., m].abs().max() <= 1 and target[..., m].std() > 0.3  # both robots span [-1, 1]
    loss, _ = policy(batch)
    assert torch.isfinite(loss)
    # without keys every row takes norm_stats (robot_a's): robot_b's samples would all clip to +1
    plain = policy._normalize_rows(batch.actions, "action", None)
    rows_b = torch.tensor([k == "robot_b" for k in keys])
    assert (plain[rows_b][..., m] == 1).all()
    with pytest.raises(KeyError, match="robot_c"):
        policy._normalize_rows(batch.actions, "action", ["robot_c"] * len(keys))


def test_merged_mode_and_names():
    data = _mixture()
    key, stats = training_stats(data, "merged")
    assert list(stats) == [key] == ["robot_a+robot_b"]
    assert stats[key].action.min.min() < 1 and stats[key].action.max.max() > 10  # over the union
    a = ListDataset(_episodes(0, 1))
    a.name = "same"
    b = ListDataset(_episodes(0, 1))
    b.name = "same"
    with pytest.raises(ValueError, match="share the names"):
        training_stats(ConcatDataset([a, b]), "per_dataset")
    assert list(training_stats(ConcatDataset([a, b]), "merged")[1]) == ["same+same"]
    assert ConcatDataset([ListDataset(_episodes(0, 1)), ListDataset(_episodes(0, 1))]).keys == [
        "dataset_0",
        "dataset_1",
    ]
    with pytest.raises(ValueError, match="one name per dataset"):
        ChunkLoader(data, chunk_len=4, batch_size=4, norm_keys=["x"])


def _write(root, lo, hi, seed):
    from oft.data.lerobot import LeRobotWriter

    w = LeRobotWriter(root, fps=10, cameras=CAMS, image_shape=(24, 24), action_dim=4, proprio_dim=4,
                      video=False)  # fmt: skip
    for ep in _episodes(lo, hi, n=2, length=12, seed=seed):
        w.add_episode(ep)
    w.finalize()
    return root


@pytest.fixture(scope="module")
def two_robots(tmp_path_factory):
    base = tmp_path_factory.mktemp("mix")
    return [_write(base / name, lo, hi, k) for k, (name, (lo, hi)) in enumerate(RANGES.items())]


def _train(dirs, out, resume=False, **changes):
    from oft.train.config import TrainConfig
    from oft.train.loop import train

    cfg = TrainConfig(base="tiny", robot="metaworld", datasets=tuple(str(d) for d in dirs), batch_size=4,
                      max_steps=2, save_every=2, log_every=1, num_threads=1, device="cpu", chunk_len=4,
                      data_loader="memory")  # fmt: skip
    return train(cfg.replace(**changes), out, resume=resume).checkpoint


def test_checkpoint_keeps_every_robots_statistics(two_robots, tmp_path):
    ckpt = _train(two_robots, tmp_path / "per", dataset_weights=(1.0, 1.0))
    meta = json.loads((ckpt / "oft_config.json").read_text())
    assert sorted(meta["dataset_stats"]) == ["robot_a", "robot_b"] and meta["unnorm_key"] == "robot_a"
    with pytest.raises(ValueError, match="unnorm_key"):
        oft.load_policy(ckpt)  # two robots: which one to act for is the caller's choice
    with pytest.raises(KeyError, match="robot_c"):
        oft.load_policy(ckpt, unnorm_key="robot_c")
    rng = np.random.default_rng(0)
    obs = Observation([rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in CAMS],
                      np.full(4, 0.5, np.float32), "task 0")  # fmt: skip
    acts = {}
    for name, (lo, hi) in RANGES.items():
        policy = oft.load_policy(ckpt, unnorm_key=name)
        assert policy.unnorm_key == name and policy.norm_stats is policy.dataset_stats[name]
        acts[name] = policy.predict_action_chunk(obs, clip=True)
        assert lo - 1e-4 <= acts[name].min() and acts[name].max() <= hi + 1e-4  # in that robot's range
    # the paper's layout holds every robot's statistics too (dataset_statistics.json), and each loads back
    from oft.train.export import export_reference

    out = export_reference(policy, tmp_path / "export")
    assert sorted(json.loads((out / "dataset_statistics.json").read_text())) == ["robot_a", "robot_b"]
    for name in RANGES:
        back = oft.load_policy(out, unnorm_key=name)
        np.testing.assert_allclose(back.norm_stats.action.q99, policy.dataset_stats[name].action.q99)
    # resume keeps both keys (the saved default only picks the inference statistics)
    again = _train(two_robots, tmp_path / "per", resume=True, dataset_weights=(1.0, 1.0), max_steps=4)
    assert again.name.endswith("4")
    assert sorted(json.loads((again / "oft_config.json").read_text())["dataset_stats"]) == [
        "robot_a",
        "robot_b",
    ]


def test_merged_checkpoint_has_one_key(two_robots, tmp_path):
    ckpt = _train(two_robots, tmp_path / "merged", mixture_stats="merged")
    meta = json.loads((ckpt / "oft_config.json").read_text())
    assert list(meta["dataset_stats"]) == ["robot_a+robot_b"]
    policy = oft.load_policy(ckpt)  # one key: no choice needed
    assert policy.unnorm_key == "robot_a+robot_b"
    assert policy.norm_stats.action.max.max() > 10 and policy.norm_stats.action.min.min() < 1
