#!/bin/bash
# The best MT10 recipe as one preset (oft train --preset metaworld-mt10: each task normalized with its own
# statistics, mixture_stats=per_task, on the two datasets as collected) and evaluated as a user would, without
# --unnorm-key: each observation's instruction picks its statistics. The data of weighted_four_90min_run.sh
# (noise-0.3 demonstrations, 200 per random-target task, 50 for each of the six others; the same seeds give
# the same episodes), drawn 0.8 : 0.2. mt10_per_task_stats_22828steps_run.sh measured the same normalization
# through ten one-task datasets (79.0%). Resumable: rerun continues each step.
set -e
cd /work/exp3
export MUJOCO_GL=egl PYTHONPATH=/work/exp3/src
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/mt10_preset
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
[ -e $D/four ] || $OFT collect metaworld --tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3 --episodes 200 \
    --out $D/four --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
[ -e $D/six ] || $OFT collect metaworld \
    --tasks door-open-v3,drawer-open-v3,drawer-close-v3,button-press-topdown-v3,window-open-v3,window-close-v3 \
    --episodes 50 --out $D/six --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
echo "collect end $(date -u +%T)"
$OFT train --resume --dataset $D/four --dataset $D/six --out $R/train --preset metaworld-mt10 \
    --set dataset_weights=0.8,0.2 --set keep_last=30 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
