"""TrainConfig.compile: the training loop compiles the trunk (vision backbone + LLM) when asked, only then."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("compile_", [False, True])
def test_train_compiles_the_trunk_only_when_asked(compile_, tmp_path, monkeypatch):
    from tests.train.conftest import make_episodes, tiny_config

    import oft.bench.latency as latency
    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    compiled = []
    monkeypatch.setattr(latency, "compile_trunk", lambda policy: compiled.append(policy))
    cfg = tiny_config(max_steps=1, save_every=1, compile=compile_)
    train(cfg, tmp_path, dataset=ListDataset(make_episodes(n=2, length=12)))
    assert len(compiled) == int(compile_)
