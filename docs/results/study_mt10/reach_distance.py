"""Where reach's misses end: the hand-to-goal distance over 8 unseen reach layouts, for one MT10 checkpoint.

MUJOCO_GL=egl python docs/results/study_mt10/reach_distance.py runs/mt10_ws/train workspace,gripperPOV
"""

import sys

import numpy as np

import oft
from oft.sim.base import make_env
from oft.sim.rollout import rollout

checkpoint, cameras = sys.argv[1], tuple(sys.argv[2].split(","))
policy = oft.load_policy(checkpoint)
env = make_env("metaworld", "reach-v3", cameras=cameras, image_size=64)
for seed in range(1_000_000, 1_000_008):
    r = rollout(policy, env, seed=seed, record_observations=True)
    goal = np.array(env._env._target_pos)
    cm = [100 * float(np.linalg.norm(o.proprio[:3] - goal)) for o in r.observations]
    marks = [f"{cm[i]:.1f}" for i in (0, 25, 50, 100, 200, len(cm) - 1) if i < len(cm)]
    outcome = "success" if r.success else "miss"
    print(
        f"seed {seed}: {outcome} after {r.steps} steps; cm at steps 0, 25, 50, 100, 200, last: {marks}; "
        f"closest {min(cm):.1f}"
    )
