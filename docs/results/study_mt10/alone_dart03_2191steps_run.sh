#!/bin/bash
# Each random-target task trained alone at reach alone's budget (2,191 steps, about 70,000 samples, on
# noise-0.3 demonstrations: reach reaches 17 of 20 there): how far a policy of this size gets on push,
# pick-place and peg-insert-side when no other task shares it. Evaluated on unseen layouts and on its
# demonstrations' own layouts. Resumable: rerun skips a finished step.
set -e
cd /work/exp
export MUJOCO_GL=egl PYTHONPATH=/work/exp/src
OFT=/work/main/.venv/bin/oft
TASKS=${TASKS:-push-v3 pick-place-v3 peg-insert-side-v3}
for T in $TASKS; do
  R=/work/runs/alone/$T
  echo "commit $(git rev-parse --short HEAD) task $T start $(date -u +%T)"
  [ -e $R/data ] || $OFT collect metaworld --tasks $T --episodes 200 --out $R/data --cameras workspace,gripperPOV \
      --image-size 64 --images png --workers 2 --action-noise 0.3
  echo "collect end $(date -u +%T)"
  $OFT train --resume --dataset $R/data --out $R/train --preset metaworld-tiny --set cameras=workspace,gripperPOV \
      --set proprio=true --set head=l1 --set decode=parallel --set film=false --set max_steps=2191 \
      --set num_threads=2
  echo "train end $(date -u +%T)"
  [ -e $R/eval/results.json ] || $OFT eval --env metaworld --tasks $T --checkpoint $R/train --episodes 20 \
      --out $R/eval --workers 2 --video-episodes 0
  [ -e $R/eval_demo_layouts/results.json ] || $OFT eval --env metaworld --tasks $T --checkpoint $R/train \
      --episodes 20 --demonstration-layouts $R/data --out $R/eval_demo_layouts --workers 2 --video-episodes 0
  echo "task $T end $(date -u +%T)"
done
