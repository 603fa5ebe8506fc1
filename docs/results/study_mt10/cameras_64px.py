"""What MT10's random-target tasks look like to the policy: reach, push and pick-place at two evaluation
seeds, each as topview | corner | gripperPOV at 64 px (the `metaworld-tiny` size). Writes cameras_64px.png
beside it.

    MUJOCO_GL=egl python docs/results/study_mt10/cameras_64px.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from oft.sim.base import make_env

rows = []
for task in ("reach-v3", "push-v3", "pick-place-v3"):
    env = make_env("metaworld", task, cameras=("topview", "corner", "gripperPOV"), image_size=64)
    row = []
    for seed in (1_000_000, 1_000_001):
        row += list(env.reset(seed).images)
    rows.append(np.concatenate(row, 1))
img = np.concatenate(rows, 0)
out = Path(__file__).with_name("cameras_64px.png")
Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST).save(out)
print(out)
