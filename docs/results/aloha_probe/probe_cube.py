"""Can a from-scratch ViT find ALOHA's cube? Regress the cube's (x, y) from the top camera's first frame.

A diagnostic, not part of the package: it trains the policy's vision encoder (oft.model.vision, the
``small-128`` sizes) plus a readout on 50 transfer-cube layouts (seeds 0-49, the study's demonstration
seeds) and reports the L1 error, in standard deviations of the cube position, on 100 unseen layouts (the
evaluation seeds from 1,000,000). Predicting the mean position scores about 0.8.

    MUJOCO_GL=egl python docs/results/aloha_probe/probe_cube.py --stem patch --readout attention

--readout: how the patch tokens become one vector, as in the policy (its action slots read the image
tokens by attention) or not: ``attention`` (one learned query), ``mean`` (mean pool), ``flatten`` (a
linear map of all tokens in place: position-aware by construction).
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

from oft.model.vision import HALF, VisionTransformer, ViTConfig
from oft.sim.aloha import AlohaEnv

p = argparse.ArgumentParser()
p.add_argument("--stem", choices=["patch", "conv"], default="patch")
p.add_argument("--readout", choices=["attention", "mean", "flatten"], default="attention")
p.add_argument("--steps", type=int, default=800)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.manual_seed(0)
torch.set_num_threads(args.threads)

env = AlohaEnv("transfer-cube", cameras=("cam_high",), image_size=128)


def layouts(seeds):
    x, y = [], []
    for s in seeds:
        x.append(env.reset(seed=s).images[0])
        y.append(env._object_pose[:2])  # the cube's (x, y) on the table, metres
    x = torch.tensor(np.stack(x)).permute(0, 3, 1, 2).float() / 127.5 - 1  # the policy's HALF normalization
    return x, torch.tensor(np.stack(y)).float()


x_train, y_train = layouts(range(50))
x_test, y_test = layouts(range(1_000_000, 1_000_100))
mu, sd = y_train.mean(0), y_train.std(0)
cfg = ViTConfig(img_size=128, patch_size=16, embed_dim=128, depth=3, num_heads=4, mlp_ratio=2.0,
                mean=HALF, std=HALF, stem=args.stem)  # fmt: skip
vit = VisionTransformer(cfg)
mlp = nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 2))
query = nn.Parameter(torch.randn(1, 1, 128) * 0.02)
attn = nn.MultiheadAttention(128, 4, batch_first=True)
flat = nn.Linear(128 * cfg.num_patches, 2)


def predict(x):
    tokens = vit(x)
    if args.readout == "flatten":
        return flat(tokens.flatten(1))
    if args.readout == "mean":
        return mlp(tokens.mean(1))
    out, _ = attn(query.expand(len(x), -1, -1), tokens, tokens)
    return mlp(out[:, 0])


params = [*vit.parameters(), *mlp.parameters(), query, *attn.parameters(), *flat.parameters()]
opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
t0 = time.time()
for step in range(1, args.steps + 1):
    i = torch.randint(0, len(x_train), (32,))
    loss = (predict(x_train[i]) - (y_train[i] - mu) / sd).abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 200 == 0:
        with torch.no_grad():
            train = (predict(x_train) - (y_train - mu) / sd).abs().mean().item()
            test = (predict(x_test) - (y_test - mu) / sd).abs().mean().item()
        where = f"stem={args.stem} readout={args.readout} step {step}"
        print(f"{where}: train L1 {train:.3f}, unseen L1 {test:.3f} ({time.time() - t0:.0f} s)", flush=True)
