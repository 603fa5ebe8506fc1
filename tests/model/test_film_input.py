"""What FiLM reads: the paper's mean prompt embedding, it at unit RMS, or it centered on the training
instructions (for models built from scratch)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from oft import load_policy
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.observation import Observation
from oft.spec import RobotSpec
from oft.train.config import TrainConfig

K, D, P = 4, 3, 2
SPEC = RobotSpec("toy", action_dim=D, proprio_dim=P, chunk_len=K, cameras=("a",))
PROMPTS = ["turn the faucet clockwise", "turn the faucet counter-clockwise"]


def _stats(dim: int) -> Stats:
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def _policy(film_input: str):
    torch.manual_seed(0)
    stats = NormStats(_stats(D), _stats(P))
    return build_policy(SPEC, stats, PROMPTS, arch="tiny", use_film=True, film_input=film_input).eval()


def _film_inputs(policy) -> torch.Tensor:
    vla = policy.vla
    ids, lengths = vla.tokenize(PROMPTS)
    with torch.no_grad():
        return vla.film_embedding(vla.embed_tokens(ids), lengths)  # (2, H)


def _obs(prompt: str) -> Observation:
    rng = np.random.default_rng(0)
    return Observation([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)], np.zeros(P), prompt)


def test_mean_is_the_papers_average_of_the_prompt_embeddings_with_the_stop_token():
    policy = _policy("mean")
    vla = policy.vla
    ids, lengths = vla.tokenize(PROMPTS)
    eos = vla.embed_tokens(torch.tensor([vla.tokenizer.eos_id]))[0]
    with torch.no_grad():
        expected = [torch.cat([vla.embed_tokens(ids[i, : lengths[i]]), eos[None]]).mean(0) for i in range(2)]
    torch.testing.assert_close(_film_inputs(policy), torch.stack(expected))


def test_mean_rms_is_the_same_direction_at_unit_rms():
    """A new table starts at std 0.02: the paper's mean is far below unit scale, mean_rms is at it."""
    mean, scaled = _film_inputs(_policy("mean")), _film_inputs(_policy("mean_rms"))
    rms = mean.pow(2).mean(-1).sqrt()
    assert (rms < 0.05).all(), rms  # the premise: the paper's input is small for a new model
    torch.testing.assert_close(scaled, mean / (rms[:, None] ** 2 + 1e-6).sqrt(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scaled.pow(2).mean(-1).sqrt(), torch.ones(2), atol=0.05, rtol=0)
    # the two instructions stay apart by the same fraction of the input's size
    torch.testing.assert_close((scaled[0] - scaled[1]).norm() / scaled[0].norm(),
                               (mean[0] - mean[1]).norm() / mean[0].norm(), atol=1e-3, rtol=1e-3)  # fmt: skip


def test_mean_rms_moves_gamma_more_per_step_for_the_instruction_dependent_part():
    """One Adam step on a FiLM map: how far the two instructions' gammas move apart: why the option exists."""
    spread = {}
    for film_input in ("mean", "mean_rms"):
        policy = _policy(film_input).train()
        block = policy.vla.vision_backbone.featurizer.blocks[0]
        opt = torch.optim.Adam([block.scale.weight], lr=1e-3)
        lang = _film_inputs(policy)
        target = torch.tensor([1.0, -1.0])[:, None]  # the two instructions want opposite modulations
        loss = ((block.scale(lang) - target) ** 2).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            gamma = block.scale(lang)
        spread[film_input] = float((gamma[0] - gamma[1]).abs().mean())
    assert spread["mean_rms"] > 20 * spread["mean"], spread


def test_the_choice_round_trips_through_a_checkpoint_and_old_checkpoints_read_mean(tmp_path):
    policy = _policy("mean_rms")
    with torch.no_grad():
        for block in policy.vla.vision_backbone.featurizer.blocks:
            block.scale.weight.normal_(0, 0.1)  # a trained FiLM: the input's scale now changes the actions
    path = policy.save(tmp_path / "p")
    loaded = load_policy(path)
    assert loaded.vla.config.film_input == "mean_rms"
    obs = _obs(PROMPTS[0])
    np.testing.assert_array_equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))
    as_mean = dataclasses.replace(policy.vla.config, film_input="mean")
    policy.vla.config = as_mean
    assert np.abs(policy.predict_action_chunk(obs) - loaded.predict_action_chunk(obs)).max() > 1e-6

    meta = json.loads((path / "oft_config.json").read_text())
    del meta["vla"]["film_input"]  # written before the option existed
    (path / "oft_config.json").write_text(json.dumps(meta))
    assert load_policy(path, verify=False).vla.config.film_input == "mean"


def test_unknown_film_inputs_name_the_choices():
    from oft.model.vla import VLA

    policy = _policy("mean")
    choices = r"\('mean', 'mean_rms', 'mean_centered'\)"
    with pytest.raises(ValueError, match=rf"film_input 'max'; expected one of {choices}"):
        VLA(dataclasses.replace(policy.vla.config, film_input="max"), policy.vla.tokenizer)
    with pytest.raises(ValueError, match=r"TrainConfig.film_input: unknown FiLM input 'max'; known: mean"):
        TrainConfig(film_input="max").validate(check_paths=False)


def test_oft_info_names_the_film_input(tmp_path, capsys):
    from oft.cli import main

    _policy("mean_rms").save(tmp_path / "p")
    assert main(["info", str(tmp_path / "p")]) == 0
    assert "FiLM: True (mean_rms)" in capsys.readouterr().out


def _two_cube_prompts() -> list[str]:
    return ["transfer the red cube", "transfer the blue cube"]


def _centered_policy(instructions: list[str], film_input: str = "mean_centered"):
    torch.manual_seed(0)
    stats = NormStats(_stats(D), _stats(P))
    return build_policy(SPEC, stats, instructions, arch="tiny", use_film=True, film_input=film_input).eval()


def _inputs_for(policy, prompts: list[str]) -> torch.Tensor:
    vla = policy.vla
    ids, lengths = vla.tokenize(prompts)
    with torch.no_grad():
        return vla.film_embedding(vla.embed_tokens(ids), lengths)


def test_mean_centered_keeps_only_what_tells_the_instructions_apart():
    """Two instructions one word apart: mean_rms inputs nearly coincide, mean_centered ones are opposite."""
    prompts = _two_cube_prompts()
    inputs = {}
    for film_input in ("mean_rms", "mean_centered"):
        policy = _centered_policy(prompts, film_input)
        with torch.no_grad():  # a trained table: far from the 0.02 init, so the epsilon plays no part
            policy.vla.language_model.model.embed_tokens.weight.normal_(0, 1.0)
        inputs[film_input] = _inputs_for(policy, prompts)
    rms, centered = inputs["mean_rms"], inputs["mean_centered"]
    cos = torch.nn.functional.cosine_similarity
    assert policy.vla.config.film_instructions == sorted(prompts)
    assert float(cos(rms[0], rms[1], dim=0)) > 0.8  # the shared template dominates
    torch.testing.assert_close(centered[0], -centered[1])  # two instructions: +d and -d around the center
    torch.testing.assert_close(centered.pow(2).mean(-1).sqrt(), torch.ones(2), atol=1e-3, rtol=0)
    # by hand: each prompt's mean (BOS, prompt, </s>) minus the average of the two
    vla = policy.vla
    ids, lengths = vla.tokenize(prompts)
    eos = vla.embed_tokens(torch.tensor([vla.tokenizer.eos_id]))[0]
    with torch.no_grad():
        rows = [torch.cat([vla.embed_tokens(ids[i, : lengths[i]]), eos[None]]) for i in range(2)]
    means = torch.stack([row.mean(0) for row in rows])
    diff = means - means.mean(0, keepdim=True)
    torch.testing.assert_close(centered, diff / (diff.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt())


def test_mean_centered_with_one_training_instruction_gives_film_nothing_to_read():
    policy = _centered_policy(["transfer the cube"])
    assert _inputs_for(policy, ["transfer the cube"]).abs().max() < 1e-4


def test_mean_centered_needs_the_training_instructions():
    from oft.model.vla import VLA

    policy = _centered_policy(_two_cube_prompts())
    with pytest.raises(ValueError, match=r"'mean_centered' needs the training instructions .*got None"):
        VLA(dataclasses.replace(policy.vla.config, film_instructions=None), policy.vla.tokenizer)


def test_mean_centered_round_trips_through_a_checkpoint(tmp_path):
    """The center is part of the model: a reloaded policy (and so the robot's server) computes the same."""
    prompts = _two_cube_prompts()
    policy = _centered_policy(prompts)
    with torch.no_grad():
        for block in policy.vla.vision_backbone.featurizer.blocks:
            block.scale.weight.normal_(0, 0.1)
    loaded = load_policy(policy.save(tmp_path / "p"))
    assert loaded.vla.config.film_instructions == sorted(prompts)
    for prompt in prompts:
        obs = _obs(prompt)
        np.testing.assert_array_equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))
    red, blue = (loaded.predict_action_chunk(_obs(p)) for p in prompts)
    assert np.abs(red - blue).max() > 1e-4  # the instruction reaches the actions through FiLM
