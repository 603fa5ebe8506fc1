from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from oft.bench import commands
from oft.bench.latency import (
    ALL_ROWS,
    VARIANTS,
    BenchOptions,
    build_variant,
    check_rows,
    fake_observation,
    ratios,
    run_bench,
)
from oft.bench.timing import percentile
from oft.cli import build_parser, command_parser, main


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    args = argparse.Namespace(checkpoint=None, arch="tiny", spec="libero", dtype="float32", device="cpu")
    return commands.load_base(args)


def test_variants_share_the_trunk(base):
    ar = build_variant(base, VARIANTS["ar_discrete"])
    extra = build_variant(base, VARIANTS["pdac_l1_extra_inputs"])
    l1 = build_variant(base, VARIANTS["pdac_l1"])
    assert ar.vla.language_model.model is base.vla.language_model.model  # shared, not copied
    assert base.vla.language_model.lm_head is None and ar.vla.language_model.lm_head is not None
    assert extra.vla.vision_backbone is base.vla.vision_backbone
    assert (ar.spec.chunk_len, ar.vla.num_action_slots) == (1, base.spec.action_dim)
    assert ar.head.decode == "autoregressive" and ar.head.chunk_len == 1
    # the paper's rows: one camera without proprio, except the extra-inputs row (wrist camera + proprio)
    assert l1.spec.num_cameras == 1 and not l1.uses_proprio
    assert extra.spec.num_cameras == 2 and extra.uses_proprio
    assert build_variant(base, VARIANTS["pdac_diffusion_T5"]).head.num_inference_steps == 5


def test_ar_baseline_is_honest(base, monkeypatch):
    """KV cache: one prefix forward of the LLM, then one single-row step per further token (the prefix is
    never recomputed); the LM head on 1 row and the 256 action ids per token."""
    from oft.model.vla import VLA, TokenDecoder

    ar = build_variant(base, VARIANTS["ar_discrete"])
    obs = fake_observation(ar, "open the drawer", 0)
    seq_lens, lm_shapes, step_rows = [], [], []
    h1 = ar.vla.language_model.model.register_forward_hook(
        lambda m, a, kw, out: seq_lens.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    lm_logits, step = VLA.lm_logits, TokenDecoder.__call__
    monkeypatch.setattr(
        VLA, "lm_logits", lambda self, h, t=None: lm_shapes.append(h.shape[1]) or lm_logits(self, h, t)
    )
    monkeypatch.setattr(
        TokenDecoder, "__call__", lambda self, x: step_rows.append(x.shape[1]) or step(self, x)
    )
    try:
        actions = ar.predict_action_chunk(obs)
    finally:
        h1.remove()
    D = base.spec.action_dim
    assert actions.shape == (1, D)
    assert len(seq_lens) == 1 and seq_lens[0] > 1  # the prefix, once
    assert step_rows == [1] * (D - 1)  # one row per fed-back token, no forward for the last one
    assert lm_shapes == [1] * D


def test_run_bench_all_rows_and_json(base, tmp_path):
    rows = run_bench(base, list(ALL_ROWS), BenchOptions(warmup=0, iters=1))
    assert [r.name for r in rows] == list(ALL_ROWS)
    K = base.spec.chunk_len
    for r in rows:
        assert 0 < r.latency_median_s <= r.latency_p90_s
        expected = 0 if r.name.startswith("bare") else (1 if r.name in ("ar_discrete", "pd_discrete") else K)
        assert r.actions_per_call == expected
        assert r.throughput_hz == pytest.approx(expected / r.latency_median_s)
    assert set(ratios(rows)) == {"throughput pdac_l1 / ar_discrete", "latency pdac_l1 / bare_forward"}
    out = tmp_path / "bench.json"
    from oft.bench.timing import write_json

    write_json(rows, out)
    data = json.loads(out.read_text())
    assert [d["name"] for d in data] == list(ALL_ROWS)
    assert all(set(d) == {"name", "latency_median_s", "latency_p90_s", "throughput_hz"} for d in data)


def test_every_row_runs_on_a_per_step_trunk():
    """A policy trained with one action slot per chunk step: the L1 rows keep that layout, the rows whose
    head reads one slot per dimension (discrete, diffusion) get the paper's K*D slots on the same trunk."""
    from oft.bench.latency import neutral_stats
    from oft.data.normalize import NormStats
    from oft.model.build import build_policy
    from oft.spec import get_spec

    spec = get_spec("libero")
    stats = NormStats(neutral_stats(spec.action_dim), neutral_stats(spec.proprio_dim))
    torch.manual_seed(0)
    base = build_policy(spec, stats, ["open the drawer"], arch="tiny", action_slots="per_step").eval()
    K, D = spec.chunk_len, spec.action_dim
    for name in VARIANTS:
        policy = build_variant(base, VARIANTS[name])
        per_step = policy.config.head == "l1"
        assert policy.vla.config.action_slots == ("per_step" if per_step else "per_dimension")
        k = policy.spec.chunk_len
        assert policy.vla.num_action_slots == (k if per_step else k * D)
        assert policy.predict_action_chunk(fake_observation(policy, "open the drawer", 0)).shape == (k, D)
    assert build_variant(base, VARIANTS["pdac_l1"]).head is base.head and base.vla.num_action_slots == K


def test_cli_bench(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--arch", "tiny", "--variants", "pdac_l1", "bare_forward", "--warmup", "0",
               "--iters", "1", "--json", str(out)])  # fmt: skip
    assert rc == 0
    assert [d["name"] for d in json.loads(out.read_text())] == ["pdac_l1", "bare_forward"]
    assert "latency pdac_l1 / bare_forward" in capsys.readouterr().out
    rc = main(["bench", "--arch", "tiny", "--spec", "aloha", "--action-slots", "per_step",
               "--variants", "pdac_l1", "pdac_discrete", "--system", "train_step",
               "--warmup", "0", "--iters", "1"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "action_slots=per_step (25 slots)" in text and "train_step" in text
    assert "one slot per action dimension run with K*D slots: pdac_discrete" in text


def test_arch_help_names_every_architecture():
    from oft.model.build import ARCHITECTURES

    # the help a user sees, with oft's formatter
    text = " ".join(command_parser(build_parser(["bench"]), "bench").format_help().split())
    assert all(f"{name}," in text for name in ARCHITECTURES)  # it missed one added later (small-keypoints)


def test_unknown_variant_is_a_clear_error(capsys):
    with pytest.raises(KeyError, match="pdac_l1"):
        check_rows(["pdac_l2"])
    assert main(["bench", "--arch", "tiny", "--variants", "pdac_l2"]) == 2
    assert "pdac_l1" in capsys.readouterr().err


def test_percentile():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(11))), 90) == pytest.approx(9.0)


def test_bench_on_reference_checkpoint(shared_fixtures, tmp_path):
    """The paper-format fine-tune (2 cameras + proprio, fused ViTs, 32k vocab) benches end to end."""
    ckpt = shared_fixtures / "openvla-oft-tiny-libero"
    out = tmp_path / "fixture.json"
    rows = ["ar_discrete", "pdac_l1", "pdac_diffusion_T1", "pdac_l1_extra_inputs", "bare_forward"]
    rc = main(["bench", str(ckpt), "--variants", *rows, "--warmup", "0", "--iters", "1", "--json", str(out)])
    assert rc == 0
    data = {d["name"]: d for d in json.loads(out.read_text())}
    assert list(data) == rows
    assert data["pdac_l1"]["throughput_hz"] > 0


def test_bench_architecture_has_599_positions():
    """The bench architecture: two 224 px images of 256 patches, proprio, 28 prompt tokens, 56 slots"""
    from oft.bench.arch import bench_policy
    from oft.bench.latency import fake_observation as fake

    policy, instruction = bench_policy()
    vits = policy.vla.config.vits
    assert [(v.embed_dim, v.depth, v.num_heads, v.img_size) for v in vits] == [(192, 6, 3, 224)] * 2
    llm = policy.vla.language_model.model.config
    assert (llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers, llm.vocab_size) == (
        256,
        688,
        4,
        32064,
    )
    obs = fake(policy, instruction, 0)
    images = torch.from_numpy(np.stack(obs.images))[None]
    with torch.inference_mode():
        proprio = torch.zeros(1, 8)
        seq = policy.vla.build_sequence(policy.prepare(images, proprio, [instruction]))
    assert seq.embeds.shape[1] == 599


def test_system_rows_and_reference_comparison(base, capsys):
    args = argparse.Namespace(system=["flops", "train_step", "loader"], train_batch=2, lora_rank=4,
                              arch="tiny", compile=False)  # fmt: skip
    rows = commands.system_rows(base, args, BenchOptions(warmup=0, iters=2), matmul_s=0.01)
    by = {r.name: r for r in rows}
    assert set(by) == {"chunk", "train_step", "loader"}
    assert by["chunk"].rate > 0 and "of the matmul rate" in by["chunk"].note
    assert (
        by["train_step"].rate == pytest.approx(2 / by["train_step"].seconds)
        and "LoRA r=4" in by["train_step"].note
    )
    assert base.config.lora is None  # the training step ran on a copy
    commands.print_reference_comparison([], rows, matmul_s=0.0112)
    out = capsys.readouterr().out
    assert "chunk" in out and "LoRA training step" in out


def test_count_flops_counts_a_matmul():
    from oft.bench.system import count_flops

    a = torch.randn(64, 32)
    assert count_flops(lambda: a @ a.T) == 2 * 64 * 64 * 32


@pytest.mark.parametrize(
    "argv, refused",
    [(["CKPT", "--arch", "small"], "--arch small: the checkpoint CKPT has its own model and robot"),
     (["--checkpoint", "CKPT", "--spec", "aloha"], "--spec aloha: the checkpoint CKPT has its own model"),
     (["--arch", "bench", "--spec", "aloha"], "--spec aloha: --arch bench is the paper's LIBERO model"),
     (["--arch", "bench", "--action-slots", "per_step"], "--action-slots per_step: --arch bench has the"),
     (["--lora-rank", "8"], "--lora-rank 8 sets the train_step row's LoRA: add train_step to --system"),
     (["--train-batch", "8"], "--train-batch 8 sets the train_step and loader rows' batch")],
)  # fmt: skip
def test_model_options_the_bench_would_not_use_are_refused(argv, refused, capsys):
    """They were dropped without a word: a checkpoint was benched as itself, --arch bench as LIBERO's K*D."""
    assert main(["bench", *argv, "--variants", "bare_forward", "--system", "--iters", "1"]) == 2
    assert refused in capsys.readouterr().err
