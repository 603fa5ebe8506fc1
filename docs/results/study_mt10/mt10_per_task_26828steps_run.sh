#!/bin/bash
# mt10_per_task_stats_22828steps_run.sh continued 4,000 steps at its decayed learning rate (5e-5; the run rose
# from 54.5% to 79.0% after the decay at step 17,320): does more training at the low rate keep paying?
# The same run directory (oft train --resume with a larger max_steps, free to change on resume); every task
# evaluated with its own statistics (--unnorm-key TASK). Resumable.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/mt10_per_task
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
DATASETS=$(for T in reach-v3 push-v3 pick-place-v3 peg-insert-side-v3 door-open-v3 drawer-open-v3 drawer-close-v3 \
    button-press-topdown-v3 window-open-v3 window-close-v3; do echo -n " --dataset $R/data/$T"; done)
$OFT train --resume $DATASETS --out $R/train --set max_steps=26828 --set num_threads=2
echo "train end $(date -u +%T)"
STEP=26828 bash /work/main/docs/results/study_mt10/mt10_per_task_eval_step.sh
echo "all end $(date -u +%T)"
