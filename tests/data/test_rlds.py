"""RLDS lives behind the optional 'rlds' extra."""

from __future__ import annotations

import importlib.util
import json

import pytest

from oft.data import open_dataset
from oft.data.formats import detect_format

HAS_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None


def _fake_rlds_dir(path):
    path.mkdir()
    (path / "dataset_info.json").write_text(json.dumps({"name": "fake"}))
    (path / "features.json").write_text("{}")
    return path


@pytest.mark.skipif(HAS_TFDS, reason="tensorflow_datasets is installed; the missing-extra error cannot occur")
def test_missing_extra_is_named(tmp_path):
    path = _fake_rlds_dir(tmp_path / "rlds")
    assert detect_format(path) == "rlds"
    with pytest.raises(ImportError, match=r"oft\[rlds\]"):
        open_dataset(path)


@pytest.mark.skipif(not HAS_TFDS, reason="needs the 'rlds' extra (tensorflow-datasets), not installed")
def test_rlds_directory_is_detected(tmp_path):
    path = _fake_rlds_dir(tmp_path / "rlds")
    assert detect_format(path) == "rlds"


def test_rlds_conventions_follow_the_stored_actions():
    """The RLDS reader does not run OpenVLA's transforms: LIBERO's RLDS files hold LIBERO's raw gripper."""
    from oft.conventions import CONVENTIONS
    from oft.data.rlds import rlds_conventions

    assert rlds_conventions("libero_spatial_no_noops", 7) == CONVENTIONS["libero"]
    assert rlds_conventions("bridge_orig", 7) == CONVENTIONS["openvla"]
    assert rlds_conventions("aloha_put_x_into_pot", 14) == CONVENTIONS["aloha"]
    assert rlds_conventions("fractal20220817_data", 7) is None
    assert rlds_conventions("libero_10", 14) is None  # not the 7-D LIBERO action
