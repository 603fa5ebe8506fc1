#!/bin/bash
# One checkpoint of mt10_per_task_stats_22828steps_run.sh on MT10's ten tasks, each with its own statistics
# (--unnorm-key TASK), 20 unseen layouts per task, as oft eval-curve measured the two-dataset run's
# checkpoints (the same seeds). STEP: the checkpoint's step.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/mt10_per_task
C=$R/train/checkpoints/step_$(printf %07d $STEP)
echo "commit $(git rev-parse --short HEAD) step $STEP start $(date -u +%T)"
for T in reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 door-open-v3 drawer-open-v3 drawer-close-v3 \
    button-press-topdown-v3 window-open-v3 window-close-v3; do
  [ -e $R/eval_step$STEP/$T/results.json ] || $OFT eval --env metaworld --tasks $T --checkpoint $C \
      --unnorm-key $T --episodes 20 --out $R/eval_step$STEP/$T --workers 2 --video-episodes 0
done
/work/main/.venv/bin/python - $R/eval_step$STEP <<'PY'
import json, sys
from pathlib import Path
wins = {p.parent.name: json.loads(p.read_text())["overall"]["successes"] for p in Path(sys.argv[1]).glob("*/results.json")}
print(wins, f"all {sum(wins.values())}/{20 * len(wins)}")
PY
echo "end $(date -u +%T)"
