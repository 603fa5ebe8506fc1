"""`oft train` end to end on a tiny dataset: the checkpoint loads with `oft.load_policy` and predicts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import oft
from oft.cli import main
from oft.model.loading import EXPORT_SIDECAR
from oft.observation import Observation
from oft.train.checkpoint import CheckpointManager


def test_oft_train_writes_a_loadable_checkpoint(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        ["train", "--preset", "metaworld-tiny", "--dataset", str(tiny_dataset_dir), "--out", str(out),
         "--steps", "4", "--base", "tiny", "--set", "batch_size=4", "--set", "save_every=2",
         "--set", "num_threads=1", "--set", "keep_last=1"]
    )  # fmt: skip
    assert rc == 0
    ckpts = CheckpointManager(out).checkpoints()
    assert [s for s, _ in ckpts] == [4]  # keep_last=1 pruned step 2
    path = ckpts[-1][1]
    assert json.loads((path / "train_config.json").read_text())["max_steps"] == 4
    assert (out / "loss_curve.png").is_file() and (out / "metrics.jsonl").is_file()
    assert any((out / "tb").iterdir())
    policy = oft.load_policy(path)
    # the policy knows the frames it was trained on (32 px, stored) and its crop (augmentation is on)
    assert policy.render_sizes == {c: (32, 32) for c in policy.spec.cameras}
    assert policy.config.center_crop and policy.image_pipeline.train_crop_scale == policy.config.crop_scale
    rng = np.random.default_rng(1)
    obs = Observation([rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(2)],
                      rng.normal(size=4).astype(np.float32), "open the drawer number 1")  # fmt: skip
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (policy.spec.chunk_len, 4) and np.isfinite(chunk).all()
    assert "checkpoint:" in capsys.readouterr().out
    # the run directory stands for its newest checkpoint
    np.testing.assert_array_equal(oft.load_policy(out).predict_action_chunk(obs), chunk)


def test_bad_value_is_refused_before_any_work(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["train", "--dataset", str(tiny_dataset_dir), "--out", str(out), "--set", "batch_size=-2"])
    assert rc == 2 and not out.exists()
    assert "TrainConfig.batch_size" in capsys.readouterr().err
    rc = main(["train", "--preset", "metaworld-tinny", "--dataset", str(tiny_dataset_dir), "--out", str(out)])
    assert rc == 2 and "Did you mean 'metaworld-tiny'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["train", "--dataset", str(tiny_dataset_dir)])


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    import torch
    from safetensors.torch import load_file

    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    torch.set_num_threads(1)
    runs = [
        train(
            tiny_config(max_steps=2, augment=False, grad_checkpointing=gc),
            tmp_path / str(gc),
            dataset=ListDataset(make_episodes()),
        )
        for gc in (False, True)
    ]
    a, b = (load_file(str(r.checkpoint / "model.safetensors")) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_architecture(tmp_path):
    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    data = ListDataset(make_episodes())
    train(tiny_config(max_steps=1, save_every=1), tmp_path, dataset=data)
    with pytest.raises(ValueError, match=r"head: 'l1' -> 'diffusion'.*head define the model: train a new"):
        train(tiny_config(max_steps=2, head="diffusion"), tmp_path, resume=True, dataset=data)
    more = train(
        tiny_config(max_steps=2, save_every=1), tmp_path, resume=True, dataset=data
    )  # budgets may change
    assert (more.start_step, more.step) == (1, 2)


def _train(dataset, out, *extra):
    return main(["train", "--dataset", str(dataset), "--out", str(out), "--set", "num_threads=1",
                 "--set", "save_every=100", *extra])  # fmt: skip


def test_resume_starts_from_the_runs_own_config(tiny_dataset_dir, tmp_path, capsys):
    """A new user's resume: `--resume --steps N` alone. It was refused for every --set the first run had
    (base, batch_size, ...); now the run's own train_config.json is the starting point."""
    out = tmp_path / "run"
    assert _train(tiny_dataset_dir, out, "--base", "tiny", "--set", "batch_size=2", "--steps", "2") == 0
    assert _train(tiny_dataset_dir, out, "--resume", "--steps", "3") == 0
    assert [s for s, _ in CheckpointManager(out).checkpoints()][-1] == 3
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["base"], saved["batch_size"], saved["max_steps"]) == ("tiny", 2, 3)
    # a change asked for is still checked
    assert _train(tiny_dataset_dir, out, "--resume", "--steps", "4", "--set", "batch_size=4") != 0
    assert "TrainConfig.batch_size: 2 -> 4" in capsys.readouterr().err


def test_recorded_paths_are_absolute_so_a_run_resumes_anywhere(tiny_dataset_dir, tmp_path, monkeypatch):
    """`--dataset` and `--base` given relative were recorded as given, so the run's `train_config.json` named
    other (or no) data once read from another directory. Now they are recorded absolute; a record written
    the old way still resumes from the directory it was started in."""
    import os

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = os.path.relpath(tiny_dataset_dir, work)
    (work / "tiny").mkdir()  # a directory named like the architecture: "tiny" still means the architecture
    assert _train(data, "first", "--base", "tiny", "--set", "batch_size=2", "--steps", "1") == 0
    assert json.loads((work / "first" / "train_config.json").read_text())["base"] == "tiny"
    ckpt = os.path.join("first", "checkpoints", "step_0000001")
    assert _train(data, "second", "--base", ckpt, "--set", "batch_size=2", "--steps", "1") == 0
    saved = json.loads((work / "second" / "train_config.json").read_text())
    assert saved["datasets"] == [str(work / data)]  # absolute, ".." kept as Path.absolute keeps it
    assert saved["base"] == str(work / ckpt)  # the symlink-keeping absolute path, not resolved

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--out", str(work / "second"), "--resume", "--steps", "2",
                 "--set", "num_threads=1", "--set", "save_every=100"]) == 0  # fmt: skip
    assert [s for s, _ in CheckpointManager(work / "second").checkpoints()][-1] == 2

    # a run recorded before: its paths as given, resumed from where it started, with the same arguments
    monkeypatch.chdir(work)
    last = CheckpointManager(work / "second").latest()
    for path in (work / "second" / "train_config.json", last / "train_config.json"):
        old = json.loads(path.read_text())
        path.write_text(json.dumps({**old, "datasets": [data], "base": ckpt}))
    assert _train(data, "second", "--base", ckpt, "--set", "batch_size=2", "--steps", "3", "--resume") == 0
    assert [s for s, _ in CheckpointManager(work / "second").checkpoints()][-1] == 3


def test_continuing_a_checkpoint_keeps_its_model(tiny_dataset_dir, tmp_path):
    """`--base <checkpoint>` takes the checkpoint's model fields (FiLM, action slots, ...); a different one
    asked for explicitly is refused with the fix, where FiLM, proprio, decoding and LoRA rank were ignored."""
    first = tmp_path / "first"
    model = ["--set", "film=true", "--set", "action_slots=per_step", "--set", "proprio=false"]
    model += ["--set", "film_input=mean_rms"]
    assert (
        _train(tiny_dataset_dir, first, "--base", "tiny", "--set", "batch_size=2", "--steps", "1", *model)
        == 0
    )
    ckpt = CheckpointManager(first).checkpoints()[-1][1]
    second = tmp_path / "second"
    assert _train(tiny_dataset_dir, second, "--base", str(ckpt), "--set", "batch_size=2", "--steps", "1") == 0
    saved = json.loads((second / "train_config.json").read_text())
    assert (saved["film"], saved["action_slots"], saved["proprio"]) == (True, "per_step", False)
    assert saved["film_input"] == "mean_rms"
    policy = oft.load_policy(second)
    assert policy.vla.config.use_film and policy.vla.num_action_slots == policy.spec.chunk_len
    assert policy.vla.config.film_input == "mean_rms"

    from oft.data import open_dataset
    from oft.train.loop import train

    from .conftest import tiny_config

    cfg = tiny_config(base=str(ckpt), max_steps=1, film=False, action_slots="per_step", proprio=False)
    with pytest.raises(ValueError, match=r"film: checkpoint True, config False.*--set film=true"):
        train(cfg, tmp_path / "third", dataset=open_dataset(tiny_dataset_dir))
    assert not (tmp_path / "third" / "checkpoints").exists()


def test_mean_centered_film_centers_on_the_datasets_instructions(tiny_dataset_dir, tmp_path):
    """`--set film_input=mean_centered`: the checkpoint records the training instructions it centers on."""
    from oft.data import open_dataset

    out = tmp_path / "run"
    film = ["--set", "film=true", "--set", "film_input=mean_centered", "--set", "batch_size=2"]
    assert _train(tiny_dataset_dir, out, "--base", "tiny", "--steps", "1", *film) == 0
    policy = oft.load_policy(out)
    expected = sorted(set(open_dataset(tiny_dataset_dir).instructions))
    assert len(expected) > 1
    assert policy.vla.config.film_input == "mean_centered"
    assert policy.vla.config.film_instructions == expected


@pytest.mark.parametrize(
    "model, refused",
    [(["--set", "action_slots=per_step"], "action_slots='per_step'"),
     (["--set", "film=true", "--set", "film_input=mean_rms"], "film_input='mean_rms'"),
     (["--export-mode", "adapter"], "--export-mode adapter needs LoRA (lora_rank > 0), got lora_rank=0")],
)  # fmt: skip
def test_train_refuses_an_export_it_cannot_write_before_training(
    tiny_dataset_dir, tmp_path, capsys, model, refused
):
    """`--export` of a model the paper's layout cannot hold failed only after the whole run."""
    out = tmp_path / "run"
    code = _train(
        tiny_dataset_dir, out, "--base", "tiny", "--steps", "1", "--export", str(tmp_path / "x"), *model
    )
    assert code != 0
    assert (
        f"--export {tmp_path / 'x'}: this run's model cannot be exported: {refused}"
        in capsys.readouterr().err
    )
    assert not (out / "checkpoints").exists() and not (tmp_path / "x").exists()


def test_train_refuses_an_export_key_it_will_not_have_before_training(tiny_dataset_dir, tmp_path, capsys):
    """`--export --unnorm-key TYPO` on a policy with several statistics (here one per task) was refused only
    after the whole run, by the export; the keys are checked on the built policy, before anything is
    written."""
    out, export = tmp_path / "run", tmp_path / "x"
    per_task = ["--base", "tiny", "--steps", "1", "--set", "mixture_stats=per_task", "--export", str(export)]
    assert _train(tiny_dataset_dir, out, *per_task, "--unnorm-key", "open the drawr number 1") == 2
    err = capsys.readouterr().err
    assert (
        f"--export {export}: unnorm_key 'open the drawr number 1' is not one of the policy's instructions "
        "['open the drawer number 0', 'open the drawer number 1']" in err
    )
    assert not out.exists() and not export.exists()
    assert _train(tiny_dataset_dir, out, *per_task, "--unnorm-key", "open the drawer number 1") == 0
    assert json.loads((export / EXPORT_SIDECAR).read_text())["unnorm_key"] == "open the drawer number 1"


@pytest.mark.parametrize(
    "flag, refused",
    [(["--unnorm-key", "robot_a"], "--unnorm-key 'robot_a' names the statistics of an export: it needs"),
     (["--export-mode", "adapter"], "--export-mode adapter says how to write an export: it needs")],
)  # fmt: skip
def test_train_refuses_an_export_flag_without_export(tiny_dataset_dir, tmp_path, capsys, flag, refused):
    """`--unnorm-key` and `--export-mode` describe the export; without `--export` they were silently
    ignored."""
    out = tmp_path / "run"
    assert _train(tiny_dataset_dir, out, "--base", "tiny", "--steps", "1", *flag) == 2
    assert refused in capsys.readouterr().err
    assert not out.exists()


def test_train_warns_when_the_decay_comes_after_the_last_step(tiny_dataset_dir, tmp_path, caplog):
    """`--preset libero-openvla --steps 50000` (its decay at 100,000) ended at the full learning rate without
    a word; the run goes on (a later `--resume --set max_steps=N` reaches the decay), warned."""
    for decay, warned in ((3, True), (1, False)):
        caplog.clear()
        out = tmp_path / f"decay{decay}"
        decay_step = ["--set", f"decay_step={decay}"]
        assert _train(tiny_dataset_dir, out, "--base", "tiny", "--steps", "2", *decay_step) == 0
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        expected = f"decay_step={decay} is not before max_steps=2: this run ends at the full learning rate"
        assert any(expected in m for m in said) == warned, said


def test_freeze_token_embeddings_keeps_the_table_and_trains_the_rest(tmp_path):
    """`--set freeze_token_embeddings=true`: the table is the one built; without it the table trains."""
    import torch
    from safetensors.torch import load_file

    from oft.data.dataset import ListDataset
    from oft.train.loop import train

    from .conftest import make_episodes, tiny_config

    key = "vla.language_model.model.embed_tokens.weight"
    tables = {}
    for frozen in (False, True):
        cfg = tiny_config(max_steps=2, save_every=1, keep_last=3, freeze_token_embeddings=frozen)
        run = train(cfg, tmp_path / str(frozen), dataset=ListDataset(make_episodes()))
        saved = sorted(run.checkpoint.parent.iterdir())
        first, last = (load_file(str(c / "model.safetensors")) for c in saved)
        tables[frozen] = torch.equal(first[key], last[key])
        assert not all(torch.equal(first[k], last[k]) for k in first)  # something trained
    assert tables == {False: False, True: True}


def test_continuing_on_data_past_the_checkpoints_bounds_warns_or_takes_the_datas_stats(
    tiny_dataset_dir, tmp_path, caplog
):
    """Issue 11: continuing the two-cube policy on demonstrations that go further than its old ones
    normalized them with the checkpoint's bounds, clipping the new values silently; a policy fitted to
    clipped targets can never command past the old bounds. The run now says so, naming the dims, and
    `base_stats=dataset` normalizes with the new data's own statistics, as fine-tuning does elsewhere."""
    import logging

    from oft.data import open_dataset
    from oft.data.lerobot import LeRobotWriter
    from oft.train.loop import train

    from .conftest import CAMERAS, make_episodes, tiny_config

    wide = tmp_path / "wide"
    writer = LeRobotWriter(wide, fps=10, cameras=CAMERAS, image_shape=(32, 32), action_dim=4, proprio_dim=4,
                           video=False)  # fmt: skip
    for ep in make_episodes():  # the first dataset's episodes, but dim 1 of the actions reaches further
        ep.actions[:, 1] = 3.0 * ep.actions[:, 1] + 0.5
        writer.add_episode(ep)
    writer.finalize()
    first = tmp_path / "first"
    train(tiny_config(max_steps=1, batch_size=2), first, dataset=open_dataset(tiny_dataset_dir))
    ckpt = CheckpointManager(first).checkpoints()[-1][1]
    old = oft.load_policy(ckpt).norm_stats
    data = open_dataset(wide).stats

    with caplog.at_level(logging.WARNING, logger="oft.train.build"):
        cfg = tiny_config(base=str(ckpt), max_steps=1, batch_size=2)
        train(cfg, tmp_path / "kept", dataset=open_dataset(wide))
    warned = [r.getMessage() for r in caplog.records if "narrower than the training data" in r.getMessage()]
    assert len(warned) == 1 and "action statistics (bounds_q99)" in warned[0]
    q01, q99 = old.action.q01[1], old.action.q99[1]
    assert f"in 1 dims (dim 1: checkpoint [{q01:.4g}, {q99:.4g}], data [" in warned[0]
    assert "--set base_stats=dataset" in warned[0]
    kept = oft.load_policy(tmp_path / "kept").norm_stats
    np.testing.assert_array_equal(kept.action.q99, old.action.q99)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="oft.train.build"):
        cfg = tiny_config(base=str(ckpt), max_steps=1, batch_size=2, base_stats="dataset")
        train(cfg, tmp_path / "new", dataset=open_dataset(wide))
    assert not [r for r in caplog.records if "narrower" in r.getMessage()]
    new = oft.load_policy(tmp_path / "new").norm_stats
    np.testing.assert_allclose(new.action.q99, data.action.q99)
    np.testing.assert_allclose(new.action.q01, data.action.q01)
    assert new.action.q99[1] > old.action.q99[1] + 0.5


def test_base_stats_names_its_choices():
    from .conftest import tiny_config

    with pytest.raises(ValueError, match=r"TrainConfig.base_stats: .*'data'.*checkpoint.*dataset"):
        tiny_config(base_stats="data").validate()
