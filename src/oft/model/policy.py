"""The policy users call: observations in robot units in, action chunks in robot units out.

Normalization stats, the robot spec and the preprocessing choices live inside the policy (and its
checkpoint), so no caller ever re-declares them: ``load_policy(path).predict_action_chunk(obs)`` is all.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from oft.data.normalize import NormStats, normalize, unnormalize
from oft.model.heads import ActionHead
from oft.model.preprocess import DEFAULT_CROP_SCALE, ImagePipeline, normalize_pixels
from oft.model.safety import check_actions, check_prompt, clip_to_bounds, prompt_token_budget
from oft.model.tokenizer import make_prompt
from oft.model.vla import VLA, VLAConfig, VLAInputs
from oft.observation import Batch, Observation, check_finite
from oft.spec import RobotSpec

log = logging.getLogger(__name__)

CONFIG_FILE = "oft_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class PolicyConfig:
    """Everything needed to rebuild a policy's modules (weights come separately)."""

    vla: VLAConfig
    spec: RobotSpec
    head: str = "l1"
    head_kwargs: dict = field(default_factory=dict)
    # trained with the random crop of ``crop_scale`` of the area: inference takes the centred box of that area
    center_crop: bool = False
    crop_scale: float = DEFAULT_CROP_SCALE
    # {camera: [H, W]} of the frames the policy was trained on: simulators render at this size, so the
    # policy's own resize (the one kernel) makes exactly the training pixels. None: unknown (model size).
    frame_sizes: dict[str, list[int]] | None = None
    # {"env": name, "options": {...}}: the simulator scene the training demonstrations were collected in
    # (oft.sim.collect.recorded_scene, e.g. MetaWorld goal markers hidden); evaluation renders the same one
    scene: dict | None = None
    lora: dict | None = None  # {"rank", "alpha", "targets"} when unmerged adapters are part of the weights
    source: str = "oft"

    def to_dict(self) -> dict:
        return {
            "format": "oft-policy",
            "version": FORMAT_VERSION,
            "vla": self.vla.to_dict(),
            "spec": self.spec.to_dict(),
            "head": self.head,
            "head_kwargs": self.head_kwargs,
            "center_crop": self.center_crop,
            "crop_scale": self.crop_scale,
            "frame_sizes": self.frame_sizes,
            "scene": self.scene,
            "lora": self.lora,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        if d.get("format") != "oft-policy":
            raise ValueError(f"not an oft policy config (format={d.get('format')!r})")
        return cls(
            vla=VLAConfig.from_dict(d["vla"]),
            spec=RobotSpec.from_dict(d["spec"]),
            head=d["head"],
            head_kwargs=d.get("head_kwargs", {}),
            center_crop=d.get("center_crop", False),
            crop_scale=d.get("crop_scale", DEFAULT_CROP_SCALE),
            frame_sizes=d.get("frame_sizes"),
            scene=d.get("scene"),
            lora=d.get("lora"),
            source=d.get("source", "oft"),
        )


class Policy(nn.Module):
    """VLA trunk + action head + normalizer. See ``oft.model.heads`` for the head contract.

    ``norm_stats``: the statistics inference normalizes proprio and un-normalizes actions with (the default
    set when the policy acts by instruction, below).
    ``dataset_stats``: {key: statistics} of every dataset the policy was trained on, one normalizer per robot
    (OpenVLA's ``norm_stats`` dict; key: the dataset's name, or the task's instruction with
    ``mixture_stats="per_task"``); ``unnorm_key`` says which of them ``norm_stats`` is. In training, a batch
    whose ``norm_keys`` name each sample's entry is normalized per sample with it.
    ``instruction_keys``: {instruction: ``dataset_stats`` key} of the training instructions that belong to one
    entry. When ``act_by_instruction`` is set (a policy with several entries and this map, loaded without an
    ``unnorm_key``), each observation acts with the entry of its instruction, as its samples were normalized
    in training; an instruction outside the map raises ValueError.
    ``checkpoint_dir``: the directory :func:`oft.load_policy` read the weights from, as an absolute path
    (symlinks kept; for an ``oft train`` run directory, the newest ``checkpoints/step_XXXXXXX`` it stood
    for); None for a policy built in memory.
    Commands that load a policy record it, so a result names the step it measured.
    """

    def __init__(self, config: PolicyConfig, vla: VLA, head: ActionHead, norm_stats: NormStats) -> None:
        super().__init__()
        self.config = config
        self.vla = vla
        self.head = head
        self.norm_stats = norm_stats
        self.dataset_stats: dict[str, NormStats] = {}
        self.unnorm_key: str | None = None
        self.instruction_keys: dict[str, str] = {}
        self._folded_keys: dict[str, str] = {}
        self.act_by_instruction = False
        self.checkpoint_dir: Path | None = None
        self._queue: collections.deque[np.ndarray] = collections.deque()
        _check_stats(config.spec, norm_stats)

    @property
    def spec(self) -> RobotSpec:
        return self.config.spec

    def set_dataset_stats(
        self, stats: dict[str, NormStats], unnorm_key: str, instruction_keys: dict[str, str] | None = None
    ) -> None:
        """Every training dataset's (or task's) statistics by key; ``norm_stats`` becomes
        ``stats[unnorm_key]``. ``instruction_keys``: {instruction: key of ``stats``}; with several entries the
        policy then acts by instruction (:attr:`act_by_instruction`). KeyError for a key not in ``stats``."""
        if unnorm_key not in stats:
            raise KeyError(f"unnorm_key {unnorm_key!r} not among the dataset statistics {sorted(stats)}")
        mapping = dict(instruction_keys or {})
        unknown = sorted({k for k in mapping.values() if k not in stats})
        if unknown:
            raise KeyError(f"instruction_keys name statistics {unknown}; the policy has {sorted(stats)}")
        for s in stats.values():
            _check_stats(self.spec, s)
        self.dataset_stats, self.unnorm_key = dict(stats), unnorm_key
        self.norm_stats = stats[unnorm_key]
        self.instruction_keys = mapping
        # the prompt lower-cases the instruction (make_prompt): "Reach the goal" is the task "reach the goal"
        self._folded_keys = {t.lower(): k for t, k in mapping.items()}
        self.act_by_instruction = bool(mapping) and len(stats) > 1

    @property
    def per_task(self) -> bool:
        """Whether the policy normalizes each task with its own statistics (``mixture_stats="per_task"``)."""
        return is_per_task(self.instruction_keys, len(self.dataset_stats))

    def acting_stats(self, instructions: list[str]) -> list[NormStats]:
        """The statistics each observation acts with (B,): its instruction's entry when
        :attr:`act_by_instruction` (matched as the prompt reads it, lower-cased), else ``norm_stats``.
        ValueError for an instruction the policy has no statistics of its own for (one it was not trained
        on, or one found in several datasets of a mixture), naming it and the known ones."""
        if not self.act_by_instruction:
            return [self.norm_stats] * len(instructions)
        keys = [self.instruction_keys.get(t) or self._folded_keys.get(t.lower()) for t in instructions]
        unknown = [t for t, k in zip(instructions, keys, strict=True) if k is None]
        if unknown:
            known = sorted(self.instruction_keys)
            shown = known[:10] + (["..."] if len(known) > 10 else [])
            what = "task" if self.per_task else "dataset (an instruction found in several datasets has none)"
            raise ValueError(
                f"instruction {unknown[0]!r} has no statistics of its own in this policy, which normalizes "
                f"each {what} with its own: it knows {shown}; use one of those, or name one set of "
                f"statistics to act with for every instruction (load_policy(..., unnorm_key=KEY), "
                f"--unnorm-key KEY on the command line; keys: {sorted(self.dataset_stats)})"
            )
        return [self.dataset_stats[k] for k in keys]

    @property
    def device(self) -> torch.device:
        return self.vla.language_model.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vla.language_model.model.embed_tokens.weight.dtype

    # --- what the policy sees ------------------------------------------------------------------------------
    @property
    def image_pipeline(self) -> ImagePipeline:
        """Resize (one kernel) + crop of every camera frame, for training and inference alike."""
        return ImagePipeline(self.image_size, self.config.center_crop, self.config.crop_scale)

    @property
    def image_size(self) -> int:
        """The vision backbone's square input side, in pixels."""
        return int(self.vla.vision_backbone.image_size)

    @property
    def render_sizes(self) -> dict[str, tuple[int, int]]:
        """{camera: (H, W)} a simulator should render for this policy: the size of its training frames when
        recorded (the policy's resize then reproduces the training pixels), else the model's input size."""
        recorded = self.config.frame_sizes or {}
        return {
            c: tuple(int(v) for v in recorded[c]) if c in recorded else (self.image_size, self.image_size)
            for c in self.spec.cameras
        }

    # --- inference --------------------------------------------------------------------------------------
    def prepare(
        self,
        images: torch.Tensor,
        proprio_norm: torch.Tensor | None,
        instructions: list[str],
        train: bool = False,
    ) -> VLAInputs:
        """(B, N, H, W, 3) uint8 images, (B, P) normalized proprio -> VLAInputs (pixels preprocessed).

        train=False (inference): :attr:`image_pipeline` with its center crop. train=True: resize only —
        training images come from the loader already augmented (random crop included) by the same pipeline.
        """
        n = self.spec.num_cameras
        if images.ndim != 5 or images.shape[1] != n:
            raise ValueError(f"images have shape {tuple(images.shape)}, expected (B, {n}, H, W, 3)")
        images = self.image_pipeline(images, train=train)  # (B, N, S, S, 3) uint8
        # uint8 travels to the device; the one float conversion happens there
        pixels = normalize_pixels(images.to(self.device, non_blocking=True), self.vla.config.vits)
        pixels = pixels.to(self.dtype)
        if proprio_norm is not None:
            proprio_norm = proprio_norm.to(self.device, self.dtype)
        return self.vla.prepare(pixels, proprio_norm if self.uses_proprio else None, instructions)

    @property
    def uses_proprio(self) -> bool:
        return self.vla.config.proprio_dim > 0

    @torch.inference_mode()  # no autograd bookkeeping at all (no_grad still bumps version counters)
    def predict_action_chunk(self, obs: Observation | list[Observation], *, clip: bool = False) -> np.ndarray:
        """-> (K, D) float32 actions in robot units, or (B, K, D) for a list of observations.

        Each observation is normalized and its actions un-normalized with :meth:`acting_stats` (its
        instruction's statistics for a policy that acts by instruction; ValueError for an instruction it has
        none for). Raises :class:`oft.model.safety.NonFiniteActionError` instead of returning NaN/inf
        actions and :class:`oft.model.safety.PromptTooLongError` when an instruction does not fit the model's
        positions.
        clip: clamp the actions to the range of the training data (the action statistics' min/max); a
        warning is logged when a value moved.
        """
        single = isinstance(obs, Observation)
        batch = [obs] if single else list(obs)
        if not batch:
            raise ValueError("predict_action_chunk got an empty list of observations")
        for o in batch:
            if not isinstance(o, Observation):
                raise ValueError(f"expected an Observation, got {type(o).__name__}")
        instructions = [o.instruction for o in batch]
        stats = self.acting_stats(instructions)
        images, proprio = self._stack_observations(batch, stats)
        self._check_prompts(instructions)
        inputs = self.prepare(images, proprio, instructions)
        norm = self.head.predict(self.vla, inputs).float().cpu().numpy()  # (B, K, D)
        kind, mask = self.spec.normalization, self.spec.mask
        actions = _by_rows(norm, stats, lambda x, s: unnormalize(x, s.action, kind, mask))
        actions = check_actions(actions.astype(np.float32))  # NaN/inf never leave
        if clip:
            actions = _by_rows(actions, stats, lambda x, s: clip_to_bounds(x, s.action)[0])
        actions = actions.astype(np.float32, copy=False)
        return actions[0] if single else actions

    def _check_prompts(self, instructions: list[str]) -> None:
        """PromptTooLongError for an instruction beyond the model's positions. Tokenizing costs as much as a
        small model's forward, so only prompts whose UTF-8 length could exceed the budget are tokenized: a
        token covers at least one byte, besides BOS, a leading "▁" and the suffix."""
        budget = prompt_token_budget(self)
        if budget is None:
            return
        extra = 2 + len(getattr(self.vla.tokenizer, "prompt_suffix_ids", ()))
        for text in instructions:
            if len(make_prompt(text).encode("utf-8")) + extra > budget:
                check_prompt(self, text)

    def _stack_observations(
        self, batch: list[Observation], stats: list[NormStats] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, S, S, 3) uint8 images and (B, P) proprio normalized with ``stats`` (one per observation;
        None: ``norm_stats``)."""
        pipeline = self.image_pipeline
        p_dim = self.spec.proprio_dim if self.uses_proprio else None
        imgs, props = [], []
        for o in batch:
            o.validate(self.spec.num_cameras, p_dim)
            imgs.append(pipeline.resize_cameras(o.images))  # (N, S, S, 3): cameras may differ in size
            if self.uses_proprio:
                props.append(np.asarray(o.proprio, dtype=np.float64))
        images = torch.from_numpy(np.stack(imgs))  # (B, N, S, S, 3)
        if not self.uses_proprio:
            return images, None
        stats = stats or [self.norm_stats] * len(batch)
        kind = self.spec.normalization
        p = _by_rows(np.stack(props), stats, lambda x, s: normalize(x, s.proprio, kind))
        return images, torch.from_numpy(np.asarray(p, dtype=np.float32))

    def select_action(self, obs: Observation) -> np.ndarray:
        """(D,) next action; a new chunk is predicted whenever the queue of K actions runs out."""
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(obs))
        return self._queue.popleft()

    def reset(self) -> None:
        self._queue.clear()

    # --- training ---------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch in robot units (normalization and preprocessing happen here).

        ``batch.images`` come from :class:`oft.data.loader.ChunkLoader`, already augmented by
        :attr:`image_pipeline` (``train=True``); here they are only resized if needed — never cropped again.
        """
        self._check_batch(batch)
        keys = getattr(batch, "norm_keys", None)
        target = self._normalize_rows(batch.actions.float(), "action", keys)
        proprio = None
        if self.uses_proprio:
            proprio = self._normalize_rows(batch.proprio.float(), "proprio", keys)
        return self.forward_normalized(batch.images, proprio, batch.instructions, target, batch.action_is_pad)

    def _normalize_rows(self, x: torch.Tensor, part: str, keys: list[str] | None) -> torch.Tensor:
        """(B, ...) raw ``part`` ("action" | "proprio") normalized row by row with the statistics of
        ``keys[b]`` (a dataset's name, or a task's instruction with per-task statistics; ``norm_stats`` for
        every row when ``keys`` is None, or when the policy predates per-dataset statistics: a merged run
        continuing). One masked select per entry present, no sync. KeyError for a key it has no entry for."""
        mask = self.spec.mask if part == "action" else None
        present = list(dict.fromkeys(keys)) if keys is not None and self.dataset_stats else [self.unnorm_key]
        if present == [self.unnorm_key]:
            return normalize(x, getattr(self.norm_stats, part), self.spec.normalization, mask)
        missing = [k for k in present if k not in self.dataset_stats]
        if missing:
            raise KeyError(
                f"batch samples are tagged {missing} (datasets or tasks), the policy has statistics for "
                f"{sorted(self.dataset_stats)}"
            )
        out = None
        for key in present:
            n = normalize(x, getattr(self.dataset_stats[key], part), self.spec.normalization, mask)
            rows = torch.tensor([k == key for k in keys]).view(-1, *([1] * (x.ndim - 1))).to(x.device)
            out = n if out is None else torch.where(rows, n, out)
        return out

    def forward_normalized(
        self,
        images: torch.Tensor,
        proprio_norm: torch.Tensor | None,
        instructions: list[str],
        target_norm: torch.Tensor,
        is_pad: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss from already-normalized proprio/actions (B, P) / (B, K, D); training pixels."""
        inputs = self.prepare(images, proprio_norm, instructions, train=True)
        target = target_norm.to(self.device, self.dtype)
        pad = None if is_pad is None else is_pad.to(self.device)
        return self.head.compute_loss(self.vla, inputs, target, pad)

    def _check_batch(self, batch: Batch) -> None:
        """Shapes always; finiteness of host tensors only — on an accelerator that check would be a host sync
        per micro-step, and both loaders already refuse non-finite episodes when they read them."""
        K, D = self.spec.chunk_len, self.spec.action_dim
        if tuple(batch.actions.shape[1:]) != (K, D):
            raise ValueError(f"batch.actions has shape {tuple(batch.actions.shape)}, expected (B, {K}, {D})")
        if batch.actions.device.type == "cpu":
            check_finite("batch.actions", batch.actions)
        if self.uses_proprio:
            P = self.spec.proprio_dim
            if batch.proprio is None or tuple(batch.proprio.shape[1:]) != (P,):
                got = None if batch.proprio is None else tuple(batch.proprio.shape)
                raise ValueError(f"batch.proprio has shape {got}, expected (B, {P})")
            if batch.proprio.device.type == "cpu":
                check_finite("batch.proprio", batch.proprio)
        if len(batch.instructions) != len(batch):
            raise ValueError(
                f"batch has {len(batch.instructions)} instructions for {len(batch)} action chunks"
            )

    # --- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a self-describing checkpoint dir: config, weights, norm stats, tokenizer, robot spec."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.head_kwargs = self.head.config()
        meta = self.config.to_dict()
        meta["tokenizer"] = self.vla.tokenizer.meta()
        meta["norm_stats"] = self.norm_stats.to_dict()
        if self.dataset_stats:  # OpenVLA's layout: {unnorm_key: {"action": ..., "proprio": ...}}
            meta["dataset_stats"] = {k: s.to_dict() for k, s in self.dataset_stats.items()}
            meta["unnorm_key"] = self.unnorm_key
            if self.instruction_keys:
                meta["instruction_keys"] = dict(self.instruction_keys)
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        self.vla.tokenizer.save(path)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "oft-policy"})
        from oft.checksums import write_checksums

        write_checksums(path, [CONFIG_FILE, "tokenizer.json", WEIGHTS_FILE])  # load_policy verifies them
        log.info("saved policy to %s", path)
        return path


def is_per_task(instruction_keys, num_stats: int) -> bool:
    """Whether statistics recorded as ``instruction_keys`` ({instruction: key}, as saved in a checkpoint) and
    ``num_stats`` entries are per-task ones: several entries, each keyed by the instruction it serves."""
    keys = instruction_keys
    return num_stats > 1 and isinstance(keys, dict) and bool(keys) and all(t == k for t, k in keys.items())


def _by_rows(x: np.ndarray, stats: list[NormStats], fn) -> np.ndarray:
    """``fn(x, stats)`` for the (B, ...) rows of ``x``, each with its own entry of ``stats`` (B,): one call
    when all rows share one set (the usual case), else one per distinct set."""
    if all(s is stats[0] for s in stats):
        return np.asarray(fn(x, stats[0]))
    out = None
    for s in {id(s): s for s in stats}.values():
        rows = np.asarray([t is s for t in stats])
        part = np.asarray(fn(x[rows], s))
        out = np.empty(x.shape, part.dtype) if out is None else out
        out[rows] = part
    return out


def _check_stats(spec: RobotSpec, stats: NormStats) -> None:
    if stats.action.dim != spec.action_dim:
        raise ValueError(f"action norm stats have {stats.action.dim} dims, spec.action_dim={spec.action_dim}")
    if spec.proprio_dim > 0 and stats.proprio is not None and stats.proprio.dim != spec.proprio_dim:
        raise ValueError(
            f"proprio norm stats have {stats.proprio.dim} dims, spec.proprio_dim={spec.proprio_dim}"
        )


def replace_spec(config: PolicyConfig, **changes) -> PolicyConfig:
    return dataclasses.replace(config, spec=config.spec.replace(**changes))
