#!/bin/bash
# reach_six_per_dataset_run.sh (reach 56 of 100 beside the six with each dataset's own statistics) through
# the one-command path: --set mixture_stats=per_task gives each of the seven tasks its own statistics (the six
# too, which per_dataset normalized as one dataset), and the policy picks them by the observation's
# instruction: oft eval runs without --unnorm-key. Same data, weights and steps. Resumable.
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
R=/work/runs/reach_six_per_task
mkdir -p $R
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT train --resume --dataset /work/runs/scene3/reach --dataset /work/runs/mt10_weighted/six --out $R/train \
    --preset metaworld-tiny --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 \
    --set decode=parallel --set film=false --set mixture_stats=per_task --set dataset_weights=0.5,0.5 \
    --set max_steps=4382 --set num_threads=2 --set save_every=1000 --set keep_last=10
echo "train end $(date -u +%T)"
[ -e $R/eval_reach100/results.json ] || $OFT eval --env metaworld --tasks reach-v3 --checkpoint $R/train \
    --episodes 100 --out $R/eval_reach100 --workers 2 --video-episodes 0
echo "reach eval end $(date -u +%T)"
[ -e $R/eval_six/results.json ] || $OFT eval --env metaworld \
    --tasks door-open-v3,drawer-open-v3,drawer-close-v3,button-press-topdown-v3,window-open-v3,window-close-v3 \
    --checkpoint $R/train --episodes 20 --out $R/eval_six --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
