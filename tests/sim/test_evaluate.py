"""``evaluate`` / ``oft eval``: results with seeds, MP4 videos, a chart, clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("metaworld")
av = pytest.importorskip("av")

from oft.cli import main  # noqa: E402
from oft.sim.evaluate import evaluate, resolve_tasks  # noqa: E402
from oft.sim.metaworld import EVAL_SEED_OFFSET  # noqa: E402
from oft.sim.rollout import ExpertPolicy  # noqa: E402


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_evaluate_expert_writes_results_videos_chart(tmp_path):
    res = evaluate(
        ExpertPolicy, "metaworld", "reach-v3", episodes=2, seed=5, out=tmp_path, video_episodes=1,
        env_kwargs={"image_size": 32},
    )  # fmt: skip
    task = res["tasks"]["reach-v3"]
    assert task["seeds"] == [EVAL_SEED_OFFSET + 5, EVAL_SEED_OFFSET + 6]
    assert res["overall"]["episodes"] == 2 and task["successes"] == res["overall"]["successes"]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["tasks"]["reach-v3"]["seeds"] == task["seeds"]
    assert (tmp_path / "success.png").stat().st_size > 0
    ep0, ep1 = task["episode_results"]
    assert "video" not in ep1
    frames = _frames(tmp_path / ep0["video"])
    assert len(frames) == ep0["steps"] + 1
    assert frames[0].shape == (32, 64, 3)  # two 32 px cameras side by side
    assert np.mean(frames[0]) > 10  # not a black video


class ZeroPolicy:
    """A stand-in learned policy: spec decides the cameras, chunks of zeros never solve the task."""

    def __init__(self):
        from oft.spec import get_spec

        self.spec = get_spec("metaworld").replace(cameras=("gripperPOV",))

    def reset(self):
        pass

    def predict_action_chunk(self, obs):
        assert len(obs.images) == 1  # the env rendered the policy's cameras only
        return np.zeros((8, 4), np.float32)


def test_evaluate_policy_instance_uses_its_cameras():
    res = evaluate(ZeroPolicy(), "metaworld", ["drawer-close-v3"], episodes=1, max_steps=16)
    ep = res["tasks"]["drawer-close-v3"]["episode_results"][0]
    assert ep.pop("actions_sha1")  # a digest of the executed actions
    assert ep == {"seed": EVAL_SEED_OFFSET, "success": False, "steps": 16, "chunk_queries": 2}


def test_resolve_tasks_and_cli_errors(tmp_path, capsys):
    assert len(resolve_tasks("metaworld", "mt10")) == 10
    args = ["eval", "--env", "metaworld", "--tasks", "pick-place-v2", "--expert", "--out", str(tmp_path)]
    code = main(args)
    assert code == 2
    assert "Did you mean 'pick-place-v3'" in capsys.readouterr().err
    code = main(["eval", "--env", "metaword", "--tasks", "x", "--expert", "--out", str(tmp_path)])
    assert code == 2 and "Did you mean 'metaworld'" in capsys.readouterr().err


def test_cli_eval_expert(tmp_path, capsys):
    args = ["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--expert", "--episodes", "1"]
    assert main([*args, "--out", str(tmp_path), "--image-size", "32", "--video-episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and (tmp_path / "results.json").exists()
    assert list((tmp_path / "videos" / "drawer-open-v3").glob("*.mp4"))


def test_cli_eval_checkpoint_runs_a_real_policy(tmp_path, capsys):
    """A saved (untrained) oft policy goes through `oft eval --checkpoint` and the chunked rollout."""
    torch = pytest.importorskip("torch")
    from oft.data.normalize import NormStats, Stats
    from oft.model import build_policy
    from oft.spec import get_spec

    torch.manual_seed(0)

    def stats(d):
        z, o = np.zeros(d), np.ones(d)
        return Stats(mean=z, std=o, min=-o, max=o, q01=-o, q99=o)

    spec = get_spec("metaworld")
    policy = build_policy(
        spec, NormStats(action=stats(4), proprio=stats(4)), ["open the drawer"], arch="tiny"
    )
    policy.save(tmp_path / "ckpt")
    args = ["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--checkpoint", str(tmp_path / "ckpt")]
    assert (
        main(
            [
                *args,
                "--episodes",
                "1",
                "--max-steps",
                "16",
                "--image-size",
                "32",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    ep = res["tasks"]["drawer-open-v3"]["episode_results"][0]
    assert ep["steps"] == 16 and ep["chunk_queries"] == 16 // spec.chunk_len


def _tiny_policy():
    import torch

    from oft.bench.latency import neutral_stats
    from oft.data.normalize import NormStats
    from oft.model import build_policy
    from oft.spec import get_spec

    torch.manual_seed(0)
    spec = get_spec("metaworld").replace(cameras=("corner",), chunk_len=4)
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim))
    return build_policy(spec, stats, ["open the drawer"], arch="tiny").eval()


def test_parallel_workers_give_the_sequential_results(tmp_path):
    """Two simulator processes, the policy answering from this one: every seed's episode is the sequential
    run's, action for action (the digest of the executed actions), whatever order episodes finish in."""
    policy = _tiny_policy()
    kw = dict(episodes=3, seed=2, max_steps=20, env_kwargs={"image_size": 32})
    one = evaluate(policy, "metaworld", ["drawer-open-v3", "reach-v3"], workers=1, **kw)
    two = evaluate(policy, "metaworld", ["drawer-open-v3", "reach-v3"], workers=2, out=tmp_path, **kw)
    assert two["workers"] == 2 and two["episodes_per_s"] > 0
    for task in ("drawer-open-v3", "reach-v3"):
        assert one["tasks"][task]["episode_results"] == two["tasks"][task]["episode_results"]
    digests = [e["actions_sha1"] for t in one["tasks"].values() for e in t["episode_results"]]
    assert len(set(digests)) == len(digests)  # the episodes differ: the comparison is not vacuous
    assert json.loads((tmp_path / "results.json").read_text())["workers"] == 2


def test_parallel_expert_factory_runs_in_the_workers():
    kw = dict(episodes=2, seed=0, max_steps=150, env_kwargs={"image_size": 32})
    one = evaluate(ExpertPolicy, "metaworld", "reach-v3", workers=1, **kw)
    two = evaluate(ExpertPolicy, "metaworld", "reach-v3", workers=2, **kw)
    assert one["tasks"]["reach-v3"]["episode_results"] == two["tasks"]["reach-v3"]["episode_results"]
    assert two["overall"]["successes"] >= 1


def test_workers_validated():
    with pytest.raises(ValueError, match="workers"):
        evaluate(ExpertPolicy, "metaworld", "reach-v3", episodes=1, workers=0)


def test_no_more_workers_than_episodes():
    """One episode with the default of one worker per core ran a process pool for it (and reported 2)."""
    kw = dict(episodes=1, max_steps=5, env_kwargs={"image_size": 32}, policy_source="expert")
    results = evaluate(ExpertPolicy, "metaworld", "reach-v3", workers=4, **kw)
    assert results["workers"] == 1 and results["policy"] == "expert"


def test_stage_counts_count_episodes_reaching_at_least_each_stage():
    from oft.sim.evaluate import stage_counts

    names = ["touched both", "grasped both", "peg touches socket", "inserted"]
    eps = [{"outcome": {"max_stage": k, "stages": names}} for k in (0, 1, 2, 2, 3, 4)]
    assert stage_counts(eps) == {
        "stages": {"touched both": 5, "grasped both": 4, "peg touches socket": 2, "inserted": 1}}  # fmt: skip
    assert stage_counts([*eps, {"success": False}]) == {}  # an env that records no stages: no column
    assert stage_counts([*eps, {"outcome": {"max_stage": 1, "stages": ["a"]}}]) == {}  # other tasks' stages
    assert stage_counts([]) == {}


def test_temporal_ensembling_through_evaluate_and_workers(tmp_path):
    """ACT's temporal ensembling reaches every episode, in the workers too: one query per step, and the
    setting recorded in results.json."""
    policy = _tiny_policy()
    kw = dict(episodes=2, seed=1, max_steps=12, env_kwargs={"image_size": 32}, temporal_ensemble_coeff=0.01)
    one = evaluate(policy, "metaworld", ["drawer-open-v3"], workers=1, **kw)
    two = evaluate(policy, "metaworld", ["drawer-open-v3"], workers=2, out=tmp_path, **kw)
    eps = one["tasks"]["drawer-open-v3"]["episode_results"]
    assert eps == two["tasks"]["drawer-open-v3"]["episode_results"]
    assert [(e["steps"], e["chunk_queries"]) for e in eps] == [(12, 12), (12, 12)]
    assert json.loads((tmp_path / "results.json").read_text())["temporal_ensemble_coeff"] == 0.01
    plain = evaluate(policy, "metaworld", ["drawer-open-v3"], episodes=1, seed=1, max_steps=12,
                     env_kwargs={"image_size": 32})  # fmt: skip
    ep = plain["tasks"]["drawer-open-v3"]["episode_results"][0]
    assert ep["chunk_queries"] == 3 and ep["actions_sha1"] != eps[0]["actions_sha1"]


def test_cli_temporal_ensembling_conflict_named_before_loading(tmp_path, capsys):
    args = ["eval", "--env", "metaworld", "--tasks", "drawer-open-v3", "--checkpoint", str(tmp_path / "none")]
    code = main(
        [*args, "--out", str(tmp_path), "--temporal-ensemble-coeff", "0.01", "--open-loop-steps", "8"]
    )
    assert code == 2
    assert "open_loop_steps must be None or 1 with it, got 8" in capsys.readouterr().err


def test_seeds_past_an_envs_limit_are_refused_before_any_episode(monkeypatch):
    """A run whose last seed lies past what the env accepts (LIBERO: 50 fixed initial states per task) is
    refused up front, naming the seeds, the range and the episodes that fit; it used to run every episode up
    to the limit and then lose their results to the reset that failed."""
    from oft.observation import Observation
    from oft.sim import base
    from oft.sim.base import SimEnv, StepResult
    from oft.spec import get_spec

    built = []

    class FixedStates(SimEnv):
        spec = get_spec("metaworld")
        instruction, max_steps = "hold still", 2

        def __init__(self, task):
            self.task = task
            built.append(task)

        @classmethod
        def seed_limit(cls, task):
            return 3

        def reset(self, seed):
            if seed >= 3:
                raise ValueError(f"only 3 initial states, got seed {seed}")
            return Observation(images=[], proprio=np.zeros(4, np.float32), instruction=self.instruction)

        def step(self, action):
            return StepResult(self.reset(0), success=True, done=True)

        def expert_action(self):
            return np.zeros(4, np.float32)

    monkeypatch.setitem(base.ENVS, "fixed", FixedStates)
    monkeypatch.setitem(base.SUITE_TASKS, "fixed", lambda: ["a", "b"])
    with pytest.raises(ValueError) as err:
        evaluate(ExpertPolicy, "fixed", ["a", "b"], episodes=4, seed=1)
    msg = str(err.value)
    assert "fixed task 'a' accepts reset seeds 0..2" in msg and "would use seeds 1..4" in msg
    assert "seed + episodes <= 3 (at most 2 episodes from seed 1)" in msg
    assert built == []  # refused before any env was built or episode run
    res = evaluate(ExpertPolicy, "fixed", ["a", "b"], episodes=2, seed=1)  # seeds 1, 2: within the limit
    assert res["tasks"]["b"]["seeds"] == [1, 2] and res["overall"]["successes"] == 4


def test_cli_eval_seed_past_the_limit_named_before_loading(tmp_path, capsys):
    """ALOHA draws layouts with 32-bit RandomState seeds: `oft eval` refuses a range past them before it
    loads the checkpoint (which does not exist here) or runs an episode."""
    pytest.importorskip("gym_aloha")
    from oft.sim.aloha import EVAL_SEED_OFFSET as ALOHA_OFFSET

    seed = 2**32 - ALOHA_OFFSET - 1  # the last seed that fits: one episode runs, two do not
    args = ["eval", "--env", "aloha", "--tasks", "insertion", "--checkpoint", str(tmp_path / "none")]
    code = main([*args, "--out", str(tmp_path), "--seed", str(seed), "--episodes", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"accepts reset seeds {ALOHA_OFFSET}..{2**32 - 1}" in err and "(at most 1 episode from seed" in err
    assert not (tmp_path / "results.json").exists()


def test_an_error_in_a_worker_reaches_the_caller_as_itself(tmp_path, capsys):
    """An env option that fails in a worker (an unknown camera) is the same KeyError with 2 workers as with
    1, so `oft eval` prints one clear line (exit 2) at its default worker count; it used to be a
    RuntimeError wrapping the worker's traceback, printed as a traceback (exit 1)."""
    kwargs = {"cameras": ("bogus",), "image_size": 32}
    for workers in (1, 2):
        with pytest.raises(KeyError, match="unknown metaworld camera 'bogus'") as err:
            evaluate(ExpertPolicy, "metaworld", ["reach-v3"], episodes=2, workers=workers, env_kwargs=kwargs)
    assert "Traceback" in str(err.value.__cause__)  # the worker's traceback, kept as the cause
    args = ["eval", "--env", "metaworld", "--tasks", "reach-v3", "--expert", "--cameras", "bogus"]
    assert main([*args, "--episodes", "2", "--workers", "2", "--out", str(tmp_path)]) == 2
    assert "oft eval: error: unknown metaworld camera 'bogus'" in capsys.readouterr().err


def test_an_evaluation_stopped_midway_keeps_the_finished_episodes(tmp_path):
    """A failure in episode 3 (here the policy's; a crashed simulator or Ctrl-C alike) used to lose episodes
    1-2 with it: they are written to results_partial.json, with the error, before it propagates."""

    class BreaksOnThirdQuery(ZeroPolicy):
        def __init__(self):
            super().__init__()
            self.queries = 0

        def predict_action_chunk(self, obs):
            self.queries += 1
            if self.queries == 3:
                raise RuntimeError("policy broke")
            return super().predict_action_chunk(obs)

    with pytest.raises(RuntimeError, match="policy broke"):  # 8 steps: one chunk query per episode
        evaluate(BreaksOnThirdQuery(), "metaworld", "drawer-close-v3", episodes=4, max_steps=8, out=tmp_path)
    partial = json.loads((tmp_path / "results_partial.json").read_text())
    assert partial["episodes_finished"] == 2 and "policy broke" in partial["error"]
    seeds = [e["seed"] for e in partial["tasks"]["drawer-close-v3"]]
    assert seeds == [EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 1]
    assert not (tmp_path / "results.json").exists()  # the results of a whole run only
    evaluate(ZeroPolicy(), "metaworld", "drawer-close-v3", episodes=1, max_steps=8, out=tmp_path)
    assert (tmp_path / "results.json").exists() and not (tmp_path / "results_partial.json").exists()
