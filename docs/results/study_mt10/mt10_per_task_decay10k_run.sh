#!/bin/bash
# mt10_per_task_stats_22828steps_run.sh took its tenfold decay at step 17,320 and rose from 54.5% (step 14,000)
# to 75.0% (18,000) and 79.0% (22,828); 4,000 more steps at the low rate gave 79.0% again. Does the full-rate
# phase past step 10,000 buy anything? Its step-10,000 checkpoint (50.0%) continued with the decay at 10,000
# (oft train --resume --set decay_step=10000: the schedule is applied from the resumed step on; the loader
# position and random streams come from the checkpoint, so the batches are the run's) for 4,000 steps, every
# task evaluated with its own statistics (--unnorm-key TASK), 20 unseen layouts each. Resumable.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
SRC=/work/runs/mt10_per_task
R=/work/runs/mt10_per_task_decay10k
TASKS="reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 door-open-v3 drawer-open-v3 drawer-close-v3
    button-press-topdown-v3 window-open-v3 window-close-v3"
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
if [ ! -e $R/train/train_config.json ]; then
  mkdir -p $R/train/checkpoints
  cp -r $SRC/train/checkpoints/step_0010000 $R/train/checkpoints/
  cp $SRC/train/train_config.json $R/train/
fi
DATASETS=$(for T in $TASKS; do echo -n " --dataset $SRC/data/$T"; done)
$OFT train --resume $DATASETS --out $R/train --set decay_step=10000 --set max_steps=14000 --set num_threads=2
echo "train end $(date -u +%T)"
for T in $TASKS; do
  [ -e $R/eval/$T/results.json ] || $OFT eval --env metaworld --tasks $T --checkpoint $R/train \
      --unnorm-key $T --episodes 20 --out $R/eval/$T --workers 2 --video-episodes 0
done
/work/main/.venv/bin/python - $R/eval <<'PY'
import json, sys
from pathlib import Path
wins = {p.parent.name: json.loads(p.read_text())["overall"]["successes"] for p in Path(sys.argv[1]).glob("*/results.json")}
print(wins, f"all {sum(wins.values())}/{20 * len(wins)}")
PY
echo "all end $(date -u +%T)"
