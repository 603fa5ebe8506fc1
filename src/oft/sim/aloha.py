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
- 50 Hz control (DT = 0.02 s: ACT's ``constants.py`` ``DT = 0.02``, gym-aloha's ``constants.DT``, and the
  ``fps: 50`` of LeRobot's ``aloha_sim_*`` datasets); episodes of 400 steps (``SIM_TASK_CONFIGS[...]
  ['episode_len'] = 400`` for ``sim_transfer_cube_scripted`` and ``sim_insertion_scripted``). The *real*
  ALOHA of the OpenVLA-OFT paper runs at 25 Hz (Sec. VI; ``oft.spec.PRESETS["aloha"].control_hz``); the
  simulator's spec says 50 Hz (:data:`CONTROL_HZ`), so ``oft collect aloha`` datasets record ``fps: 50``.
- success: the reward reaches the task's max reward (4): cube held by the left gripper off the table /
  peg touching the socket's pin. gym-aloha's ``is_success`` is the same test.

``two-cube`` (ours, the language-conditioned task): the transfer-cube scene with a red and a blue cube at
random positions; the instruction ("transfer the red cube" / "transfer the blue cube") says which one to hand
over. Success: the named cube reaches the transfer-cube reward 4 (held by the left gripper, off the table)
while the other cube still rests on the table — handing over the wrong cube, or both, fails. Layout ``seed``
draws both cubes (gym-aloha's ranges, at least :data:`TWO_CUBE_MIN_SEPARATION` apart) and a default target
(red for even seeds, blue for odd: demonstrations ``0..N-1`` split evenly); ``instruction=`` or ``target=``
overrides it, so every start state can be run under both instructions (``oft study --suite aloha``).

Seeds. ``reset(seed)`` places the objects with gym-aloha's own samplers seeded by ``seed``
(``sample_box_pose(seed)``, ``sample_insertion_pose(seed)``), so layout ``seed`` is the one gym-aloha's
``AlohaEnv.reset(seed=seed)`` draws. Demonstrations use seeds below :data:`EVAL_SEED_OFFSET`; evaluation uses
``EVAL_SEED_OFFSET + i`` (layouts are continuous draws, so equal layouts would need a float collision).
"""

from __future__ import annotations

import collections
import logging
import os
import re
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
from gym_aloha.constants import ASSETS_DIR, DT, START_ARM_POSE, normalize_puppet_gripper_position
from gym_aloha.tasks import sim as aloha_sim
from gym_aloha.tasks.sim_end_effector import (
    InsertionEndEffectorTask,
    TransferCubeEndEffectorTask,
)
from gym_aloha.utils import sample_box_pose, sample_insertion_pose

from oft.sim.render import CameraRenderer, check_action, image_sizes

log = logging.getLogger(__name__)

MAX_STEPS = 400  # ACT constants.py SIM_TASK_CONFIGS episode_len for both scripted sim tasks
CONTROL_HZ = 1.0 / DT  # 50 Hz: one env.step is DT = 0.02 s of simulated time (module doc)
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


CUBE_COLOURS = ("red", "blue")
TWO_CUBE_INSTRUCTIONS = {c: f"transfer the {c} cube" for c in CUBE_COLOURS}
TWO_CUBE_MIN_SEPARATION = 0.08  # m between cube centres: 4 cube widths, the open gripper fits between them
_BLUE_BOX = """<body name="box_blue" pos="0.1 0.5 0.05">
            <joint name="blue_box_joint" type="free" frictionloss="0.01" />
            <inertial pos="0 0 0" mass="0.05" diaginertia="0.002 0.002 0.002" />
            <geom condim="4" solimp="2 1 0.01" solref="0.01 1" friction="1 0.005 0.0001" pos="0 0 0"
                  size="0.02 0.02 0.02" type="box" name="blue_box" rgba="0 0 1 1" />
        </body>
    </worldbody>"""


def _add_blue_cube(xml: str) -> str:
    """The transfer-cube scene plus a blue copy of its red cube (same size, mass, friction); the keyframe
    (23 qpos of the one-cube scene) is dropped: resets set every qpos."""
    xml = xml.replace("</worldbody>", _BLUE_BOX, 1)
    return re.sub(r"<keyframe>.*?</keyframe>", "", xml, flags=re.S)


def sample_two_cubes(seed: int) -> np.ndarray:
    """(14,) free-joint poses of the red then the blue cube: each in gym-aloha's ``sample_box_pose`` ranges
    (x 0..0.2, y 0.4..0.6, on the table), redrawn until they are ``TWO_CUBE_MIN_SEPARATION`` apart."""
    rng = np.random.RandomState(seed)
    lo, hi = np.array([0.0, 0.4, 0.05]), np.array([0.2, 0.6, 0.05])
    red = rng.uniform(lo, hi)
    blue = rng.uniform(lo, hi)
    while np.linalg.norm(blue[:2] - red[:2]) < TWO_CUBE_MIN_SEPARATION:
        blue = rng.uniform(lo, hi)
    quat = np.array([1.0, 0.0, 0.0, 0.0])
    return np.concatenate([red, quat, blue, quat])


def seed_target(seed: int) -> str:
    """The cube layout ``seed`` asks for when nothing overrides it: red for even seeds, blue for odd."""
    return CUBE_COLOURS[int(seed) % 2]


def named_colour(instruction: str) -> str | None:
    """The one cube colour an instruction names (``"transfer the blue cube"`` -> ``"blue"``), else None."""
    words = set(re.findall(r"[a-z]+", instruction.lower()))
    named = [c for c in CUBE_COLOURS if c in words]
    return named[0] if len(named) == 1 else None


def two_cube_outcome(target: str, max_stages: dict[str, int]) -> dict:
    """What a two-cube episode did with the cubes, from the highest :func:`cube_stage` each reached:
    ``moved`` is the cube that got furthest (None while neither was touched, or on a tie), ``followed``
    whether that is the named one. A policy that ignores its instruction moves the same cube under both
    instructions, so it follows at most half of them even when it never completes a handover."""
    top = max(max_stages.values())
    leaders = [c for c in CUBE_COLOURS if max_stages[c] == top]
    moved = leaders[0] if top > 0 and len(leaders) == 1 else None
    return {"target": target, "max_stages": dict(max_stages), "moved": moved, "followed": moved == target}


def _contact_pairs(physics) -> set[tuple[str, str]]:
    pairs = set()
    for i in range(physics.data.ncon):
        c = physics.data.contact[i]
        pairs.add((physics.model.id2name(c.geom1, "geom"), physics.model.id2name(c.geom2, "geom")))
    return pairs


def cube_stage(pairs: set[tuple[str, str]], geom: str) -> int:
    """gym-aloha's transfer-cube reward for cube ``geom``: 1 right finger touches it, 2 and lifted, 3 left
    finger touches it, 4 and off the table (handed over)."""
    touch_left = (geom, "vx300s_left/10_left_gripper_finger") in pairs
    touch_right = (geom, "vx300s_right/10_right_gripper_finger") in pairs
    on_table = (geom, "table") in pairs
    stage = 0
    if touch_right:
        stage = 1
    if touch_right and not on_table:
        stage = 2
    if touch_left:
        stage = 3
    if touch_left and not on_table:
        stage = 4
    return stage


class _TwoCube(aloha_sim.BimanualViperXTask):
    """Joint-controlled two-cube task: the reward is the *named* cube's transfer stage; ``other_on_table``
    (updated with every reward) says whether the other cube still rests on the table."""

    max_reward = 4
    object_pose: np.ndarray
    target: str = "red"
    other_on_table: bool = True
    stages: dict[str, int]
    max_stages: dict[str, int]  # the highest stage each cube reached this episode

    def initialize_episode(self, physics) -> None:
        with physics.reset_context():
            physics.named.data.qpos[:16] = START_ARM_POSE
            np.copyto(physics.data.ctrl, START_ARM_POSE)
            physics.data.qpos[NUM_ROBOT_QPOS:] = self.object_pose
        self.stages, self.other_on_table = dict.fromkeys(CUBE_COLOURS, 0), True
        self.max_stages = dict.fromkeys(CUBE_COLOURS, 0)
        suite_base.Task.initialize_episode(self, physics)

    def get_observation(self, physics) -> collections.OrderedDict:
        return collections.OrderedDict()

    def get_reward(self, physics) -> int:
        pairs = _contact_pairs(physics)
        self.stages = {c: cube_stage(pairs, f"{c}_box") for c in CUBE_COLOURS}
        self.max_stages = {c: max(self.max_stages[c], self.stages[c]) for c in CUBE_COLOURS}
        other = next(c for c in CUBE_COLOURS if c != self.target)
        self.other_on_table = (f"{other}_box", "table") in pairs
        return self.stages[self.target]

    def success(self, reward: float) -> bool:
        return reward >= self.max_reward and self.other_on_table


@dataclass(frozen=True)
class _TaskDef:
    xml: str
    ee_xml: str
    joint_task: type
    ee_task: type
    sample_layout: Callable[[int], np.ndarray]  # seed -> free-joint poses of the objects (7 per object)
    instruction: str  # written by us; gym-aloha has task names only (two-cube: per target, see below)
    scene: Callable[[str], str] | None = None  # edits the package's XML (two-cube: adds the blue cube)
    stages: tuple[str, ...] = ()  # what each reward 1..4 means (gym-aloha's get_reward comments)


# gym-aloha's rewards are ACT's stages (Zhao et al. 2023 report success per stage, e.g. insertion's "Grasp",
# "Contact", "Insert"); two-cube's are the named cube's (cube_stage)
TRANSFER_STAGES = ("touched", "lifted", "attempted transfer", "transferred")
INSERTION_STAGES = ("touched both", "grasped both", "peg touches socket", "inserted")


TASKS: dict[str, _TaskDef] = {
    "transfer-cube": _TaskDef(
        "bimanual_viperx_transfer_cube.xml",
        "bimanual_viperx_end_effector_transfer_cube.xml",
        _TransferCube,
        _TransferCubeEE,
        lambda seed: sample_box_pose(seed),
        "pick up the red cube with the right arm and hand it over to the left arm",
        stages=TRANSFER_STAGES,
    ),
    "insertion": _TaskDef(
        "bimanual_viperx_insertion.xml",
        "bimanual_viperx_end_effector_insertion.xml",
        _Insertion,
        _InsertionEE,
        lambda seed: np.concatenate(sample_insertion_pose(seed)),
        "pick up the socket with the left arm and the peg with the right arm, "
        "and insert the peg into the socket",
        stages=INSERTION_STAGES,
    ),
    "two-cube": _TaskDef(
        "bimanual_viperx_transfer_cube.xml",
        "bimanual_viperx_end_effector_transfer_cube.xml",
        _TwoCube,
        _TransferCubeEE,  # the expert's scene: its reward is unused, the layout is placed by the mixin
        sample_two_cubes,
        TWO_CUBE_INSTRUCTIONS["red"],  # the default target's; the env says the target's own
        _add_blue_cube,
        stages=TRANSFER_STAGES,
    ),
}


def aloha_tasks() -> list[str]:
    return list(TASKS)


def _physics(xml: str, scene: Callable[[str], str] | None) -> dm_mujoco.Physics:
    if scene is None:
        return dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
    # an edited scene is compiled from a string: its includes and meshes are handed over as assets
    assets = {p.name: p.read_bytes() for p in ASSETS_DIR.iterdir() if p.suffix in (".xml", ".stl")}
    return dm_mujoco.Physics.from_xml_string(scene((ASSETS_DIR / xml).read_text()), assets=assets)


def _make_control_env(
    xml: str, task: suite_base.Task, scene: Callable[[str], str] | None = None
) -> control.Environment:
    physics = _physics(xml, scene)
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


def record_expert_trajectory(
    task: str, object_pose: np.ndarray, num_steps: int = MAX_STEPS, target: str | None = None
) -> np.ndarray:
    """(num_steps, 14) joint commands: the scripted waypoints run in the mocap scene, joints recorded.

    Command ``t`` is the arm state after end-effector step ``t`` — where the arm should be one step after
    the joint-controlled replay applies it. ``target``: the cube to hand over (two-cube only).
    """
    tdef = TASKS[task]
    ee_task = tdef.ee_task()
    ee_task.object_pose = np.asarray(object_pose, dtype=np.float64)
    env = _make_control_env(tdef.ee_xml, ee_task, tdef.scene)
    _stiffen_mocap_weld(env.physics)
    env.reset()
    left, right = task_waypoints(task, object_pose, target)
    traj = np.zeros((num_steps, 14), dtype=np.float32)
    for t in range(num_steps):
        env.step(ee_action(left, right, t))
        traj[t] = _joint_command(env.physics)
    return traj


def _fixed_target(task: str, instruction: str | None, target: str | None) -> str | None:
    """The two-cube target fixed for every episode of an env (None: each seed's own), checked."""
    if task != "two-cube":
        if target is not None:
            raise ValueError(f"target={target!r} applies to the aloha task 'two-cube' only, not {task!r}")
        return None
    if target is not None and target not in CUBE_COLOURS:
        raise ValueError(f"target must be one of {CUBE_COLOURS} or None, got {target!r}")
    named = named_colour(instruction) if instruction else None
    if target is not None and named is not None and named != target:
        raise ValueError(f"instruction {instruction!r} names the {named} cube but target={target!r}")
    return target or named


@register_env("aloha", tasks=aloha_tasks)
class AlohaEnv(SimEnv):
    """One ALOHA sim task with 14-D absolute joint actions.

    cameras: subset of :data:`CAMERAS` in observation order (``()`` for state only).
    image_size: int, (H, W), or {camera: size}. max_steps: episode limit (ACT's 400).
    instruction: what observations say instead of the task's own (``""`` withholds it, like MetaWorld's
        ``instruction=``); on ``two-cube`` an instruction naming one colour also makes that cube the target,
        so success judges what the policy was told. target: ``two-cube``'s cube to hand over ("red" or
        "blue"); None: the one the instruction names, else the seed's (:func:`seed_target`).
    ``expert_action()`` replays the scripted expert recorded for this layout (:mod:`oft.sim.aloha_expert`);
    it is an open-loop trajectory, meaningful only while every action taken so far was the expert's.
    """

    can_skip_render = True
    eval_seed_offset = EVAL_SEED_OFFSET

    @classmethod
    def seed_limit(cls, task: str) -> int:
        """2**32: a layout is drawn with ``numpy.random.RandomState(seed)``, which takes 32-bit seeds."""
        return 2**32

    def __init__(
        self,
        task: str,
        cameras: tuple[str, ...] | list[str] = tuple(CAMERAS),
        image_size=128,
        max_steps: int = MAX_STEPS,
        instruction: str | None = None,
        target: str | None = None,
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
        self._instruction = None if instruction is None else str(instruction)
        self._fixed_target = _fixed_target(task, self._instruction, target)
        self.target: str | None = self._fixed_target
        self.instruction = self._instruction if self._instruction is not None else TASKS[task].instruction
        self.max_steps = int(max_steps)
        base = get_spec("aloha")  # the paper's real ALOHA (25 Hz); the simulator steps at 50 Hz
        base = base.replace(cameras=cameras) if cameras else base
        self.spec = base.replace(conventions=CONVENTIONS, control_hz=CONTROL_HZ)
        self.cameras = cameras
        self.image_sizes = image_sizes(cameras, image_size)
        self._task = TASKS[task].joint_task()
        self._env = _make_control_env(TASKS[task].xml, self._task, TASKS[task].scene)
        self._camera_renderer = CameraRenderer(self.physics.model.ptr, self.image_sizes, CAMERAS)
        self._object_pose: np.ndarray | None = None
        self._expert: np.ndarray | None = None  # (T, 14) recorded on the first expert_action() call
        self._steps = 0
        self._max_reward = 0  # the highest reward (stage) of the episode so far

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
        if not 0 <= int(seed) < self.seed_limit(self.task):
            raise ValueError(f"seed must be in [0, 2**32) (numpy RandomState), got {seed}")
        self._object_pose = np.asarray(TASKS[self.task].sample_layout(int(seed)), dtype=np.float64)
        self._task.object_pose = self._object_pose
        if self.task == "two-cube":
            self.target = self._fixed_target or seed_target(int(seed))
            self._task.target = self.target
            if self._instruction is None:
                self.instruction = TWO_CUBE_INSTRUCTIONS[self.target]
        self._env.reset()
        self._expert = None
        self._steps = 0
        self._max_reward = 0
        return self._observation(render=True)

    def step(self, action: np.ndarray, render: bool = True) -> StepResult:
        """Apply a 14-D joint command; ``render=False`` skips the images (rendered only to query)."""
        if self._object_pose is None:
            raise RuntimeError("AlohaEnv.step called before reset(seed)")
        action = check_action(action, 14, "aloha")
        ts = self._env.step(action)
        self._steps += 1
        reward = float(ts.reward)
        self._max_reward = max(self._max_reward, int(reward))
        info: dict = {"reward": reward}
        # the highest stage this episode reached (TaskDef.stages names them): where a failing policy stops
        outcome = {"max_stage": self._max_reward, "stages": list(TASKS[self.task].stages)}
        if isinstance(self._task, _TwoCube):
            success = self._task.success(reward)
            outcome |= two_cube_outcome(self.target, self._task.max_stages)
            info |= {"target": self.target, "stages": dict(self._task.stages)}
        else:
            success = reward >= self._task.max_reward
        info["outcome"] = outcome
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
                self.task, self._object_pose, max(self.max_steps, MAX_STEPS), self.target
            )
        return self._expert[min(self._steps, len(self._expert) - 1)].copy()

    def close(self) -> None:
        self._camera_renderer.close()


__all__ = [
    "CAMERAS",
    "CONTROL_HZ",
    "CONVENTIONS",
    "CUBE_COLOURS",
    "EVAL_SEED_OFFSET",
    "MAX_STEPS",
    "TASKS",
    "TWO_CUBE_INSTRUCTIONS",
    "AlohaEnv",
    "aloha_tasks",
    "named_colour",
    "record_expert_trajectory",
    "sample_two_cubes",
    "seed_target",
]
