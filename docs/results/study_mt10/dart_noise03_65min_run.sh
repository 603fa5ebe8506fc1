#!/bin/bash
# MT10 as the 85-minute workspace run (docs/results/study_mt10/workspace_85min_run.sh), demonstrations
# collected with --action-noise $NOISE (DART). Resumable: rerun continues each step.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
NOISE=${NOISE:-0.3}  # run as NOISE=0.3 MIN=65 on 7c0daf9, 2026-12-05 00:30-02:09 UTC
MIN=${MIN:-75}
R=/work/runs/mt10_dart
echo "commit $(git rev-parse --short HEAD) noise $NOISE minutes $MIN start $(date -u +%T)"
$OFT collect metaworld --tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3 --episodes 200 \
    --out $R/data --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise $NOISE
echo "collect4 end $(date -u +%T)"
$OFT collect metaworld --tasks mt10 --episodes 50 --out $R/data --cameras workspace,gripperPOV \
    --image-size 64 --images png --workers 2 --action-noise $NOISE
echo "collect end $(date -u +%T)"
$OFT train --resume --dataset $R/data --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set max_minutes=$MIN --set max_steps=200000 --set save_every=2000 --set keep_last=60 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval \
    --workers 2 --video-episodes 0
echo "eval end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 \
    --demonstration-layouts $R/data --out $R/eval_demo_layouts --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
