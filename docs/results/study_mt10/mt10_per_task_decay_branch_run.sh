#!/bin/bash
# Success against training minutes for the per-task MT10 recipe: the step-AT checkpoint of
# mt10_per_task_stats_22828steps_run.sh (the full learning rate until then) continued with the tenfold decay
# at AT for 4,000 steps (oft train --resume --set decay_step=AT: the schedule is applied from the resumed
# step on; the loader position and random streams come from the checkpoint, so the batches are the run's),
# every task evaluated with its own statistics (--unnorm-key TASK), 20 unseen layouts each. The decay at
# 17,320 gave 75.0% at 18,000 and 79.0% at 22,828; mt10_per_task_decay10k_run.sh is this script at AT=10000.
# AT: a step with a checkpoint (every 1,000). Resumable.
set -e
AT=${AT:?set AT, the step to decay at}
END=$((AT + 4000))
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
SRC=/work/runs/mt10_per_task
R=/work/runs/mt10_per_task_decay$((AT / 1000))k
TASKS="reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 door-open-v3 drawer-open-v3 drawer-close-v3
    button-press-topdown-v3 window-open-v3 window-close-v3"
echo "commit $(git rev-parse --short HEAD) decay at $AT start $(date -u +%T)"
if [ ! -e $R/train/train_config.json ]; then
  mkdir -p $R/train/checkpoints
  cp -r $SRC/train/checkpoints/step_$(printf %07d $AT) $R/train/checkpoints/
  cp $SRC/train/train_config.json $R/train/
fi
DATASETS=$(for T in $TASKS; do echo -n " --dataset $SRC/data/$T"; done)
$OFT train --resume $DATASETS --out $R/train --set decay_step=$AT --set max_steps=$END --set num_threads=2
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
