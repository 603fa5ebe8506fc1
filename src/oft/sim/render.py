"""Offscreen camera rendering shared by the MuJoCo adapters.

On Mesa (CPU) a frame with shadows, reflections and the skybox costs 80-150 ms; with the three flags off it
costs ~13 ms (2-core CPU), set by mesh triangles rather than pixels. So every adapter renders through
:class:`CameraRenderer`: only the requested cameras, one ``mujoco.Renderer`` per image size, flags off.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import dataclass

import numpy as np

# headless rendering unless the user chose (osmesa, glfw); must precede the first mujoco import
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco


def image_sizes(cameras: tuple[str, ...], image_size) -> dict[str, tuple[int, int]]:
    """``image_size`` as int, (H, W) or {camera: int | (H, W)} -> {camera: (H, W)}."""

    def hw(v) -> tuple[int, int]:
        h, w = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
        if int(h) < 1 or int(w) < 1:
            raise ValueError(f"image size must be positive, got {v!r}")
        return int(h), int(w)

    if isinstance(image_size, dict):
        missing = set(cameras) - set(image_size)
        if missing:
            raise ValueError(f"image_size has no entry for cameras {sorted(missing)}")
        return {c: hw(image_size[c]) for c in cameras}
    return {c: hw(image_size) for c in cameras}


@dataclass(frozen=True)
class FreeCamera:
    """A view the model does not define: MuJoCo's free camera (``mjvCamera``) held at one pose.

    lookat: the point looked at, metres in the world frame. distance: metres from it. azimuth, elevation:
    degrees, MuJoCo's convention (azimuth 90 looks along +y; elevation < 0 looks down). The field of view is
    the model's (``vis.global_.fovy``, 45 degrees unless the scene says otherwise).
    """

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float

    def mjv_camera(self) -> mujoco.MjvCamera:
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = self.lookat
        cam.distance, cam.azimuth, cam.elevation = self.distance, self.azimuth, self.elevation
        return cam


class CameraRenderer:
    """Renders ``cameras`` of one MuJoCo model at their sizes.

    camera_names maps our camera name to the model's (default: the same) or to a :class:`FreeCamera` pose;
    ``flipped`` cameras are turned 180° (MetaWorld's ``corner`` is mounted upside down).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        sizes: dict[str, tuple[int, int]],
        camera_names: dict[str, str | FreeCamera] | None = None,
        flipped: tuple[str, ...] = (),
    ) -> None:
        self.model = model
        self.sizes = sizes
        self.camera_names = {
            cam: target.mjv_camera() if isinstance(target, FreeCamera) else target
            for cam, target in (camera_names or {}).items()
        }
        self.flipped = set(flipped)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._thread = threading.get_ident()  # a GL context belongs to the thread that made it

    def _renderer(self, size: tuple[int, int]) -> mujoco.Renderer:
        if size not in self._renderers:
            vis = self.model.vis.global_
            # the offscreen buffer must hold the image (scenes often declare 640x480)
            vis.offheight, vis.offwidth = max(vis.offheight, size[0]), max(vis.offwidth, size[1])
            r = mujoco.Renderer(self.model, height=size[0], width=size[1])
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                r.scene.flags[flag] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            self._renderers[size] = r
            _close_at_exit(self)
        return self._renderers[size]

    def render(self, data: mujoco.MjData) -> list[np.ndarray]:
        """-> one (H, W, 3) uint8 image per camera, in the order of ``sizes``."""
        images = []
        for cam, size in self.sizes.items():
            r = self._renderer(size)
            r.update_scene(data, camera=self.camera_names.get(cam, cam))
            img = r.render()
            images.append(np.ascontiguousarray(img[::-1, ::-1]) if cam in self.flipped else img.copy())
        return images

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


_LIVE: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()
_hook_registered = False


def _close_at_exit(renderer: CameraRenderer) -> None:
    """Close ``renderer`` at interpreter exit if the script never did, while the EGL display still exists.

    mujoco's EGL backend terminates its display in an ``atexit`` hook registered when it creates its first GL
    context; a ``mujoco.Renderer`` finalized after that raises ``EGLError`` twice from ``__del__``
    (google-deepmind/mujoco #700, #2510): a screen of ignored tracebacks after a run that went fine. Our hook
    is registered once a renderer exists, so (``atexit`` runs last-in first-out) it runs before mujoco's.
    """
    global _hook_registered
    _LIVE.add(renderer)
    if not _hook_registered:
        atexit.register(_close_live)
        _hook_registered = True


def _close_live() -> None:
    me = threading.get_ident()
    for renderer in list(_LIVE):
        if renderer._thread == me:  # another thread's context cannot be released from this one
            renderer.close()


def check_action(action, dim: int, suite: str) -> np.ndarray:
    """-> the action as a float64 (dim,) array, or a ValueError naming the shape / NaN."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (dim,):
        raise ValueError(f"{suite} action has shape {a.shape}, expected ({dim},)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{suite} action contains NaN or inf: {a.tolist()}")
    return a
