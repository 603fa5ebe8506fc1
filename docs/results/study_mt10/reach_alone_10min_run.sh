#!/bin/bash
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
R=/work/runs/reach1
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT collect metaworld --tasks reach-v3 --episodes 200 --out $R/data --cameras workspace,gripperPOV \
    --image-size 64 --images png --workers 2
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
