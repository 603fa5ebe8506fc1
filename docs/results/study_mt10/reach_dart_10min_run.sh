#!/bin/bash
# reach alone, workspace camera, as reach1 but demonstrations collected with --action-noise $NOISE
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
NOISE=${NOISE:-0.5}  # run as NOISE=0.5 on 1397bf3, 2026-12-05 00:15-00:29 UTC, and NOISE=0.3 on 051573d, 02:10-02:23 UTC
R=/work/runs/reach_dart/n$NOISE
echo "commit $(git rev-parse --short HEAD) noise $NOISE start $(date -u +%T)"
$OFT collect metaworld --tasks reach-v3 --episodes 200 --out $R/data --cameras workspace,gripperPOV \
    --image-size 64 --images png --workers 2 --action-noise $NOISE
echo "collect end $(date -u +%T)"
$OFT train --dataset $R/data --out $R/train --preset metaworld-tiny --set cameras=workspace,gripperPOV \
    --set proprio=true --set head=l1 --set decode=parallel --set film=false --set max_minutes=10 \
    --set max_steps=200000 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks reach-v3 --checkpoint $R/train --episodes 20 --demonstration-layouts $R/data \
    --out $R/eval_demo_layouts --workers 2 --video-episodes 0
$OFT eval --env metaworld --tasks reach-v3 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 \
    --video-episodes 0
echo "all end $(date -u +%T)"
