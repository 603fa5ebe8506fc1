"""How much joint error does ALOHA insertion tolerate once both objects are held? A diagnostic, not part of
the package.

The scripted expert (``AlohaEnv.expert_action``) is replayed on unseen layouts (seeds 1,000 + i) with one
constant offset added to every arm joint from step ``--start`` on (after both grasps close at step 220):
each of the 12 arm joints gets its own draw from N(0, sigma^2) rad per episode; the grippers are left alone.
A constant offset is how a policy that regresses the meeting pose imprecisely errs: the expert's meeting
point is the same for every layout. Prints the inserted fraction per sigma, and for the unperturbed expert
how far the peg's tip is from the pin's end when the arms arrive (step 339) and at the end (step 399), along
the socket's axis and across it (m).

``--grasp-noise`` makes the sigmas metres instead: each hand's grasp point (the object's x and y as the expert
reads them) moves by N(0, sigma^2) m per episode and the joints are left alone: an off-centre grasp, with the
meeting point unchanged. Every sigma reuses the same layouts and the same draws (scaled by sigma).

``--depth D`` moves each hand's final meeting waypoints D m toward the other (2 D between them: a deeper
insertion in the demonstrations), to see whether a margin along the axis buys tolerance.

    MUJOCO_GL=egl python docs/results/aloha_tolerance/tolerance.py --episodes 50 --sigmas 0,0.005,0.01,0.02
    MUJOCO_GL=egl python docs/results/aloha_tolerance/tolerance.py --episodes 50 --sigmas 0.003,0.006,0.01 \
        --grasp-noise
"""

import argparse
import dataclasses
import time

import numpy as np

import oft.sim.aloha as aloha
from oft.sim.aloha_expert import insertion_waypoints, task_waypoints

p = argparse.ArgumentParser()
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--sigmas", default="0,0.005,0.01,0.015,0.02,0.03")
p.add_argument("--start", type=int, default=220, help="first step with the offset")
p.add_argument("--grasp-noise", action="store_true", help="the sigmas (m) move the grasp points instead")
p.add_argument("--depth", type=float, default=0.0, help="each hand's meeting point moved this far in (m)")
args = p.parse_args()


GRASP = [np.zeros(3), np.zeros(3)]  # this episode's grasp-point offsets (peg, socket), m


def waypoints(task, pose, target=None):
    if task != "insertion":
        return task_waypoints(task, pose, target)
    left, right = insertion_waypoints(pose[:3] + GRASP[0], pose[7:10] + GRASP[1])
    d = np.array([args.depth, 0.0, 0.0])
    left = [dataclasses.replace(w, xyz=w.xyz + d) if w.t >= 340 else w for w in left]
    right = [dataclasses.replace(w, xyz=w.xyz - d) if w.t >= 340 else w for w in right]
    return left, right


aloha.task_waypoints = waypoints  # what record_expert_trajectory calls
env = aloha.AlohaEnv("insertion", cameras=())


def tip_to_pin() -> list[float]:
    """(along the socket's axis, across y, across z) from the pin's end to the peg's tip, m."""
    data = env.physics.named.data
    peg, peg_r = data.geom_xpos["red_peg"], data.geom_xmat["red_peg"].reshape(3, 3)
    pin, pin_r = data.geom_xpos["pin"], data.geom_xmat["pin"].reshape(3, 3)
    d = (peg - 0.06 * peg_r[:, 0]) - (pin + 0.04 * pin_r[:, 0])  # half-lengths from the scene XML
    return [round(float(d @ pin_r[:, k]), 4) for k in range(3)]


def episode(seed: int, sigma: float, rng: np.random.Generator) -> tuple[bool, list]:
    if args.grasp_noise:
        GRASP[0] = np.r_[rng.normal(0.0, sigma, 2), 0.0]
        GRASP[1] = np.r_[rng.normal(0.0, sigma, 2), 0.0]
        sigma = 0.0
    env.reset(seed)
    offset = rng.normal(0.0, sigma, 14)
    offset[[6, 13]] = 0.0  # grippers
    inserted, gaps = False, []
    for t in range(400):
        action = env.expert_action() + (offset if t >= args.start else 0.0)
        inserted |= env.step(action, render=False).success
        if t in (339, 399):
            gaps.append(tip_to_pin())
    return inserted, gaps


for sigma in [float(s) for s in args.sigmas.split(",")]:
    rng = np.random.default_rng(0)
    t0 = time.time()
    results = [episode(1000 + i, sigma, rng) for i in range(args.episodes)]
    k = sum(r[0] for r in results)
    unit = "m of grasp offset" if args.grasp_noise else "rad"
    print(
        f"depth {args.depth:.3f} m, sigma {sigma} {unit}: {k}/{args.episodes} inserted",
        f"({time.time() - t0:.0f} s)",
    )
    if sigma == 0:
        gaps = np.array([r[1] for r in results])  # (E, 2, 3)
        for j, step in enumerate((339, 399)):
            g = gaps[:, j]
            print(
                f"  step {step}: tip-to-pin along the axis {g[:, 0].min():+.4f}..{g[:, 0].max():+.4f} m, "
                f"across |y| <= {abs(g[:, 1]).max():.4f}, |z| <= {abs(g[:, 2]).max():.4f}"
            )
