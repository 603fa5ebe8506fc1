#!/bin/bash
# The four random-target tasks of MT10 trained apart from the six fixed-target ones: the MT10 noise-0.3 run's
# demonstrations of these four (the same seeds, 200 each, workspace camera, --action-noise 0.3), its recipe,
# 30 minutes. Resumable.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
MIN=${MIN:-30}  # run on 1ed1eb0, 2026-12-05 04:23-05:09 UTC
R=/work/runs/four_dart
T=reach-v3,push-v3,pick-place-v3,peg-insert-side-v3
echo "commit $(git rev-parse --short HEAD) minutes $MIN start $(date -u +%T)"
$OFT collect metaworld --tasks $T --episodes 200 --out $R/data --cameras workspace,gripperPOV \
    --image-size 64 --images png --workers 2 --action-noise 0.3
echo "collect end $(date -u +%T)"
$OFT train --resume --dataset $R/data --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set max_minutes=$MIN --set max_steps=200000 --set save_every=2000 --set keep_last=60 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks $T --checkpoint $R/train --episodes 20 --out $R/eval --workers 2 --video-episodes 0
echo "all end $(date -u +%T)"
