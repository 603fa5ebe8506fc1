"""`oft train` end to end on a tiny dataset: the checkpoint loads with `oft.load_policy` and predicts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import oft
from oft.cli import main
from oft.observation import Observation
from oft.train.checkpoint import CheckpointManager


def test_oft_train_writes_a_loadable_checkpoint(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        ["train", "--preset", "metaworld-tiny", "--dataset", str(tiny_dataset_dir), "--out", str(out),
         "--steps", "4", "--base", "tiny", "--set", "batch_size=4", "--set", "save_every=2",
         "--set", "num_threads=1", "--set", "keep_last=1"]
    )  # fmt: skip
    assert rc == 0
    ckpts = CheckpointManager(out).checkpoints()
    assert [s for s, _ in ckpts] == [4]  # keep_last=1 pruned step 2
    path = ckpts[-1][1]
    assert json.loads((path / "train_config.json").read_text())["max_steps"] == 4
    assert (out / "loss_curve.png").is_file() and (out / "metrics.jsonl").is_file()
    assert any((out / "tb").iterdir())
    policy = oft.load_policy(path)
    # the policy knows the frames it was trained on (32 px, stored) and its crop (augmentation is on)
    assert policy.render_sizes == {c: (32, 32) for c in policy.spec.cameras}
    assert policy.config.center_crop and policy.image_pipeline.train_crop_scale == policy.config.crop_scale
    rng = np.random.default_rng(1)
    obs = Observation([rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(2)],
                      rng.normal(size=4).astype(np.float32), "open the drawer number 1")  # fmt: skip
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (policy.spec.chunk_len, 4) and np.isfinite(chunk).all()
    assert "checkpoint:" in capsys.readouterr().out
    # the run directory stands for its newest checkpoint
    np.testing.assert_array_equal(oft.load_policy(out).predict_action_chunk(obs), chunk)


def test_bad_value_is_refused_before_any_work(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["train", "--dataset", str(tiny_dataset_dir), "--out", str(out), "--set", "batch_size=-2"])
    assert rc == 2 and not out.exists()
    assert "TrainConfig.batch_size" in capsys.readouterr().err
    rc = main(["train", "--preset", "metaworld-tinny", "--dataset", str(tiny_dataset_dir), "--out", str(out)])
    assert rc == 2 and "Did you mean 'metaworld-tiny'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["train", "--dataset", str(tiny_dataset_dir)])


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    import torch
    from safetensors.torch import load_file

    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    torch.set_num_threads(1)
    runs = [
        train(
            tiny_config(max_steps=2, augment=False, grad_checkpointing=gc),
            tmp_path / str(gc),
            dataset=ListDataset(make_episodes()),
        )
        for gc in (False, True)
    ]
    a, b = (load_file(str(r.checkpoint / "model.safetensors")) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_architecture(tmp_path):
    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    data = ListDataset(make_episodes())
    train(tiny_config(max_steps=1, save_every=1), tmp_path, dataset=data)
    with pytest.raises(ValueError, match="head: 'l1' -> 'diffusion'"):
        train(tiny_config(max_steps=2, head="diffusion"), tmp_path, resume=True, dataset=data)
    more = train(
        tiny_config(max_steps=2, save_every=1), tmp_path, resume=True, dataset=data
    )  # budgets may change
    assert (more.start_step, more.step) == (1, 2)
