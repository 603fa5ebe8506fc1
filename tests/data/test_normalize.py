from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oft.data.normalize import NormStats, Stats, normalize, unnormalize


def _stats(lo, hi, mask=None):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Stats(mean=(lo + hi) / 2, std=hi - lo, min=lo - 1, max=hi + 1, q01=lo, q99=hi, mask=mask)


def test_q99_clip_mask_and_zero_range():
    s = _stats([0.0, -1.0, 2.0, 0.0], [1.0, 1.0, 2.0, 1.0], mask=[True, True, True, False])
    x = np.array([[0.5, 3.0, 2.0, 0.7]])
    n = normalize(x, s, "bounds_q99")
    np.testing.assert_allclose(n, [[0.0, 1.0, 0.0, 0.7]], atol=1e-7)  # clip; zero range -> 0; mask off
    back = unnormalize(n, s, "bounds_q99")
    np.testing.assert_allclose(back[0, [0, 3]], [0.5, 0.7], atol=1e-7)
    np.testing.assert_allclose(back[0, 1], 1.0, atol=1e-7)  # clipped value comes back at the bound


def test_torch_matches_numpy():
    rng = np.random.default_rng(0)
    s = _stats(rng.normal(size=5) - 1, rng.normal(size=5) + 1, mask=[True, False, True, True, True])
    x = rng.normal(size=(3, 5)) * 2
    for kind in ("bounds_q99", "bounds"):
        n_np = normalize(x, s, kind)
        n_t = normalize(torch.tensor(x), s, kind)
        np.testing.assert_allclose(n_t.numpy(), n_np, atol=1e-12)
        back = unnormalize(torch.tensor(n_np), s, kind).numpy()
        np.testing.assert_allclose(back, unnormalize(n_np, s, kind))


def test_reference_proprio_normalization(shared_fixtures):
    """The fixture's proprio_normalized was computed by the paper's `normalize_proprio`."""
    from safetensors.numpy import load_file

    d = shared_fixtures / "openvla-oft-tiny-libero"
    stats = json.loads((d / "dataset_statistics.json").read_text())["libero_spatial_no_noops"]
    case = load_file(str(d / "case.safetensors"))
    ns = NormStats.from_dict(stats)
    # the reference normalizes every proprio dim (its proprio stats carry no mask)
    got = normalize(case["proprio_raw"], ns.proprio, "bounds_q99", mask=np.ones(8, bool))
    np.testing.assert_allclose(got, case["proprio_normalized"], atol=1e-12)
    got_actions = unnormalize(case["normalized_actions"].astype(np.float64), ns.action, "bounds_q99")
    np.testing.assert_allclose(got_actions, case["actions"], atol=1e-6)


def test_missing_stats_key_is_named():
    with pytest.raises(ValueError, match="q99"):
        Stats.from_dict({"mean": [0], "std": [1], "min": [0], "max": [1], "q01": [0]})
    with pytest.raises(ValueError, match="action"):
        NormStats.from_dict({"proprio": {}})


def test_flat_dims_rules():
    """Equal bounds: oft's policies feed 0 ("zero"); the paper's checkpoints feed the reference deployment's
    clipped formula ("clip": -1 at x == lo, else ±1 by sign), masked-off dims clipped too, as there."""
    s = _stats([0.0, 2.0, 2.0, 0.0], [1.0, 2.0, 2.0, 1.0], mask=[True, True, True, False])
    x = np.array([[0.5, 2.0, 2.5, 3.0]])
    np.testing.assert_allclose(normalize(x, s, "bounds_q99"), [[0.0, 0.0, 0.0, 3.0]], atol=1e-7)
    clip = Stats(**{k: getattr(s, k) for k in ("mean", "std", "min", "max", "q01", "q99")}, mask=s.mask,
                 flat_dims="clip")  # fmt: skip
    np.testing.assert_allclose(normalize(x, clip, "bounds_q99"), [[0.0, -1.0, 1.0, 1.0]], atol=1e-7)
    n_t = normalize(torch.tensor(x), clip, "bounds_q99").numpy()
    np.testing.assert_allclose(n_t, [[0.0, -1.0, 1.0, 1.0]], atol=1e-7)
    assert "flat_dims" not in s.to_dict()  # oft's default keeps the files it always wrote
    assert Stats.from_dict(clip.to_dict()).flat_dims == "clip"
    with pytest.raises(ValueError, match="flat_dims"):
        Stats.from_dict({**s.to_dict(), "flat_dims": "nan"})
