"""Train ≡ serve: the pixels a policy's vision backbone gets in training equal those it gets at inference.

Each test here failed on oft 0.1 (main 4f85ac9): training cropped twice (loader's random crop, then the
evaluation center crop in ``Policy.forward``), the loader resized with torch bilinear while inference used PIL
bicubic, and ``oft eval`` rendered at a size the policy did not know.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from oft.data.augment import AugmentConfig
from oft.data.episode import Episode
from oft.data.loader import ChunkLoader
from oft.data.normalize import NormStats, Stats
from oft.model import build_policy
from oft.model.preprocess import ImagePipeline, center_crop, normalize_pixels
from oft.observation import Batch, Observation
from oft.spec import RobotSpec

ONLY_CROP = AugmentConfig(brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)


def _stats(dim: int) -> Stats:
    return Stats(np.zeros(dim), np.ones(dim), -np.ones(dim), np.ones(dim), -np.ones(dim), np.ones(dim))


def _policy(spec: RobotSpec, center_crop: bool = False):
    torch.manual_seed(0)
    stats = NormStats(_stats(spec.action_dim), _stats(spec.proprio_dim) if spec.proprio_dim else None)
    policy = build_policy(spec, stats, ["do the task"], arch="tiny", center_crop=center_crop)
    return policy.eval()


class _Capture:
    """Records what the vision backbone is given: (B, N, C, S, S) float pixels."""

    def __init__(self, policy) -> None:
        self.seen: list[torch.Tensor] = []
        policy.vla.vision_backbone.register_forward_pre_hook(
            lambda _m, args: self.seen.append(args[0].clone())
        )

    def last(self) -> torch.Tensor:
        return self.seen[-1]


def _train_pixels(policy, batch: Batch) -> torch.Tensor:
    cap = _Capture(policy)
    with torch.no_grad():
        policy(batch)
    return cap.last()


def _infer_pixels(policy, obs: Observation) -> torch.Tensor:
    cap = _Capture(policy)
    policy.predict_action_chunk(obs)
    return cap.last()


SPEC = RobotSpec("toy", action_dim=3, proprio_dim=2, chunk_len=2, cameras=("a", "b"))


def _toy_episode(size=(48, 40), T=4, seed=0) -> Episode:
    rng = np.random.default_rng(seed)
    images = {c: rng.integers(0, 256, (T, *size, 3), dtype=np.uint8) for c in SPEC.cameras}
    return Episode(images, rng.uniform(-1, 1, (T, 2)), rng.uniform(-1, 1, (T, 3)), "do the task")


def test_training_forward_does_not_crop_a_second_time():
    """With augmentation on, the loader's random crop is the only crop training pixels get."""
    policy = _policy(SPEC, center_crop=True)
    loader = ChunkLoader([_toy_episode(size=(32, 32))], chunk_len=2, batch_size=2,
                         pipeline=policy.image_pipeline, augment=ONLY_CROP, seed=3)  # fmt: skip
    batch = next(loader)
    seen = _train_pixels(policy, batch)
    expected = normalize_pixels(batch.images, policy.vla.config.vits)
    assert torch.equal(seen, expected)


def test_training_random_crop_has_the_inference_crop_area():
    """The random crop's area is the policy's (crop_scale); a policy without center crop is never cropped."""
    ramp = (
        torch.arange(32, dtype=torch.uint8).repeat(32, 1)[None, None, :, :, None].expand(1, 1, 32, 32, 3) * 8
    )
    ramp = ramp.contiguous()
    g = torch.Generator().manual_seed(0)
    plain = ImagePipeline(32, center_crop=False)(ramp, train=True, augment=ONLY_CROP, generator=g)
    assert torch.equal(plain, ramp)
    cropped = ImagePipeline(32, center_crop=True, crop_scale=0.9)(
        ramp, train=True, augment=ONLY_CROP, generator=g
    )
    # a sqrt(0.9)-side box spans 0.949 of the ramp: the value range shrinks by that factor, never by 0.9
    span = (cropped[0, 0, 0, -1, 0].float() - cropped[0, 0, 0, 0, 0].float()) / (31 * 8)
    assert 0.93 < span.item() < 0.96


def test_loader_and_inference_resize_with_one_kernel():
    """Frames stored at 48x40 reach a 32 px model identically through training and inference."""
    policy = _policy(SPEC)
    ep = _toy_episode(size=(48, 40))
    loader = ChunkLoader(
        [ep], chunk_len=2, batch_size=1, pipeline=policy.image_pipeline, augment=False, pad=True
    )
    assert loader.frame_sizes == {"a": (48, 40), "b": (48, 40)}
    for t in range(len(ep)):
        batch = loader.make_batch(np.array([t]))
        obs = Observation([ep.images[c][t] for c in SPEC.cameras], ep.proprio[t], ep.instruction)
        assert torch.equal(_train_pixels(policy, batch), _infer_pixels(policy, obs)), f"frame {t}"


def test_center_crop_policy_sees_exactly_one_centred_crop_at_inference():
    policy = _policy(SPEC, center_crop=True)
    ep = _toy_episode(size=(32, 32))
    loader = ChunkLoader(
        [ep], chunk_len=2, batch_size=1, pipeline=policy.image_pipeline, augment=False, pad=True
    )
    batch = loader.make_batch(np.array([0]))
    obs = Observation([ep.images[c][0] for c in SPEC.cameras], ep.proprio[0], ep.instruction)
    expected = normalize_pixels(center_crop(batch.images), policy.vla.config.vits)
    assert torch.equal(_infer_pixels(policy, obs), expected)


def test_eval_renders_at_the_training_frame_size():
    from oft.sim.evaluate import _env_kwargs

    policy = _policy(SPEC)
    assert _env_kwargs(policy, None)["image_size"] == 32  # nothing recorded: the model's input size
    policy.config.frame_sizes = {"a": [96, 96], "b": [96, 96]}
    assert _env_kwargs(policy, None) == {"cameras": ("a", "b"), "image_size": 96}
    policy.config.frame_sizes = {"a": [96, 128], "b": [64, 64]}
    assert _env_kwargs(policy, None)["image_size"] == {"a": (96, 128), "b": (64, 64)}
    assert _env_kwargs(policy, {"image_size": 50})["image_size"] == 50  # the caller's word wins


def test_eval_renders_the_scene_of_the_training_demonstrations(tmp_path):
    from oft import load_policy
    from oft.sim.evaluate import _env_kwargs

    policy = _policy(SPEC)
    policy.config.scene = {"env": "metaworld", "options": {"show_goal": False, "shared_layouts": True}}
    kw = _env_kwargs(policy, None, "metaworld")
    assert kw["show_goal"] is False and kw["shared_layouts"] is True
    assert _env_kwargs(policy, {"show_goal": True}, "metaworld")["show_goal"] is True  # the caller's wins
    assert "show_goal" not in _env_kwargs(policy, None, "aloha")  # another simulator's options are not its
    policy.save(tmp_path / "p")
    assert load_policy(tmp_path / "p").config.scene == policy.config.scene


def test_frame_sizes_survive_save_and_load(tmp_path):
    from oft import load_policy

    policy = _policy(SPEC, center_crop=True)
    policy.config.frame_sizes = {"a": [48, 40], "b": [48, 40]}
    policy.save(tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert loaded.render_sizes == {"a": (48, 40), "b": (48, 40)}
    assert loaded.image_pipeline == policy.image_pipeline


# --- every registered simulator and camera layout -------------------------------------------------------
def _layouts() -> list:
    out = []
    for env, mod in (("metaworld", "metaworld"), ("aloha", "gym_aloha"), ("libero", "libero")):
        marks = [pytest.mark.slow]
        if importlib.util.find_spec(mod) is None:
            marks.append(pytest.mark.skip(reason=f"the {env} simulator ({mod}) is not installed"))
        for layout in ("all", "first"):
            for size in (48, (40, 56)):
                out.append(pytest.param(env, layout, size, marks=marks, id=f"{env}-{layout}-{size}"))
    return out


@pytest.mark.parametrize(("env_name", "layout", "size"), _layouts())
def test_simulator_frames_train_equal_inference(env_name, layout, size):
    """Frames rendered by each simulator, stored as a demo would be, then read by the loader (augmentation
    off) give the same model pixels as the same frames given to ``predict_action_chunk``."""
    from oft.sim.base import list_tasks, make_env

    task = list_tasks(env_name)[0]
    with make_env(env_name, task=task) as probe:
        cameras = probe.spec.cameras if layout == "all" else probe.spec.cameras[:1]
    with make_env(env_name, task=task, cameras=tuple(cameras), image_size=size) as env:
        frames = [env.reset(seed=0)]
        for _ in range(2):
            frames.append(env.step(np.zeros(env.spec.action_dim, np.float32)).observation)
        spec = env.spec.replace(cameras=tuple(cameras), chunk_len=2)
    policy = _policy(spec)
    T = len(frames)
    ep = Episode(
        {c: np.stack([f.images[i] for f in frames]) for i, c in enumerate(cameras)},
        np.stack([f.proprio for f in frames]).astype(np.float32),
        np.zeros((T, spec.action_dim), np.float32),
        frames[0].instruction,
    )
    loader = ChunkLoader(
        [ep], chunk_len=2, batch_size=1, pipeline=policy.image_pipeline, augment=False, pad=True
    )
    for t in range(T):
        train = _train_pixels(policy, loader.make_batch(np.array([t])))
        infer = _infer_pixels(policy, frames[t])
        assert torch.equal(train, infer), f"{env_name} {cameras} frame {t}"
