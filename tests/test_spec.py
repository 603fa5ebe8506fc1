from __future__ import annotations

import numpy as np
import pytest

from oft import Observation, RobotSpec, get_spec
from oft.spec import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip(name):
    spec = get_spec(name)
    assert RobotSpec.from_dict(spec.to_dict()) == spec
    assert len(spec.mask) == spec.action_dim


def test_paper_sizes():
    libero, aloha = get_spec("libero"), get_spec("aloha")
    assert (libero.chunk_len, libero.action_dim, libero.proprio_dim) == (8, 7, 8)
    assert (aloha.chunk_len, aloha.action_dim, aloha.num_cameras) == (25, 14, 3)
    assert get_spec("aloha").normalization == "bounds"
    assert get_spec("bridge").chunk_len == 5
    assert get_spec("metaworld").action_dim == 4


def test_unknown_preset_suggests():
    with pytest.raises(KeyError, match="Did you mean 'libero'"):
        get_spec("lbero")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"action_dim": 0}, "action_dim"),
        ({"chunk_len": -1}, "chunk_len"),
        ({"cameras": ()}, "cameras"),
        ({"cameras": ("a", "a")}, "duplicate"),
        ({"normalization": "zscore"}, "normalization"),
        ({"action_norm_mask": (True,)}, "action_norm_mask"),
    ],
)
def test_invalid_spec_names_field(changes, match):
    with pytest.raises(ValueError, match=match):
        get_spec("libero").replace(**changes)


def test_unknown_spec_field():
    d = get_spec("libero").to_dict() | {"chunk": 3}
    with pytest.raises(ValueError, match="chunk"):
        RobotSpec.from_dict(d)


def test_observation_validation():
    img = np.zeros((32, 32, 3), np.uint8)
    Observation([img, img], np.zeros(8), "x").validate(2, 8)
    with pytest.raises(ValueError, match="expected 2"):
        Observation([img], np.zeros(8), "x").validate(2, 8)
    with pytest.raises(ValueError, match=r"expected \(8,\)"):
        Observation([img, img], np.zeros(7), "x").validate(2, 8)
    with pytest.raises(ValueError, match="NaN"):
        Observation([img, img], np.full(8, np.nan), "x").validate(2, 8)
    with pytest.raises(ValueError, match="uint8"):
        Observation([img.astype(np.float32), img], np.zeros(8), "x").validate(2, 8)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Observation([img[..., :1], img], np.zeros(8), "x").validate(2, 8)


def test_conventions_are_saved_and_old_specs_load_without_them():
    from oft.conventions import CONVENTIONS

    spec = get_spec("libero").replace(conventions=CONVENTIONS["openvla_libero"])
    d = spec.to_dict()
    assert d["conventions"] == {"name": "openvla_libero", "arm": "delta", "gripper": "openvla",
                                "gripper_dims": [6], "proprio": "libero"}  # fmt: skip
    assert RobotSpec.from_dict(d) == spec
    assert RobotSpec.from_dict(d | {"conventions": "openvla_libero"}) == spec  # a registered name
    old = {k: v for k, v in d.items() if k != "conventions"}  # a checkpoint from before the field
    assert RobotSpec.from_dict(old).conventions is None
    assert {p: s.conventions.name for p, s in PRESETS.items()} == {
        "libero": "libero", "aloha": "aloha", "bridge": "openvla", "metaworld": "metaworld"
    }  # fmt: skip


def test_conventions_must_fit_the_action():
    from oft.conventions import Conventions

    with pytest.raises(ValueError, match=r"gripper in action dims \(6, 13\), outside action_dim=7"):
        get_spec("libero").replace(conventions="aloha")
    with pytest.raises(KeyError, match="Did you mean 'metaworld'"):
        get_spec("metaworld").replace(conventions="metawrld")
    with pytest.raises(ValueError, match="arm must be one of"):
        Conventions("x", "velocity", None)
    with pytest.raises(ValueError, match="gripper must be one of"):
        Conventions("x", "delta", "pneumatic", (3,))
    with pytest.raises(ValueError, match="unknown fields"):
        Conventions.from_dict({"name": "x", "arm": "delta", "gripper": None, "sign": 1})
