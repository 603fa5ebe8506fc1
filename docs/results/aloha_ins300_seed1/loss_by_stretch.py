"""Mean logged training L1 loss per 1,000-step stretch of ``oft train`` runs, and each run's decay step.

Usage: ``python loss_by_stretch.py RUN [RUN ...] > loss_by_stretch.json``. A run is the ``--out`` directory of
``oft train``; its ``metrics.jsonl`` logs ``loss`` (the mean over the last ``log_every`` steps) and
``lr``. The stretch "kk" holds the steps ``(k - 1) * 1000 + 1 .. k * 1000``; the decay step is the first
logged step whose lr is below the first logged lr.
"""

import json
import sys
from pathlib import Path

import numpy as np


def stretches(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open() if line.startswith('{"step"')]
    step = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    lr = np.array([r["lr"] for r in rows])
    by_k = {}
    for k in range(int(step.max()) // 1000 + 1):
        inside = (step > k * 1000) & (step <= (k + 1) * 1000)
        if inside.any():
            by_k[f"{k + 1}k"] = round(float(loss[inside].mean()), 4)
    decayed = lr < lr[0]
    return {
        "decay_step": int(step[np.argmax(decayed)]) if decayed.any() else None,
        "last_step": int(step.max()),
        "loss_by_1000_steps": by_k,
    }


if __name__ == "__main__":
    json.dump({arg: stretches(Path(arg)) for arg in sys.argv[1:]}, sys.stdout, indent=1)
    print()
