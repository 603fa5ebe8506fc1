#!/bin/bash
# MT10 on the DART noise-0.3 workspace data (/work/runs/mt10_dart/data), with the language suite's recipe
# (metaworld-language: FiLM on mean-centered instruction, frozen token table, EMA 0.999, no decay) plus the
# extra inputs (wrist camera + proprio). Same 65-minute budget as the noise-0.3 run. Resumable.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
MIN=${MIN:-65}  # run on 1ed1eb0, 2026-12-05 02:59-04:10 UTC
D=/work/runs/mt10_dart/data
R=/work/runs/mt10_film
echo "commit $(git rev-parse --short HEAD) minutes $MIN start $(date -u +%T)"
$OFT train --resume --dataset $D --out $R/train --preset metaworld-language \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel \
    --set max_minutes=$MIN --set max_steps=200000 --set save_every=2000 --set keep_last=60 --set num_threads=2
echo "train end $(date -u +%T)"
$OFT eval --env metaworld --tasks mt10 --checkpoint $R/train --episodes 20 --out $R/eval \
    --workers 2 --video-episodes 0
echo "eval end $(date -u +%T)"
$OFT eval --env metaworld --tasks reach-v3,push-v3,pick-place-v3 --checkpoint $R/train --episodes 20 --out $R/swap \
    --workers 2 --video-episodes 0 --instruction "reach the red goal position" \
    --instruction "push the puck to the goal" --instruction "pick up the puck and place it at the goal"
echo "all end $(date -u +%T)"
