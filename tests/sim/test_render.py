"""Offscreen rendering: a script that never closes its environment exits without EGL tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

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
