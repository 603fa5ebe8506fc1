#!/bin/bash
# Reach with the six fixed-target MT10 tasks (not its scene: no push, no pick-place), reach drawn half the time
# for 4,382 steps, twice reach alone's 2,191: reach's samples as alone (about 70,000). Beside the run with its
# two scene-mates (reach_push_pick_place_4382steps_run.sh) it tells interference within the scene from
# interference by any other task. The data are collected only where absent (the same seeds give the same
# demonstrations; this run reused those of the two earlier runs).
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/reach_six
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
[ -e $R/reach ] || $OFT collect metaworld --tasks reach-v3 --episodes 200 \
    --out $R/reach --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
[ -e $R/six ] || $OFT collect metaworld \
    --tasks door-open-v3,drawer-open-v3,drawer-close-v3,button-press-topdown-v3,window-open-v3,window-close-v3 \
    --episodes 50 --out $R/six --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
echo "collect end $(date -u +%T)"
$OFT train --dataset $R/reach --dataset $R/six --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set mixture_stats=merged --set dataset_weights=0.5,0.5 --set max_steps=4382 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 \
    --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
