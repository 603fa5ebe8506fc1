"""Can the cameras tell where reach's goal is? Geometry only, no policy; a diagnostic, not in the package.

Reach-v3 (and pick-place-v3) put the goal sphere in the air, anywhere in a box 20 x 10 x 25 cm. One camera
sees a point only up to its depth along the viewing ray. This samples goals uniformly in the task's goal box,
projects them with each camera's pinhole model at the reset pose (MuJoCo's ``cam_xpos``, ``cam_xmat``,
``cam_fovy``) onto a ``--size`` px image, and for every pair of goals that land within 1 px of each other in
every camera of a set, measures how far apart they are in 3D. Reach succeeds within 5 cm of its goal.

    MUJOCO_GL=egl python docs/results/study_mt10/goal_depth.py [--task reach-v3] [--size 64] [--goals 20000]
"""

import argparse

import mujoco
import numpy as np
from scipy.spatial import cKDTree

from oft.sim.base import make_env

p = argparse.ArgumentParser()
p.add_argument("--task", default="reach-v3")
p.add_argument("--size", type=int, default=64, help="image side (px)")
p.add_argument("--goals", type=int, default=20000)
args = p.parse_args()

env = make_env("metaworld", task=args.task, cameras=("corner",), image_size=args.size)
env.reset(1_000_000)
e = env._env  # the MetaWorld env under the adapter: its model, data and reset space
while not hasattr(e, "model"):
    e = e.env if hasattr(e, "env") else e.unwrapped
m, d = e.model, e.data
space = e._random_reset_space  # [object xyz, goal xyz]
lo, hi = np.asarray(space.low)[3:6], np.asarray(space.high)[3:6]
goals = np.random.default_rng(0).uniform(lo, hi, size=(args.goals, 3))
print(f"{args.task}: goal box {lo} .. {hi} (m), {args.goals} goals, {args.size} px images")


def project(camera: str, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) of ``points`` (N, 3) and whether each is in the image."""
    cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    rel = (points - d.cam_xpos[cid]) @ d.cam_xmat[cid].reshape(3, 3)  # camera frame, looking along -z
    f = 0.5 * args.size / np.tan(np.deg2rad(m.cam_fovy[cid]) / 2)
    uv = f * rel[:, :2] / -rel[:, 2:3]
    seen = (rel[:, 2] < 0) & (np.abs(uv) < args.size / 2).all(1)
    return uv, seen


for cams in (("corner",), ("gripperPOV",), ("corner", "behindGripper"), ("corner", "topview"),
             ("corner", "corner2")):  # fmt: skip
    proj = [project(c, goals) for c in cams]
    uv = np.concatenate([u for u, _ in proj], 1)
    seen = np.all([s for _, s in proj], 0)
    pairs = cKDTree(uv[seen]).query_pairs(1.0, output_type="ndarray")
    g = goals[seen]
    dist = np.linalg.norm(g[pairs[:, 0]] - g[pairs[:, 1]], axis=1) if len(pairs) else np.zeros(1)
    print(
        f"{'+'.join(cams):22s} goals in view {seen.mean():5.0%}; pairs within 1 px: {len(pairs):8d}, "
        f"3D distance max {100 * dist.max():4.1f} cm, "
        f"90th percentile {100 * np.percentile(dist, 90):4.1f} cm, "
        f"over 5 cm {(dist > 0.05).mean():4.0%}"
    )
