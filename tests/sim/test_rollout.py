"""The one rollout loop: chunks run open-loop, images rendered only at queries, the expert through it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")

from oft.sim.base import make_env
from oft.sim.rollout import ExpertPolicy, rollout


class ConstantChunkPolicy:
    """Returns a K-step chunk of zeros and remembers what it was shown."""

    def __init__(self, k: int, action_dim: int = 4):
        self.k, self.d = k, action_dim
        self.seen: list[int] = []  # number of images of each queried observation
        self.resets = 0

    def reset(self):
        self.resets += 1

    def predict_action_chunk(self, obs):
        self.seen.append(len(obs.images))
        return np.zeros((self.k, self.d), np.float32)


@pytest.fixture(scope="module")
def env():
    with make_env("metaworld", task="reach-v3", image_size=32) as e:
        yield e


@pytest.mark.parametrize(("open_loop", "queries"), [(None, 3), (8, 3), (2, 10), (1, 20), (100, 3)])
def test_chunks_run_open_loop(env, open_loop, queries):
    policy = ConstantChunkPolicy(k=8)
    r = rollout(policy, env, max_steps=20, seed=3, open_loop_steps=open_loop)
    assert (r.steps, r.chunk_queries, r.success) == (20, queries, False)
    assert policy.resets == 1
    assert policy.seen == [2] * queries  # every query saw both cameras, though most steps rendered none


def test_video_frames_and_observations_are_recorded(env):
    policy = ConstantChunkPolicy(k=4)
    r = rollout(policy, env, max_steps=10, seed=0, record_video=True, record_observations=True)
    assert set(r.frames) == {"corner", "gripperPOV"}
    assert r.frames["corner"].shape == (11, 32, 32, 3)  # initial state + one per step
    assert len(r.observations) == 10 and r.actions.shape == (10, 4)
    assert all(len(o.images) == 2 for o in r.observations)


def test_bad_chunk_is_rejected_with_its_shape(env):
    with pytest.raises(ValueError, match=r"shape \(8, 3\); want \(K, 4\)"):
        rollout(ConstantChunkPolicy(k=8, action_dim=3), env, max_steps=5, seed=0)
    with pytest.raises(ValueError, match="open_loop_steps"):
        rollout(ConstantChunkPolicy(k=8), env, max_steps=5, seed=0, open_loop_steps=0)


def test_expert_succeeds_through_the_loop_and_stops_at_success(env):
    r = rollout(ExpertPolicy(env), env, seed=env.eval_seed_offset)
    assert r.success and 0 < r.steps < env.max_steps and r.chunk_queries == r.steps
    assert r.seed == env.eval_seed_offset and r.task == "reach-v3"


def _act_reference(chunks: list[np.ndarray], coeff: float) -> np.ndarray:
    """ACT's own loop (imitate_episodes.py): a (T, T+K, D) table of every query's chunk, read down column
    t, oldest query first."""
    t_max, k, d = len(chunks), chunks[0].shape[0], chunks[0].shape[1]
    table = np.zeros((t_max, t_max + k, d))
    filled = np.zeros((t_max, t_max + k), bool)
    out = []
    for t, c in enumerate(chunks):
        table[t, t : t + k], filled[t, t : t + k] = c, True
        preds = table[filled[:, t], t]  # oldest query first
        w = np.exp(-coeff * np.arange(len(preds)))
        out.append((preds * (w / w.sum())[:, None]).sum(0))
    return np.stack(out)


@pytest.mark.parametrize("coeff", [0.01, 0.0, -0.5, 1.0])
def test_temporal_ensembler_matches_act(coeff):
    from oft.sim.rollout import TemporalEnsembler

    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(5, 3)) for _ in range(12)]
    ens = TemporalEnsembler(coeff)
    got = np.stack([ens.update(c) for c in chunks])
    np.testing.assert_allclose(got, _act_reference(chunks, coeff), rtol=1e-5, atol=1e-6)


def test_temporal_ensembler_stays_finite_for_a_steep_weighting():
    """exp(-coeff * i) overflowed to inf for a large negative coeff, and inf / inf made the action nan."""
    from oft.sim.rollout import TemporalEnsembler

    ens = TemporalEnsembler(-1000.0)  # all weight on the newest chunk
    chunks = [np.full((4, 2), float(i)) for i in range(3)]
    assert [ens.update(c)[0] for c in chunks] == [0.0, 1.0, 2.0]


def test_temporal_ensembler_by_hand():
    from oft.sim.rollout import TemporalEnsembler

    ens = TemporalEnsembler(np.log(2.0))  # weights 1, 1/2, 1/4 from the oldest
    a, b, c, d = (np.array([[v], [v + 1.0], [v + 2.0]]) for v in (0.0, 10.0, 20.0, 30.0))
    assert ens.update(a)[0] == 0.0  # A's step 0
    assert ens.update(b)[0] == pytest.approx((1 * 1.0 + 0.5 * 10.0) / 1.5)  # A's step 1, B's step 0
    assert ens.update(c)[0] == pytest.approx((2.0 + 0.5 * 11.0 + 0.25 * 20.0) / 1.75)
    assert ens.update(d)[0] == pytest.approx((12.0 + 0.5 * 21.0 + 0.25 * 30.0) / 1.75)  # A has run out
    ens.reset()
    assert ens.update(d)[0] == 30.0


def _counting_chunk(i: int, k: int, d: int = 4) -> np.ndarray:
    """(k, d): query i's chunk, (i * 100 + step) / 1e4 in every dimension: each query's differs."""
    return np.repeat((i * 100.0 + np.arange(k))[:, None], d, axis=1).astype(np.float32) / 1e4


class CountingChunkPolicy(ConstantChunkPolicy):
    def predict_action_chunk(self, obs):
        super().predict_action_chunk(obs)
        return _counting_chunk(len(self.seen) - 1, self.k, self.d)


def test_rollout_with_temporal_ensembling_queries_every_step(env):
    from oft.sim.rollout import TemporalEnsembler

    policy = CountingChunkPolicy(k=4)
    r = rollout(policy, env, max_steps=10, seed=3, temporal_ensemble_coeff=0.01)
    assert (r.steps, r.chunk_queries) == (10, 10)
    assert policy.seen == [2] * 10  # rendered for every query
    ens = TemporalEnsembler(0.01)
    want = np.stack([ens.update(_counting_chunk(i, 4)) for i in range(10)])
    np.testing.assert_allclose(r.actions, want, rtol=1e-6)  # metaworld acts natively: no conversion


@pytest.mark.parametrize(
    ("open_loop", "coeff", "message"),
    [
        (8, 0.01, "open_loop_steps must be None or 1 with it, got 8"),
        (None, float("nan"), "finite number, got nan"),
    ],
)
def test_temporal_ensembling_settings_rejected(env, open_loop, coeff, message):
    with pytest.raises(ValueError, match=message):
        rollout(ConstantChunkPolicy(k=8), env, max_steps=5, seed=0, open_loop_steps=open_loop,
                temporal_ensemble_coeff=coeff)  # fmt: skip


def test_after_success_keeps_acting_past_the_success_step(env):
    """Issue 11: two-cube demonstrations ended on the success frame, so a policy reaching the last
    demonstrated pose without the test passing there had no example of going on, and stalled."""
    stop = rollout(ExpertPolicy(env), env, seed=env.eval_seed_offset)
    assert stop.success and stop.steps == stop.success_step  # the default stops where evaluation does
    more = rollout(ExpertPolicy(env), env, seed=env.eval_seed_offset, after_success=7)
    assert more.success and more.success_step == stop.success_step and more.steps == stop.steps + 7
    np.testing.assert_array_equal(more.actions[: stop.steps], stop.actions)  # the same episode, only longer
    end = stop.steps + 20
    full = rollout(ExpertPolicy(env), env, seed=env.eval_seed_offset, max_steps=end, after_success=None)
    assert full.success and full.steps == end  # None: on to the end (here max_steps)
    never = rollout(ConstantChunkPolicy(k=4), env, max_steps=12, seed=0, after_success=None)
    assert (never.success, never.success_step, never.steps) == (False, None, 12)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "end"])
def test_after_success_must_be_a_step_count_or_none(env, bad):
    with pytest.raises(ValueError, match=rf"after_success must be a number of steps >= 0.*got {bad!r}"):
        rollout(ConstantChunkPolicy(k=4), env, max_steps=4, seed=0, after_success=bad)


def test_action_noise_moves_the_env_but_the_recording_keeps_the_policys_actions(env, monkeypatch):
    """DART's noise injection for `oft collect --action-noise`: the env executes the action plus noise drawn
    from the episode's seed; the recorded action is the policy's own."""
    executed: list[np.ndarray] = []
    step = env.step

    def spy(action, render=True):
        executed.append(np.array(action, np.float32))
        return step(action, render=render)

    monkeypatch.setattr(env, "step", spy)

    def run(seed, noise):
        executed.clear()
        r = rollout(ConstantChunkPolicy(k=4), env, max_steps=40, seed=seed, action_noise=noise,
                    record_observations=True)  # fmt: skip
        return r, np.stack(executed)

    runs = still, moved = run(0, 0.0), run(0, 0.5)
    for r, _ in (still, moved):
        np.testing.assert_array_equal(r.actions, np.zeros((40, 4), np.float32))  # what the policy chose
    np.testing.assert_array_equal(still[1], 0.0)
    assert 0.4 < moved[1].std() < 0.6 and abs(moved[1].mean()) < 0.1  # executed: N(0, 0.5) per component
    hand = [np.linalg.norm(r.observations[-1].proprio[:3] - r.observations[0].proprio[:3]) for r, _ in runs]
    assert hand[0] < 0.01 < 0.02 < hand[1]  # zeros barely move the hand; the noise walks it by centimetres
    np.testing.assert_array_equal(run(0, 0.5)[1], moved[1])  # the same seed, the same noise
    assert not np.allclose(run(1, 0.5)[1], moved[1])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.3"])
def test_action_noise_must_be_a_finite_standard_deviation(env, bad):
    with pytest.raises(ValueError, match=rf"finite standard deviation >= 0, got {bad!r}"):
        rollout(ConstantChunkPolicy(k=4), env, max_steps=4, seed=0, action_noise=bad)
