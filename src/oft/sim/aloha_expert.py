"""Scripted bimanual experts for the ALOHA sim tasks, the way the ACT paper made its demonstrations.

ACT (Zhao et al. 2023, Sec. V and its ``scripted_policy.py`` / ``record_sim_episodes.py``) scripts the two
end effectors as waypoints — (time, xyz, quaternion, gripper) per arm, linearly interpolated — and runs them
in a copy of the scene whose arms follow mocap bodies. The joint positions that the arms actually reach are
recorded and then replayed as absolute joint targets in the joint-controlled task: what a policy is trained
on and evaluated in. Replaying joints instead of the mocap poses means the demonstration is in the same action
space as the policy, and a waypoint that asks for an unreachable pose simply yields the nearest joint path.

gym-aloha ships the end-effector task classes but no scripted policy, so the waypoints below are ours,
written after ACT's: same phases (approach, descend, grasp, lift, meet, hand over / insert) and the same
episode length of 400 steps at 50 Hz. ``two-cube`` reuses transfer-cube's around the named cube.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Mocap poses that put both grippers where START_ARM_POSE has them (gym-aloha's initialize_robots).
INIT_LEFT_XYZ = np.array([-0.31718881, 0.5, 0.29525084])
INIT_RIGHT_XYZ = np.array([0.31718881, 0.49999888, 0.29525084])
IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions, MuJoCo's order."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def axis_angle_quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    axis_arr = np.asarray(axis, dtype=np.float64)
    half = np.deg2rad(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * axis_arr / np.linalg.norm(axis_arr)])


def _offset(xyz: np.ndarray, dx: float, dy: float, dz: float) -> np.ndarray:
    return np.asarray(xyz, dtype=np.float64) + np.array([dx, dy, dz])


@dataclass(frozen=True)
class Waypoint:
    t: int  # control step at which the arm is at this pose
    xyz: np.ndarray  # (3,)
    quat: np.ndarray  # (4,) w, x, y, z
    gripper: float  # normalized opening: 0 closed, 1 open


def interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """(8,) mocap xyz + quat + gripper at step ``t``: linear between the two waypoints around ``t``."""
    if t >= waypoints[-1].t:
        w = waypoints[-1]
        return np.concatenate([w.xyz, w.quat, [w.gripper]])
    k = next(i for i in range(1, len(waypoints)) if waypoints[i].t > t)
    a, b = waypoints[k - 1], waypoints[k]
    f = (t - a.t) / (b.t - a.t)
    xyz = a.xyz + f * (b.xyz - a.xyz)
    quat = a.quat + f * (b.quat - a.quat)
    quat = quat / np.linalg.norm(quat)  # linear blend of nearby unit quaternions, renormalized
    return np.concatenate([xyz, quat, [a.gripper + f * (b.gripper - a.gripper)]])


def transfer_cube_waypoints(box_xyz: np.ndarray) -> tuple[list[Waypoint], list[Waypoint]]:
    """Right arm picks the cube and brings it to the middle; the left arm takes it over.

    The right gripper is tilted 60 degrees about y so its fingers come down on the cube from above; the left
    gripper turns 90 degrees about x so its fingers close across the right hand's grasp.
    """
    pick = quat_mul(IDENTITY_QUAT, axis_angle_quat((0, 1, 0), -60))
    meet_left = axis_angle_quat((1, 0, 0), 90)
    meet = np.array([0.0, 0.5, 0.25])
    left = [
        Waypoint(0, INIT_LEFT_XYZ, IDENTITY_QUAT, 0),
        Waypoint(100, _offset(meet, -0.1, 0, -0.02), meet_left, 1),  # approach the meeting point, open
        Waypoint(260, _offset(meet, 0.02, 0, -0.02), meet_left, 1),  # move in around the cube
        Waypoint(310, _offset(meet, 0.02, 0, -0.02), meet_left, 0),  # close on it
        Waypoint(360, _offset(meet, -0.1, 0, -0.02), IDENTITY_QUAT, 0),  # pull it away
        Waypoint(400, _offset(meet, -0.1, 0, -0.02), IDENTITY_QUAT, 0),
    ]
    right = [
        Waypoint(0, INIT_RIGHT_XYZ, IDENTITY_QUAT, 0),
        Waypoint(90, _offset(box_xyz, 0, 0, 0.08), pick, 1),  # above the cube, open
        Waypoint(130, _offset(box_xyz, 0, 0, -0.015), pick, 1),  # down around it
        Waypoint(170, _offset(box_xyz, 0, 0, -0.015), pick, 0),  # grasp
        Waypoint(200, _offset(meet, 0.05, 0, 0), pick, 0),  # lift towards the middle
        Waypoint(220, meet, pick, 0),
        Waypoint(310, meet, pick, 1),  # let go once the left hand holds it
        Waypoint(360, _offset(meet, 0.1, 0, 0), pick, 1),  # retreat
        Waypoint(400, _offset(meet, 0.1, 0, 0), pick, 1),
    ]
    return left, right


def insertion_waypoints(peg_xyz: np.ndarray, socket_xyz: np.ndarray) -> tuple[list[Waypoint], list[Waypoint]]:
    """Left arm grasps the socket, right arm the peg; both lift and meet so the peg slides into the socket."""
    pick_right = axis_angle_quat((0, 1, 0), -60)
    pick_left = axis_angle_quat((0, 1, 0), 60)
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = 0.0102  # peg above the hand-held socket centre: ACT used 0.00715; +3 mm centres it here
    left = [
        Waypoint(0, INIT_LEFT_XYZ, IDENTITY_QUAT, 0),
        Waypoint(120, _offset(socket_xyz, 0, 0, 0.08), pick_left, 1),
        Waypoint(170, _offset(socket_xyz, 0, 0, -0.03), pick_left, 1),
        Waypoint(220, _offset(socket_xyz, 0, 0, -0.03), pick_left, 0),
        Waypoint(285, _offset(meet, -0.1, 0, 0), pick_left, 0),
        Waypoint(340, _offset(meet, -0.05, 0, 0), pick_left, 0),
        Waypoint(400, _offset(meet, -0.05, 0, 0), pick_left, 0),
    ]
    right = [
        Waypoint(0, INIT_RIGHT_XYZ, IDENTITY_QUAT, 0),
        Waypoint(120, _offset(peg_xyz, 0, 0, 0.08), pick_right, 1),
        Waypoint(170, _offset(peg_xyz, 0, 0, -0.03), pick_right, 1),
        Waypoint(220, _offset(peg_xyz, 0, 0, -0.03), pick_right, 0),
        Waypoint(285, _offset(meet, 0.1, 0, lift_right), pick_right, 0),
        Waypoint(340, _offset(meet, 0.05, 0, lift_right), pick_right, 0),
        Waypoint(400, _offset(meet, 0.05, 0, lift_right), pick_right, 0),
    ]
    return left, right


# two-cube: the cubes' free joints in qpos order (red first), see oft.sim.aloha.sample_two_cubes
TWO_CUBE_ORDER = ("red", "blue")


def task_waypoints(
    task: str, object_pose: np.ndarray, target: str | None = None
) -> tuple[list[Waypoint], list[Waypoint]]:
    """Waypoints for ``task`` given the objects' free-joint poses (7 per object, as in qpos).

    two-cube: the transfer-cube waypoints around the ``target`` cube ("red" or "blue"); the other cube is
    left where it is (layouts keep the cubes apart far enough for the open gripper to pass).
    """
    if task == "transfer-cube":
        return transfer_cube_waypoints(object_pose[:3])
    if task == "insertion":
        return insertion_waypoints(object_pose[:3], object_pose[7:10])
    if task == "two-cube":
        if target not in TWO_CUBE_ORDER:
            raise ValueError(f"two-cube expert: target must be one of {TWO_CUBE_ORDER}, got {target!r}")
        start = 7 * TWO_CUBE_ORDER.index(target)
        return transfer_cube_waypoints(object_pose[start : start + 3])
    raise KeyError(
        f"no scripted expert for aloha task {task!r}; expected 'transfer-cube', 'insertion' or 'two-cube'"
    )


def ee_action(left: list[Waypoint], right: list[Waypoint], t: int) -> np.ndarray:
    """(16,) action of gym-aloha's end-effector task: left xyz+quat+gripper, then right."""
    return np.concatenate([interpolate(left, t), interpolate(right, t)])


__all__ = [
    "Waypoint",
    "ee_action",
    "insertion_waypoints",
    "interpolate",
    "task_waypoints",
    "transfer_cube_waypoints",
]
