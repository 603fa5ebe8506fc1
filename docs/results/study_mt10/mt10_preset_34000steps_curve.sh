#!/bin/bash
# Success against training minutes along the 34,000-step metaworld-mt10 preset run
# (mt10_preset_34000steps_run.sh): its checkpoint just before the tenfold decay at 25,500 and one 4,500 steps
# after it, on the same 20 unseen layouts per task as the run's final oft eval (each observation's
# instruction picks its statistics, as there). Run after the training; about 10 minutes on 2 cores.
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
R=/work/runs/mt10_preset
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT eval-curve --run $R/train --env metaworld --tasks mt10 --episodes 20 --steps ${STEPS:-25000,30000} \
    --workers 2 --out $R/curve
echo "all end $(date -u +%T)"
