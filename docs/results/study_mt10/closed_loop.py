"""How close does an MT10 policy get, in closed loop? A diagnostic, not part of the package.

The policy runs 10 unseen layouts (seeds 1,000,000 + i) of each task for ``--steps`` steps, each chunk
executed whole, and the script prints the closest the hand (reach) or the object (other tasks) came to the
goal, in cm, and how far the object moved. Reach succeeds within 5 cm; push and pick-place need the object
within 5 and 7 cm.

    MUJOCO_GL=egl python docs/results/study_mt10/closed_loop.py CHECKPOINT [--tasks reach-v3,push-v3]
"""

import argparse

import numpy as np
import torch

from oft.model.loading import load_policy
from oft.sim.base import make_env

p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("--tasks", default="reach-v3,push-v3")
p.add_argument("--steps", type=int, default=200)
args = p.parse_args()
torch.set_num_threads(2)
policy = load_policy(args.checkpoint, device="cpu", dtype=torch.float32).eval()
K = policy.spec.chunk_len
for task in args.tasks.split(","):
    env = make_env("metaworld", task=task, cameras=tuple(policy.spec.cameras), image_size=policy.image_size)
    for seed in range(1_000_000, 1_000_010):
        obs = env.reset(seed)
        goal = env._env._target_pos.copy()  # metaworld's goal (the 39-D state's last three entries)
        obj0 = env._obs[4:7].copy()
        closest = np.inf
        for _ in range(0, args.steps, K):
            with torch.no_grad():
                chunk = np.asarray(policy.predict_action_chunk(obs))[:K]
            for a in chunk:
                obs = env.step(a).observation
            point = env._obs[:3] if task.startswith("reach") else env._obs[4:7]
            closest = min(closest, float(np.linalg.norm(point - goal)))
        moved = np.linalg.norm(env._obs[4:7] - obj0)
        print(f"{task} {seed}: closest to the goal {closest * 100:.1f} cm, object moved {moved * 100:.1f} cm")
    env.close()
