"""Per-task statistics (``mixture_stats="per_task"``): one multi-task dataset, each task's samples normalized
with that task's own statistics, kept in the checkpoint under its instruction; at inference each observation
acts with the statistics of its instruction, as its samples were normalized in training. A per-dataset
mixture whose datasets hold different instructions acts by instruction the same way when no ``unnorm_key``
is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import oft
from oft.data.dataset import ListDataset
from oft.data.episode import Episode
from oft.data.loader import BY_INSTRUCTION, ChunkLoader
from oft.data.normalize import normalize
from oft.data.stats import compute_stats
from oft.observation import Observation
from oft.train._concat import ConcatDataset
from oft.train.build import instruction_keys, training_stats

CAMS = ("corner", "gripperPOV")  # the metaworld spec's
TASKS = {"reach the goal": (0.0, 1.0), "push the puck": (10.0, 20.0)}  # action ranges far apart


def _episodes(tasks=TASKS, per_task: int = 2, length: int = 12, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            {c: rng.integers(0, 255, (length, 24, 24, 3), dtype=np.uint8) for c in CAMS},
            rng.uniform(lo, hi, (length, 4)).astype(np.float32),  # proprio in the same range
            rng.uniform(lo, hi, (length, 4)).astype(np.float32),
            text,
        )
        for _ in range(per_task)
        for text, (lo, hi) in tasks.items()  # the tasks interleaved, as a collector writes them
    ]


def test_each_task_gets_the_statistics_of_its_own_episodes():
    data = ListDataset(_episodes())
    key, stats = training_stats(data, "per_task")
    assert key == "reach the goal" and list(stats) == list(TASKS)
    for text in TASKS:
        alone = ListDataset([ep for ep in _episodes() if ep.instruction == text])
        want = compute_stats(alone)
        np.testing.assert_allclose(stats[text].action.q99, want.action.q99)
        np.testing.assert_allclose(stats[text].proprio.q01, want.proprio.q01)
    assert stats["reach the goal"].action.max.max() <= 1 and stats["push the puck"].action.min.min() >= 10
    assert instruction_keys(data, "per_task") == {t: t for t in TASKS}
    assert instruction_keys(data, "merged") == {} and instruction_keys(data, "per_dataset") == {}
    with pytest.raises(ValueError, match="'per_robot' is invalid"):
        training_stats(data, "per_robot")


def test_per_dataset_maps_only_instructions_of_one_dataset():
    a = ListDataset(_episodes({"reach the goal": (0, 1), "open the door": (0, 1)}))
    a.name = "a"
    b = ListDataset(_episodes({"push the puck": (10, 20), "open the door": (10, 20)}))
    b.name = "b"
    # the door is in both: which statistics it takes depends on the robot, which the instruction does not say
    mixture = ConcatDataset([a, b])
    assert instruction_keys(mixture, "per_dataset") == {"reach the goal": "a", "push the puck": "b"}


def test_the_loader_names_each_sample_by_its_instruction():
    data = ListDataset(_episodes())
    ld = ChunkLoader(data, chunk_len=4, batch_size=16, augment=False, norm_keys=BY_INSTRUCTION, image_size=16)
    batch = next(ld)
    assert batch.norm_keys == batch.instructions and set(batch.norm_keys) == set(TASKS)
    from oft.data.stream import StreamLoader

    st = StreamLoader(data, chunk_len=4, batch_size=16, augment=False, norm_keys=BY_INSTRUCTION,
                      image_size=16, num_workers=1)  # fmt: skip
    assert next(st).norm_keys == batch.norm_keys  # the worker processes tag samples the same way
    st.close()
    with pytest.raises(ValueError, match=r"'task'.*one name per dataset or 'instruction'"):
        ChunkLoader(data, chunk_len=4, batch_size=4, norm_keys="task")


def _write(root, episodes):
    from oft.data.lerobot import LeRobotWriter

    w = LeRobotWriter(root, fps=10, cameras=CAMS, image_shape=(24, 24), action_dim=4, proprio_dim=4,
                      video=False)  # fmt: skip
    for ep in episodes:
        w.add_episode(ep)
    w.finalize()
    return root


def _train(dirs, out, resume=False, **changes):
    from oft.train.config import TrainConfig
    from oft.train.loop import train

    cfg = TrainConfig(base="tiny", robot="metaworld", datasets=tuple(str(d) for d in dirs), batch_size=4,
                      max_steps=2, save_every=2, log_every=1, num_threads=1, device="cpu", chunk_len=4,
                      data_loader="memory")  # fmt: skip
    return train(cfg.replace(**changes), out, resume=resume).checkpoint


def _obs(text: str, seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    lo, hi = TASKS.get(text, (0.0, 1.0))
    images = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in CAMS]
    return Observation(images, np.full(4, (lo + hi) / 2, np.float32), text)


@pytest.fixture(scope="module")
def multitask(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("tasks") / "mt", _episodes())


def test_a_per_task_policy_acts_with_each_instructions_statistics(multitask, tmp_path):
    ckpt = _train([multitask], tmp_path / "run", mixture_stats="per_task")
    meta = json.loads((ckpt / "oft_config.json").read_text())
    assert list(meta["dataset_stats"]) == list(TASKS) and meta["instruction_keys"] == {t: t for t in TASKS}
    policy = oft.load_policy(ckpt)  # no unnorm_key needed: the instruction names the statistics
    assert policy.act_by_instruction
    reach, push = _obs("reach the goal"), _obs("push the puck", seed=1)
    both = policy.predict_action_chunk([reach, push], clip=True)
    for row, obs in zip(both, (reach, push), strict=True):
        lo, hi = TASKS[obs.instruction]
        assert lo - 1e-4 <= row.min() and row.max() <= hi + 1e-4  # in that task's range
        fixed = oft.load_policy(ckpt, unnorm_key=obs.instruction)  # OpenVLA's way: one set named
        assert not fixed.act_by_instruction
        np.testing.assert_allclose(row, fixed.predict_action_chunk(obs, clip=True), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(row, policy.predict_action_chunk(obs, clip=True), rtol=1e-5, atol=1e-5)
    # proprio is normalized with the instruction's statistics too (one set would clip reach's to -1)
    stats = policy.acting_stats([reach.instruction, push.instruction])
    _, proprio = policy._stack_observations([reach, push], stats)
    for row, obs in zip(proprio, (reach, push), strict=True):
        own = policy.dataset_stats[obs.instruction].proprio
        np.testing.assert_allclose(row, normalize(obs.proprio, own, policy.spec.normalization), atol=1e-6)
        assert row.abs().max() < 0.9
    with pytest.raises(ValueError, match=r"'stack the blocks' has no statistics.*reach the goal"):
        policy.predict_action_chunk(_obs("stack the blocks"))
    # resuming keeps the per-task statistics and the map
    again = _train([multitask], tmp_path / "run", resume=True, mixture_stats="per_task", max_steps=4)
    assert json.loads((again / "oft_config.json").read_text())["instruction_keys"] == {t: t for t in TASKS}


def test_training_normalizes_each_task_with_its_own_statistics(multitask, tmp_path):
    """A batch of both tasks: every sample's target is normalized with its task's statistics, so both fill
    [-1, 1]; with one set over both the reach samples would all sit near -1."""
    from oft.model.build import build_policy
    from oft.spec import get_spec

    data = ListDataset(_episodes())
    key, stats = training_stats(data, "per_task")
    spec = get_spec("metaworld").replace(chunk_len=4)
    policy = build_policy(spec, stats[key], data.instructions, arch="tiny")
    policy.set_dataset_stats(stats, key, instruction_keys(data, "per_task"))
    batch = next(ChunkLoader(data, chunk_len=4, batch_size=16, augment=False, norm_keys=BY_INSTRUCTION,
                             image_size=16))  # fmt: skip
    target = policy._normalize_rows(batch.actions, "action", batch.norm_keys)
    for b, text in enumerate(batch.norm_keys):
        own = normalize(batch.actions[b], stats[text].action, spec.normalization, spec.mask)
        torch.testing.assert_close(target[b], own)
    m = torch.as_tensor(spec.mask if spec.mask is not None else [True] * 4)
    for text in TASKS:
        rows = torch.tensor([t == text for t in batch.norm_keys])
        assert target[rows][..., m].std() > 0.4  # each task spans the range, not a sliver of it


def test_a_per_dataset_mixture_acts_by_instruction_without_unnorm_key(tmp_path):
    dirs = [
        _write(tmp_path / name, [ep for ep in _episodes() if ep.instruction == text])
        for name, text in (("reach", "reach the goal"), ("push", "push the puck"))
    ]
    ckpt = _train(dirs, tmp_path / "run", mixture_stats="per_dataset", dataset_weights=(1.0, 1.0))
    meta = json.loads((ckpt / "oft_config.json").read_text())
    assert meta["instruction_keys"] == {"reach the goal": "reach", "push the puck": "push"}
    policy = oft.load_policy(ckpt)  # raised before: several datasets' statistics and no unnorm_key
    assert policy.act_by_instruction and policy.unnorm_key == "reach"
    for obs, key in ((_obs("reach the goal"), "reach"), (_obs("push the puck"), "push")):
        np.testing.assert_allclose(
            policy.predict_action_chunk(obs),
            oft.load_policy(ckpt, unnorm_key=key).predict_action_chunk(obs),
            rtol=1e-5,
            atol=1e-5,
        )


def test_squeezed_task_warning_names_the_per_task_fix(multitask, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="oft.train.build"):
        _train([multitask], tmp_path / "merged", max_steps=1, save_every=1)
    assert "mixture_stats=per_task" in caplog.text and "'reach the goal'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="oft.train.build"):
        _train([multitask], tmp_path / "per_task", max_steps=1, save_every=1, mixture_stats="per_task")
    assert "normalize over" not in caplog.text


def test_instruction_matching_follows_the_prompt_and_output_stays_float32(multitask, tmp_path):
    policy = oft.load_policy(_train([multitask], tmp_path / "run", mixture_stats="per_task"))
    reach, push = _obs("reach the goal"), _obs("push the puck", seed=1)
    shouted = Observation(reach.images, reach.proprio, "Reach the goal")  # the prompt lower-cases it
    np.testing.assert_array_equal(policy.predict_action_chunk(shouted), policy.predict_action_chunk(reach))
    assert policy.predict_action_chunk([reach, push], clip=True).dtype == np.float32  # mixed rows too
    from oft.bench.latency import fake_observation
    from oft.model.commands import describe, format_info

    # the benchmarks' made-up instruction becomes one the policy has statistics for (timing is unchanged)
    assert fake_observation(policy, "put the bowl on the plate", 0).instruction in TASKS
    policy.predict_action_chunk(fake_observation(policy, "put the bowl on the plate", 0))
    assert "each observation's instruction picks its own" in format_info(describe(policy))
    from oft.sim.evaluate import acting_statistics  # what an evaluation's results.json records

    assert acting_statistics(policy) == "instruction"
    push_only = oft.load_policy(policy.checkpoint_dir, unnorm_key="push the puck")
    assert acting_statistics(push_only) == "push the puck"
    assert acting_statistics(object()) is None


def test_continuing_a_per_task_checkpoint_keeps_its_normalization(multitask, tmp_path):
    from oft.train.build import checkpoint_normalization

    ckpt = _train([multitask], tmp_path / "run", mixture_stats="per_task")
    assert checkpoint_normalization(ckpt) == {"mixture_stats": "per_task"}  # oft train --base defaults to it
    # normalizing every sample with the first task's statistics while the checkpoint acts with each task's
    # would train one thing and serve another
    with pytest.raises(ValueError, match=r"--set mixture_stats=per_task"):
        _train([multitask], tmp_path / "on", base=str(ckpt))
    assert not (tmp_path / "on").exists()  # refused before the run is recorded
    on = _train([multitask], tmp_path / "on", base=str(ckpt), mixture_stats="per_task")
    assert json.loads((on / "oft_config.json").read_text())["instruction_keys"] == {t: t for t in TASKS}
    # continued on data with a new task: it brings its own statistics, the old tasks keep theirs
    door = _write(tmp_path / "door", _episodes({"open the door": (5.0, 6.0)}))
    more = _train([multitask, door], tmp_path / "more", base=str(ckpt), mixture_stats="per_task")
    meta = json.loads((more / "oft_config.json").read_text())
    assert meta["instruction_keys"] == {t: t for t in [*TASKS, "open the door"]}
    grown = oft.load_policy(more)
    np.testing.assert_allclose(grown.dataset_stats["open the door"].action.q01, 5.0, atol=0.05)
    np.testing.assert_array_equal(
        grown.dataset_stats["push the puck"].action.q99,
        oft.load_policy(ckpt).dataset_stats["push the puck"].action.q99,
    )
    merged = _train([multitask], tmp_path / "merged", mixture_stats="merged")
    assert checkpoint_normalization(merged) == {}
    # on the command line, --base naming the run directory (its newest checkpoint) carries the model's fields
    # and its normalization over, as naming the checkpoint directory does
    import argparse

    from oft.train.commands import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for base in (tmp_path / "run", ckpt):
        args = parser.parse_args(["--dataset", str(multitask), "--out", str(tmp_path / "cli"), "--base",
                                  str(base), "--set", "chunk_len=4"])  # fmt: skip
        cfg = config_from_args(args)
        assert cfg.mixture_stats == "per_task" and cfg.base == str(base)
        assert cfg.cameras == tuple(json.loads((ckpt / "oft_config.json").read_text())["spec"]["cameras"])


def test_per_task_refuses_an_instruction_per_episode(monkeypatch):
    import oft.train.build as build

    monkeypatch.setattr(build, "MAX_TASK_STATS", 1)
    with pytest.raises(ValueError, match="2 distinct instructions"):
        training_stats(ListDataset(_episodes()), "per_task")


def test_the_withheld_control_acts_with_the_default_statistics(monkeypatch):
    """The language suite's control withholds the instruction: a per-task policy has none to pick its
    statistics by, so it acts with its default set; told, each instruction picks its own."""
    import oft.study.language as language

    seen = []

    class Policy:
        act_by_instruction = True

    def fake_evaluate(policy, env_name, tasks, episodes, **kw):
        seen.append((kw["env_kwargs"].get("instruction"), policy.act_by_instruction))
        row = {"success_rate": 1.0, "ci95": [0.5, 1.0], "successes": 1, "episodes": 1, "seeds": [0]}
        return {"tasks": {tasks[0]: row}}

    monkeypatch.setattr(language, "evaluate", fake_evaluate)
    policy = Policy()
    language.evaluate_instruction_following(policy, "metaworld", ["a", "b"], 1)
    assert seen == [(None, True)] * 4 + [("", False)] * 4
    assert policy.act_by_instruction  # restored


def test_the_mt10_preset_is_metaworld_tiny_with_the_measured_recipe(multitask, tmp_path):
    """`--preset metaworld-mt10` is the best measured MT10 recipe (docs/results/study-mt10.md): the table
    camera and the gripper's view, no FiLM, each task its own statistics, 34,000 steps with the 10x decay at
    3/4; a policy trained with it acts by each observation's instruction without naming statistics."""
    from oft.train.loop import train
    from oft.train.presets import get_preset

    tiny, mt10 = get_preset("metaworld-tiny"), get_preset("metaworld-mt10")
    differ = {f: getattr(mt10, f) for f in vars(tiny) if getattr(tiny, f) != getattr(mt10, f)}
    assert differ == {"cameras": ("workspace", "gripperPOV"), "film": False, "mixture_stats": "per_task",
                      "max_steps": 34_000, "save_every": 1000}  # fmt: skip
    assert (mt10.decay_at, mt10.proprio, mt10.head, mt10.decode) == (0.75, True, "l1", "parallel")
    cfg = mt10.replace(base="tiny", cameras=CAMS, datasets=(str(multitask),), batch_size=4, max_steps=2,
                       save_every=2, log_every=1, num_threads=1, chunk_len=4,
                       data_loader="memory")  # fmt: skip
    ckpt = train(cfg, tmp_path / "run").checkpoint
    policy = oft.load_policy(ckpt)
    assert policy.per_task and policy.act_by_instruction
    for text, (lo, hi) in TASKS.items():
        row = policy.predict_action_chunk(_obs(text), clip=True)
        assert lo - 1e-4 <= row.min() and row.max() <= hi + 1e-4
