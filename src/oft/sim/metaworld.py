"""MetaWorld v3 (the ``metaworld`` 3.x package) behind :class:`~oft.sim.base.SimEnv`.

Seed convention. ``reset(seed)`` draws the layout deterministically from ``seed``: layout ``seed`` is task
``seed % 50`` of ``metaworld.MT1(task, seed=seed // 50)`` — the benchmark's own generator of 50 fixed layouts
per seed, so a layout is reproducible by anyone with the package. Demonstrations use seeds
``[0, EVAL_SEED_OFFSET)``; evaluation uses ``EVAL_SEED_OFFSET + i``, which falls in MT1 seed blocks a demo
collection never reaches, so evaluation layouts are disjoint from the demonstrations' (the layouts are
continuous random draws; equal layouts across blocks would need an exact float collision). With
``shared_layouts`` the look-alike tasks (:data:`LOOK_ALIKE_SCENES`) interleave their generators: seed ``s`` is
layout ``s // n`` of the group's ``s % n``-th task: seeds and layouts stay one to one, so demonstration and
evaluation layouts stay disjoint.

Rendering. MetaWorld's own renderer draws one camera at its construction size with shadows, reflections and
the skybox on; on Mesa (CPU) that is 80-300 ms per frame. We render only the requested cameras with one
``mujoco.Renderer`` per image size and those three flags off (~15-25 ms per frame measured on 2 cores).
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from functools import lru_cache

import numpy as np

from oft.conventions import get_conventions
from oft.observation import Observation
from oft.sim.base import SimEnv, StepResult, register_env
from oft.spec import get_spec, unknown_name_message

# headless rendering unless the user chose (osmesa, glfw); must precede the first mujoco import
os.environ.setdefault("MUJOCO_GL", "egl")

import metaworld
import mujoco
from metaworld.policies import ENV_POLICY_MAP

from oft.sim.render import CameraRenderer, FreeCamera, check_action, image_sizes

log = logging.getLogger(__name__)

LAYOUTS_PER_BLOCK = 50  # metaworld's _N_GOALS: MT1(seed) generates 50 layouts
EVAL_SEED_OFFSET = 1_000_000  # evaluation seeds start here; demonstration seeds stay below
DEFAULT_MAX_STEPS = 500  # metaworld's max_path_length (it truncates there)
# Views the MetaWorld model does not define, rendered by MuJoCo's free camera. ``workspace`` frames the part
# of the table where the MT10 tasks' objects and goals lie (each of the ten in view at its layouts and along
# its expert's path, checked by rendering), so the table fills the frame: at 64 px pick-place's goal sphere
# covers 5-7 pixels where ``corner``, which shows the whole arm and the floor, gives it 1-2. (LeRobot's
# MetaWorld env likewise moves ``corner2`` closer to the table for its pixel observations.) It did not
# raise MT10 success (docs/results/study-mt10.md, "A camera framed on the table").
FREE_CAMERAS = {
    "workspace": FreeCamera(lookat=(-0.1, 0.7, 0.12), distance=1.1, azimuth=140.0, elevation=-40.0),
}
CAMERAS = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV", *FREE_CAMERAS)
# cameras whose image comes out upside down (rotated 180 degrees) from MuJoCo's offscreen buffer
FLIPPED_CAMERAS = frozenset({"corner"})
# Actions: xyz delta + gripper effort, -1 = open, +1 = close (metaworld's scripted policies close with +1);
# proprio: hand xyz + gripper opening. A policy in another convention is converted by the rollout.
CONVENTIONS = get_conventions("metaworld")

# MetaWorld's MT10 (Yu et al. 2019). Its first three tasks are one scene: a red puck on the table and a goal
# dot (reach red, push green, pick-place blue). At equal seeds they start from the same layout, puck and goal,
# push's goal dropped onto the table (reach and pick-place 5-30 cm above it); so among these three the
# instruction, and at 64 px the colour of a dot of 1-7 pixels, say which task it is (metaworld/envs/
# sawyer_{reach,push,pick_place}_v3.py draw the same random vector from the same ranges; checked by reset).
MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# Tasks whose goal is a state of an object the cameras see (a drawer pulled out, a faucet handle turned, a
# window slid, a door swung): their goal marker only draws that state, so hiding it (``show_goal=False``)
# leaves the task whole. Two of them sharing a scene (faucet-open / faucet-close) start alike once the
# markers are hidden: only the instruction tells the policy which one it is in.
GOAL_MARKER_OPTIONAL = frozenset(
    {
        "door-close-v3",
        "door-open-v3",
        "drawer-close-v3",
        "drawer-open-v3",
        "faucet-close-v3",
        "faucet-open-v3",
        "window-close-v3",
        "window-open-v3",
    }
)

# Tasks that start from the same-looking scene, but whose layouts MetaWorld draws from different ranges:
# the faucet's x is uniform in +-5 cm for faucet-open and +-10 cm for faucet-close (their ``obj_low`` /
# ``obj_high``), so a faucet beyond 5 cm says "close" before any instruction is read, and no opening
# demonstration ever starts there. ``shared_layouts=True`` draws every task of a group from the group's
# layouts in turn. MT10's reach, push and pick-place also share a scene, but already start from the same
# layout at equal seeds (see MT10), so they need no group here.
LOOK_ALIKE_SCENES: tuple[tuple[str, ...], ...] = (("faucet-open-v3", "faucet-close-v3"),)

# Written by us (MetaWorld ships task names only). Imperative, one sentence, naming the object and the goal.
INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "pick up the ring and place it onto the peg",
    "basketball-v3": "pick up the ball and dunk it into the basket",
    "bin-picking-v3": "pick up the cube from the red bin and place it into the blue bin",
    "box-close-v3": "pick up the lid and close the box with it",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button behind the wall from the top",
    "button-press-v3": "press the button on the front of the box",
    "button-press-wall-v3": "press the button behind the wall",
    "coffee-button-v3": "press the button on the coffee machine",
    "coffee-pull-v3": "pull the coffee mug away from the coffee machine",
    "coffee-push-v3": "push the coffee mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "pick the ring up and off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "turn the door lock to lock the door",
    "door-open-v3": "open the door",
    "door-unlock-v3": "turn the door lock to unlock the door",
    "hand-insert-v3": "push the block into the hole in the table",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "pull the drawer open",
    "faucet-open-v3": "turn the faucet handle to open the faucet",
    "faucet-close-v3": "turn the faucet handle to close the faucet",
    "hammer-v3": "pick up the hammer and hammer the nail into the wall",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "pick-place-wall-v3": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole-v3": "pick the peg up out of the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the goal",
    "plate-slide-side-v3": "slide the plate sideways into the goal",
    "plate-slide-back-v3": "slide the plate back out of the goal",
    "plate-slide-back-side-v3": "slide the plate sideways back out of the goal",
    "peg-insert-side-v3": "pick up the peg and insert it into the hole from the side",
    "peg-unplug-side-v3": "unplug the peg from the side of the box",
    "soccer-v3": "push the soccer ball into the goal",
    "stick-push-v3": "pick up the stick and push the thermos with it to the goal",
    "stick-pull-v3": "pick up the stick and pull the thermos with it to the goal",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck around the wall to the goal",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "reach the red goal position",
    "reach-wall-v3": "reach over the wall to the goal position",
    "shelf-place-v3": "pick up the block and place it on the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the edge of the table",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}


def metaworld_tasks() -> list[str]:
    """All 50 v3 tasks, in the package's order."""
    return list(metaworld.env_dict.ALL_V3_ENVIRONMENTS)


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """``"mt10"``, ``"mt50"``/``"all"``, or comma-separated task names -> validated task names.

    KeyError for an unknown name (with a did-you-mean), ValueError when ``spec`` names no task or has an empty
    item."""
    if isinstance(spec, str):
        from oft.cli import comma_list

        names = list(comma_list(spec, "tasks"))  # ValueError for "" or "a,,b"
    else:
        names = list(spec)
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if name.lower() == "mt10":
            out.extend(MT10)
        elif name.lower() in ("mt50", "all"):
            out.extend(metaworld_tasks())
        elif name:
            if name not in INSTRUCTIONS:
                raise KeyError(unknown_name_message("metaworld task", name, [*INSTRUCTIONS, "mt10", "mt50"]))
            out.append(name)
    if not out:
        raise ValueError(f"no metaworld tasks in {spec!r}; expected comma-separated names, 'mt10' or 'mt50'")
    return list(dict.fromkeys(out))  # dedupe, keep order


@lru_cache(maxsize=8)
def _layout_block(task: str, block: int) -> tuple:
    """The 50 layouts (metaworld ``Task`` objects) of ``MT1(task, seed=block)``; ~1 s to build, so cached."""
    return tuple(metaworld.MT1(task, seed=block).train_tasks)


def _hide_goal_sites(model) -> None:
    """Make the goal marker sites transparent (MuJoCo draws nothing of alpha 0); physics is unaffected."""
    for i in range(model.nsite):
        if model.site(i).name.startswith("goal"):
            model.site_rgba[i, 3] = 0.0


@register_env("metaworld", tasks=metaworld_tasks)
class MetaWorldEnv(SimEnv):
    """One MetaWorld v3 task.

    cameras: which cameras to render (subset of :data:`CAMERAS`), in observation order; ``()`` for state-only.
    image_size: int, (H, W), or {camera: size}. max_steps: episode limit (metaworld's default 500).
    instruction: what observations say instead of the task's own :data:`INSTRUCTIONS` entry (``""``
        withholds it: the language suite's control).
    layout_task: draw layout ``seed`` from this task's generator instead of ``task``'s, keeping ``task``'s
        goal and success criterion: a faucet-open start state judged as faucet-close (the language suite
        asks a policy for each instruction from each start state). Both tasks need layouts of the same size.
    show_goal: draw the goal markers (sites named ``goal*``: reach's red target, the faucets' green/blue
        dots). False hides them, so that in the language suite only the instruction tells which way to go.
    shared_layouts: for a task of a :data:`LOOK_ALIKE_SCENES` group, seed ``s`` draws layout ``s // n`` of
        the group's ``s % n``-th task (n tasks in the group): every task of the group starts from the same
        start states, at equal seeds the very same one, so neither the layout nor its range tells them apart.
        Other tasks are unaffected; an explicit ``layout_task`` overrides it.
    Proprio is ``obs[:4]``: hand xyz + gripper opening. Actions are 4-D in [-1, 1].
    """

    can_skip_render = True
    eval_seed_offset = EVAL_SEED_OFFSET

    def __init__(
        self,
        task: str,
        cameras: tuple[str, ...] | list[str] = ("corner", "gripperPOV"),
        image_size=128,
        max_steps: int = DEFAULT_MAX_STEPS,
        instruction: str | None = None,
        layout_task: str | None = None,
        show_goal: bool = True,
        shared_layouts: bool = False,
    ) -> None:
        for name in (task, layout_task or task):
            if name not in INSTRUCTIONS:
                raise KeyError(unknown_name_message("metaworld task", name, INSTRUCTIONS))
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in CAMERAS:
                raise KeyError(unknown_name_message("metaworld camera", cam, CAMERAS))
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.task = task
        self.instruction = INSTRUCTIONS[task] if instruction is None else str(instruction)
        self.layout_task = layout_task or task
        group = next((g for g in LOOK_ALIKE_SCENES if task in g), ()) if shared_layouts else ()
        self.layout_group: tuple[str, ...] = () if layout_task else group
        self.max_steps = int(max_steps)
        base = get_spec("metaworld")
        self.spec = (base.replace(cameras=cameras) if cameras else base).replace(conventions=CONVENTIONS)
        self.cameras = cameras
        self.image_sizes = image_sizes(cameras, image_size)
        self._env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[task]()
        # metaworld raises past its own horizon; ours is the limit that counts
        self._env.max_path_length = max(self.max_steps, DEFAULT_MAX_STEPS)
        self._expert = ENV_POLICY_MAP[task]()
        if not show_goal:
            _hide_goal_sites(self._env.model)
        self._camera_renderer = CameraRenderer(
            self._env.model,
            self.image_sizes,
            camera_names={c: FREE_CAMERAS[c] for c in cameras if c in FREE_CAMERAS},
            flipped=tuple(c for c in cameras if c in FLIPPED_CAMERAS),
        )
        self._obs: np.ndarray | None = None  # the last 39-D state observation (the expert reads it)
        self._steps = 0

    def _observation(self, render: bool) -> Observation:
        assert self._obs is not None
        images = self._camera_renderer.render(self._env.data) if render else []
        proprio = self._obs[:4].astype(np.float32)  # hand xyz + gripper opening
        return Observation(images=images, proprio=proprio, instruction=self.instruction)

    # -- SimEnv -----------------------------------------------------------------------------------------
    def reset(self, seed: int) -> Observation:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        source, number = self.layout_source(seed)
        block, index = divmod(number, LAYOUTS_PER_BLOCK)
        layout = _layout_block(source, block)[index]
        if source != self.task:
            layout = self._adopt_layout(layout, source)
        self._env.set_task(layout)
        self._obs, _ = self._env.reset()
        # MetaWorld's reset moves the goal site (model.site_pos) after its last mj_forward: without this the
        # first frame draws the goal where the env's previous episode had it, so frame 0 depended on what the
        # env (a reused worker's) ran before. Positions only; the physics state is unchanged.
        mujoco.mj_forward(self._env.model, self._env.data)
        self._steps = 0
        return self._observation(render=True)

    def layout_source(self, seed: int) -> tuple[str, int]:
        """(task whose generator draws seed ``seed``'s layout, the layout's number in it): ``(layout_task,
        seed)``, or with ``shared_layouts`` the group's tasks in turn (a bijection: distinct seeds, distinct
        layouts; demonstration and evaluation seeds stay disjoint)."""
        seed = int(seed)
        if self.layout_group:
            n = len(self.layout_group)
            return self.layout_group[seed % n], seed // n
        return self.layout_task, seed

    def _adopt_layout(self, layout, source: str):
        """``source``'s layout (its random vector: object and goal positions) as one of ``task``.

        The payload is the ``metaworld.Task`` that ``MT1`` built in this process (set_task unpickles it
        the same way); only the env class it names changes.
        """
        data = pickle.loads(layout.data)
        size = self._env._random_reset_space.low.size
        if np.size(data["rand_vec"]) != size:
            raise ValueError(
                f"layout_task {source!r} draws layouts of {np.size(data['rand_vec'])} numbers, "
                f"task {self.task!r} expects {size}; choose tasks of the same scene (e.g. faucet-open/-close)"
            )
        data["env_cls"] = type(self._env)
        return layout._replace(env_name=self.task, data=pickle.dumps(data))

    def step(self, action: np.ndarray, render: bool = True) -> StepResult:
        """Apply a 4-D action; ``render=False`` skips the images (the rollout needs them only to query)."""
        if self._obs is None:
            raise RuntimeError("MetaWorldEnv.step called before reset(seed)")
        action = check_action(action, 4, "metaworld").astype(np.float32)
        self._obs, reward, terminated, _, info = self._env.step(np.clip(action, -1.0, 1.0))
        self._steps += 1
        done = bool(terminated) or self._steps >= self.max_steps
        info = {"reward": float(reward), **info}
        return StepResult(self._observation(render), bool(info["success"]), done, info)

    def render(self) -> Observation:
        if self._obs is None:
            raise RuntimeError("MetaWorldEnv.render called before reset(seed)")
        return self._observation(render=True)

    def expert_action(self) -> np.ndarray:
        """The package's scripted policy for this task (``metaworld.policies.ENV_POLICY_MAP``)."""
        if self._obs is None:
            raise RuntimeError("MetaWorldEnv.expert_action called before reset(seed)")
        with warnings.catch_warnings():  # the package warns that its own gains saturate; the env clips
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            action = self._expert.get_action(self._obs)
        # the gains overshoot [-1, 1]; record what the env executes, so demonstrations stay in bounds
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def close(self) -> None:
        self._camera_renderer.close()
        self._env.close()


__all__ = [
    "CAMERAS",
    "CONVENTIONS",
    "EVAL_SEED_OFFSET",
    "FREE_CAMERAS",
    "GOAL_MARKER_OPTIONAL",
    "INSTRUCTIONS",
    "LOOK_ALIKE_SCENES",
    "MT10",
    "MetaWorldEnv",
    "metaworld_tasks",
    "resolve_tasks",
]
