#!/bin/bash
# As reach_six_4382steps_run.sh (reach with the six fixed-target MT10 tasks, reach drawn half the time for
# 4,382 steps: its 70,000 samples alone), with the architecture small-wide (twice the width, 3.6x the
# parameters): does capacity give reach back what the six other tasks take from it (7 of 20 at small, 17 of
# 20 alone)? The data are collected only where absent (the same seeds give the same demonstrations; this
# run reused those of the earlier runs).
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/reach_six_wide
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
[ -e $R/reach ] || $OFT collect metaworld --tasks reach-v3 --episodes 200 \
    --out $R/reach --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
[ -e $R/six ] || $OFT collect metaworld \
    --tasks door-open-v3,drawer-open-v3,drawer-close-v3,button-press-topdown-v3,window-open-v3,window-close-v3 \
    --episodes 50 --out $R/six --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
echo "collect end $(date -u +%T)"
$OFT train --dataset $R/reach --dataset $R/six --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set mixture_stats=merged --set dataset_weights=0.5,0.5 --set max_steps=4382 --set num_threads=2 \
    --set base=small-wide --set save_every=1000 --set keep_last=10
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 \
    --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
