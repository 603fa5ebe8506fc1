"""The study's variants: the ``oft bench`` rows (:data:`oft.bench.latency.VARIANTS`) as training recipes.

A bench row says what the paper's row changes — head, decoding, chunked or not, extra inputs — and the study
trains exactly that (Kim, Finn, Liang 2025, Tables I-II): ``ar_discrete`` (K = 1, discrete tokens decoded
one by one: OpenVLA), ``pd_discrete`` (parallel decoding, K = 1), ``pdac_discrete`` (+ action chunking),
``pdac_l1`` (+ continuous actions, L1 regression), ``pdac_diffusion`` (diffusion head instead of L1; DDIM
with the head's default steps, the bench's ``pdac_diffusion_T50``), ``pdac_l1_extra_inputs`` (+ wrist camera
and proprio). ``pdac_l1_film`` is ``pdac_l1`` with FiLM — one change, so that its comparison with ``pdac_l1``
on the language suite measures FiLM alone (the paper's OFT+ adds FiLM on top of the extra inputs).
``oft_plus`` is that OFT+ — every camera of the robot (ALOHA: the top view and both wrists), proprio, L1,
chunked, FiLM — and ``oft_plus_no_film`` the same without FiLM: the ALOHA suite's pair. ``oft_plus_per_step``
is OFT+ with one action slot per chunk step instead of one per action dimension (``action_slots="per_step"``:
K = 25 slots for ALOHA instead of K*D = 350), the sequence-length option measured beside the paper's layout.

The base variants see the primary camera and the instruction only, as in the paper.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from oft.bench.latency import VARIANTS as BENCH_VARIANTS
from oft.bench.latency import Variant
from oft.spec import RobotSpec, unknown_name_message

# TrainConfig fields a variant decides; a study override of one of them would erase the comparison
VARIANT_FIELDS = ("head", "decode", "cameras", "proprio", "film", "action_slots")


@dataclass(frozen=True)
class StudyVariant:
    """A bench row (head, decoding, chunking, extra inputs) plus what training adds to it (FiLM)."""

    name: str
    row: Variant
    film: bool = False
    all_cameras: bool = False  # extra inputs = every camera of the robot, not the first two
    action_slots: str = "per_dimension"  # oft.model.vla.ACTION_SLOT_LAYOUTS

    @property
    def decode(self) -> str:
        return dict(self.row.head_kwargs).get("decode", "parallel")

    def overrides(self, spec: RobotSpec) -> list[str]:
        """``field=value`` TrainConfig overrides for robot ``spec`` (its first camera is the primary one,
        the second the wrist camera)."""
        primary = spec.cameras[0]
        if self.row.extra_inputs and len(spec.cameras) < 2:
            raise ValueError(f"variant {self.name} needs a 2nd camera; robot {spec.name} has {spec.cameras}")
        cameras = spec.cameras[:2] if self.row.extra_inputs else (primary,)
        if self.all_cameras:
            cameras = spec.cameras
        out = [
            f"head={self.row.head}",
            f"decode={self.decode}",
            f"cameras={','.join(cameras)}",
            f"proprio={self.row.extra_inputs and spec.proprio_dim > 0}",
            f"film={self.film}",
            f"action_slots={self.action_slots}",
        ]
        return out if self.row.chunked else [*out, "chunk_len=1"]


def _from_bench(name: str, bench_name: str | None = None, **changes) -> StudyVariant:
    row = dataclasses.replace(BENCH_VARIANTS[bench_name or name], name=name)
    return StudyVariant(name, row, **changes)


VARIANTS: dict[str, StudyVariant] = {
    v.name: v
    for v in (
        _from_bench("ar_discrete"),
        _from_bench("pd_discrete"),
        _from_bench("pdac_discrete"),
        _from_bench("pdac_l1"),
        _from_bench("pdac_diffusion", "pdac_diffusion_T50"),
        _from_bench("pdac_l1_extra_inputs"),
        _from_bench("pdac_l1_film", "pdac_l1", film=True),
        _from_bench("oft_plus", "pdac_l1_extra_inputs", film=True, all_cameras=True),
        _from_bench("oft_plus_no_film", "pdac_l1_extra_inputs", all_cameras=True),
        _from_bench(
            "oft_plus_per_step", "pdac_l1_extra_inputs", film=True, all_cameras=True, action_slots="per_step"
        ),
    )
}
# what a study trains unless told (the suite's own list, or --variants): the paper's rows (Tables I-II)
PAPER_VARIANTS = tuple(n for n in VARIANTS if not n.startswith("oft_plus"))


def resolve_variants(names: str | list[str] | tuple[str, ...] | None) -> list[StudyVariant]:
    """``"a,b"`` or a list -> variants in the order given; None -> all, in the paper's order."""
    if names is None:
        return list(VARIANTS.values())
    if isinstance(names, str):
        from oft.cli import comma_list

        names = comma_list(names, "variants")
    items = [n.strip() for n in names if n.strip()]
    if not items:
        raise ValueError(f"no variants given; expected comma-separated names among {', '.join(VARIANTS)}")
    for n in items:
        if n not in VARIANTS:
            raise KeyError(unknown_name_message("study variant", n, VARIANTS))
    return [VARIANTS[n] for n in dict.fromkeys(items)]


__all__ = ["PAPER_VARIANTS", "VARIANTS", "VARIANT_FIELDS", "StudyVariant", "resolve_variants"]
