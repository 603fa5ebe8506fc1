"""``collect`` / ``oft collect``: successful expert episodes in a LeRobot v3 dataset, parallel, resumable."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("metaworld")

from oft.data import open_dataset
from oft.sim.collect import SIDECAR, CollectConfig, collect, recorded_scene


def _cfg(**kw) -> CollectConfig:
    return CollectConfig(image_size=32, workers=1, video=False, **kw)


def test_collect_writes_successful_demos_and_resumes(tmp_path):
    out = tmp_path / "ds"
    first = collect("metaworld", ["reach-v3"], 1, out, _cfg())
    assert first["num_episodes"] == 1
    ep0_before = open_dataset(out).episode(0)
    second = collect("metaworld", ["reach-v3"], 3, out, _cfg())  # rerun asks for more: continues
    assert second["resumed_from"] == 1 and second["num_episodes"] == 3
    ds = open_dataset(out)
    assert ds.num_episodes == 3 and ds.cameras == ["corner", "gripperPOV"]
    np.testing.assert_array_equal(ds.episode(0).actions, ep0_before.actions)
    seeds = [e["seed"] for e in json.loads((out / SIDECAR).read_text())["episodes"]]
    assert seeds == sorted(set(seeds)) and max(seeds) < 1_000_000  # demo seeds, in order, no repeats
    # every stored episode ends at the expert's success and stays in the action bounds
    for i in range(3):
        ep = ds.episode(i)
        assert ep.instruction == "reach the red goal position"
        assert ep.images["corner"].shape == (len(ep), 32, 32, 3)
        assert ep.proprio.shape == (len(ep), 4) and ep.actions.shape == (len(ep), 4)
        assert np.abs(ep.actions).max() <= 1.0
    # stats saved with the dataset equal a direct numpy computation over all frames
    acts = np.concatenate([ds.episode(i).actions for i in range(3)])
    props = np.concatenate([ds.episode(i).proprio for i in range(3)])
    st = ds.stats
    np.testing.assert_allclose(st.action.mean, acts.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.action.std, acts.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(st.proprio.min, props.min(0), rtol=1e-6)
    np.testing.assert_allclose(st.proprio.max, props.max(0), rtol=1e-6)
    np.testing.assert_allclose(st.action.q01, np.quantile(acts, 0.01, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(st.action.q99, np.quantile(acts, 0.99, axis=0), rtol=1e-4, atol=1e-5)
    # a rerun with the count already reached does nothing
    assert collect("metaworld", ["reach-v3"], 3, out, _cfg())["num_episodes"] == 3


def test_collect_refuses_a_foreign_dataset(tmp_path):
    out = tmp_path / "ds"
    collect("metaworld", ["reach-v3"], 1, out, _cfg())
    (out / SIDECAR).unlink()
    with pytest.raises(ValueError, match="not written by `oft collect`"):
        collect("metaworld", ["reach-v3"], 2, out, _cfg())


def test_a_top_up_with_other_scene_options_is_refused_not_mixed_in(tmp_path):
    """The quickstart's old default collected drawers with goal markers shown; rerun after it began hiding
    them, its top-up mixed frames of two scenes into one dataset (trained on both, evaluated in one)."""
    out = tmp_path / "ds"
    hidden = _cfg(env_kwargs={"show_goal": False})
    collect("metaworld", ["drawer-close-v3"], 1, out, hidden)
    assert json.loads((out / SIDECAR).read_text())["scene"] == {"show_goal": False}
    with pytest.raises(ValueError, match=r"scene options \{'show_goal': False\}; this run asks for \{\}"):
        collect("metaworld", ["drawer-close-v3"], 2, out, _cfg())
    assert open_dataset(out).num_episodes == 1  # nothing written, nothing lost
    assert recorded_scene(open_dataset(out)) == {"env": "metaworld", "options": {"show_goal": False}}
    assert collect("metaworld", ["drawer-close-v3"], 2, out, hidden)["num_episodes"] == 2  # same: continues
    # a dataset from before the sidecar recorded its scene is topped up as asked (it cannot be checked)
    side = json.loads((out / SIDECAR).read_text())
    (out / SIDECAR).write_text(json.dumps({k: v for k, v in side.items() if k != "scene"}))
    assert recorded_scene(open_dataset(out)) is None  # unknown: evaluation keeps the simulator's defaults
    assert collect("metaworld", ["drawer-close-v3"], 3, out, hidden)["num_episodes"] == 3


@pytest.mark.slow
def test_parallel_workers_give_the_same_dataset_as_one(tmp_path):
    """Seeds are consumed in order, so two worker processes write what one process writes."""
    a = collect("metaworld", ["drawer-close-v3"], 2, tmp_path / "a", _cfg())
    b = collect("metaworld", ["drawer-close-v3"], 2, tmp_path / "b", CollectConfig(image_size=32, workers=2))
    assert a["num_episodes"] == b["num_episodes"] == 2
    da, db = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    for i in range(2):
        np.testing.assert_array_equal(da.episode(i).actions, db.episode(i).actions)
        np.testing.assert_array_equal(da.episode(i).proprio, db.episode(i).proprio)


@pytest.mark.slow
def test_workers_prepare_the_frames_the_writer_stores(tmp_path, monkeypatch):
    """With several workers the writing process neither encodes PNG nor takes image statistics: its share
    caps the collection whatever the number of workers (about 3 episodes/s when it did). What it stores
    (frames, stats) equals what one process stores."""
    import pyarrow.parquet as pq

    import oft.data.lerobot as lerobot

    a = collect("metaworld", ["drawer-close-v3"], 2, tmp_path / "a", _cfg())

    def not_here(*args, **kwargs):
        raise AssertionError("the writing process did a worker's share")

    monkeypatch.setattr(lerobot, "_png", not_here)  # the spawned workers import the real ones
    monkeypatch.setattr(lerobot, "image_stats", not_here)
    b = collect(
        "metaworld", ["drawer-close-v3"], 2, tmp_path / "b", CollectConfig(image_size=32, video=False)
    )
    assert a["num_episodes"] == b["num_episodes"] == 2

    def frames(root):
        files = sorted((root / "data").rglob("*.parquet"))
        return [pq.read_table(f).drop_columns(["timestamp"]).to_pylist() for f in files]

    assert frames(tmp_path / "a") == frames(tmp_path / "b")
    stats = [
        json.loads((root / "meta" / "stats.json").read_text()) for root in (tmp_path / "a", tmp_path / "b")
    ]
    assert stats[0] == stats[1]


def test_the_writer_refuses_prepared_frames_that_do_not_match(tmp_path):
    from oft.data.episode import Episode
    from oft.data.lerobot import LeRobotWriter, PreparedFrames, prepare_frames

    rng = np.random.default_rng(0)
    ep = Episode(images={"corner": rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)},
                 proprio=np.zeros((3, 2), np.float32), actions=np.zeros((3, 4), np.float32), instruction="go",
                 meta={})  # fmt: skip
    kw = dict(fps=10, cameras=["corner"], image_shape=(8, 8), action_dim=4, proprio_dim=2)
    png = LeRobotWriter(tmp_path / "png", video=False, **kw)
    good = prepare_frames(ep, png=True)
    short = PreparedFrames({"corner": good.png["corner"][:2]}, good.image_stats)
    with pytest.raises(ValueError, match=r"PNG frames of 'corner': 2, expected 3"):
        png.add_episode(ep, prepared=short)
    other = PreparedFrames(None, {"top": good.image_stats["corner"]})
    with pytest.raises(ValueError, match=r"image_stats for cameras \['top'\], expected \['corner'\]"):
        png.add_episode(ep, prepared=other)
    assert png.num_episodes == 0  # nothing written
    assert png.add_episode(ep, prepared=good) == 0
    video = LeRobotWriter(tmp_path / "mp4", video=True, **kw)
    with pytest.raises(ValueError, match="video dataset"):
        video.add_episode(ep, prepared=good)
    assert video.add_episode(ep, prepared=prepare_frames(ep, png=False)) == 0


def test_a_png_dataset_starts_new_data_files_sooner(tmp_path):
    """Every append rewrites the current data file; with the images inside it a 100 MB file (LeRobot's size,
    meant for parquet of numbers) cost 189 ms per episode against 76 ms at 20 MB (bench_writer.py). A
    dataset keeps the size its info.json records."""
    from oft.data.episode import Episode
    from oft.data.lerobot import LeRobotWriter

    ep = Episode(images={"corner": np.zeros((3, 8, 8, 3), np.uint8)}, proprio=np.zeros((3, 2), np.float32),
                 actions=np.zeros((3, 4), np.float32), instruction="go", meta={})  # fmt: skip
    kw = dict(fps=10, cameras=["corner"], image_shape=(8, 8), action_dim=4, proprio_dim=2)

    def size(name, **more):
        writer = LeRobotWriter(tmp_path / name, **kw, **more)
        writer.add_episode(ep)
        return json.loads((tmp_path / name / "meta" / "info.json").read_text())["data_files_size_in_mb"]

    assert size("png", video=False) == 20
    assert size("mp4", video=True) == 100
    assert size("old", video=False, data_files_size_in_mb=100) == 100
    assert size("old", video=False) == 100  # reopened: the recorded size


def test_kill_after_stats_json_resumes_to_the_uninterrupted_dataset(tmp_path, monkeypatch):
    """Issue 13: a kill right after meta/stats.json counted an episode, before info.json committed it; the
    resumed collection must not count that episode twice (main: 300 vs 266 frames in the image statistics)."""
    from oft.data.lerobot import LeRobotWriter

    whole = collect("metaworld", ["reach-v3"], 3, tmp_path / "whole", _cfg())
    real_commit = LeRobotWriter._commit

    def commit(self, n, length):
        if n == 2:
            raise KeyboardInterrupt("kill -9 right after stats.json")
        real_commit(self, n, length)

    monkeypatch.setattr(LeRobotWriter, "_commit", commit)
    with pytest.raises(KeyboardInterrupt):
        collect("metaworld", ["reach-v3"], 3, tmp_path / "ds", _cfg())
    monkeypatch.setattr(LeRobotWriter, "_commit", real_commit)
    resumed = collect("metaworld", ["reach-v3"], 3, tmp_path / "ds", _cfg())
    assert resumed["resumed_from"] == 2 and resumed["num_episodes"] == whole["num_episodes"] == 3
    a = json.loads((tmp_path / "whole/meta/stats.json").read_text())
    b = json.loads((tmp_path / "ds/meta/stats.json").read_text())
    assert b["observation.images.corner"]["count"] == a["observation.images.corner"]["count"]
    assert b["timestamp"]["count"] == a["timestamp"]["count"]
    assert a == b
    from oft.checksums import verify

    assert verify(tmp_path / "ds").ok and verify(tmp_path / "whole").ok


TOLD = ("reach the goal", "move the gripper to the red goal")


def _pairs(out) -> list[tuple[int, str]]:
    return [(e["seed"], e["instruction"]) for e in json.loads((out / SIDECAR).read_text())["episodes"]]


def test_instructions_demonstrate_every_start_state_once_under_each(tmp_path):
    """Issue 11: two-cube demonstrations drew one instruction per layout, so a policy could recall each
    layout's demonstration without reading its instruction; with --instruction every start state is shown
    under each, and only the instruction tells them apart."""
    out = tmp_path / "ds"
    summary = collect("metaworld", ["reach-v3"], 2, out, _cfg(instructions=TOLD))
    assert summary["tasks"]["reach-v3"] | {"tried": 0, "env_steps": 0} == {
        "start_states": 2, "episodes": 4, "tried": 0, "failures": 0, "env_steps": 0}  # fmt: skip
    assert _pairs(out) == [(0, TOLD[0]), (0, TOLD[1]), (1, TOLD[0]), (1, TOLD[1])]
    assert json.loads((out / SIDECAR).read_text())["instructions"] == list(TOLD)
    ds = open_dataset(out)
    assert [ds.episode(i).instruction for i in range(4)] == list(TOLD) * 2
    # MetaWorld's instruction is text only: a start state's two demonstrations act alike
    np.testing.assert_array_equal(ds.episode(0).actions, ds.episode(1).actions)
    assert not np.array_equal(ds.episode(0).actions, ds.episode(2).actions)
    # a rerun asking for more start states continues after the last one
    assert collect("metaworld", ["reach-v3"], 3, out, _cfg(instructions=TOLD))["num_episodes"] == 6
    assert _pairs(out)[4:] == [(2, TOLD[0]), (2, TOLD[1])]


def test_a_rerun_with_other_instructions_is_refused_and_bad_lists_are_named(tmp_path):
    out = tmp_path / "ds"
    collect("metaworld", ["reach-v3"], 1, out, _cfg(instructions=TOLD))
    with pytest.raises(ValueError, match=r"collected with instructions \['reach the goal', .*asks for \[\]"):
        collect("metaworld", ["reach-v3"], 2, out, _cfg())
    with pytest.raises(ValueError, match=r"asks for \['reach the goal'\]"):
        collect("metaworld", ["reach-v3"], 2, out, _cfg(instructions=TOLD[:1]))
    assert open_dataset(out).num_episodes == 2  # nothing written, nothing lost
    with pytest.raises(ValueError, match=r"\['a'\] given more than once"):
        collect("metaworld", ["reach-v3"], 1, tmp_path / "x", _cfg(instructions=("a", "a")))
    assert not (tmp_path / "x").exists()
    # and the other way round: a dataset of the tasks' own instructions does not take a paired top-up
    collect("metaworld", ["reach-v3"], 1, tmp_path / "own", _cfg())
    with pytest.raises(ValueError, match=r"collected with instructions \[\]"):
        collect("metaworld", ["reach-v3"], 2, tmp_path / "own", _cfg(instructions=TOLD))


def test_a_start_state_stopped_between_its_instructions_is_completed_on_resume(tmp_path, monkeypatch):
    from oft.data.lerobot import LeRobotWriter

    whole = tmp_path / "whole"
    collect("metaworld", ["reach-v3"], 2, whole, _cfg(instructions=TOLD))
    real_add = LeRobotWriter.add_episode

    def add_then_stop(self, *a, **kw):
        real_add(self, *a, **kw)
        if self.num_episodes == 3:  # seed 1 shown under the first instruction only
            raise KeyboardInterrupt("stopped between a start state's demonstrations")

    monkeypatch.setattr(LeRobotWriter, "add_episode", add_then_stop)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        collect("metaworld", ["reach-v3"], 2, out, _cfg(instructions=TOLD))
    monkeypatch.setattr(LeRobotWriter, "add_episode", real_add)
    assert _pairs(out) == [(0, TOLD[0]), (0, TOLD[1]), (1, TOLD[0])]
    resumed = collect("metaworld", ["reach-v3"], 2, out, _cfg(instructions=TOLD))
    assert resumed["resumed_from"] == 3 and resumed["num_episodes"] == 4
    assert _pairs(out) == _pairs(whole)
    a, b = open_dataset(whole), open_dataset(out)
    for i in range(4):
        np.testing.assert_array_equal(a.episode(i).actions, b.episode(i).actions)
        assert a.episode(i).instruction == b.episode(i).instruction


def test_after_success_records_past_the_success_frame_and_a_rerun_must_agree(tmp_path):
    out = tmp_path / "ds"
    summary = collect("metaworld", ["reach-v3"], 2, out, _cfg(after_success=6))
    side = json.loads((out / SIDECAR).read_text())
    assert side["after_success"] == 6 and summary["num_episodes"] == 2
    ds = open_dataset(out)
    for i, entry in enumerate(side["episodes"]):
        assert entry["steps"] == entry["success_step"] + 6 == len(ds.episode(i))
    # the first success_step frames are the demonstration a default collection records
    collect("metaworld", ["reach-v3"], 1, tmp_path / "stop", _cfg())
    stop = open_dataset(tmp_path / "stop").episode(0)
    assert len(stop) == side["episodes"][0]["success_step"]
    np.testing.assert_array_equal(ds.episode(0).actions[: len(stop)], stop.actions)
    # a top-up recording another length is refused, nothing lost; the same length continues
    with pytest.raises(ValueError, match=r"recorded to 6 steps past success .*asks for 0 steps past success"):
        collect("metaworld", ["reach-v3"], 3, out, _cfg())
    with pytest.raises(ValueError, match=r"asks for the env's end \(--after-success end\)"):
        collect("metaworld", ["reach-v3"], 3, out, _cfg(after_success=None))
    with pytest.raises(ValueError, match=r"recorded to 0 steps past success"):
        collect("metaworld", ["reach-v3"], 2, tmp_path / "stop", _cfg(after_success=6))
    assert open_dataset(out).num_episodes == 2
    assert collect("metaworld", ["reach-v3"], 3, out, _cfg(after_success=6))["num_episodes"] == 3
    with pytest.raises(ValueError, match=r"after_success must be a number of steps >= 0.*got -2"):
        collect("metaworld", ["reach-v3"], 1, tmp_path / "bad", _cfg(after_success=-2))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("25", 25), ("end", None), ("END", None)])
def test_after_success_flag_reads_a_count_or_end(text, value):
    from oft.sim.commands_collect import after_success_arg

    assert after_success_arg(text) == value


@pytest.mark.parametrize("text", ["-1", "ten", "2.5", ""])
def test_after_success_flag_names_a_bad_value(text):
    import argparse

    from oft.sim.commands_collect import after_success_arg

    with pytest.raises(argparse.ArgumentTypeError, match=rf"steps >= 0 or 'end', got {text!r}"):
        after_success_arg(text)


def test_the_bar_counts_the_request_not_the_dataset(tmp_path, monkeypatch):
    """Topping up a dataset that holds another task's episodes, or more of a task than asked, starts the bar
    at what counts toward this request (it started at the dataset's size: 800 of 500, with no ETA)."""
    import oft.sim.collect as collect_module

    bars = []
    real = collect_module.progress_bar

    def recording(total, **kw):
        bars.append((total, kw["initial"]))
        return real(total, **kw)

    monkeypatch.setattr(collect_module, "progress_bar", recording)
    out = tmp_path / "ds"
    collect("metaworld", ["reach-v3"], 2, out, _cfg())
    summary = collect("metaworld", ["reach-v3", "drawer-close-v3"], 1, out, _cfg(), progress=True)
    assert bars[-1] == (2, 1)  # reach's 2 count as its 1; drawer-close's one is to come
    assert summary["num_episodes"] == 3


def test_action_noise_records_the_experts_corrections_and_a_rerun_must_agree(tmp_path):
    """`oft collect --action-noise`: the expert is pushed off its path (DART) and the clean actions it takes
    from there are what the dataset holds; the noise is recorded and a top-up with another value refused."""
    out = tmp_path / "noisy"
    collect("metaworld", ["reach-v3"], 2, out, _cfg(action_noise=0.5))
    side = json.loads((out / SIDECAR).read_text())
    assert side["action_noise"] == 0.5
    collect("metaworld", ["reach-v3"], 2, tmp_path / "clean", _cfg())
    assert "action_noise" not in json.loads((tmp_path / "clean" / SIDECAR).read_text())
    noisy, clean = open_dataset(out), open_dataset(tmp_path / "clean")
    for i in range(2):
        a, b = noisy.episode(i), clean.episode(i)
        assert len(a) != len(b) or not np.allclose(a.proprio, b.proprio)  # another path through the scene
        assert np.abs(a.actions).max() <= 1.0  # the expert's clipped actions, no noise in them
        # reach's expert acts 5 x (goal - hand), clipped to [-1, 1]: every unclipped recorded action, added
        # to the hand it was taken at, names the same goal (a recorded noisy action would scatter it by
        # noise / 5 = 10 cm)
        free = np.all(np.abs(a.actions[:, :3]) < 0.999, axis=1)
        goals = a.proprio[free, :3] + a.actions[free, :3] / 5.0
        assert free.sum() >= 5 and goals.std(axis=0).max() < 1e-3
    with pytest.raises(ValueError, match=r"noise of standard deviation 0.5; this run asks for 0.0"):
        collect("metaworld", ["reach-v3"], 3, out, _cfg())
    with pytest.raises(ValueError, match=r"standard deviation 0.0; this run asks for 0.3"):
        collect("metaworld", ["reach-v3"], 3, tmp_path / "clean", _cfg(action_noise=0.3))
    assert open_dataset(out).num_episodes == 2
    assert collect("metaworld", ["reach-v3"], 3, out, _cfg(action_noise=0.5))["num_episodes"] == 3
    with pytest.raises(ValueError, match=r"action_noise must be a finite standard deviation >= 0, got -1"):
        collect("metaworld", ["reach-v3"], 1, tmp_path / "bad", _cfg(action_noise=-1))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("0.3", 0.3), ("1e-1", 0.1)])
def test_action_noise_flag_reads_a_standard_deviation(text, value):
    from oft.sim.commands_collect import noise_arg

    assert noise_arg(text) == value


@pytest.mark.parametrize("text", ["-0.1", "nan", "inf", "lots", ""])
def test_action_noise_flag_names_a_bad_value(text):
    import argparse

    from oft.sim.commands_collect import noise_arg

    with pytest.raises(argparse.ArgumentTypeError, match=rf">= 0 \(e.g. 0.3\), got {text!r}"):
        noise_arg(text)


def test_a_seed_the_expert_fails_is_not_rendered(monkeypatch):
    """The expert runs once without images first: a failed seed costs its physics, not up to 500 rendered
    frames; a successful one is recorded as a single recorded run would record it."""
    from oft.sim.base import make_env
    from oft.sim.collect import demo_episode
    from oft.sim.rollout import ExpertPolicy, rollout

    with make_env("metaworld", task="push-v3", image_size=32) as env:
        renders = []
        render = env._camera_renderer.render
        monkeypatch.setattr(env._camera_renderer, "render", lambda data: renders.append(1) or render(data))
        ep, steps = demo_episode(env, 0, action_noise=5.0)  # noise that drowns the expert
        assert ep is None and steps == env.max_steps and len(renders) <= 1  # reset's frame only
        renders.clear()
        ep, steps = demo_episode(env, 0)
        rendered = len(renders)
        want = rollout(ExpertPolicy(env), env, seed=0, record_observations=True)
        assert ep is not None and steps == want.steps == len(ep)
        assert rendered == 1 + len(renders) - rendered  # the dry run's first frame, then a recorded run's
        np.testing.assert_array_equal(ep.actions, want.actions)
        np.testing.assert_array_equal(ep.proprio, np.stack([o.proprio for o in want.observations]))


def test_first_seed_collects_new_layouts_and_a_rerun_must_agree(tmp_path):
    """`oft collect --first-seed N`: a second dataset of a task started past the first one's seeds holds other
    layouts (from 0 again it would repeat them); recorded, and a top-up with another value refused."""
    from oft.sim.collect import demonstration_seeds

    collect("metaworld", ["reach-v3"], 2, tmp_path / "a", _cfg())
    assert "first_seed" not in json.loads((tmp_path / "a" / SIDECAR).read_text())  # as before the option
    out = tmp_path / "b"
    collect("metaworld", ["reach-v3"], 2, out, _cfg(first_seed=50))
    assert json.loads((out / SIDECAR).read_text())["first_seed"] == 50
    first, second = (
        demonstration_seeds(tmp_path / "a")[1]["reach-v3"],
        demonstration_seeds(out)[1]["reach-v3"],
    )
    assert first[0] == 0 and min(second) >= 50 and not set(first) & set(second)
    a, b = open_dataset(tmp_path / "a").episode(0), open_dataset(out).episode(0)
    assert not np.allclose(a.proprio[-1], b.proprio[-1])  # another goal reached
    with pytest.raises(
        ValueError, match=r"collected from seed 50 on \(--first-seed 50\); this run asks for "
    ):
        collect("metaworld", ["reach-v3"], 3, out, _cfg())
    assert open_dataset(out).num_episodes == 2
    summary = collect("metaworld", ["reach-v3"], 3, out, _cfg(first_seed=50))  # the same value continues
    assert summary["num_episodes"] == 3 and demonstration_seeds(out)[1]["reach-v3"][:2] == second


@pytest.mark.parametrize("first_seed", [-1, 999_999, 2.5, True])
def test_a_first_seed_out_of_range_is_refused_before_anything_is_written(tmp_path, first_seed):
    """Demonstrations stay below MetaWorld's first evaluation seed (1,000,000): a start that would reach it
    with the episodes asked, or that is not a seed, is named before the dataset directory is made."""
    with pytest.raises(ValueError, match=rf"first_seed.*{first_seed!r}" if first_seed != 999_999 else
                       r"first_seed 999999 with 2 start states would use seeds up to 1000000.*"
                       r"stops at 1000000.*Expected first_seed <= 999998"):  # fmt: skip
        collect("metaworld", ["reach-v3"], 2, tmp_path / "x", _cfg(first_seed=first_seed))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("text", ["-1", "1.5", "many", ""])
def test_first_seed_flag_names_a_bad_value(text):
    import argparse

    from oft.sim.commands_collect import seed_arg

    assert seed_arg("1000") == 1000
    with pytest.raises(argparse.ArgumentTypeError, match=rf"an integer >= 0, got {text!r}"):
        seed_arg(text)


def test_training_on_two_datasets_of_the_same_layouts_warns(tmp_path, caplog):
    """Two datasets of a task collected from seed 0 hold the same layouts: `oft train` on both drew them from
    each without a word. It warns, naming the datasets, the task, the seeds and `--first-seed`; a second
    dataset started past the first's seeds trains without the warning."""
    import logging

    from oft.cli import main
    from oft.sim.collect import shared_layouts
    from oft.train.loop import open_datasets

    for name, first_seed in (("a", 0), ("again", 0), ("new", 50)):
        collect("metaworld", ["reach-v3"], 2, tmp_path / name, _cfg(first_seed=first_seed))
    a, again, new = (str(tmp_path / n) for n in ("a", "again", "new"))
    assert shared_layouts(open_datasets((a, again, new))) == [(a, again, "reach-v3", [0, 1])]
    assert shared_layouts(open_datasets((a, new))) == []
    for parts, warned in (((a, again), True), ((a, new), False)):
        caplog.clear()
        flags = [f for p in parts for f in ("--dataset", p)]
        with caplog.at_level(logging.WARNING):
            rc = main(["train", *flags, "--out", str(tmp_path / f"run_{warned}"), "--base", "tiny",
                       "--steps", "1", "--set", "num_threads=1"])  # fmt: skip
        assert rc == 0
        said = [r.getMessage() for r in caplog.records if "from the same" in r.getMessage()]
        expected = f"datasets {a} and {again} both hold demonstrations of reach-v3 from the same 2 layouts"
        assert (
            (said == [said[0]] and expected in said[0] and "--first-seed 2" in said[0])
            if warned
            else not said
        )


def test_a_collection_stops_at_the_first_evaluation_seed_keeping_what_it_wrote(tmp_path, monkeypatch):
    """Seeds the expert fails can carry a collection up to the first evaluation seed: it stops there, naming
    how many start states it lacks, instead of demonstrating on evaluation layouts (it ran into them before).
    Here the bound is moved to seed 3 and the expert drowned in noise, so every seed fails."""
    import oft.sim.collect as collect_module

    monkeypatch.setattr(collect_module, "seed_stop", lambda env_name, task: 3)
    out = tmp_path / "ds"
    short = r"reach-v3: 2 start states short of 3 when the seeds ran out at 3 .*what was written is kept \(1 "
    with pytest.raises(RuntimeError, match=short):
        collect("metaworld", ["reach-v3"], 3, out, _cfg(action_noise=5.0))  # seed 1 survives the noise
    assert open_dataset(out).num_episodes == 1
    assert [e["seed"] for e in _recorded(out)] == [1]


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_collection_with_one_line_and_keeps_the_committed_episodes(
    tmp_path, interrupt_when
):
    """Ctrl-C reaches the pool's workers too: the collecting process keeps the committed episodes (a rerun
    tops them up) and says it was interrupted in one line, exit status 130; each worker used to print a
    ``Process SpawnPoolWorker-N: ... KeyboardInterrupt`` traceback, the collecting process another."""
    out = tmp_path / "demos"
    rc, stderr = interrupt_when(
        [sys.executable, "-m", "oft.cli", "collect", "metaworld", "--tasks", "reach-v3", "--episodes", "40",
         "--workers", "2", "--image-size", "32", "--out", str(out)],
        ready=lambda: len(_recorded(out)) >= 3,  # the sidecar is saved just before each commit
    )  # fmt: skip
    assert rc == 130 and "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith("oft collect: interrupted"), stderr
    assert 2 <= open_dataset(out).num_episodes < 40


def _recorded(out) -> list:
    """The episodes ``out``'s sidecar records (none before the first)."""
    try:
        return json.loads((out / SIDECAR).read_text())["episodes"]
    except FileNotFoundError:
        return []
