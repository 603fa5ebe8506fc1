"""Reach's training loss alone and beside the six fixed-target tasks, against the reach samples each run had
drawn (alone: 32 per step; the mixture: the batch times reach's weight, 0.5), from the runs' metrics.jsonl
(reach_task_loss_run.sh). Writes a table to stdout and the plot given as the third argument.

python docs/results/study_mt10/reach_task_loss.py runs/taskloss/reach_alone runs/taskloss/reach_six out.png
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REACH = "task_loss/reach the red goal position"
alone_dir, mix_dir, png = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
alone = [json.loads(line) for line in (alone_dir / "metrics.jsonl").read_text().splitlines()]
mix = [json.loads(line) for line in (mix_dir / "metrics.jsonl").read_text().splitlines()]
curves = {
    "reach alone": [(r["step"] * 32, r["loss"]) for r in alone],
    "reach beside the six (reach's own loss)": [(r["step"] * 16, r[REACH]) for r in mix if REACH in r],
}
others = sorted({k for r in mix for k in r if k.startswith("task_loss/") and k != REACH})
curves["the six beside reach (their mean)"] = [
    (r["step"] * 16, sum(r[k] for k in others if k in r) / sum(k in r for k in others)) for r in mix
]


def window_mean(points, lo, hi):
    values = [v for s, v in points if lo < s <= hi]
    return sum(values) / len(values) if values else float("nan")


print("| reach samples | " + " | ".join(curves) + " |")
print("|---:|" + "---:|" * len(curves))
for lo in range(0, 70_000, 10_000):
    row = " | ".join(f"{window_mean(p, lo, lo + 10_000):.3f}" for p in curves.values())
    print(f"| {lo:,}-{lo + 10_000:,} | {row} |")
fig, ax = plt.subplots(figsize=(7, 4))
for name, points in curves.items():
    s, v = zip(*points, strict=True)
    ax.plot(s, v, label=name, linewidth=0.8)
ax.set_yscale("log")
ax.set_xlabel("reach samples drawn (the six: samples at the same step)")
ax.set_ylabel("training L1 loss (normalized actions)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(png, dpi=100)
