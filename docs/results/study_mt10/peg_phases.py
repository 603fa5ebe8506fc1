"""Where peg-insert-side's misses fail, over unseen layouts of one checkpoint: whether the hand reached the
peg (MetaWorld's ``near_object``: tool centre within 3 cm of the peg's grasp point), whether the peg was
lifted (its grasp point more than 5 cm above where it started), how close the peg's head came to the hole
(MetaWorld's ``obj_to_target``: the distance with y and z counted twice; success at 7 cm), and at that
closest moment how far the head was from the hole along the insertion axis (x) and across it (y, z).

MUJOCO_GL=egl python docs/results/study_mt10/peg_phases.py CHECKPOINT workspace,gripperPOV [EPISODES]

Seeds 1,000,000 on are ``oft eval``'s unseen layouts (the same episodes as its results.json).
"""

import sys

import numpy as np

import oft
from oft.sim.base import make_env

checkpoint, cameras = sys.argv[1], tuple(sys.argv[2].split(","))
episodes = int(sys.argv[3]) if len(sys.argv) > 3 else 20
policy = oft.load_policy(checkpoint)
env = make_env("metaworld", "peg-insert-side-v3", cameras=cameras, image_size=64)
rows = []
for seed in range(1_000_000, 1_000_000 + episodes):
    obs = env.reset(seed)
    policy.reset()
    mw = env._env  # the MetaWorld env: its peg-head site and hole (_target_pos)
    z0, near, lift, steps, best, at_best = float(env._obs[6]), False, 0.0, 0, np.inf, np.zeros(3)
    while True:
        r = env.step(policy.select_action(obs))
        obs, steps = r.observation, steps + 1
        near |= bool(r.info["near_object"])
        lift = max(lift, 100 * (float(env._obs[6]) - z0))
        d = 100 * float(r.info["obj_to_target"])
        if d < best:
            best, at_best = d, 100 * (mw._get_site_pos("pegHead") - mw._target_pos)
        if r.success or r.done:
            break
    rows.append((r.success, near, lift > 5, best, *np.abs(at_best), 100 * mw._target_pos[1], at_best[1]))
    print(
        f"seed {seed}: {'success' if r.success else 'miss'} after {steps} steps; hand at the peg {near}; "
        f"lifted {lift:.1f} cm; peg head to hole closest {best:.1f} cm, there x {at_best[0]:+.1f}, "
        f"y {at_best[1]:+.1f}, z {at_best[2]:+.1f} cm"
    )
misses = np.array([r for r in rows if not r[0]], dtype=float).reshape(-1, 9)
hole_y, error_y = np.array([r[7] for r in rows]), np.array([r[8] for r in rows])
print(
    f"peg-insert-side-v3: {sum(r[0] for r in rows)}/{len(rows)} successes; of {len(misses)} misses, the hand "
    f"never reached the peg in {int((misses[:, 1] == 0).sum())}, the peg was lifted in "
    f"{int(misses[:, 2].sum())}; at the closest approach, median |x| {np.median(misses[:, 4]):.1f} cm, "
    f"|y| {np.median(misses[:, 5]):.1f} cm, |z| {np.median(misses[:, 6]):.1f} cm (the expert aligns y and z "
    f"within 3 cm before pushing in along x); y off by more than 3 cm in {int((misses[:, 5] > 3).sum())}"
)
print(
    f"all episodes: correlation of the hole's y with the y error {np.corrcoef(hole_y, error_y)[0, 1]:+.2f}; "
    f"the peg head's y at the closest approach spread {np.std(hole_y + error_y):.1f} cm (std), the hole's "
    f"{np.std(hole_y):.1f} cm (a policy that ignored the hole would spread 0 and correlate -1)"
)
