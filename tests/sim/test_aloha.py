"""ALOHA adapter: reset, step, render and success for both tasks; the scripted expert through rollout()."""

from __future__ import annotations

import numpy as np
import pytest

from oft.sim.aloha_expert import axis_angle_quat, interpolate, quat_mul, task_waypoints

try:
    from oft.sim import aloha
except ImportError as e:  # the aloha extra (gym-aloha, dm-control) is optional
    aloha = None
    _REASON = f"ALOHA sim not installed ({e.name}): pip install gym-aloha==0.1.5 dm-control==1.0.28"

needs_aloha = pytest.mark.skipif(aloha is None, reason=_REASON if aloha is None else "")
TASKS = ("transfer-cube", "insertion")


def test_waypoint_interpolation_is_linear_and_holds_the_last_pose():
    left, _ = task_waypoints("transfer-cube", np.array([0.1, 0.5, 0.05, 1, 0, 0, 0]))
    a, b = left[0], left[1]
    mid = interpolate(left, (a.t + b.t) // 2)  # (8,) xyz, quat, gripper
    np.testing.assert_allclose(mid[:3], (a.xyz + b.xyz) / 2, atol=1e-9)
    assert np.isclose(np.linalg.norm(mid[3:7]), 1.0)
    np.testing.assert_allclose(interpolate(left, 10_000)[:3], left[-1].xyz)


def test_quaternion_helpers():
    q = axis_angle_quat((0, 1, 0), 90)
    np.testing.assert_allclose(quat_mul(q, q), axis_angle_quat((0, 1, 0), 180), atol=1e-12)
    with pytest.raises(KeyError, match="insertion"):
        task_waypoints("stack", np.zeros(7))


@needs_aloha
@pytest.mark.parametrize("task", TASKS)
def test_reset_step_render_success(task):
    from oft.sim.base import list_tasks, make_env

    assert set(TASKS) <= set(list_tasks("aloha"))
    cams = ("cam_high", "cam_left_wrist")
    with make_env("aloha", task=task, cameras=cams, image_size=(96, 128)) as env:
        assert env.spec.cameras == cams and env.spec.action_dim == 14 and env.max_steps == 400
        assert env.spec.conventions == aloha.CONVENTIONS and env.spec.conventions.arm == "absolute"
        obs = env.reset(seed=3)
        obs.validate(num_cameras=2, proprio_dim=14)
        assert [im.shape for im in obs.images] == [(96, 128, 3)] * 2
        assert obs.images[0].std() > 5  # a rendered scene, not a blank buffer
        res = env.step(obs.proprio)  # hold the current pose
        assert not res.success and not res.done and res.info["reward"] == 0
        assert env.step(obs.proprio, render=False).observation.images == []
        # same seed, same layout; another seed, another one
        again = env.reset(seed=3)
        np.testing.assert_array_equal(again.images[0], obs.images[0])
        assert not np.array_equal(env.reset(seed=4).images[0], obs.images[0])
        with pytest.raises(ValueError, match="expected \\(14,\\)"):
            env.step(np.zeros(7))
    with pytest.raises(KeyError, match="Did you mean 'cam_high'"):
        make_env("aloha", task=task, cameras=("cam_hgh",))


@needs_aloha
@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds_through_rollout(task):
    from oft.sim.base import make_env
    from oft.sim.rollout import ExpertPolicy, rollout

    with make_env("aloha", task=task, cameras=("cam_high",), image_size=64) as env:
        result = rollout(ExpertPolicy(env), env, seed=aloha.EVAL_SEED_OFFSET)
        assert result.success, f"{task}: expert failed after {result.steps} steps ({result.info})"
        assert result.steps < env.max_steps
