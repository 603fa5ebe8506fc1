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
        assert env.spec.control_hz == 50.0  # DT = 0.02 s (ACT, gym-aloha), not the robot's 25
        obs = env.reset(seed=3)
        obs.validate(num_cameras=2, proprio_dim=14)
        assert [im.shape for im in obs.images] == [(96, 128, 3)] * 2
        assert obs.images[0].std() > 5  # a rendered scene, not a blank buffer
        res = env.step(obs.proprio)  # hold the current pose
        assert not res.success and not res.done and res.info["reward"] == 0
        names = {"transfer-cube": aloha.TRANSFER_STAGES, "insertion": aloha.INSERTION_STAGES}[task]
        assert res.info["outcome"] == {"max_stage": 0, "stages": list(names)}  # nothing reached yet
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
        assert result.info["outcome"]["max_stage"] == 4  # the last of ACT's stages
        env.reset(seed=aloha.EVAL_SEED_OFFSET)  # a new episode starts from stage 0
        assert env.step(env.render().proprio, render=False).info["outcome"]["max_stage"] == 0


# ----------------------------------------------------------------------------------- two-cube (issue 11)
def test_two_cube_waypoints_follow_the_target():
    pose = np.array([0.05, 0.45, 0.05, 1, 0, 0, 0, 0.15, 0.55, 0.05, 1, 0, 0, 0])
    for target, xyz in (("red", pose[:3]), ("blue", pose[7:10])):
        _, right = task_waypoints("two-cube", pose, target)
        np.testing.assert_allclose(right[1].xyz[:2], xyz[:2])  # above the named cube
    with pytest.raises(ValueError, match="red"):
        task_waypoints("two-cube", pose, None)


@needs_aloha
def test_two_cube_layouts_targets_and_instructions():
    for seed in range(50):
        pose = aloha.sample_two_cubes(seed)
        assert pose.shape == (14,)
        assert np.linalg.norm(pose[:2] - pose[7:9]) >= aloha.TWO_CUBE_MIN_SEPARATION
        assert 0 <= pose[0] <= 0.2 and 0.4 <= pose[1] <= 0.6 and 0 <= pose[7] <= 0.2
    np.testing.assert_array_equal(aloha.sample_two_cubes(7), aloha.sample_two_cubes(7))
    assert [aloha.seed_target(s) for s in (0, 1, 2, 3)] == ["red", "blue", "red", "blue"]
    assert aloha.named_colour("Transfer the BLUE cube.") == "blue"
    assert aloha.named_colour("transfer the cube") is None and aloha.named_colour("red or blue") is None


@needs_aloha
def test_two_cube_env_instruction_override_renders_three_cameras():
    from oft.sim.base import make_env

    cams = tuple(aloha.CAMERAS)
    with make_env("aloha", task="two-cube", cameras=cams, image_size=64) as env:
        assert env.spec.control_hz == 50.0 == aloha.CONTROL_HZ  # the simulator's DT = 0.02 s
        for seed, colour in ((10, "red"), (11, "blue")):  # the seed's own target and instruction
            obs = env.reset(seed)
            assert env.target == colour and obs.instruction == f"transfer the {colour} cube"
        obs.validate(num_cameras=3, proprio_dim=14)
        top = obs.images[0].astype(int)
        r, g, b = top[..., 0], top[..., 1], top[..., 2]
        assert ((r > 120) & (g < 60) & (b < 60)).any(), "no red cube in cam_high"
        assert ((b > 120) & (r < 60) & (g < 60)).any(), "no blue cube in cam_high"
        for im in obs.images[1:]:
            assert im.std() > 5  # wrist views rendered
    # an instruction override decides the target of every seed (and what success judges)
    with make_env("aloha", task="two-cube", cameras=(), instruction="transfer the blue cube") as env:
        for seed in (10, 11):
            assert env.reset(seed).instruction == "transfer the blue cube" and env.target == "blue"
    with make_env("aloha", task="two-cube", cameras=(), instruction="", target="red") as env:
        assert env.reset(11).instruction == "" and env.target == "red"  # withheld instruction
    with pytest.raises(ValueError, match="names the red cube"):
        make_env("aloha", task="two-cube", instruction="transfer the red cube", target="blue")
    with pytest.raises(ValueError, match="two-cube"):
        make_env("aloha", task="transfer-cube", target="red")


@needs_aloha
@pytest.mark.parametrize("instruction", ["transfer the red cube", "transfer the blue cube"])
def test_two_cube_expert_succeeds_with_either_instruction(instruction):
    from oft.sim.base import make_env
    from oft.sim.rollout import ExpertPolicy, rollout

    with make_env("aloha", task="two-cube", cameras=(), instruction=instruction) as env:
        for i in range(2):  # evaluation layouts (disjoint from demonstration seeds)
            result = rollout(ExpertPolicy(env), env, seed=env.eval_seed_offset + i)
            assert result.success, f"{instruction!r} seed {i}: expert failed after {result.steps} steps"


@needs_aloha
def test_two_cube_success_rejects_the_wrong_cube():
    """The expert driven toward the blue cube while the instruction names the red one: the blue cube is
    handed over (stage 4), and the episode never counts as a success."""
    from oft.sim.base import make_env

    with make_env("aloha", task="two-cube", cameras=(), instruction="transfer the red cube") as env:
        env.reset(env.eval_seed_offset + 1)
        wrong = aloha.record_expert_trajectory("two-cube", env._object_pose, target="blue")
        results = [env.step(a, render=False) for a in wrong]
    assert max(r.info["stages"]["blue"] for r in results) == 4  # the wrong cube was transferred
    assert not any(r.success for r in results)
    # the episode's stage is the named cube's, however far the other one got
    assert results[-1].info["outcome"]["max_stage"] == max(r.info["stages"]["red"] for r in results) < 4
    assert all(r.info["target"] == "red" for r in results)


@needs_aloha
def test_two_cube_collected_under_both_instructions_hands_over_each_cube_from_one_layout(tmp_path):
    """``oft collect --instruction`` on two-cube: one layout, two successful demonstrations that differ only
    in the instruction and in the cube the expert transfers."""
    from oft.cli import main
    from oft.data import open_dataset

    told = ("transfer the red cube", "transfer the blue cube")
    rc = main([
        "collect", "aloha", "--tasks", "two-cube", "--episodes", "1", "--out", str(tmp_path / "ds"),
        "--workers", "1", "--cameras", "cam_high", "--image-size", "16", "--images", "png",
        "--instruction", told[0], "--instruction", told[1],
    ])  # fmt: skip
    assert rc == 0
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == 2
    red, blue = ds.episode(0), ds.episode(1)
    assert (red.instruction, blue.instruction) == told
    np.testing.assert_array_equal(red.images["cam_high"][0], blue.images["cam_high"][0])  # one layout
    n = min(len(red), len(blue))  # each ends at its success
    assert np.abs(red.actions[:n] - blue.actions[:n]).max() > 0.1  # ... and two different handovers
