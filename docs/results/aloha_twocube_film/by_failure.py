"""Replay the failed episodes of a two-cube ``results.json`` and sort them by how they end.

"stopped at the demonstrations' end": the episode ends with the left arm within 0.05 rad (every joint) of
where the demonstrations end (the mean of their last frames, from ``--dataset``), waiting for a cube that
does not arrive. Otherwise "closed on nothing": the right fingers, once opened (above 0.9), closed past
where a cube holds them (below 0.3): a missed grasp or a drop. Anything else is "other". Episodes replay
sequentially through the same ``rollout`` as ``oft eval`` (whose per-seed results do not depend on the
number of workers), so the replayed outcome is checked against the recorded one.

python docs/results/aloha_twocube_film/by_failure.py RESULTS.json --dataset DATASET_DIR
"""

import argparse
import collections
import json

import numpy as np
import torch

import oft
from oft.data import open_dataset
from oft.sim.aloha import sample_two_cubes
from oft.sim.base import make_env
from oft.sim.evaluate import _env_kwargs
from oft.sim.rollout import rollout

p = argparse.ArgumentParser()
p.add_argument("results")
p.add_argument("--dataset", required=True, help="the policy's training demonstrations (their end pose)")
args = p.parse_args()
torch.set_num_threads(1)
with open(args.results) as f:
    res = json.load(f)
ds = open_dataset(args.dataset)
end_left = np.mean([ds.episode(i).proprio[-1, :6] for i in range(0, ds.num_episodes, 10)], axis=0)
policy = oft.load_policy(res["policy"])
policy.eval()
kinds = collections.Counter()
for name, task in res["tasks"].items():
    instruction = name.split(": ", 1)[1]
    colour = "red" if "red" in instruction else "blue"
    with make_env("aloha", "two-cube", **_env_kwargs(policy, {"instruction": instruction}, "aloha")) as env:
        for e in task["episode_results"]:
            if e["success"]:
                continue
            r = rollout(policy, env, seed=e["seed"], record_observations=True,
                        open_loop_steps=res.get("open_loop_steps"),
                        max_steps=res.get("max_steps"))  # fmt: skip
            assert r.success == e["success"] and r.steps == e["steps"], (name, e["seed"])
            q = np.stack([o.proprio for o in r.observations])  # (T, 14)
            left_off = np.abs(q[-1, :6] - end_left).max()
            opened = np.flatnonzero(q[:, 13] > 0.9)
            closed_empty = len(opened) > 0 and q[opened[0] :, 13].min() < 0.3
            kind = "stopped at the demonstrations' end" if left_off < 0.05 else (
                "closed on nothing" if closed_empty else "other")  # fmt: skip
            kinds[kind] += 1
            x = sample_two_cubes(e["seed"])[0 if colour == "red" else 7]
            low = q[opened[0] :, 13].min() if len(opened) else float("nan")
            print(f"{name} seed {e['seed']} x={x:.3f} stage {e['outcome']['max_stages'][colour]}: {kind} "
                  f"(left arm {left_off:.3f} rad from the end pose, right fingers {q[-1, 13]:.2f}, "
                  f"lowest after opening {low:.2f})")  # fmt: skip
print(dict(kinds))
