"""TrainConfig validation, overrides, presets and the lr schedule: refused before any work starts."""

from __future__ import annotations

import pytest
import torch

from oft.train.config import TrainConfig, apply_overrides
from oft.train.presets import PRESETS, get_preset
from oft.train.schedule import make_scheduler


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("batch_size=0", "batch_size"),
        ("lr=-1", "lr"),
        ("lr=abc", "lr"),
        ("head=l2", "head"),
        ("decode=sideways", "decode"),
        ("robot=metawrld", "robot"),
        ("cameras=corner,corner", "cameras"),
        ("chunk_len=0", "chunk_len"),
        ("grad_accum=0", "grad_accum"),
        ("decay_factor=2", "decay_factor"),
        ("warmup_steps=5000", "warmup_steps"),
        ("lora_rank=-1", "lora_rank"),
        ("device=tpu", "device"),
        ("max_minutes=0", "max_minutes"),
        ("decode=autoregressive", "decode"),  # with the l1 head
        ("keep_last=0", "keep_last"),
        ("proprio=maybe", "proprio"),
        ("start_repeat=0", "start_repeat"),
        ("start_frames=0", "start_frames"),
        ("start_frames=10", "start_frames"),  # without start_repeat > 1 it would do nothing
        ("ema_decay=1", "ema_decay"),  # the average would never move
        ("ema_decay=0", "ema_decay"),
    ],
)
def test_bad_values_are_refused_naming_the_field(override, field):
    cfg = apply_overrides(get_preset("metaworld-tiny"), [override])
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}\b"):
        cfg.validate(check_paths=False)


def test_missing_dataset_is_refused(tmp_path):
    cfg = get_preset("metaworld-tiny").replace(datasets=(str(tmp_path / "nope"),))
    with pytest.raises(ValueError, match=r"TrainConfig\.datasets"):
        cfg.validate()
    with pytest.raises(ValueError, match=r"TrainConfig\.datasets"):
        get_preset("metaworld-tiny").validate()  # none given


def test_unknown_field_and_preset_get_did_you_mean():
    with pytest.raises(ValueError, match="Did you mean 'batch_size'"):
        apply_overrides(TrainConfig(), ["batch_sise=3"])
    with pytest.raises(KeyError, match="Did you mean 'libero-openvla'"):
        get_preset("libero-openvl")
    with pytest.raises(ValueError, match="form field=value"):
        apply_overrides(TrainConfig(), ["batch_size"])


@pytest.mark.parametrize("override", ["ema_decay=", "max_minutes= ", "cameras=", "lr=", "wandb_project="])
def test_an_empty_value_is_refused_not_read_as_none(override):
    """``--set max_minutes=$BUDGET`` with the variable unset used to mean no time limit (None), and
    ``cameras=`` an empty camera list: an empty value is now an error naming the field."""
    name = override.partition("=")[0]
    with pytest.raises(ValueError, match=rf"has no value; expected TrainConfig\.{name}="):
        apply_overrides(TrainConfig(), [override])
    assert apply_overrides(TrainConfig(), ["ema_decay=none", "max_minutes=None"]).max_minutes is None


def test_overrides_parse_by_type_and_round_trip(tmp_path):
    cfg = apply_overrides(
        TrainConfig(),
        ["lr=1e-3", "decay_step=none", "cameras=corner", "proprio=false", "max_minutes=2"],
    )
    assert cfg.lr == 1e-3 and cfg.decay_step is None and cfg.cameras == ("corner",)
    assert cfg.proprio is False and cfg.max_minutes == 2.0
    cfg.validate(check_paths=False)
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    PRESETS[name].validate(check_paths=False)


def test_paper_presets_match_the_paper():
    libero, aloha = get_preset("libero-openvla"), get_preset("aloha-openvla")
    assert (libero.lora_rank, libero.lr, libero.decay_step, libero.max_steps, libero.batch_size) == (
        32,
        5e-4,
        100_000,
        150_000,
        8,
    )
    assert (libero.head, libero.decode, libero.proprio, libero.film) == ("l1", "parallel", True, False)
    assert (aloha.decay_step, aloha.max_steps, aloha.film, aloha.robot) == (50_000, 100_000, True, "aloha")


def _lrs(decay_step, warmup, steps, lr=1.0):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt, decay_step, 0.1, warmup)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_decays_10x_at_the_milestone_and_warmup_does_not_cancel_it():
    lrs = _lrs(decay_step=5, warmup=0, steps=8)
    assert lrs[:5] == [1.0] * 5 and lrs[5:] == pytest.approx([0.1] * 3)
    lrs = _lrs(decay_step=4, warmup=4, steps=8)
    assert lrs[0] == pytest.approx(0.1 + 0.9 * 0.25)
    assert lrs[3] == pytest.approx(1.0)
    assert lrs[4:] == pytest.approx([0.1] * 4)  # the paper's script would be back at 1.0 here


def test_head_and_decode_choices_come_from_the_head_registry(tmp_path):
    from oft.model.heads import head_names

    assert set(head_names()) >= {"l1", "diffusion", "discrete"}
    TrainConfig(datasets=(str(tmp_path),), head="discrete", decode="autoregressive").validate()
    with pytest.raises(ValueError, match=r"TrainConfig\.decode.*'l1'"):
        # an L1 head decodes in parallel only
        TrainConfig(datasets=(str(tmp_path),), head="l1", decode="autoregressive").validate()


def test_overriding_one_decay_rule_replaces_the_presets_other():
    from oft.train.presets import get_preset

    preset = get_preset("metaworld-tiny")  # decays at 3/4 of the run (decay_at)
    cfg = apply_overrides(preset, ["decay_step=20"])
    assert (cfg.decay_step, cfg.decay_at) == (20, None)
    cfg = apply_overrides(cfg, ["decay_at=0.5"])
    assert (cfg.decay_step, cfg.decay_at) == (None, 0.5)
    with pytest.raises(ValueError, match="one decay rule"):  # both at once is still refused
        apply_overrides(preset, ["decay_step=20", "decay_at=0.5"]).validate()


def test_lora_dropout_without_lora_is_refused():
    """`--set lora_dropout=0.1` on a run without LoRA did nothing, without a word."""
    from oft.train.presets import get_preset

    with pytest.raises(ValueError, match=r"lora_dropout=0\.1 is invalid: expected 0 when lora_rank=0"):
        apply_overrides(get_preset("metaworld-tiny"), ["lora_dropout=0.1"]).validate(check_paths=False)
    cfg = apply_overrides(get_preset("metaworld-tiny"), ["lora_dropout=0.1", "lora_rank=8"])
    assert cfg.validate(check_paths=False).lora_dropout == 0.1


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (
            ["crop_jitter=1.5"],
            r"crop_jitter=1\.5 is invalid: expected a share of the crop's range in \[0, 1\]",
        ),
        (["crop_jitter=-0.1"], r"crop_jitter=-0\.1 is invalid"),
        (
            ["crop_jitter=0", "augment=false"],
            r"crop_jitter=0\.0 is invalid: expected 1\.0 when augment=false",
        ),
    ],
)
def test_crop_jitter_outside_its_range_or_without_augmentation_is_refused(overrides, refused):
    """`--set crop_jitter` moves the augmentation's random crop: a value outside [0, 1], or one given where
    no augmentation runs (it would do nothing), is named."""
    assert apply_overrides(get_preset("metaworld-tiny"), ["crop_jitter=0"]).validate(check_paths=False)
    with pytest.raises(ValueError, match=refused):
        apply_overrides(get_preset("metaworld-tiny"), overrides).validate(check_paths=False)
