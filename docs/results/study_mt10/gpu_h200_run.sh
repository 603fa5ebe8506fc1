#!/bin/bash
# MT10 recipe (study-mt10.md "110 minutes on the 200-demonstration data") on the device machine:
#   bash .dev/gpu.sh run     setup, CUDA smoke, collect, study in the background (setsid), wait until DEADLINE s
#   bash .dev/gpu.sh fetch   wait for the study, pack its results into $OUT
# Local dry run (CPU, tiny): LOCAL=1 EP4=1 DEMOS=1 EPISODES=1 WORKERS=2 DEVICE=cpu MINUTES=0.2 bash gpu_h200_run.sh run
# On the device: carry .whl (mujoco 3.3.0, metaworld 3.1.1, gymnasium 1.2.2, farama-notifications, pyopengl, glfw),
# .gl (libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 libvulkan1 .debs) and .dev/stub (a PyAV stand-in).
set -u
phase=${1:-run}
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s $(date -u +%H:%M:%S)] $*"; }
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
G=${G:-runs/gpu_mt10}
EP4=${EP4:-200}; DEMOS=${DEMOS:-50}; EPISODES=${EPISODES:-20}; WORKERS=${WORKERS:-16}; DEVICE=${DEVICE:-cuda}
DEADLINE=${DEADLINE:-560}   # seconds after T0 by which the study should have finished
EVAL_S=${EVAL_S:-130}       # estimate: study start-up (top-up collection excluded) + evaluation + timing
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl PYTHONUNBUFFERED=1
if [ -z "${LOCAL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  if [ ! -d /tmp/site/metaworld ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  fi
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD/.dev/stub
  PY=python3
else
  PY=$PWD/.venv/bin/python
fi
oft() { $PY -c 'import sys; from oft.cli import main; sys.exit(main())' "$@"; }
pack() {
  tar czf "$OUT/gpu_mt10.tgz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.png' --exclude='*.mp4' \
    --exclude='data' --exclude='checkpoints' "$G" /tmp/gpu_logs 2>/dev/null
  ls -la "$OUT"
}
mkdir -p /tmp/gpu_logs

if [ "$phase" = run ]; then
  log "setup done"; nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
  $PY -c 'import torch, mujoco, numpy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "mujoco", mujoco.__version__, "numpy", numpy.__version__)'
  # CUDA smoke: 2 demos, 20 steps on $DEVICE, 2 episodes (fails fast before the long part)
  rm -rf /tmp/smoke
  oft collect metaworld --tasks drawer-open-v3 --episodes 2 --out /tmp/smoke/data --cameras corner,gripperPOV \
    --image-size 64 --images png --workers 2 > /tmp/gpu_logs/smoke.log 2>&1 &&
  oft train --preset metaworld-tiny --dataset /tmp/smoke/data --out /tmp/smoke/train --set max_steps=20 \
    --set batch_size=8 --set device=$DEVICE >> /tmp/gpu_logs/smoke.log 2>&1 &&
  oft eval --env metaworld --tasks drawer-open-v3 --checkpoint /tmp/smoke/train --episodes 2 --workers 2 \
    --video-episodes 0 --device $DEVICE --out /tmp/smoke/eval >> /tmp/gpu_logs/smoke.log 2>&1
  rc=$?; log "smoke rc=$rc"; grep -a -E "INFO|Error|error" /tmp/gpu_logs/smoke.log | tail -15
  if [ $rc != 0 ]; then tail -c 3000 /tmp/gpu_logs/smoke.log; pack; exit 4; fi
  log "collect 4 tasks x $EP4"
  t1=$(date +%s)
  oft collect metaworld --tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3 --episodes "$EP4" \
    --out "$G/data" --cameras corner,gripperPOV --image-size 64 --images png --workers "$WORKERS" \
    > /tmp/gpu_logs/collect.log 2>&1 || { tail -c 3000 /tmp/gpu_logs/collect.log; pack; exit 5; }
  tc=$(($(date +%s) - t1)); log "collected in ${tc}s"; grep -a INFO /tmp/gpu_logs/collect.log | tail -3
  # the study tops up the other six tasks to DEMOS each (about 300/800 of the collection above), then trains
  now=$(($(date +%s) - T0))
  MINUTES=${MINUTES:-$($PY -c "print(round(max(0.5, ($DEADLINE - $now - 0.4 * $tc - $EVAL_S) / 60), 2))")}
  log "study: budget $MINUTES training minutes"
  echo "$MINUTES" > /tmp/gpu_logs/minutes.txt
  setsid bash -c "$PY -c 'import sys; from oft.cli import main; sys.exit(main())' study --suite mt10 \
    --out $G --variants pdac_l1_extra_inputs --budget-minutes $MINUTES --set max_steps=200000 \
    --set save_every=1000 --set keep_last=400 --set device=$DEVICE --demos $DEMOS --episodes $EPISODES \
    --threads 4 --eval-workers $WORKERS --collect-workers $WORKERS > /tmp/gpu_logs/study.log 2>&1; \
    echo \$? > /tmp/gpu_logs/study.rc" < /dev/null &
  while [ ! -f /tmp/gpu_logs/study.rc ] && [ $(($(date +%s) - T0)) -lt $((DEADLINE + 15)) ]; do sleep 5; done
  log "study rc=$(cat /tmp/gpu_logs/study.rc 2>/dev/null || echo running)"
  grep -a -E "INFO|Error|error" /tmp/gpu_logs/study.log | grep -v -i "it/s" | tail -25
  nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv 2>/dev/null
  pack
else
  while [ ! -f /tmp/gpu_logs/study.rc ] && [ $(($(date +%s) - T0)) -lt ${WAIT:-200} ]; do sleep 3; done
  log "study rc=$(cat /tmp/gpu_logs/study.rc 2>/dev/null || echo running)"
  grep -a -E "INFO|Error|error" /tmp/gpu_logs/study.log | tail -25
  cat "$G/results.md" 2>/dev/null
  if [ -n "${CURVE:-}" ] && [ -f /tmp/gpu_logs/study.rc ]; then
    steps=$($PY -c "import json; s=json.load(open('$G/variants/pdac_l1_extra_inputs/train.json'))['steps']; print(round(s / 2000) * 1000)")
    log "curve at step $steps"
    timeout ${CURVE_S:-150} $PY -c 'import sys; from oft.cli import main; sys.exit(main())' eval-curve --study $G \
      --variant pdac_l1_extra_inputs --steps $steps --workers $WORKERS --out $G/curve > /tmp/gpu_logs/curve.log 2>&1
    log "curve rc=$?"; grep -a INFO /tmp/gpu_logs/curve.log | tail -5
  fi
  pack
fi
