"""``oft study``: the paper's design-decision study (decoding, chunking, action heads, extra inputs, FiLM),
each variant trained on the same demonstrations with the same budget and evaluated on unseen layouts.

    from oft.study import StudyConfig, run_study
    results = run_study(StudyConfig(suite="mt10", out="runs/study_mt10", variants=("pdac_l1", "ar_discrete"),
                                    budget_minutes=30))
"""

from __future__ import annotations

from oft.study.run import StudyConfig, run_study
from oft.study.suites import SUITES, Suite, get_suite
from oft.study.variants import VARIANTS, StudyVariant, resolve_variants

__all__ = [
    "SUITES",
    "VARIANTS",
    "StudyConfig",
    "StudyVariant",
    "Suite",
    "get_suite",
    "resolve_variants",
    "run_study",
]
