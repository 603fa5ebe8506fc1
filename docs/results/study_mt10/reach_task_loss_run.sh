#!/bin/bash
# Reach's training loss alone and beside the six fixed-target tasks, at the same reach samples (about 70,000):
# the runs of reach_six_4382steps_run.sh and of reach alone (2,191 steps) again, on the same noise-0.3 data,
# now with the loss of each task in metrics.jsonl (task_loss/<instruction>). If reach's loss beside the six
# stays above its loss alone, the six hold back how reach is fitted; if it falls as low, what they take is
# in how the fitted policy acts. Resumable: a finished step is skipped.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/taskloss
mkdir -p $R
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
COMMON="--preset metaworld-tiny --set cameras=workspace,gripperPOV --set proprio=true --set head=l1
    --set decode=parallel --set film=false --set num_threads=2 --set save_every=1000 --set keep_last=10"
$OFT train --resume --dataset /work/runs/scene3/reach --out $R/reach_alone $COMMON --set max_steps=2191
echo "reach alone train end $(date -u +%T)"
[ -e $R/reach_alone_eval/results.json ] || $OFT eval --env metaworld --tasks reach-v3 \
    --checkpoint $R/reach_alone --episodes 20 --out $R/reach_alone_eval --workers 2 --video-episodes 0
echo "reach alone eval end $(date -u +%T)"
$OFT train --resume --dataset /work/runs/scene3/reach --dataset /work/runs/mt10_weighted/six --out $R/reach_six $COMMON \
    --set mixture_stats=merged --set dataset_weights=0.5,0.5 --set max_steps=4382
echo "reach + six train end $(date -u +%T)"
[ -e $R/reach_six_eval/results.json ] || $OFT eval --env metaworld --tasks mt10 --checkpoint $R/reach_six \
    --episodes 20 --out $R/reach_six_eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
