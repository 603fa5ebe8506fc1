"""Where does a trained insertion policy err: its joints at the meeting pose, or its grasp? A diagnostic, not
part of the package.

``tolerance.py`` measured what the task tolerates (about 0.005 rad per arm joint, an off-centre grasp of
6 mm costs 6 of 50); this script measures what a policy does, on unseen layouts (reset seeds 1,000,000 + i, as
``oft eval`` uses), with the same rollout and env options as ``oft eval`` (whole chunks open-loop, the
checkpoint's cameras and render sizes), run to the 400-step end:

- **joint error at the meeting pose**: the commanded arm joints (12; grippers left out) minus the scripted
  expert's on the same layout, averaged over steps 340-399, where the expert holds one fixed pose for every
  layout. Reported per episode as the mean absolute error over the 12 joints (rad), and per joint.
- **grasp offset**: where each held object sits in its gripper's frame at step 330 (``--grasp-step``), minus
  where it sits when the expert grasps it on the same layout (m; peg in the right gripper, socket in the
  left).
- **tip-to-pin** at the last step: the peg's tip from the pin's end, along the socket's axis and across
  it (m).

    MUJOCO_GL=egl python docs/results/aloha_tolerance/policy_error.py --checkpoint runs/ins300/run \\
        --episodes 50 --out runs/ins300/policy_error.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from oft.model.loading import load_policy
from oft.sim.aloha import EVAL_SEED_OFFSET, AlohaEnv
from oft.sim.evaluate import _env_kwargs
from oft.sim.rollout import rollout

MEET = slice(340, 400)  # the expert's meeting pose: the same joint command for every layout
ARM = [*range(6), *range(7, 13)]  # the 12 arm joints of the 14-D command (6 and 13 are the grippers)


class Recorder:
    """An AlohaEnv seen through ``rollout``: every commanded action and, at chosen steps, the physics."""

    def __init__(self, env: AlohaEnv, grasp_step: int) -> None:
        self.env, self.grasp_step = env, grasp_step
        self.actions: list[np.ndarray] = []
        self.grasp: np.ndarray | None = None

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, seed: int):
        self.actions, self.grasp = [], None
        return self.env.reset(seed)

    def step(self, action, render: bool = True):
        self.actions.append(np.asarray(action, np.float64).copy())
        res = self.env.step(action, render=render)
        if len(self.actions) == self.grasp_step:
            self.grasp = held_offsets(self.env)
        return res


def _in_frame(data, body: str, gripper: str) -> np.ndarray:
    rot = data.xmat[gripper].reshape(3, 3)
    return rot.T @ (data.xpos[body] - data.xpos[gripper])


def held_offsets(env: AlohaEnv) -> np.ndarray:
    """(2, 3): the peg in the right gripper's frame, the socket in the left's (m)."""
    data = env.physics.named.data
    return np.stack(
        [
            _in_frame(data, "peg", "vx300s_right/gripper_link"),
            _in_frame(data, "socket", "vx300s_left/gripper_link"),
        ]
    )


def tip_to_pin(env: AlohaEnv) -> np.ndarray:
    """(along the socket's axis, across y, across z) from the pin's end to the peg's tip, m."""
    data = env.physics.named.data
    peg, peg_r = data.geom_xpos["red_peg"], data.geom_xmat["red_peg"].reshape(3, 3)
    pin, pin_r = data.geom_xpos["pin"], data.geom_xmat["pin"].reshape(3, 3)
    d = (peg - 0.06 * peg_r[:, 0]) - (pin + 0.04 * pin_r[:, 0])  # half-lengths from the scene XML
    return np.array([d @ pin_r[:, k] for k in range(3)])


def expert_reference(env: AlohaEnv, seed: int, grasp_step: int) -> tuple[np.ndarray, np.ndarray]:
    """The expert's (400, 14) joint commands on layout ``seed``, its held-object offsets at ``grasp_step``."""
    env.reset(seed)
    actions, grasp = [], None
    for t in range(400):
        actions.append(env.expert_action())
        env.step(actions[-1], render=False)
        if t + 1 == grasp_step:
            grasp = held_offsets(env)
    return np.array(actions), grasp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first evaluation layout (reset seed 1,000,000 + this, as oft eval --seed)",
    )
    p.add_argument("--grasp-step", type=int, default=330)
    p.add_argument("--out", help="per-episode JSON")
    args = p.parse_args()

    policy = load_policy(args.checkpoint)
    env = AlohaEnv("insertion", **_env_kwargs(policy, None, "aloha"))
    ref_env = AlohaEnv("insertion", cameras=())
    rec = Recorder(env, args.grasp_step)
    rows = []
    for i in range(args.episodes):
        seed = EVAL_SEED_OFFSET + args.seed + i
        t0 = time.time()
        expert, expert_grasp = expert_reference(ref_env, seed, args.grasp_step)
        ep = rollout(policy, rec, seed=seed, after_success=None)
        acts = np.array(rec.actions)  # (400, 14)
        joint_err = (acts[MEET] - expert[MEET]).mean(axis=0)[ARM]  # (12,) rad, signed
        grasp = (rec.grasp - expert_grasp) if rec.grasp is not None else np.full((2, 3), np.nan)
        rows.append(
            {
                "seed": seed,
                "inserted": bool(ep.success),
                "joint_error_rad": joint_err.round(5).tolist(),
                "mean_abs_joint_error_rad": round(float(np.abs(joint_err).mean()), 5),
                "grasp_offset_m": {"peg": grasp[0].round(4).tolist(), "socket": grasp[1].round(4).tolist()},
                "tip_to_pin_m": tip_to_pin(env).round(4).tolist(),
            }
        )
        r = rows[-1]
        print(
            f"seed {seed}: inserted {r['inserted']}, |joint error| {r['mean_abs_joint_error_rad']:.4f} rad, "
            f"grasp offset peg {np.linalg.norm(grasp[0]) * 1000:.1f} mm socket "
            f"{np.linalg.norm(grasp[1]) * 1000:.1f} mm ({time.time() - t0:.0f} s)",
            flush=True,
        )
    summary = {}
    for name, group in (("inserted", True), ("failed", False)):
        sel = [r for r in rows if r["inserted"] == group]
        if not sel:
            continue
        summary[name] = {
            "episodes": len(sel),
            "median_abs_joint_error_rad": float(np.median([r["mean_abs_joint_error_rad"] for r in sel])),
            "median_grasp_offset_mm": {
                k: float(np.nanmedian([np.linalg.norm(r["grasp_offset_m"][k]) * 1000 for r in sel]))
                for k in ("peg", "socket")
            },
        }
    per_joint = np.abs(np.array([r["joint_error_rad"] for r in rows])).mean(axis=0)
    summary["mean_abs_error_per_arm_joint_rad"] = per_joint.round(4).tolist()
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "summary": summary, "episodes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
