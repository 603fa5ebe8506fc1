#!/bin/bash
# Probe: the paper's random crop (90% of the area at a random position) moves a 64 px image by up to 3.3
# pixels, about the precision reach's goal (5 cm) and peg-insert-side's hole (3 cm across the insertion axis)
# ask for. Does a policy that no longer sees that translation place them better? The 88.0% checkpoint (34,000
# steps + 4,000 with the six at 0.5) continued (--base: its model and per-task statistics, a fresh optimizer)
# 6,000 steps at the decayed rate on the same two datasets drawn 0.5 / 0.5 with --set crop_jitter=0 (always
# the centred box evaluation takes; colour jitter kept), then the same oft eval (20, then 50 unseen layouts).
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/crop_jitter0
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --base /work/runs/mt10_six_share/train --dataset $D/four --dataset $D/six --out $R/train \
    --preset metaworld-mt10 --set dataset_weights=0.5,0.5 --set crop_jitter=0 --set lr=5e-5 --set decay_at=none \
    --set max_steps=6000 --set num_threads=2 --set save_every=1000
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 50 --out $R/eval50 --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
