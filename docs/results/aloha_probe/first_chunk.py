"""Does an ALOHA policy's first chunk depend on where the cube is? A diagnostic, not part of the package.

For 10 training layouts (seeds 0-9) and 10 unseen ones (1,000,000-1,000,009) of a task, the policy's chunk at
step ``--at`` (reached by following the scripted expert) is compared with the expert's next K actions:
mean L1 error (rad) of each arm, the same for a predictor of the expert's mean chunk over the layouts, and the
spread (std over layouts, rad) of the right arm's predicted and expert chunks. A policy that reads the cube's
position spreads its chunks as the expert does; one that ignores it predicts one chunk for every layout.

    MUJOCO_GL=egl python docs/results/aloha_probe/first_chunk.py CHECKPOINT [--task transfer-cube] [--at 0]
"""

import argparse

import numpy as np
import torch

from oft.model.loading import load_policy
from oft.sim.aloha import AlohaEnv

p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("--task", default="transfer-cube")
p.add_argument("--at", type=int, default=0, help="step of the episode (following the expert) to query at")
args = p.parse_args()
torch.set_num_threads(1)
policy = load_policy(args.checkpoint, device="cpu", dtype=torch.float32).eval()
K = policy.spec.chunk_len
env = AlohaEnv(args.task, image_size=policy.image_size)
for name, seeds in (("training layouts", range(10)), ("unseen layouts", range(1_000_000, 1_000_010))):
    experts, preds = [], []
    for seed in seeds:
        obs = env.reset(seed=seed)
        for _ in range(args.at):
            obs = env.step(env.expert_action()).observation
        expert = []
        for t in range(K):  # the expert's trajectory is recorded once per layout: read ahead, then rewind
            env._steps = args.at + t
            expert.append(env.expert_action())
        env._steps = args.at
        with torch.no_grad():
            preds.append(policy.predict_action_chunk(obs)[:K])
        experts.append(np.stack(expert))
    experts, preds = np.stack(experts), np.stack(preds)  # (layouts, K, 14)
    err = np.abs(preds - experts).mean((0, 1))
    mean_err = np.abs(experts - experts.mean(0, keepdims=True)).mean((0, 1))
    print(
        f"{name}, step {args.at}: policy L1 left {err[:7].mean():.3f} right {err[7:].mean():.3f} rad; "
        f"mean-chunk predictor left {mean_err[:7].mean():.3f} right {mean_err[7:].mean():.3f}; "
        f"right-arm spread over layouts: policy {preds[:, :, 7:].std(0).mean():.4f}, "
        f"expert {experts[:, :, 7:].std(0).mean():.4f}"
    )
