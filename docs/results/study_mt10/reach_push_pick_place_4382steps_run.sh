#!/bin/bash
# Run as is on 6e827f2, 2026-12-05 09:40-10:05 UTC. Reach with the two tasks that share its scene (push, pick-place), reach drawn half the time, for twice the
# steps of reach alone (2,191): reach's samples as alone (about 70,000). Tells interference within the scene
# from the samples. Resumable: rerun continues each step.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/scene3
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
$OFT collect metaworld --tasks reach-v3 --episodes 200 \
    --out $R/reach --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
$OFT collect metaworld --tasks push-v3,pick-place-v3 --episodes 200 \
    --out $R/push_pick --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
echo "collect end $(date -u +%T)"
$OFT train --resume --dataset $R/reach --dataset $R/push_pick --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set mixture_stats=merged --set dataset_weights=0.5,0.5 --set max_steps=4382 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks reach-v3,push-v3,pick-place-v3 --checkpoint $R/train --episodes 20 \
    --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
