"""Error bars for success rates, and whether two evaluations differ beyond chance.

Both are exact or near-exact for the small counts robot evaluations have (10-50 episodes per task), where the
textbook normal interval ``p ± 1.96·sqrt(p(1-p)/n)`` fails: at 10/10 it claims [1, 1].

* :func:`wilson_interval` — the Wilson score interval (E. B. Wilson, "Probable inference, the law of
  succession, and statistical inference", JASA 22:209-212, 1927; method 3 of R. G. Newcombe, "Two-sided
  confidence intervals for the single proportion", Statistics in Medicine 17:857-872, 1998). With
  ``p = k/n`` and ``z`` the normal quantile (1.95996 for 95%)::

      center = (p + z²/2n) / (1 + z²/n)
      half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²)

  It never leaves [0, 1] and is not degenerate at 0/n or n/n (0/10 -> [0, 0.278]). :func:`error_bars` turns
  rates and their intervals into the lengths a chart draws.

* :func:`fisher_exact` — Fisher's exact test of a 2x2 table (R. A. Fisher, *The Design of Experiments*,
  1935, the "lady tasting tea"), two-sided as R's ``fisher.test`` computes it: with the margins fixed, the
  count ``x`` in the top-left cell is hypergeometric, ``P(x) = C(r1, x)·C(r2, c1 - x) / C(n, c1)``, and the
  p-value sums ``P(x)`` over every table no more likely than the observed one. Computed with integer
  binomial coefficients (no scipy dependency); ties are compared exactly, where R and scipy use a relative
  tolerance of 1e-7, so the results agree.

:func:`compare_results` applies the test per task to two ``oft eval`` results (``results.json``), as LeRobot's
eval-compare does. The per-task p-values are not corrected for testing several tasks: with ten tasks, one
p < 0.05 by chance is likely (divide the threshold by the number of tasks for a Bonferroni bound).
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

Z95 = 1.959963984540054  # NormalDist().inv_cdf(0.975)


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return Z95 if confidence == 0.95 else NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a success rate ``successes / n`` (formula in the module docstring).

    n = 0 (no episodes) says nothing: (0.0, 1.0).
    """
    _check_counts(successes, n)
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # exact bounds at the edges (the formula gives them up to rounding)
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def error_bars(
    rates: list[float], intervals: list[tuple[float, float]], scale: float = 100.0
) -> list[list[float]]:
    """Error-bar lengths below and above each rate, as matplotlib's ``xerr`` / ``yerr`` take them.

    rates: success rates in [0, 1]; intervals: one ``(lo, hi)`` per rate in the same unit (e.g.
    :func:`wilson_interval`). Returns ``[[below...], [above...]]`` multiplied by ``scale`` (100: percentage
    points, for a chart in %). A length is never negative (matplotlib raises on one): a rate a hair outside
    its interval through rounding of stored values draws no bar on that side.

    Raises ValueError when the two lists differ in length.
    """
    if len(rates) != len(intervals):
        raise ValueError(f"need one interval per rate, got {len(rates)} rates and {len(intervals)} intervals")
    below = [max(0.0, scale * (r - lo)) for r, (lo, _) in zip(rates, intervals, strict=True)]
    above = [max(0.0, scale * (hi - r)) for r, (_, hi) in zip(rates, intervals, strict=True)]
    return [below, above]


def fisher_exact(table: tuple[tuple[int, int], tuple[int, int]] | list[list[int]]) -> float:
    """Two-sided p-value of Fisher's exact test of the 2x2 table ``[[a, b], [c, d]]``.

    Rows are the two groups, columns the outcomes: for two evaluations, ``[[successes_A, failures_A],
    [successes_B, failures_B]]``. Same value as R's ``fisher.test(m)$p.value`` and
    ``scipy.stats.fisher_exact(m).pvalue``.
    """
    (a, b), (c, d) = table
    if min(a, b, c, d) < 0:
        raise ValueError(f"a 2x2 table needs counts >= 0, got {[[a, b], [c, d]]}")
    row1, row2, col1 = a + b, c + d, a + c
    n = row1 + row2
    if n == 0:
        return 1.0
    # P(x) ∝ C(row1, x)·C(row2, col1 - x): the numerators are integers, so "no more likely" is exact
    lo, hi = max(0, col1 - row2), min(row1, col1)
    weights = [math.comb(row1, x) * math.comb(row2, col1 - x) for x in range(lo, hi + 1)]
    observed = weights[a - lo]
    tail = sum(w for w in weights if w <= observed)
    return min(1.0, float(Fraction(tail, math.comb(n, col1))))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:  # also refuses nan
        raise ValueError(f"alpha (significance level) must be in (0, 1), got {alpha}")


def compare_rates(successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05) -> dict:
    """Fisher's exact test of two success counts: ``{"p_value", "differ", "rate_a", "rate_b"}``.

    ``differ`` is True when p < alpha: the two rates differ beyond what chance explains at that level.
    ValueError unless 0 < alpha < 1.
    """
    _check_alpha(alpha)
    _check_counts(successes_a, n_a)
    _check_counts(successes_b, n_b)
    p = fisher_exact([[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]])
    return {
        "p_value": p,
        "differ": p < alpha,
        "rate_a": successes_a / n_a if n_a else None,
        "rate_b": successes_b / n_b if n_b else None,
    }


def pooled_rate(rows: dict[str, dict]) -> dict:
    """Success pooled over rows ``{name: {"successes", "episodes", ...}}``: rate, 95% Wilson interval,
    counts."""
    wins = sum(d["successes"] for d in rows.values())
    n = sum(d["episodes"] for d in rows.values())
    return {
        "success_rate": wins / n if n else 0.0,
        "ci95": list(wilson_interval(wins, n)),
        "successes": wins,
        "episodes": n,
    }


def _counts(entry: dict, where: str, key: str = "successes") -> tuple[int, int]:
    try:
        return int(entry[key]), int(entry["episodes"])
    except KeyError as e:
        raise ValueError(f"{where} has no {e.args[0]!r} count; expected an oft eval results.json") from None


def _compare_rows(a: dict, b: dict, shared: list[str], alpha: float, key: str) -> dict:
    tasks, totals = {}, [0, 0, 0, 0]
    for task in shared:
        ka, na = _counts(a["tasks"][task], f"result A task {task!r}", key)
        kb, nb = _counts(b["tasks"][task], f"result B task {task!r}", key)
        tasks[task] = compare_rates(ka, na, kb, nb, alpha) | {"a": [ka, na], "b": [kb, nb]}
        totals = [totals[0] + ka, totals[1] + na, totals[2] + kb, totals[3] + nb]
    ka, na, kb, nb = totals
    return {"tasks": tasks, "overall": compare_rates(ka, na, kb, nb, alpha) | {"a": [ka, na], "b": [kb, nb]}}


def compare_results(a: dict, b: dict, alpha: float = 0.05) -> dict:
    """Per-task and overall comparison of two ``oft eval`` results (the dicts of their ``results.json``).

    Returns ``{"tasks": {task: {..compare_rates.., "a": [k, n], "b": [k, n]}}, "overall": {...},
    "only_a": [...], "only_b": [...]}``; tasks evaluated in only one result are listed, not compared.
    The overall row pools the tasks both results share. When every shared row of both counts episodes whose
    instruction was followed (``followed``, see :class:`oft.sim.base.StepResult`), ``"followed"`` holds the
    same comparison of those counts (``{"tasks", "overall"}``). ValueError unless 0 < alpha < 1.
    """
    _check_alpha(alpha)
    if "tasks" not in a or "tasks" not in b:
        raise ValueError("compare_results expects two oft eval results (dicts with a 'tasks' entry)")
    shared = [t for t in a["tasks"] if t in b["tasks"]]
    out = {"alpha": alpha, **_compare_rows(a, b, shared, alpha, "successes")}
    out |= {
        "only_a": [t for t in a["tasks"] if t not in b["tasks"]],
        "only_b": [t for t in b["tasks"] if t not in a["tasks"]],
    }
    if shared and all("followed" in r["tasks"][t] for r in (a, b) for t in shared):
        out["followed"] = _compare_rows(a, b, shared, alpha, "followed")
    return out


__all__ = ["Z95", "compare_rates", "compare_results", "fisher_exact", "pooled_rate", "wilson_interval"]
