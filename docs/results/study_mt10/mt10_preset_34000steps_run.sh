#!/bin/bash
# The per-task MT10 recipe with a longer full-rate phase, through the one-command path: oft train --preset
# metaworld-mt10 on the two datasets as collected (each observation's instruction picking its statistics in
# oft eval, no --unnorm-key), 34,000 steps with the tenfold decay at 3/4 (25,500). Why: on the per-task run,
# the decay at step 10,000 gave 69.5% at 14,000 and the decay at 17,320 gave 79.0% at 22,828 (p = 0.039): the
# full-rate phase before the decay pays. The run directory of mt10_preset_run.sh (stopped at step 1,000, the
# same data and weights), continued with a larger max_steps (free on resume; the decay not yet taken follows
# it). About 140 minutes on 2 cores: it runs over several sittings, each rerun continues from the last
# checkpoint (every 1,000 steps).
set -e
cd /work/exp3
export MUJOCO_GL=egl PYTHONPATH=/work/exp3/src
OFT=/work/main/.venv/bin/oft
D=/work/runs/mt10_weighted
R=/work/runs/mt10_preset
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --resume --dataset $D/four --dataset $D/six --out $R/train --preset metaworld-mt10 \
    --set dataset_weights=0.8,0.2 --set keep_last=40 --set num_threads=2 --set max_steps=34000
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval34000 --workers 2 \
    --video-episodes 0
echo "all end $(date -u +%T)"
