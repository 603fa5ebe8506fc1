#!/bin/bash
# The four random-target tasks, 100 unseen layouts each (seeds 1,000,000-1,000,099), on the final checkpoints
# of the two MT10 runs that differ only in normalization: the weighted 90-minute run (two datasets, merged
# statistics: 66.0% on 20 per task) and mt10_per_task_stats_22828steps_run.sh (ten datasets, each task its
# own statistics, evaluated with --unnorm-key TASK). 20 episodes per task cannot tell 8 of 20 from 12.
# Resumable: a finished evaluation is skipped.
set -e
cd /work/main
export MUJOCO_GL=egl
OFT=/work/main/.venv/bin/oft
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
for T in reach-v3 push-v3 pick-place-v3 peg-insert-side-v3; do
  D=/work/runs/mt10_weighted/eval100/$T
  [ -e $D/results.json ] || $OFT eval --env metaworld --tasks $T \
      --checkpoint /work/runs/mt10_weighted/train/checkpoints/step_0022828 \
      --episodes 100 --out $D --workers 2 --video-episodes 0
  D=/work/runs/mt10_per_task/eval100/$T
  [ -e $D/results.json ] || $OFT eval --env metaworld --tasks $T --unnorm-key $T \
      --checkpoint /work/runs/mt10_per_task/train/checkpoints/step_0022828 \
      --episodes 100 --out $D --workers 2 --video-episodes 0
done
echo "end $(date -u +%T)"
