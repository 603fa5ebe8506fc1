"""Hub ids resolve offline from a prepared huggingface_hub cache; a missing one says how to download it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from oft.hub import HubNotFoundError, is_hub_id, parse_hub_id, resolve

REV = "0123456789abcdef0123456789abcdef01234567"


def _cache_with(tmp_path, repo_id: str, source, repo_type: str = "dataset"):
    """The layout huggingface_hub reads: <cache>/<type>s--org--name/snapshots/<rev>/... + refs/main."""
    cache = tmp_path / "hub"
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / REV)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return cache


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, make_episode):
    from huggingface_hub import constants

    from oft.data.lerobot import LeRobotWriter

    src = tmp_path / "src"
    w = LeRobotWriter(src, fps=10, cameras=("corner", "gripperPOV"), image_shape=(32, 32), action_dim=4,
                      proprio_dim=4, video=True)  # fmt: skip
    for s in range(3):
        ep = make_episode(12, cameras=("corner", "gripperPOV"), proprio_dim=4, seed=s)
        w.add_episode(ep)
    w.finalize()
    cache = _cache_with(tmp_path, "lerobot/tiny", src)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return cache, env


def test_parse():
    assert parse_hub_id("lerobot/pusht") == ("lerobot/pusht", None)
    assert parse_hub_id("openvla/openvla-7b@v1.0") == ("openvla/openvla-7b", "v1.0")
    for local in ("./data/x", "/abs/x", "runs", "a/b/c"):
        assert parse_hub_id(local) is None


def test_resolve_from_cache_and_revision(offline_cache):
    cache, _ = offline_cache
    snap = cache / "datasets--lerobot--tiny" / "snapshots" / REV
    assert resolve("lerobot/tiny") == snap
    assert resolve(f"lerobot/tiny@{REV}") == snap


def test_local_path_wins(tmp_path, monkeypatch, offline_cache):
    local = tmp_path / "lerobot" / "tiny"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert str(resolve("lerobot/tiny")) == "lerobot/tiny"
    assert not is_hub_id("lerobot/tiny")


def test_missing_id_names_it_and_the_download_command(offline_cache):
    with pytest.raises(HubNotFoundError) as e:
        resolve("lerobot/absent@v2")
    msg = str(e.value)
    assert "'lerobot/absent'" in msg and "revision 'v2'" in msg
    assert "huggingface-cli download --repo-type dataset lerobot/absent --revision v2" in msg
    with pytest.raises(HubNotFoundError, match="huggingface-cli download openvla/absent"):
        resolve("openvla/absent", "model")


def test_load_policy_names_a_missing_model(offline_cache):
    from oft import load_policy

    with pytest.raises(FileNotFoundError, match="huggingface-cli download openvla/nothing-here"):
        load_policy("openvla/nothing-here")


def test_stats_and_train_from_the_cache_offline(offline_cache, tmp_path):
    """``oft stats lerobot/tiny`` and ``oft train --dataset lerobot/tiny`` with HF_HUB_OFFLINE=1."""
    _, env = offline_cache
    cli = [sys.executable, "-m", "oft.cli"]
    stats = subprocess.run([*cli, "stats", "lerobot/tiny", "--out", str(tmp_path / "s.json")], env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert stats.returncode == 0, stats.stderr[-2000:]
    assert (tmp_path / "s.json").exists()
    train = subprocess.run([*cli, "train", "--preset", "metaworld-tiny", "--base", "tiny", "--dataset",
                            "lerobot/tiny", "--out", str(tmp_path / "run"), "--steps", "2", "--set",
                            "batch_size=2", "--set", "device=cpu", "--set", "num_threads=1", "--set",
                            "data_loader=stream", "--set", "num_workers=1"],
                           env=env, capture_output=True, text=True)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    missing = subprocess.run([*cli, "stats", "lerobot/absent"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "huggingface-cli download --repo-type dataset lerobot/absent" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_hub_checkpoint_gets_its_own_dtype_and_statistics_key(offline_cache, tmp_path):
    """``checkpoint_dtype`` and ``saved_unnorm_key`` read ``Path("org/name")``, which does not exist, so
    every command loading a Hub id defaulted to float32 (a bf16 7B model in twice its memory)."""
    import numpy as np
    import torch
    from huggingface_hub import constants

    from oft.data.normalize import NormStats, Stats
    from oft.model import build_policy
    from oft.model.loading import checkpoint_dtype, saved_unnorm_key
    from oft.spec import get_spec

    spec = get_spec("libero")

    def stats(dim: int) -> Stats:
        o = np.ones(dim)
        return Stats(mean=0 * o, std=o, min=-2 * o, max=2 * o, q01=-o, q99=o)

    norm = NormStats(action=stats(spec.action_dim), proprio=stats(spec.proprio_dim))
    policy = build_policy(spec, norm, ["pick up the block"], arch="tiny")
    policy.set_dataset_stats({"my_data": norm}, "my_data")
    policy.to(torch.bfloat16).save(tmp_path / "ckpt")
    cache = _cache_with(tmp_path / "m", "someone/tiny-oft", tmp_path / "ckpt", repo_type="model")
    constants.HF_HUB_CACHE = str(cache)  # restored by offline_cache's monkeypatch
    assert checkpoint_dtype("someone/tiny-oft") == torch.bfloat16
    assert saved_unnorm_key("someone/tiny-oft") == saved_unnorm_key(tmp_path / "ckpt") == "my_data"


def test_every_option_that_takes_a_hub_id_keeps_its_text():
    """`oft eval --checkpoint` and `oft probe-instructions --checkpoint` parsed with ``type=Path``, which on
    Windows turns ``openvla/openvla-7b`` into ``openvla\\openvla-7b``, no longer a Hub id. Every checkpoint,
    base or dataset argument of every command keeps the text as given."""

    from oft.cli import COMMANDS, build_parser, command_parser

    checked = []
    for command in COMMANDS:
        parser = build_parser([command])
        sub = command_parser(parser, command)
        for action in sub._actions:
            if action.dest in ("checkpoint", "base", "dataset"):
                assert action.type is None, f"oft {command} {action.dest}: type {action.type}"
                checked.append(f"{command} {action.dest}")
    expected = {"eval checkpoint", "probe-instructions checkpoint", "serve checkpoint", "train base"}
    assert expected <= set(checked)
