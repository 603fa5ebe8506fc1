"""Issue 13: checkpoints and datasets oft writes carry sha256 checksums; `oft verify` and load_policy check
them.

Fails on main 4f85ac9 (no checksums were written, nothing verified: flipped bytes in a weight file loaded as
a silently different policy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.checksums import CHECKSUMS_FILE, ChecksumError, verify, write_checksums
from oft.cli import main
from oft.data.normalize import NormStats, Stats
from oft.spec import get_spec


def _policy():
    from oft.model import build_policy

    torch.manual_seed(0)
    spec = get_spec("libero")
    o = np.ones(spec.action_dim)
    p = np.ones(spec.proprio_dim)
    stats = NormStats(
        action=Stats(0 * o, o, -2 * o, 2 * o, -o, o), proprio=Stats(0 * p, p, -2 * p, 2 * p, -p, p)
    )
    return build_policy(spec, stats, ["pick up the block"], arch="tiny")


def _flip(path: Path, offset: int | None = None, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    for k in range(n):
        data[at + k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_saved_policy_carries_checksums_and_load_verifies_them(tmp_path):
    path = _policy().save(tmp_path / "p")
    record = json.loads((path / CHECKSUMS_FILE).read_text())
    assert set(record["files"]) == {"oft_config.json", "tokenizer.json", "model.safetensors"}
    load_policy(path)
    _flip(path / "model.safetensors")  # decodes fine: a silently different policy without checksums
    load_policy(path, verify=False)
    with pytest.raises(ChecksumError, match=r"model\.safetensors: sha256 .* contents changed") as e:
        load_policy(path)
    assert "\n" not in str(e.value)


def test_training_checkpoint_and_export_carry_checksums(tmp_path):
    from oft.train.checkpoint import TRAINER_STATE, CheckpointManager
    from oft.train.export import export_reference

    policy = _policy()

    def write(tmp: Path) -> None:
        policy.save(tmp)
        torch.save({"step": torch.tensor(3)}, tmp / TRAINER_STATE)

    ckpt = CheckpointManager(tmp_path / "run").save(3, write)
    assert TRAINER_STATE in json.loads((ckpt / CHECKSUMS_FILE).read_text())["files"]
    assert verify(ckpt).ok
    _flip(ckpt / TRAINER_STATE, offset=0, n=4)
    load_policy(ckpt)  # load_policy checks only what a policy is made of
    assert [p for p, _ in verify(ckpt).problems] == [TRAINER_STATE]

    out = export_reference(policy, tmp_path / "export")
    assert verify(out).ok and load_policy(out) is not None
    (pt,) = out.glob("action_head--*.pt")
    _flip(pt, n=1)
    with pytest.raises(ChecksumError, match=pt.name):
        load_policy(out)


def test_oft_verify_cli(tmp_path, capsys):
    path = _policy().save(tmp_path / "p")
    assert main(["verify", str(path)]) == 0
    assert "OK, 3 files" in capsys.readouterr().out
    _flip(path / "model.safetensors")
    (path / "tokenizer.json").unlink()
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path / 'model.safetensors'}: sha256" in out and f"{path / 'tokenizer.json'}: missing" in out
    assert main(["verify", str(path), "--rewrite"]) == 0
    assert main(["verify", str(path)]) == 0
    assert main(["verify", str(tmp_path)]) == 2  # nothing recorded there: one line, not a traceback
    assert "carries no checksums" in capsys.readouterr().err


def test_write_checksums_is_atomic_and_skips_temporaries(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin.tmp-123").write_bytes(b"half")
    write_checksums(tmp_path)
    record = json.loads((tmp_path / CHECKSUMS_FILE).read_text())
    assert list(record["files"]) == ["a.bin"] and record["algorithm"] == "sha256"
    assert not list(tmp_path.glob(f"{CHECKSUMS_FILE}.tmp*"))
