"""``ema_decay``: checkpoints serve an exponential moving average of the weights; training and ``--resume``
follow the optimizer's own weights, so the average changes what is served and nothing else."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from oft.train.checkpoint import CheckpointManager
from oft.train.ema import RAW_WEIGHTS, WeightEMA
from oft.train.loop import train

from .conftest import make_episodes, tiny_config

STEPS, DECAY = 4, 0.5


def _data():
    from oft.data.dataset import ListDataset

    return ListDataset(make_episodes(n=4, length=16))


def _run(out, steps=STEPS, resume=False, **settings):
    cfg = tiny_config(max_steps=steps, save_every=1, keep_last=10, **settings)
    return train(cfg, out, resume=resume, dataset=_data())


def _served(out, step):
    return load_file(str(CheckpointManager(out).path_for(step) / "model.safetensors"))


def _raw(out, step):
    state = torch.load(CheckpointManager(out).path_for(step) / "trainer_state.pt", weights_only=True)
    return state[RAW_WEIGHTS]


def test_weight_ema_averages_trainable_weights_and_lends_them_only_inside_applied():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    module[1].weight.requires_grad_(False)
    ema = WeightEMA(module, decay=0.75)
    assert [n for n, _ in ema.named] == ["0.weight", "0.bias", "1.bias"]
    start = module[0].weight.detach().clone()
    with torch.no_grad():
        module[0].weight.add_(4.0)
    ema.update()
    torch.testing.assert_close(ema.average[0], start + 1.0)  # 0.75 * w0 + 0.25 * (w0 + 4)
    with ema.applied():
        torch.testing.assert_close(module[0].weight, start + 1.0)
    torch.testing.assert_close(module[0].weight, start + 4.0)
    with pytest.raises(ValueError, match=r"ema decay=1\.0 .*\(0, 1\)"):
        WeightEMA(module, decay=1.0)


def test_checkpoints_serve_the_average_of_the_weights_training_follows(tmp_path):
    plain, averaged = tmp_path / "plain", tmp_path / "ema"
    _run(plain)
    _run(averaged, ema_decay=DECAY)
    raw_names = set(_raw(averaged, 1))
    assert raw_names, "no trainable weights were kept"
    for step in range(1, STEPS + 1):
        weights, raw, served = _served(plain, step), _raw(averaged, step), _served(averaged, step)
        for name, value in raw.items():  # the average does not change what the optimizer does
            assert torch.equal(value, weights[name]), f"{name} at step {step}: EMA changed training"
        for name in weights.keys() - raw_names:  # what does not train is served as it is
            assert torch.equal(served[name], weights[name]), name
        if step == 1:
            continue
        before = _served(averaged, step - 1)
        for name in raw_names:  # served(s) = decay * served(s - 1) + (1 - decay) * weights(s)
            expected = DECAY * before[name] + (1 - DECAY) * weights[name]
            torch.testing.assert_close(served[name], expected, msg=f"{name} at step {step}")
    assert any(not torch.equal(_served(averaged, STEPS)[n], _raw(averaged, STEPS)[n]) for n in raw_names)

    from oft import load_policy

    policy = load_policy(CheckpointManager(averaged).latest())  # what oft eval / serve read: the average
    loaded = dict(policy.named_parameters())
    served = _served(averaged, STEPS)
    assert all(torch.equal(loaded[n].detach(), served[n]) for n in raw_names if n in loaded)


def test_resume_continues_the_optimizer_weights_and_the_average(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(straight, ema_decay=DECAY)
    _run(resumed, steps=2, ema_decay=DECAY)
    _run(resumed, resume=True, ema_decay=DECAY)
    for name, value in _raw(straight, STEPS).items():
        assert torch.equal(_raw(resumed, STEPS)[name], value), f"raw {name} differs after resume"
    a, b = _served(straight, STEPS), _served(resumed, STEPS)
    for name, value in a.items():
        assert torch.equal(b[name], value), f"served {name} differs after resume"


def test_resume_without_ema_continues_from_the_optimizer_weights_not_the_average(tmp_path):
    plain, switched = tmp_path / "plain", tmp_path / "switched"
    _run(plain)
    _run(switched, steps=2, ema_decay=DECAY)
    _run(switched, resume=True)  # ema_decay=None from here: the average is dropped
    a, b = _served(plain, STEPS), _served(switched, STEPS)
    for name, value in a.items():
        assert torch.equal(b[name], value), f"{name}: resumed from the average instead of the weights"
    state = torch.load(CheckpointManager(switched).path_for(STEPS) / "trainer_state.pt", weights_only=True)
    assert RAW_WEIGHTS not in state
