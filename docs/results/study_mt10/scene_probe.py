"""Which task does an MT10 policy do in the scene reach, push and pick-place share? A diagnostic, not part of
the package.

The three tasks are one MetaWorld scene: a red puck on the table and a goal dot (reach red, push green,
pick-place blue). The policy runs the first ``--episodes`` unseen layouts (seeds 1,000,000 + i) of each
task's scene under each task's instruction (``oft eval --instruction`` does the same, counting successes),
with the evaluation's rollout, and the script prints, per scene and instruction: the successes; the medians
over episodes of the closest the hand came to the goal and to the puck; in how many episodes the hand came
within 5 cm of the goal and within 3 cm of the puck, and the puck moved or was lifted more than 2 cm. Reach
succeeds with the hand within 5 cm of its goal; push and pick-place with the puck within 5 and 7 cm of theirs.

    MUJOCO_GL=egl python docs/results/study_mt10/scene_probe.py CHECKPOINT [--episodes 10] \
        [--tasks reach-v3,push-v3,pick-place-v3] [--out probe.json]
"""

import argparse
import json

import numpy as np
import torch

from oft.model.loading import load_policy
from oft.sim.base import make_env
from oft.sim.metaworld import INSTRUCTIONS
from oft.sim.rollout import rollout


def trace_states(env) -> list[np.ndarray]:
    """Make ``env.step`` append (hand, puck, goal) xyz after every step (metaworld's state, in metres) to the
    returned list, which the caller clears per episode."""
    raw, step, trace = env._env, env.step, []

    def traced_step(action, render=True):
        result = step(action, render=render)
        trace.append(np.concatenate([raw.tcp_center, raw.data.body("obj").xpos, raw._target_pos]))
        return result

    env.step = traced_step
    return trace


p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("--episodes", type=int, default=10)
p.add_argument("--tasks", default="reach-v3,push-v3,pick-place-v3")
p.add_argument("--out", help="write every episode's numbers here (JSON)")
args = p.parse_args()
torch.set_num_threads(2)
policy = load_policy(args.checkpoint, device="cpu", dtype=torch.float32).eval()
tasks = args.tasks.split(",")
rows = []
for scene in tasks:
    for told in tasks:
        env = make_env(
            "metaworld",
            task=scene,
            instruction=INSTRUCTIONS[told],
            cameras=tuple(policy.spec.cameras),
            image_size=policy.image_size,
        )
        trace = trace_states(env)
        for i in range(args.episodes):
            trace.clear()
            with torch.no_grad():
                res = rollout(policy, env, seed=env.eval_seed_offset + i)
            t = np.array(trace)
            hand, puck, goal = t[:, :3], t[:, 3:6], t[:, 6:9]
            rows.append(
                {
                    "scene": scene,
                    "told": told,
                    "seed": env.eval_seed_offset + i,
                    "success": bool(res.success),
                    "steps": res.steps,
                    "hand_goal_min_m": float(np.linalg.norm(hand - goal, axis=1).min()),
                    "hand_puck_min_m": float(np.linalg.norm(hand - puck, axis=1).min()),
                    "puck_moved_m": float(np.linalg.norm(puck[-1, :2] - puck[0, :2])),
                    "puck_lift_m": float(puck[:, 2].max() - puck[0, 2]),
                }
            )
        env.close()
        sel = [r for r in rows if r["scene"] == scene and r["told"] == told]

        def med(key, sel=sel):
            return 100 * float(np.median([r[key] for r in sel]))

        def count(key, below, sel=sel):
            return sum((r[key] < below) for r in sel)

        n = len(sel)
        print(
            f"{scene} told {told}: success {sum(r['success'] for r in sel)}/{n}; median closest "
            f"hand-goal {med('hand_goal_min_m'):.1f} cm, hand-puck {med('hand_puck_min_m'):.1f} cm; "
            f"hand within 5 cm of the goal in {count('hand_goal_min_m', 0.05)}, within 3 cm of the puck in "
            f"{count('hand_puck_min_m', 0.03)}; puck moved > 2 cm in {n - count('puck_moved_m', 0.02)}, "
            f"lifted > 2 cm in {n - count('puck_lift_m', 0.02)}",
            flush=True,
        )
if args.out:
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
