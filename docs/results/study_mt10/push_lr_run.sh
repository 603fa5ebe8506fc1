#!/bin/bash
# Push alone at reach alone's budget (2,191 steps) on the noise-0.3 demonstrations of
# alone_dart03_2191steps_run.sh, at another learning rate (LR, default 1e-3; the preset's is 5e-4): is push
# learned slowly because the steps are too small? Evaluated on unseen layouts, then where the misses fail.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
LR=${LR:-1e-3}
D=/work/runs/alone/push-v3/data
R=/work/runs/push_lr/$LR
echo "commit $(git rev-parse --short HEAD) lr $LR start $(date -u +%T)"
$OFT train --dataset $D --out $R/train --preset metaworld-tiny --set cameras=workspace,gripperPOV \
    --set proprio=true --set head=l1 --set decode=parallel --set film=false --set max_steps=2191 \
    --set num_threads=2 --set lr=$LR ${EXTRA:-}
echo "train end $(date -u +%T)"
[ -e $R/eval/results.json ] || $OFT eval --env metaworld --tasks push-v3 --checkpoint $R/train --episodes 20 \
    --out $R/eval --workers 2 --video-episodes 0
/work/main/.venv/bin/python /work/main/docs/results/study_mt10/push_phases.py $R/train push-v3 \
    workspace,gripperPOV 2>&1 | grep -v INFO > $R/phases.txt
echo "lr $LR end $(date -u +%T)"
