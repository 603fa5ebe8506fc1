"""``ema_decay``: checkpoints serve an exponential moving average of the weights; training and ``--resume``
follow the optimizer's own weights, so the average changes what is served and nothing else."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from oft.train.checkpoint import CheckpointManager
from oft.train.ema import RAW_WEIGHTS, WeightEMA
from oft.train.loop import train

from .conftest import make_episodes, tiny_config

STEPS, DECAY = 4, 0.2  # the warm-up's decays 0.1, 0.18, then the cap 0.2: both rules run
FROZEN = {"freeze_token_embeddings": True}  # a weight that does not train, so is not averaged


def _decay(updates: int) -> float:
    return min(DECAY, (1 + updates) / (10 + updates))


def _data():
    from oft.data.dataset import ListDataset

    return ListDataset(make_episodes(n=4, length=16))


def _run(out, steps=STEPS, resume=False, **settings):
    cfg = tiny_config(max_steps=steps, save_every=1, keep_last=10, **FROZEN, **settings)
    return train(cfg, out, resume=resume, dataset=_data())


def _served(out, step):
    return load_file(str(CheckpointManager(out).path_for(step) / "model.safetensors"))


def _ema_state(out, step):
    return torch.load(CheckpointManager(out).path_for(step) / "trainer_state.pt", weights_only=True)


def _raw(out, step):
    return _ema_state(out, step)[RAW_WEIGHTS]


def test_weight_ema_averages_trainable_weights_and_lends_them_only_inside_applied():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    module[1].weight.requires_grad_(False)
    ema = WeightEMA(module, decay=0.75)
    assert [n for n, _ in ema.named] == ["0.weight", "0.bias", "1.bias"]
    start = module[0].weight.detach().clone()
    with torch.no_grad():
        module[0].weight.add_(4.0)
    ema.update()  # warm-up: decay 1/10 at the first update
    torch.testing.assert_close(ema.average[0], start + 3.6)  # 0.1 * w0 + 0.9 * (w0 + 4)
    with ema.applied():
        torch.testing.assert_close(module[0].weight, start + 3.6)
    torch.testing.assert_close(module[0].weight, start + 4.0)
    decays = []
    for _ in range(30):
        decays.append(ema.current_decay())
        ema.update()
    assert decays[0] == pytest.approx(2 / 11) and max(decays) == 0.75 and decays == sorted(decays)
    with pytest.raises(ValueError, match=r"ema decay=1\.0 .*\(0, 1\)"):
        WeightEMA(module, decay=1.0)


def test_a_bf16_model_is_averaged_in_float32():
    """(1 - decay) * (w - ema) is far below a bf16 rounding step: a bf16 average would never move."""
    module = torch.nn.Linear(4, 4).to(torch.bfloat16)
    with torch.no_grad():
        module.weight.fill_(0.5)
    ema = WeightEMA(module, decay=0.999)
    with torch.no_grad():
        module.weight.fill_(0.625)
    for _ in range(2000):
        ema.update()
    moved = float(ema.average[0].mean())
    assert ema.average[0].dtype == torch.float32 and 0.6 < moved < 0.625, moved
    with ema.applied():
        assert module.weight.dtype == torch.bfloat16
        assert float(module.weight.detach().float().mean()) == pytest.approx(moved, abs=4e-3)


def test_checkpoints_serve_the_average_of_the_weights_training_follows(tmp_path):
    plain, averaged = tmp_path / "plain", tmp_path / "ema"
    _run(plain)
    _run(averaged, ema_decay=DECAY)
    raw_names = set(_raw(averaged, 1))
    frozen = [n for n in _served(plain, 1) if "embed_tokens" in n]
    assert raw_names and frozen and not raw_names & set(frozen), (sorted(raw_names)[:3], frozen)
    for step in range(1, STEPS + 1):
        weights, raw, served = _served(plain, step), _raw(averaged, step), _served(averaged, step)
        for name, value in raw.items():  # the average does not change what the optimizer does
            assert torch.equal(value, weights[name]), f"{name} at step {step}: EMA changed training"
        for name in weights.keys() - raw_names:  # what does not train (and buffers) is served as it is
            assert torch.equal(served[name], weights[name]), name
        assert torch.equal(_ema_state(averaged, step)["ema_updates"], torch.tensor(step))
        if step == 1:
            continue
        before, d = _served(averaged, step - 1), _decay(step - 1)
        for name in raw_names:  # served(s) = d * served(s - 1) + (1 - d) * weights(s)
            expected = d * before[name] + (1 - d) * weights[name]
            torch.testing.assert_close(served[name], expected, msg=f"{name} at step {step}")
    assert any(not torch.equal(_served(averaged, STEPS)[n], _raw(averaged, STEPS)[n]) for n in raw_names)

    from oft import load_policy

    policy = load_policy(CheckpointManager(averaged).latest())  # what oft eval / serve read: the average
    loaded = dict(policy.named_parameters())
    served = _served(averaged, STEPS)
    assert raw_names <= loaded.keys()
    assert all(torch.equal(loaded[n].detach(), served[n]) for n in raw_names)


def test_resume_continues_the_optimizer_weights_and_the_average(tmp_path, caplog):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    with caplog.at_level(logging.INFO, logger="oft.train.loop"):
        _run(straight, ema_decay=DECAY)
    assert f"ema_decay={DECAY:g}: checkpoints serve the average" in caplog.text  # the user sees it is on
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


def test_ema_turned_on_at_a_resume_starts_at_the_resumed_weights(tmp_path):
    plain, switched = tmp_path / "plain", tmp_path / "switched"
    _run(plain)
    _run(switched, steps=2)
    _run(switched, resume=True, ema_decay=DECAY)
    resumed_at, weights = _served(plain, 2), _served(plain, 3)
    for name, value in _raw(switched, STEPS).items():  # training is the plain run's
        assert torch.equal(value, _served(plain, STEPS)[name]), name
    served = _served(switched, 3)  # one update of an average that starts at step 2's weights
    for name in _raw(switched, 3):
        expected = _decay(0) * resumed_at[name] + (1 - _decay(0)) * weights[name]
        torch.testing.assert_close(served[name], expected, msg=name)
