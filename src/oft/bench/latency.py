"""The paper's Table II on any model and machine: latency and throughput of each decoding scheme.

Every row runs on the *same* trunk (vision backbone, projector, LLM weights shared, never copied); a row only
changes what the paper's row changes:

* ``ar_discrete``: the original OpenVLA -- K = 1, discrete tokens, causal attention, one token per step with
  a KV cache and the LM head at one position per step (an honest baseline, as the paper's);
* ``pd_discrete``: parallel decoding (bidirectional, empty slots), K = 1;
* ``pdac_discrete``: parallel decoding + chunking (K from the spec);
* ``pdac_l1``: + continuous actions from the MLP head (no LM head at all);
* ``pdac_diffusion_T{50,10,5,2,1}``: DDIM in T full forwards;
* ``pdac_l1_extra_inputs``: ``pdac_l1`` with a wrist camera and the proprio token added;
* ``bare_forward``: the trunk alone over the same tokens as ``pdac_l1`` -- vision backbone + projector +
  LLM forward on prepared tensors, nothing else -- the floor any row could reach;
* ``bare_llm_forward`` (extra, informational): the LLM forward alone over those tokens.

As in the paper, the rows without extra inputs see one camera and no proprio. Rows are timed end to end
through ``Policy.predict_action_chunk`` (raw uint8 image + instruction in, un-normalized actions out), so
preprocessing, tokenization, sequence assembly and the head all count against them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from oft.bench.timing import BenchRow, summarize, time_calls
from oft.data.normalize import NormStats, Stats
from oft.model.heads import get_head_class, make_head
from oft.model.policy import Policy
from oft.model.projectors import ProprioProjector
from oft.model.vla import VLA
from oft.observation import Observation
from oft.spec import RobotSpec, unknown_name_message

log = logging.getLogger(__name__)

DIFFUSION_STEPS = (50, 10, 5, 2, 1)


@dataclass(frozen=True)
class Variant:
    """One Table II row: the head, its kwargs, chunked or not, extra inputs or not."""

    name: str
    head: str
    chunked: bool = True
    extra_inputs: bool = False
    head_kwargs: tuple[tuple[str, object], ...] = ()
    num_inference_steps: int | None = None


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("ar_discrete", "discrete", chunked=False, head_kwargs=(("decode", "autoregressive"),)),
        Variant("pd_discrete", "discrete", chunked=False, head_kwargs=(("decode", "parallel"),)),
        Variant("pdac_discrete", "discrete", head_kwargs=(("decode", "parallel"),)),
        Variant("pdac_l1", "l1"),
        *(Variant(f"pdac_diffusion_T{t}", "diffusion", num_inference_steps=t) for t in DIFFUSION_STEPS),
        Variant("pdac_l1_extra_inputs", "l1", extra_inputs=True),
    )
}
BARE_ROWS = ("bare_forward", "bare_llm_forward")
ALL_ROWS = (*VARIANTS, *BARE_ROWS)


@dataclass(frozen=True)
class BenchOptions:
    warmup: int = 3
    iters: int = 20
    compile: bool = False
    instruction: str = "put both the alphabet soup and the tomato sauce in the basket"
    seed: int = 0


def check_rows(names: list[str]) -> list[str]:
    for n in names:
        if n not in ALL_ROWS:
            raise KeyError(unknown_name_message("bench variant", n, ALL_ROWS))
    return names


# --- building the variants on one shared trunk ---------------------------------------------------------
def variant_spec(spec: RobotSpec, variant: Variant) -> RobotSpec:
    """Chunk length 1 for the unchunked rows; one camera, or a primary + wrist camera with extra inputs."""
    primary = spec.cameras[0]
    cameras = (primary, *(spec.cameras[1:2] or ("wrist",))) if variant.extra_inputs else (primary,)
    proprio_dim = (spec.proprio_dim or 8) if variant.extra_inputs else spec.proprio_dim
    return spec.replace(
        chunk_len=spec.chunk_len if variant.chunked else 1, cameras=cameras, proprio_dim=proprio_dim
    )


def share_trunk(base: VLA, proprio_dim: int, lm_head: bool = False, **changes) -> VLA:
    """A VLA whose config differs (chunk length, proprio) but whose modules *are* ``base``'s modules.

    Built on the meta device (no allocation), then the real submodules are attached; a proprio projector
    is created only if the base model has none and the variant needs one, an LM head (``lm_head``: the
    discrete rows) only if the base has none (an L1 or diffusion policy carries none).
    """
    config = dataclasses.replace(base.config, proprio_dim=proprio_dim, lm_head=lm_head, **changes)
    with torch.device("meta"):
        vla = VLA(config, base.tokenizer)
    vla.vision_backbone, vla.projector = base.vision_backbone, base.projector
    vla.language_model.model = base.language_model.model
    ref = base.language_model.model.embed_tokens.weight
    if lm_head and base.language_model.lm_head is not None:
        vla.language_model.lm_head = base.language_model.lm_head
    elif lm_head:
        with torch.device(ref.device):
            vla.language_model.lm_head = torch.nn.Linear(vla.llm_dim, ref.shape[0], bias=False).to(ref.dtype)
    if proprio_dim > 0:
        existing = getattr(base, "proprio_projector", None)
        if existing is not None and existing.fc1.in_features == proprio_dim:
            vla.proprio_projector = existing
        else:
            with torch.device(ref.device):
                vla.proprio_projector = ProprioProjector(vla.llm_dim, proprio_dim).to(ref.dtype)
    return vla.eval()


def neutral_stats(dim: int) -> Stats:
    """Statistics that map [-1, 1] to itself (for rows whose model was trained without them)."""
    zeros, ones = np.zeros(dim), np.ones(dim)
    return Stats(mean=zeros, std=ones, min=-ones, max=ones, q01=-ones, q99=ones)


def build_variant(base: Policy, variant: Variant) -> Policy:
    """A policy for one row: the shared trunk plus a head of the row's kind (reused if it already fits)."""
    spec = variant_spec(base.spec, variant)
    proprio_dim = spec.proprio_dim if variant.extra_inputs else 0
    head_cls = get_head_class(variant.head)
    # a trunk trained with one slot per chunk step keeps that layout for the rows whose head reads it
    layout = base.vla.config.action_slots
    if layout not in head_cls.action_slot_layouts:
        layout = "per_dimension"
    vla = share_trunk(
        base.vla, proprio_dim, lm_head=head_cls.uses_lm_head, chunk_len=spec.chunk_len, action_slots=layout
    )
    kwargs = dict(variant.head_kwargs)
    same_head = base.config.head == variant.head and base.spec.chunk_len == spec.chunk_len and not kwargs
    if "per_step" in head_cls.action_slot_layouts:
        kwargs["slots_per_step"] = vla.config.slots_per_step
    if same_head:
        head = base.head
    else:
        ref = base.vla.language_model.model.embed_tokens.weight
        with torch.device(ref.device):
            head = make_head(variant.head, vla.llm_dim, spec.action_dim, spec.chunk_len, **kwargs).to(
                ref.dtype
            )
    if variant.num_inference_steps is not None:
        head.num_inference_steps = variant.num_inference_steps
    stats = base.norm_stats
    if proprio_dim and (stats.proprio is None or stats.proprio.dim != proprio_dim):
        stats = NormStats(stats.action, neutral_stats(proprio_dim))
    config = dataclasses.replace(base.config, vla=vla.config, spec=spec, head=variant.head)
    return Policy(config, vla, head.eval(), stats).eval()


def fake_observation(policy: Policy, instruction: str, seed: int) -> Observation:
    """Random camera images at the model's input size and a random in-range proprio vector. For a policy that
    acts by instruction (per-task statistics) an ``instruction`` it has no statistics for is replaced by its
    first training instruction of the same length or longer (cost depends on the prompt's length), else its
    longest."""
    rng = np.random.default_rng(seed)
    known = sorted(getattr(policy, "instruction_keys", {}), key=len)
    if getattr(policy, "act_by_instruction", False) and instruction not in known:
        instruction = next((t for t in known if len(t) >= len(instruction)), known[-1])
    size = policy.image_size
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in policy.spec.cameras]
    proprio = None
    if policy.uses_proprio:
        lo, hi = policy.norm_stats.proprio.bounds(policy.spec.normalization)
        proprio = rng.uniform(lo, hi)
    return Observation(images=images, proprio=proprio, instruction=instruction)


# --- the bare trunk ------------------------------------------------------------------------------------
def bare_forward_fns(policy: Policy, obs: Observation) -> dict[str, Callable[[], object]]:
    """Callables running the trunk over exactly the tokens ``policy`` (the pdac_l1 row) feeds its LLM.

    Everything that is not the network -- image preprocessing, tokenization, sequence assembly, the
    head, un-normalization -- is done once here, outside the timed region.
    """
    vla = policy.vla
    images = torch.from_numpy(np.stack(obs.images))[None]  # (1, N, S, S, 3)
    with torch.inference_mode():
        inputs = policy.prepare(images, None, [obs.instruction])
        seq = vla.build_sequence(inputs)
    pixels = _pixels(policy, images)
    n_patches = inputs.patch_embeds.shape[1]
    embeds, mask = seq.embeds.clone(), seq.attention_mask

    def trunk() -> torch.Tensor:
        patches = vla.projector(vla.vision_backbone(pixels))  # (1, N*P, H)
        full = torch.cat([embeds[:, :1], patches, embeds[:, 1 + n_patches :]], dim=1)  # same S tokens
        return vla.llm_forward(full, mask)[0]

    def llm_only() -> torch.Tensor:
        return vla.llm_forward(embeds, mask)[0]

    return {"bare_forward": trunk, "bare_llm_forward": llm_only}


def _pixels(policy: Policy, images: torch.Tensor) -> torch.Tensor:
    from oft.model.preprocess import normalize_pixels

    pixels = normalize_pixels(policy.image_pipeline(images, train=False), policy.vla.config.vits)
    return pixels.to(policy.device, policy.dtype)


# --- running ---------------------------------------------------------------------------------------------
def compile_trunk(policy: Policy) -> None:
    """``torch.compile`` the vision backbone and each Llama decoder layer in place (shared by every row).

    Layer by layer, because the policy's forward calls the layers itself (``VLA.llm_forward_rows``); the
    sequence length varies with the prompt, hence ``dynamic=True``.
    """
    policy.vla.vision_backbone.compile()
    for layer in policy.vla.language_model.model.layers:
        layer.compile(dynamic=True)


def run_bench(base: Policy, rows: list[str], options: BenchOptions) -> list[BenchRow]:
    """Measure each named row on ``base``'s trunk; returns rows in the order asked.

    Rows are timed *interleaved* (iteration i runs every row once) so that a change in machine load --
    other processes, thermal or frequency changes -- hits all rows alike and the ratios stay meaningful.
    """
    check_rows(rows)
    base.eval()
    if options.compile:
        compile_trunk(base)
    fns = row_callables(base, rows, options)
    with torch.inference_mode():
        for name in rows:
            for _ in range(options.warmup):  # includes compilation with --compile
                fns[name][0]()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(options.iters):
        for name in rows:
            times[name] += time_calls(fns[name][0], 0, 1, base.device)
    results = [summarize(name, times[name], fns[name][1]) for name in rows]
    for row in results:
        log.info("%s: median %.2f ms", row.name, row.latency_median_s * 1e3)
    return results


def row_callables(
    base: Policy, rows: list[str], options: BenchOptions
) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (callable producing one chunk, actions it produces)."""
    pdac_l1 = build_variant(base, VARIANTS["pdac_l1"])
    obs_l1 = fake_observation(pdac_l1, options.instruction, options.seed)
    bare = bare_forward_fns(pdac_l1, obs_l1) if any(r in BARE_ROWS for r in rows) else {}
    fns = {}
    for name in rows:
        if name in BARE_ROWS:
            fns[name] = (bare[name], 0)
            continue
        policy = pdac_l1 if name == "pdac_l1" else build_variant(base, VARIANTS[name])
        obs = fake_observation(policy, options.instruction, options.seed)
        fns[name] = (_predict_fn(policy, obs), policy.spec.chunk_len)
    return fns


def _predict_fn(policy: Policy, obs: Observation) -> Callable[[], object]:
    def fn() -> np.ndarray:
        policy.reset()
        return policy.predict_action_chunk(obs)

    return fn


def ratios(rows: list[BenchRow]) -> dict[str, float]:
    """The two headline numbers: pdac_l1 vs ar_discrete throughput, pdac_l1 vs bare_forward latency."""
    by = {r.name: r for r in rows}
    out = {}
    if "pdac_l1" in by and "ar_discrete" in by:
        out["throughput pdac_l1 / ar_discrete"] = (
            by["pdac_l1"].throughput_hz / by["ar_discrete"].throughput_hz
        )
    if "pdac_l1" in by and "bare_forward" in by:
        out["latency pdac_l1 / bare_forward"] = (
            by["pdac_l1"].latency_median_s / by["bare_forward"].latency_median_s
        )
    return out
