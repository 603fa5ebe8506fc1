#!/bin/bash
# Probe: a second full-rate phase. The 90.2% policy (48,000 steps: the preset's 34,000, then 14,000 at the
# decayed rate) continued (--base: its model and per-task statistics, a fresh optimizer) 16,000 steps more:
# 8,000 at the full rate 5e-4 (500-step warm-up), then 8,000 at the 10x decayed rate, on the three datasets
# drawn four 0.35, six 0.40, peg 0.25 (as the peg probe). The question: peg-insert-side (12/50) and reach are
# what the full-rate phase learned (the preset's longer full rate took the four from 79.0% to 85.0%); does a
# restart learn more of them? Then oft eval on the 500 layouts and the 500 fresh ones (--seed 100).
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/restart
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --base /work/runs/decayed_longer/train --dataset $D/four --dataset $D/six \
    --dataset /work/runs/peg_more/data --out $R/train --preset metaworld-mt10 \
    --set dataset_weights=0.35,0.4,0.25 --set lr=5e-4 --set warmup_steps=500 --set decay_at=0.5 \
    --set max_steps=16000 --set num_threads=2 --set save_every=1000
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 50 --out $R/eval50 --workers 2 --video-episodes 0
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 50 --seed 100 --out $R/eval50_fresh \
    --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
