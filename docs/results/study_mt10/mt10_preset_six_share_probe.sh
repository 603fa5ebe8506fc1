#!/bin/bash
# Probe: does button-press-topdown (20/20 at 22,828 steps, 13/20 at 34,000 with the six drawn 0.2 of the time)
# come back when the six are drawn more? The 34,000-step metaworld-mt10 checkpoint continued (--base: its model
# and per-task statistics, a fresh optimizer) 4,000 steps at the decayed rate (lr 5e-5, no further decay) with
# the two datasets drawn 0.5 / 0.5, then the same oft eval (20 unseen layouts per task). About 18 minutes.
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/mt10_six_share
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --base /work/runs/mt10_preset/train --dataset $D/four --dataset $D/six --out $R/train \
    --preset metaworld-mt10 --set dataset_weights=0.5,0.5 --set lr=5e-5 --set decay_at=none --set max_steps=4000 \
    --set num_threads=2 --set save_every=1000
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
