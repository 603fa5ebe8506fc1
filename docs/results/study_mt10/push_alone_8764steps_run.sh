#!/bin/bash
# Push alone on the noise-0.3 demonstrations of alone_dart03_2191steps_run.sh (2 of 20 at reach alone's 2,191
# steps), four times as long (8,764 steps, about 280,000 samples) with checkpoints every 2,191 steps: is push
# limited by its samples when nothing shares the model? Resumable.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/alone/push-v3
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
[ -e $R/data ] || $OFT collect metaworld --tasks push-v3 --episodes 200 --out $R/data --cameras workspace,gripperPOV \
    --image-size 64 --images png --workers 2 --action-noise 0.3
$OFT train --resume --dataset $R/data --out $R/train_8764 --preset metaworld-tiny --set cameras=workspace,gripperPOV \
    --set proprio=true --set head=l1 --set decode=parallel --set film=false --set max_steps=8764 \
    --set save_every=2191 --set keep_last=10 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval-curve --run $R/train_8764 --env metaworld --tasks push-v3 --episodes 20 --steps 2191,4382,6573,8764 \
    --out $R/curve_8764 --workers 2
echo "all end $(date -u +%T)"
