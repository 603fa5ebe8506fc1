#!/bin/bash
# MT10 with the 'workspace' camera: the 110-minute recipe's data and model, 85 minutes of training
set -e
cd /work/exp   # a git worktree at 7ae49db (git worktree add --detach /work/exp 7ae49db), so edits in /work/main cannot reach its workers
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/mt10_ws
echo "commit $(git rev-parse --short HEAD)"
echo "collect start $(date -u +%T)"
$OFT collect metaworld --tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3 --episodes 200 \
    --out $R/data --cameras workspace,gripperPOV --image-size 64 --images png --workers 2
$OFT collect metaworld --tasks mt10 --episodes 50 \
    --out $R/data --cameras workspace,gripperPOV --image-size 64 --images png --workers 2
echo "collect end $(date -u +%T)"
$OFT train --dataset $R/data --out $R/train --preset metaworld-tiny --set cameras=workspace,gripperPOV \
    --set proprio=true --set head=l1 --set decode=parallel --set film=false --set max_minutes=85 --set max_steps=200000 \
    --set save_every=2000 --set keep_last=60 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
echo "eval end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --demonstration-layouts $R/data \
    --out $R/eval_demo_layouts --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
