"""Issue 13: statistics are never guessed, and every corrupt checkpoint file is named in one line.

Each test fails on main 4f85ac9: there a fine-tune without ``dataset_statistics.json`` loaded with its
config's ``norm_stats`` silently, and corrupt files raised the readers' own errors without the file name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.checksums import CHECKSUMS_FILE, ChecksumError
from oft.data.normalize import NormStats, Stats
from oft.files import CorruptFileError
from oft.spec import get_spec


def _stats(dim: int, scale: float = 1.0) -> Stats:
    o = np.ones(dim) * scale
    return Stats(mean=0 * o, std=o, min=-2 * o, max=2 * o, q01=-o, q99=o)


def _policy(head: str = "l1"):
    from oft.model import build_policy

    torch.manual_seed(0)
    spec = get_spec("libero")
    stats = NormStats(action=_stats(spec.action_dim), proprio=_stats(spec.proprio_dim))
    return build_policy(spec, stats, ["pick up the block"], arch="tiny", head=head)


@pytest.fixture(scope="module")
def oft_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("oft") / "policy"
    _policy().save(path)
    return path


@pytest.fixture(scope="module")
def finetune_dir(tmp_path_factory) -> Path:
    """An OpenVLA-OFT fine-tune in the paper's layout, its config.json norm_stats a decoy (as the base
    model's are: other datasets)."""
    from oft.train.export import export_reference

    path = export_reference(_policy(), tmp_path_factory.mktemp("ft") / "ft", unnorm_key="my_task")
    cfg = json.loads((path / "config.json").read_text())
    decoy = {"action": {k: (np.asarray(v) * 3).tolist() if k != "mask" else v
                        for k, v in cfg["norm_stats"]["my_task"]["action"].items()}}  # fmt: skip
    cfg["norm_stats"] = {"bridge_orig": decoy, "fractal": decoy}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / CHECKSUMS_FILE).unlink()  # edited on purpose here
    return path


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dst


# ----------------------------------------------------------------------- statistics are never guessed


def test_finetune_without_its_statistics_is_refused_naming_the_file_and_what_it_found(finetune_dir, tmp_path):
    assert load_policy(finetune_dir).norm_stats.action.q99[0] == pytest.approx(1.0)  # its own file
    ft = _copy(finetune_dir, tmp_path)
    (ft / "dataset_statistics.json").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_policy(ft)
    msg = str(e.value)
    assert f"{ft / 'dataset_statistics.json'} is missing" in msg
    assert "norm_stats for ['bridge_orig', 'fractal']" in msg and "unnorm_key" in msg
    # asked for explicitly, one of the config's statistics is used (and only then)
    policy = load_policy(ft, unnorm_key="fractal")
    assert policy.norm_stats.action.q99[0] == pytest.approx(3.0)


def test_plain_openvla_directory_still_uses_its_config_statistics(tmp_path):
    from oft.train.export import export_reference

    path = export_reference(_policy(head="discrete"), tmp_path / "openvla", unnorm_key="bridge_orig")
    (path / "dataset_statistics.json").unlink(missing_ok=True)  # OpenVLA's statistics live in config.json
    policy = load_policy(path, verify=False)
    assert policy.config.head == "discrete" and policy.norm_stats.action.q99[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------- corrupt files are named


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(2048))


@pytest.mark.parametrize("damage", [_truncate, _garbage])
@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_corrupt_oft_checkpoint_files_are_named(oft_dir, tmp_path, name, damage):
    ckpt = _copy(oft_dir, tmp_path)
    damage(ckpt / name)
    with pytest.raises(CorruptFileError) as e:
        load_policy(ckpt, verify=False)  # the reader itself names the file, checksums or not
    assert str(ckpt / name) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ChecksumError, match=name):  # and the checksums catch it first
        load_policy(ckpt)


@pytest.mark.parametrize(
    ("value", "match"),
    [({"text_config": {"hidden_size": "wide"}}, "wrongly typed"), ({"timm_model_ids": 5}, "wrongly typed")],
)
def test_wrongly_typed_config_values_name_the_config(finetune_dir, tmp_path, value, match):
    ft = _copy(finetune_dir, tmp_path)
    cfg = json.loads((ft / "config.json").read_text())
    for k, v in value.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    (ft / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptFileError, match=match) as e:
        load_policy(ft)
    assert e.value.path == ft / "config.json"


def test_wrongly_typed_oft_config_is_named(oft_dir, tmp_path):
    ckpt = _copy(oft_dir, tmp_path)
    meta = json.loads((ckpt / "oft_config.json").read_text())
    meta["norm_stats"]["action"]["q99"] = "high"
    (ckpt / "oft_config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError) as e:
        load_policy(ckpt, verify=False)
    assert e.value.path == ckpt / "oft_config.json"


class _Payload:
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_pickled_pt_component_is_refused_in_one_line(finetune_dir, tmp_path, capsys):
    ft = _copy(finetune_dir, tmp_path)
    (pt,) = ft.glob("action_head--*.pt")
    torch.save({"fc.weight": torch.zeros(2), "evil": _Payload()}, pt)
    with pytest.raises(CorruptFileError) as e:
        load_policy(ft)
    msg = str(e.value)
    assert msg.startswith(f"{pt}: holds non-tensor data") and "refused for safety" in msg
    assert "\n" not in msg and "weights_only=False" not in msg
    assert "this ran" not in capsys.readouterr().out
    _truncate(pt)
    with pytest.raises(CorruptFileError, match=f"{pt.name}: unreadable torch file"):
        load_policy(ft)


def test_corrupt_adapter_is_named(tmp_path):
    from oft.model.lora import LoraSpec
    from oft.train.export import export_reference

    policy = _policy()
    from oft.model.lora import apply_lora

    apply_lora(policy.vla, LoraSpec(rank=2, alpha=2, dropout=0.0))
    policy.config.lora = {"rank": 2, "alpha": 2, "targets": []}
    path = export_reference(policy, tmp_path / "ad", mode="adapter")
    adapter = path / "lora_adapter" / "adapter_model.safetensors"
    _truncate(adapter)
    with pytest.raises(CorruptFileError) as e:
        load_policy(path, verify=False)
    assert e.value.path == adapter
    with pytest.raises(ChecksumError, match=r"adapter_model\.safetensors"):
        load_policy(path)


def test_sharded_checkpoint_names_the_bad_shard(finetune_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    ft = _copy(finetune_dir, tmp_path)
    sd = load_file(str(ft / "model.safetensors"))
    keys = sorted(sd)
    half = len(keys) // 2
    shards = {
        "model-00001-of-00002.safetensors": keys[:half],
        "model-00002-of-00002.safetensors": keys[half:],
    }
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(ft / name))
    index = {"weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (ft / "model.safetensors.index.json").write_text(json.dumps(index))
    (ft / "model.safetensors").unlink()
    load_policy(ft)  # sharded loads
    _truncate(ft / "model-00002-of-00002.safetensors")
    with pytest.raises(CorruptFileError) as e:
        load_policy(ft)
    assert e.value.path == ft / "model-00002-of-00002.safetensors"
    (ft / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00002\.safetensors"):
        load_policy(ft)


def test_cli_prints_one_line(oft_dir, tmp_path, capsys):
    from oft.cli import main

    ckpt = _copy(oft_dir, tmp_path)
    _garbage(ckpt / "model.safetensors")
    (ckpt / CHECKSUMS_FILE).unlink()
    assert main(["info", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(ckpt / "model.safetensors") in err
