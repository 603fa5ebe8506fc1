#!/bin/bash
# weighted_four_90min_run.sh (MT10, noise-0.3 demonstrations, the four random-target tasks drawn 0.8 of the time,
# 90 minutes: 66.0%) with each task normalized by its own statistics: the same demonstrations as ten datasets,
# one per task (the same seeds give the same episodes), mixture_stats=per_dataset, and each task's weight its
# group's share times its share of the group's frames, as the two-dataset run drew them. Merged statistics
# scale reach's actions (x, z within about -0.4..0.4) by the union's -1..1; beside the six, per-dataset
# statistics took reach from 31 to 56 of 100 (reach_six_per_dataset_run.sh). Each task is evaluated with its
# own statistics (--unnorm-key TASK). The two-dataset run's steps and schedule, not its minutes, so other work
# beside it does not change what is compared: 22,828 steps, the tenfold decay at its step 17,320. Resumable:
# rerun continues each step.
set -e
cd /work/exp2
export MUJOCO_GL=egl PYTHONPATH=/work/exp2/src
OFT=/work/main/.venv/bin/oft
R=/work/runs/mt10_per_task
FOUR="reach-v3 push-v3 pick-place-v3 peg-insert-side-v3"
SIX="door-open-v3 drawer-open-v3 drawer-close-v3 button-press-topdown-v3 window-open-v3 window-close-v3"
mkdir -p $R/data
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
for T in $FOUR; do
  [ -e $R/data/$T ] || $OFT collect metaworld --tasks $T --episodes 200 --out $R/data/$T \
      --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
done
for T in $SIX; do
  [ -e $R/data/$T ] || $OFT collect metaworld --tasks $T --episodes 50 --out $R/data/$T \
      --cameras workspace,gripperPOV --image-size 64 --images png --workers 2 --action-noise 0.3
done
echo "collect end $(date -u +%T)"
WEIGHTS=$(/work/main/.venv/bin/python - "$R/data" "$FOUR" "$SIX" <<'PY'
import json, sys
from pathlib import Path
root, groups = Path(sys.argv[1]), [(0.8, sys.argv[2].split()), (0.2, sys.argv[3].split())]
weights = []
for share, tasks in groups:
    frames = [json.loads((root / t / "meta" / "info.json").read_text())["total_frames"] for t in tasks]
    weights += [share * f / sum(frames) for f in frames]
print(",".join(f"{w:.5f}" for w in weights))
PY
)
echo "weights $WEIGHTS"
DATASETS=$(for T in $FOUR $SIX; do echo -n " --dataset $R/data/$T"; done)
$OFT train --resume $DATASETS --out $R/train --preset metaworld-tiny \
    --set cameras=workspace,gripperPOV --set proprio=true --set head=l1 --set decode=parallel --set film=false \
    --set mixture_stats=per_dataset --set dataset_weights=$WEIGHTS \
    --set max_steps=22828 --set decay_at=none --set decay_step=17320 --set save_every=1000 --set keep_last=60 \
    --set num_threads=2
echo "train end $(date -u +%T)"
for T in $FOUR $SIX; do
  [ -e $R/eval/$T/results.json ] || $OFT eval --env metaworld --tasks $T --checkpoint $R/train --unnorm-key $T \
      --episodes 20 --out $R/eval/$T --workers 2 --video-episodes 0
done
echo "all end $(date -u +%T)"
