"""Offscreen rendering: a script that never closes its environment exits without EGL tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="MuJoCo not installed (pip install -e '.[sim]')")

SCRIPT = """
from oft.sim.render import CameraRenderer
import mujoco

model = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 1"/><camera name="cam" pos="0 0 1"/>'
    '<geom type="box" size=".1 .1 .1" rgba="1 0 0 1"/></worldbody></mujoco>'
)
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = CameraRenderer(model, {"cam": (16, 16)})
image = renderer.render(data)[0]
assert image.shape == (16, 16, 3) and image.any()
print("rendered")
"""


def test_a_renderer_left_open_is_closed_before_the_display_goes():
    """mujoco's EGL backend terminates its display at exit before a still-referenced ``mujoco.Renderer`` is
    finalized, whose ``__del__`` then raised EGLError twice ("Exception ignored in ...")."""
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "rendered" in out.stdout, out.stderr[-2000:]
    assert "Exception ignored" not in out.stderr and "EGLError" not in out.stderr, out.stderr[-2000:]


def _box_scene():
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><light pos="0 0 3"/><geom type="box" size=".05 .05 .05" rgba="1 0 0 1"/>'
        "</worldbody></mujoco>"
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def _red(image):
    return (image[..., 0] > 100) & (image[..., 1] < 50) & (image[..., 2] < 50)


def test_a_free_camera_renders_the_pose_it_is_given():
    """A view the model does not define: looked at from 1 m the box sits in the middle of the frame; looked at
    from 2 m it covers about a quarter of the pixels; looking 1 m beside it, it is out of the frame."""
    from oft.sim.render import CameraRenderer, FreeCamera

    model, data = _box_scene()
    poses = {
        "near": FreeCamera(lookat=(0, 0, 0), distance=1.0, azimuth=90, elevation=-45),
        "far": FreeCamera(lookat=(0, 0, 0), distance=2.0, azimuth=90, elevation=-45),
        "aside": FreeCamera(lookat=(1, 0, 0), distance=1.0, azimuth=90, elevation=-45),
    }
    renderer = CameraRenderer(model, {name: (32, 32) for name in poses}, camera_names=poses)
    near, far, aside = (_red(image) for image in renderer.render(data))
    renderer.close()
    ys, xs = np.nonzero(near)
    assert abs(ys.mean() - 15.5) < 2 and abs(xs.mean() - 15.5) < 2
    assert 0.15 < far.sum() / near.sum() < 0.4
    assert not aside.any()


def test_metaworld_workspace_camera_shows_the_goal_larger_than_corner():
    """``workspace`` frames the table where MT10's goals lie: pick-place's blue goal sphere covers more pixels
    at 64 px than in ``corner`` (the reason the view exists); both are unknown to the model's camera list."""
    pytest.importorskip("metaworld", reason="MetaWorld not installed (pip install -e '.[sim]')")
    from oft.sim.base import make_env

    with make_env("metaworld", "pick-place-v3", cameras=("corner", "workspace"), image_size=64) as env:
        counts = []
        for seed in (1_000_000, 1_000_001, 1_000_002):
            corner, workspace = env.reset(seed).images
            blue = [(im[..., 2] > 120) & (im[..., 0] < 60) & (im[..., 1] < 60) for im in (corner, workspace)]
            counts.append([int(b.sum()) for b in blue])
    corner_px, workspace_px = np.sum(counts, axis=0)
    assert corner_px > 0 and workspace_px >= 2 * corner_px, counts
