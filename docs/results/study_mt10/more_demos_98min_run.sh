#!/bin/bash
set -e
cd /work/main
export MUJOCO_GL=egl
R=/work/runs/mt10_long
echo "collect start $(date -u +%T)"
.venv/bin/oft collect metaworld --tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3 --episodes 200 \
    --out $R/data --cameras corner,gripperPOV --image-size 64 --images png --workers 2
echo "collect end $(date -u +%T)"
.venv/bin/oft study --suite mt10 --out $R --variants pdac_l1_extra_inputs --budget-minutes 98 \
    --set max_steps=200000 --set save_every=2000 --set keep_last=60 --demos 50 --threads 2 --eval-workers 2 \
    --collect-workers 2
echo "study end $(date -u +%T)"
