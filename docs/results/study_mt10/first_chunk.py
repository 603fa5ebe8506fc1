"""Do an MT10 policy's chunks follow the target the expert goes to? A diagnostic, not part of the package.

For ``--layouts`` training layouts (seeds 0, 1, ...) and as many unseen ones (1,000,000 + i) of each task, the
scripted expert runs the episode; every K steps (up to ``--steps``) the policy is asked for its chunk from the
expert's observation, and its actions are compared with the K actions the expert then takes: the mean L1 error
of the xyz actions, the same for the mean-chunk predictor (the expert's chunk averaged over the layouts at
that step: what a policy that ignores the target can do at best), and the cosine between the policy's and
the expert's summed xyz motion over the chunk. A policy that reads the target has an error well below the
mean-chunk predictor and a cosine near 1.

    MUJOCO_GL=egl python docs/results/study_mt10/first_chunk.py CHECKPOINT [--tasks reach-v3,push-v3] \
        [--layouts 10] [--steps 40]
"""

import argparse

import numpy as np
import torch

from oft.model.loading import load_policy
from oft.sim.base import make_env

p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("--tasks", default="reach-v3,push-v3,pick-place-v3,peg-insert-side-v3,drawer-open-v3")
p.add_argument("--layouts", type=int, default=10)
p.add_argument("--steps", type=int, default=40, help="query every K steps before this step of the episode")
args = p.parse_args()
torch.set_num_threads(2)
policy = load_policy(args.checkpoint, device="cpu", dtype=torch.float32).eval()
K = policy.spec.chunk_len
cams = tuple(policy.spec.cameras)
print(f"{args.checkpoint}: K={K}, cameras {cams}, image {policy.image_size} px")
for task in args.tasks.split(","):
    env = make_env("metaworld", task=task, cameras=cams, image_size=policy.image_size)
    for name, seeds in (
        ("train", range(args.layouts)),
        ("unseen", range(1_000_000, 1_000_000 + args.layouts)),
    ):
        preds, experts = [], []  # (layouts, queries, K, 4)
        for seed in seeds:
            obs = env.reset(seed)
            p_l, e_l = [], []
            for _ in range(0, args.steps, K):
                with torch.no_grad():
                    p_l.append(np.asarray(policy.predict_action_chunk(obs))[:K])
                chunk = []
                for _ in range(K):
                    a = env.expert_action()
                    chunk.append(a)
                    obs = env.step(a).observation
                e_l.append(np.stack(chunk))
            preds.append(np.stack(p_l))
            experts.append(np.stack(e_l))
        preds, experts = np.stack(preds)[..., :3], np.stack(experts)[..., :3]
        err = np.abs(preds - experts).mean()
        mean_err = np.abs(experts - experts.mean(0, keepdims=True)).mean()
        ps, es = preds.sum(2), experts.sum(2)  # (layouts, queries, 3): the chunk's summed motion
        cos = (ps * es).sum(-1) / (np.linalg.norm(ps, axis=-1) * np.linalg.norm(es, axis=-1) + 1e-9)
        print(
            f"{task:24s} {name:6s}: policy L1 {err:.3f}, mean-chunk predictor {mean_err:.3f}, "
            f"cosine of the chunk's motion {cos.mean():.2f} (first chunk {cos[:, 0].mean():.2f})"
        )
    env.close()
