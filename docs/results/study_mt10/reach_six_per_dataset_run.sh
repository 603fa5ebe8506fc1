#!/bin/bash
# reach_six_4382steps_run.sh with each dataset normalized by its own statistics (mixture_stats=per_dataset,
# OpenVLA's) instead of the union's. Merged, reach's actions (q01..q99 of x and z about -0.4..0.4) are scaled
# by the six's -1..1: 2.5 times smaller in the normalized units the L1 loss counts, so the same loss floor is
# 2.5 times the error in reach's actions. Reach is evaluated with its own statistics (--unnorm-key reach),
# the six with theirs. Resumable: a finished step is skipped.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/reach_six_per_dataset
mkdir -p $R
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --resume --dataset /work/runs/scene3/reach --dataset /work/runs/mt10_weighted/six --out $R/train \
    --preset metaworld-tiny --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 \
    --set decode=parallel --set film=false --set mixture_stats=per_dataset --set dataset_weights=0.5,0.5 \
    --set max_steps=4382 --set num_threads=2 --set save_every=1000 --set keep_last=10
echo "train end $(date -u +%T)"
[ -e $R/eval_reach/results.json ] || $OFT eval --env metaworld --tasks reach-v3 --checkpoint $R/train \
    --unnorm-key reach --episodes 20 --out $R/eval_reach --workers 2 --video-episodes 0
echo "reach eval end $(date -u +%T)"
[ -e $R/eval_six/results.json ] || $OFT eval --env metaworld \
    --tasks door-open-v3,drawer-open-v3,drawer-close-v3,button-press-topdown-v3,window-open-v3,window-close-v3 \
    --checkpoint $R/train --unnorm-key six --episodes 20 --out $R/eval_six --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
