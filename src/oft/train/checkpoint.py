"""Training checkpoints: self-describing, atomic, pruned, resumable.

A checkpoint is a directory ``<out>/checkpoints/step_XXXXXXX/`` holding

* everything ``Policy.save`` writes (config, weights or LoRA adapter + heads/projectors/FiLM, norm stats,
  tokenizer, robot spec), so ``oft.load_policy(<that dir>)`` needs nothing else;
* ``train_config.json``: the :class:`TrainConfig` of the run;
* ``trainer_state.pt``: step, optimizer and scheduler state, and under ``ema_decay`` the optimizer's own
  weights (``oft.train.ema``: the policy's weights are then the average); tensors only, loadable with
  ``torch.load(weights_only=True)``;
* ``resume_state.json``: per-rank RNG states (python, numpy, torch, CUDA) and data-loader positions.

It is written under a temporary name and renamed into place, so a run killed mid-write (SIGKILL, OOM, a
preempted node) never leaves a half-written directory that ``--resume`` would trust: a ``.tmp-*`` directory
is ignored and removed by the next run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINER_STATE = "trainer_state.pt"
RESUME_STATE = "resume_state.json"
TRAIN_CONFIG = "train_config.json"


def checkpoint_step(path: str | Path | None) -> int | None:
    """The step of a checkpoint directory named as :class:`CheckpointManager` names them (``step_0008000``
    -> 8000), else None (an export, a Hub snapshot, ``"expert"``)."""
    m = _STEP_DIR.match(Path(path).name) if path else None
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) generator states as JSON-safe values."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return to_jsonable(state)


def restore_rng_state(state: dict) -> None:
    state = from_jsonable(state)
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def to_jsonable(obj):
    """Tuples -> lists, numpy arrays / tensors -> tagged lists, so RNG and loader states fit in JSON.

    JSON rather than pickle: a checkpoint directory is something people download and share, and loading it
    must not execute code.
    """
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": obj.cpu().tolist(), "dtype": str(obj.dtype).removeprefix("torch.")}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_jsonable(obj):
    """Inverse of :func:`to_jsonable` for the tagged arrays (tuples come back as lists)."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return torch.tensor(obj["__tensor__"], dtype=getattr(torch, obj["dtype"]))
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- the manager
@dataclass
class CheckpointManager:
    """Writes ``<out>/checkpoints/step_XXXXXXX`` directories atomically and keeps the last ``keep_last``."""

    out_dir: Path
    keep_last: int = 3

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.root = self.out_dir / "checkpoints"

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:07d}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, path), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            step = checkpoint_step(p)
            if step is not None and p.is_dir() and (p / TRAINER_STATE).is_file():
                found.append((step, p))
        return sorted(found)

    def latest(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1][1] if ckpts else None

    def clean_partial(self) -> None:
        """Remove directories a killed run left half-written."""
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith((".tmp-", ".old-")):
                    log.info("removing partial checkpoint %s", p)
                    shutil.rmtree(p, ignore_errors=True)

    def save(self, step: int, write_fn) -> Path:
        """Call ``write_fn(tmp_dir)`` to fill a temporary directory, then rename it into place and prune."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path_for(step)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        write_fn(tmp)
        from oft.checksums import update_checksums

        update_checksums(tmp, changed=())  # Policy.save hashed the policy; add the trainer's files
        _fsync_tree(tmp)
        if final.exists():  # re-saving a step (e.g. the end of a resumed run that was already finished)
            old = self.root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        self.prune()
        log.info("saved checkpoint %s", final)
        return final

    def prune(self) -> None:
        ckpts = self.checkpoints()
        for _, path in ckpts[: max(0, len(ckpts) - self.keep_last)]:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush file contents before the rename publishes them (a crash must not expose empty files)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# --------------------------------------------------------------------------- trainer state files
def write_trainer_state(
    path: Path,
    step: int,
    optimizer,
    scheduler,
    rank_states: list[dict],
    extra: dict | None = None,
    train_seconds: float | None = None,
) -> None:
    """``rank_states``: one JSON-safe dict per rank (RNG + loader position), gathered to rank 0.
    ``extra``: more tensors to keep (``oft.train.ema``: the optimizer's own weights when the checkpoint
    serves an average). ``train_seconds``: the run's wall seconds up to this checkpoint, resumed segments
    included, so a resumed run spends only what is left of ``max_minutes``."""
    tensors = {"step": int(step), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save({**tensors, **(extra or {})}, path / TRAINER_STATE)
    resume = {"step": int(step), "world_size": len(rank_states), "ranks": rank_states}
    if train_seconds is not None:
        resume["train_seconds"] = float(train_seconds)
    (path / RESUME_STATE).write_text(json.dumps(resume))


def read_trainer_state(path: Path) -> tuple[dict, dict]:
    """(tensor state, resume state) of checkpoint ``path``; tensors load with ``weights_only=True``."""
    state = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=True)
    resume = json.loads((path / RESUME_STATE).read_text())
    return state, resume


__all__ = [
    "RESUME_STATE",
    "TRAINER_STATE",
    "TRAIN_CONFIG",
    "CheckpointManager",
    "capture_rng_state",
    "checkpoint_step",
    "from_jsonable",
    "read_trainer_state",
    "restore_rng_state",
    "to_jsonable",
    "write_trainer_state",
]
