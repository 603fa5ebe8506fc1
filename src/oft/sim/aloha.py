"""ALOHA sim (the ``gym-aloha`` package: transfer-cube and insertion) behind :class:`~oft.sim.base.SimEnv`.

MuJoCo version — fixed on MuJoCo 3, no separate venv. The reported "cube slips out on MuJoCo 3.x" is not
the joint-controlled grasp: it is the *expert's* end-effector scene. There each gripper is dragged to its
mocap body by a weld whose impedance the package sets very soft (solimp 0.25 0.25); MuJoCo 3 resolves that
soft weld together with the arm joints' large frictionloss differently from 2.3.7, the gripper lags its
waypoint by ~2 mm sideways, one finger touches the cube first and tips it out (waypoint expert on 3.3:
transfer-cube 1/10, insertion 0/5; contact options — multiccd, native CCD off, elliptic cones, impratio,
noslip, condim, geom solref/solimp, friction — change nothing). A stiffer weld in the expert's scene only
(:data:`EXPERT_WELD_SOLIMP`) restores tracking: 20/20 and 20/20 on MuJoCo 3.3 through :func:`rollout`.
The joint-controlled task that policies are trained and evaluated in keeps the package's physics, and the
replayed grasps hold in it. So ALOHA shares the main environment with MetaWorld (MuJoCo 3.3):
``pip install gym-aloha==0.1.5 dm-control==1.0.28`` (gym-aloha 0.1.5 has the same scenes and tasks as
0.1.1 and accepts ``mujoco>=3,<3.9``; dm-control 1.0.28 is the release built for MuJoCo 3.3). The adapter
also runs on gym-aloha 0.1.1 / MuJoCo 2.3.7 / dm-control 1.0.14 (insertion ~90% there with these waypoints).

What we use from the package: the scene XMLs, the joint-controlled task classes (action decoding and the
reward), the end-effector (mocap) task classes for the scripted expert, and the layout samplers. What we
replace: ``AlohaEnv`` (it refuses the end-effector tasks, seeds through a global, and its ``get_observation``
renders three 640x480 cameras every step, ~5-10 steps/s on Mesa). Here images come from one
``mujoco.Renderer`` per size, only for the requested cameras, with shadows/reflections/skybox off.

Conventions (ACT, Zhao et al. 2023, ``constants.py``/``sim_env.py``, the source gym-aloha copies):
- action (14,): per arm 6 absolute joint targets then the gripper as a normalized opening (0 closed, 1 open).
- proprio (14,): ``qpos`` the same way: 6 joint positions + normalized finger position, left then right.
- 50 Hz control (DT = 0.02 s); episodes of 400 steps (``SIM_TASK_CONFIGS[...]['episode_len'] = 400`` for
  ``sim_transfer_cube_scripted`` and ``sim_insertion_scripted``).
- success: the reward reaches the task's max reward (4): cube held by the left gripper off the table /
  peg touching the socket's pin. gym-aloha's ``is_success`` is the same test.

Seeds. ``reset(seed)`` places the objects with gym-aloha's own samplers seeded by ``seed``
(``sample_box_pose(seed)``, ``sample_insertion_pose(seed)``), so layout ``seed`` is the one gym-aloha's
``AlohaEnv.reset(seed=seed)`` draws. Demonstrations use seeds below :data:`EVAL_SEED_OFFSET`; evaluation uses
``EVAL_SEED_OFFSET + i`` (layouts are continuous draws, so equal layouts would need a float collision).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from oft.conventions import get_conventions
from oft.observation import Observation
from oft.sim.aloha_expert import ee_action, task_waypoints
from oft.sim.base import SimEnv, StepResult, register_env
from oft.spec import get_spec, unknown_name_message

# headless rendering by default; a user's choice (osmesa, glfw) wins. Must precede the first mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")

from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from dm_control.suite import base as suite_base
from gym_aloha.constants import ASSETS_DIR, DT, normalize_puppet_gripper_position
from gym_aloha.tasks import sim as aloha_sim
from gym_aloha.tasks.sim_end_effector import (
    InsertionEndEffectorTask,
    TransferCubeEndEffectorTask,
)
from gym_aloha.utils import sample_box_pose, sample_insertion_pose

from oft.sim.render import CameraRenderer, check_action, image_sizes

log = logging.getLogger(__name__)

MAX_STEPS = 400  # ACT constants.py SIM_TASK_CONFIGS episode_len for both scripted sim tasks
EVAL_SEED_OFFSET = 1_000_000
NUM_ROBOT_QPOS = 16  # 2 arms x (6 joints + 2 fingers); the objects' free joints follow
# absolute joint targets, grippers (dims 6, 13) a normalized opening 0 closed / 1 open (module doc); a policy
# in another convention is converted by the rollout, and a delta-action policy is refused there
CONVENTIONS = get_conventions("aloha")
# our camera names (OpenVLA-OFT's ALOHA names) -> the scene's camera names
CAMERAS: dict[str, str] = {
    "cam_high": "top",
    "cam_left_wrist": "left_wrist",
    "cam_right_wrist": "right_wrist",
}


class _SeededJointTask:
    """Mixin for gym-aloha's joint tasks: objects at ``object_pose``, no images in ``get_observation``.

    The package hands the layout over in the module-level ``BOX_POSE``; we set it right before the reset that
    reads it, from this instance, so two envs in one process cannot see each other's layout.
    """

    object_pose: np.ndarray

    def initialize_episode(self, physics) -> None:
        aloha_sim.BOX_POSE[0] = self.object_pose
        super().initialize_episode(physics)  # type: ignore[misc]

    def get_observation(self, physics) -> collections.OrderedDict:
        return collections.OrderedDict()  # the adapter reads qpos and renders only what is asked


class _SeededEndEffectorTask:
    """Mixin for the end-effector tasks: the package draws their layout unseeded; we place it."""

    object_pose: np.ndarray

    def initialize_episode(self, physics) -> None:
        self.initialize_robots(physics)  # type: ignore[attr-defined]
        physics.data.qpos[NUM_ROBOT_QPOS:] = self.object_pose
        suite_base.Task.initialize_episode(self, physics)  # type: ignore[arg-type]

    def get_observation(self, physics) -> collections.OrderedDict:
        return collections.OrderedDict()


class _TransferCube(_SeededJointTask, aloha_sim.TransferCubeTask):
    pass


class _Insertion(_SeededJointTask, aloha_sim.InsertionTask):
    pass


class _TransferCubeEE(_SeededEndEffectorTask, TransferCubeEndEffectorTask):
    pass


class _InsertionEE(_SeededEndEffectorTask, InsertionEndEffectorTask):
    pass


@dataclass(frozen=True)
class _TaskDef:
    xml: str
    ee_xml: str
    joint_task: type
    ee_task: type
    sample_layout: Callable[[int], np.ndarray]  # seed -> free-joint poses of the objects (7 per object)
    instruction: str  # written by us; gym-aloha has task names only


TASKS: dict[str, _TaskDef] = {
    "transfer-cube": _TaskDef(
        "bimanual_viperx_transfer_cube.xml",
        "bimanual_viperx_end_effector_transfer_cube.xml",
        _TransferCube,
        _TransferCubeEE,
        lambda seed: sample_box_pose(seed),
        "pick up the red cube with the right arm and hand it over to the left arm",
    ),
    "insertion": _TaskDef(
        "bimanual_viperx_insertion.xml",
        "bimanual_viperx_end_effector_insertion.xml",
        _Insertion,
        _InsertionEE,
        lambda seed: np.concatenate(sample_insertion_pose(seed)),
        "pick up the socket with the left arm and the peg with the right arm, "
        "and insert the peg into the socket",
    ),
}


def aloha_tasks() -> list[str]:
    return list(TASKS)


def _make_control_env(xml: str, task: suite_base.Task) -> control.Environment:
    physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
    # time_limit inf: the adapter counts steps; n_sub_steps from DT / timestep (0.02 / 0.002 = 10)
    return control.Environment(
        physics, task, time_limit=float("inf"), control_timestep=DT, flat_observation=False
    )


def _joint_command(physics) -> np.ndarray:
    """(14,) the joint position the arms are at, with the gripper as the commanded normalized opening.

    ACT's record_sim_episodes replaces the measured finger position by the gripper control: a finger closed
    on an object never reaches the closed position, and replaying the measured one would loosen the grasp.
    """
    cmd = aloha_sim.BimanualViperXTask.get_qpos(physics)
    ctrl = physics.data.ctrl
    cmd[6] = normalize_puppet_gripper_position(ctrl[0])
    cmd[13] = normalize_puppet_gripper_position(ctrl[2])
    return cmd


# impedance of the weld that drags each gripper to its mocap body (the package's XML: 0.25 0.25 0.001)
EXPERT_WELD_SOLIMP = (0.9, 0.95, 0.001)


def _stiffen_mocap_weld(physics) -> None:
    """Make the grippers follow the scripted mocap poses closely (the MuJoCo 3 fix; see the module doc).

    Only the expert's end-effector scene changes; the joint-controlled task that policies are trained and
    evaluated in keeps the package's physics.
    """
    physics.model.eq_solimp[:, :3] = EXPERT_WELD_SOLIMP


def record_expert_trajectory(task: str, object_pose: np.ndarray, num_steps: int = MAX_STEPS) -> np.ndarray:
    """(num_steps, 14) joint commands: the scripted waypoints run in the mocap scene, joints recorded.

    Command ``t`` is the arm state after end-effector step ``t`` — where the arm should be one step after
    the joint-controlled replay applies it.
    """
    tdef = TASKS[task]
    ee_task = tdef.ee_task()
    ee_task.object_pose = np.asarray(object_pose, dtype=np.float64)
    env = _make_control_env(tdef.ee_xml, ee_task)
    _stiffen_mocap_weld(env.physics)
    env.reset()
    left, right = task_waypoints(task, object_pose)
    traj = np.zeros((num_steps, 14), dtype=np.float32)
    for t in range(num_steps):
        env.step(ee_action(left, right, t))
        traj[t] = _joint_command(env.physics)
    return traj


@register_env("aloha", tasks=aloha_tasks)
class AlohaEnv(SimEnv):
    """One ALOHA sim task with 14-D absolute joint actions.

    cameras: subset of :data:`CAMERAS` in observation order (``()`` for state only).
    image_size: int, (H, W), or {camera: size}. max_steps: episode limit (ACT's 400).
    ``expert_action()`` replays the scripted expert recorded for this layout (:mod:`oft.sim.aloha_expert`);
    it is an open-loop trajectory, meaningful only while every action taken so far was the expert's.
    """

    can_skip_render = True
    eval_seed_offset = EVAL_SEED_OFFSET

    def __init__(
        self,
        task: str,
        cameras: tuple[str, ...] | list[str] = tuple(CAMERAS),
        image_size=128,
        max_steps: int = MAX_STEPS,
    ) -> None:
        if task not in TASKS:
            raise KeyError(unknown_name_message("aloha task", task, TASKS))
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in CAMERAS:
                raise KeyError(unknown_name_message("aloha camera", cam, CAMERAS))
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.task = task
        self.instruction = TASKS[task].instruction
        self.max_steps = int(max_steps)
        base = get_spec("aloha")
        self.spec = (base.replace(cameras=cameras) if cameras else base).replace(conventions=CONVENTIONS)
        self.cameras = cameras
        self.image_sizes = image_sizes(cameras, image_size)
        self._task = TASKS[task].joint_task()
        self._env = _make_control_env(TASKS[task].xml, self._task)
        self._camera_renderer = CameraRenderer(self.physics.model.ptr, self.image_sizes, CAMERAS)
        self._object_pose: np.ndarray | None = None
        self._expert: np.ndarray | None = None  # (T, 14) recorded on the first expert_action() call
        self._steps = 0

    @property
    def physics(self) -> dm_mujoco.Physics:
        return self._env.physics

    def _observation(self, render: bool) -> Observation:
        proprio = aloha_sim.BimanualViperXTask.get_qpos(self.physics).astype(np.float32)
        return Observation(
            images=self._camera_renderer.render(self.physics.data.ptr) if render else [],
            proprio=proprio,
            instruction=self.instruction,
        )

    # -- SimEnv -----------------------------------------------------------------------------------------
    def reset(self, seed: int) -> Observation:
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must be in [0, 2**32) (numpy RandomState), got {seed}")
        self._object_pose = np.asarray(TASKS[self.task].sample_layout(int(seed)), dtype=np.float64)
        self._task.object_pose = self._object_pose
        self._env.reset()
        self._expert = None
        self._steps = 0
        return self._observation(render=True)

    def step(self, action: np.ndarray, render: bool = True) -> StepResult:
        """Apply a 14-D joint command; ``render=False`` skips the images (rendered only to query)."""
        if self._object_pose is None:
            raise RuntimeError("AlohaEnv.step called before reset(seed)")
        action = check_action(action, 14, "aloha")
        ts = self._env.step(action)
        self._steps += 1
        reward = float(ts.reward)
        success = reward >= self._task.max_reward
        info = {"reward": reward}
        return StepResult(self._observation(render), success, self._steps >= self.max_steps, info)

    def render(self) -> Observation:
        if self._object_pose is None:
            raise RuntimeError("AlohaEnv.render called before reset(seed)")
        return self._observation(render=True)

    def expert_action(self) -> np.ndarray:
        """The scripted expert's joint command for the current step (recorded once per episode, ~0.5 s)."""
        if self._object_pose is None:
            raise RuntimeError("AlohaEnv.expert_action called before reset(seed)")
        if self._expert is None:
            self._expert = record_expert_trajectory(
                self.task, self._object_pose, max(self.max_steps, MAX_STEPS)
            )
        return self._expert[min(self._steps, len(self._expert) - 1)].copy()

    def close(self) -> None:
        self._camera_renderer.close()


__all__ = [
    "CAMERAS",
    "CONVENTIONS",
    "EVAL_SEED_OFFSET",
    "MAX_STEPS",
    "TASKS",
    "AlohaEnv",
    "aloha_tasks",
    "record_expert_trajectory",
]
