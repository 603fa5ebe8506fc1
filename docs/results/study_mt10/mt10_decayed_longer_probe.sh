#!/bin/bash
# Probe: the decayed phase longer still. The 89.8% policy (34,000 steps, then 4,000 with the six at 0.5 and
# 6,000 with the peg-insert-side data) continued (--base: its model and per-task statistics, a fresh
# optimizer) 4,000 more steps at the decayed rate on the two datasets drawn 0.5 / 0.5, then the same oft eval
# (20, then 50 unseen layouts per task) and peg_phases.py on its 20 peg-insert-side layouts.
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/decayed_longer
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --base /work/runs/peg_more/train --dataset $D/four --dataset $D/six --out $R/train \
    --preset metaworld-mt10 --set dataset_weights=0.5,0.5 --set lr=5e-5 --set decay_at=none \
    --set max_steps=4000 --set num_threads=2 --set save_every=1000
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 50 --out $R/eval50 --workers 2 --video-episodes 0
echo "eval end $(date -u +%T)"
/work/main/.venv/bin/python docs/results/study_mt10/peg_phases.py $R/train workspace,gripperPOV 20
echo "all end $(date -u +%T)"
