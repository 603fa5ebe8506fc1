#!/bin/bash
# The quickstart with each task normalized by its own statistics (--set mixture_stats=per_task), at the
# steps of the last default run (quickstart_87f67a1: 2,929 steps in its 30-minute budget, 90.0%), so the
# comparison does not depend on this machine's speed. The same tasks, demonstrations (same seeds) and
# evaluation layouts as `make quickstart`.
set -e
cd /work/exp3
export MUJOCO_GL=egl PYTHONPATH=/work/exp3/src
echo "commit $(git rev-parse --short HEAD) start $(date -u +%T)"
/work/main/.venv/bin/oft quickstart --out /work/runs/qs_per_task --steps 2929 --set mixture_stats=per_task
echo "all end $(date -u +%T)"
