"""Where push's (or pick-place's) misses fail, over 20 unseen layouts of one checkpoint: whether the hand got
over the object (within 2 cm in the table plane, where MetaWorld's scripted expert starts down onto it),
whether the object moved, and how far from the goal it ended.

MUJOCO_GL=egl python docs/results/study_mt10/push_phases.py CHECKPOINT push-v3 workspace,gripperPOV
"""

import sys

import numpy as np

import oft
from oft.sim.base import make_env

checkpoint, task, cameras = sys.argv[1], sys.argv[2], tuple(sys.argv[3].split(","))
policy = oft.load_policy(checkpoint)
env = make_env("metaworld", task, cameras=cameras, image_size=64)
rows = []
for seed in range(1_000_000, 1_000_020):
    obs = env.reset(seed)
    policy.reset()
    goal = np.array(env._env._target_pos)  # the MetaWorld env's goal; env._obs is its 39-D state
    start = np.array(env._obs[4:7])  # hand 0:3, object 4:7
    over, moved, to_goal, success = [], [], [], False
    while True:
        r = env.step(policy.select_action(obs))
        obs, state = r.observation, env._obs
        over.append(100 * float(np.linalg.norm(state[0:2] - state[4:6])))
        moved.append(100 * float(np.linalg.norm(state[4:7] - start)))
        to_goal.append(100 * float(np.linalg.norm(state[4:7] - goal)))
        if r.success or r.done:
            success = r.success
            break
    rows.append((success, min(over), max(moved), to_goal[0], to_goal[-1]))
    print(
        f"seed {seed}: {'success' if success else 'miss'} after {len(over)} steps; hand over the object "
        f"within {min(over):.1f} cm; object moved up to {max(moved):.1f} cm; object to goal "
        f"{to_goal[0]:.1f} cm at the start, {to_goal[-1]:.1f} at the end, closest {min(to_goal):.1f}"
    )
misses = np.array([r[1:] for r in rows if not r[0]]).reshape(-1, 4)
print(f"{task}: {sum(r[0] for r in rows)}/20 successes; of {len(misses)} misses, the hand got within 2 cm "
      f"over the object in {int((misses[:, 0] < 2).sum())}, the object moved more than 3 cm in "
      f"{int((misses[:, 1] > 3).sum())}; median object-to-goal {np.median(misses[:, 2]):.1f} cm at the "
      f"start, {np.median(misses[:, 3]):.1f} at the end")  # fmt: skip
