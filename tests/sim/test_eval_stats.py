"""Wilson intervals and Fisher's exact test against published values (Newcombe 1998; R's fisher.test)."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from oft.sim.eval_stats import compare_rates, compare_results, error_bars, fisher_exact, wilson_interval

# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction)
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), NEWCOMBE)
def test_wilson_matches_newcombe_table(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=6e-5)


def _wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The score interval as the roots of (p - p̂)² = z² p (1 - p) / n (Wilson 1927, eq. solved for p)."""
    p_hat = k / n
    a = 1 + z * z / n
    b = -(2 * p_hat + z * z / n)
    c = p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (10, 10), (47, 50), (1, 1), (19, 20)])
def test_wilson_equals_roots_of_the_score_equation(k, n):
    lo, hi = _wilson_closed_form(k, n)
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-12)


def test_wilson_known_small_counts():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(47, 50) == pytest.approx((0.8378, 0.9794), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 90% is narrower than 95%, both contain the estimate
    lo90, hi90 = wilson_interval(7, 20, confidence=0.90)
    lo95, hi95 = wilson_interval(7, 20)
    assert lo95 < lo90 < 0.35 < hi90 < hi95


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


# two-sided p-values printed by R's fisher.test
R_FISHER = [
    ([[3, 1], [1, 3]], 0.4857),  # TeaTasting (?fisher.test)
    ([[2, 10], [15, 3]], 0.0005367),  # Convictions (?fisher.test, Fisher 1962)
    ([[6, 2], [1, 4]], 0.1026),  # scipy.stats.fisher_exact docs
    ([[8, 2], [1, 5]], 0.03497),
    ([[10, 0], [0, 10]], 1.0825e-05),
    ([[5, 5], [5, 5]], 1.0),
]


@pytest.mark.parametrize(("table", "p"), R_FISHER)
def test_fisher_matches_r(table, p):
    assert fisher_exact(table) == pytest.approx(p, rel=5e-4)


def test_fisher_is_symmetric_and_bounded():
    for a, b, c, d in itertools.product(range(4), repeat=4):
        p = fisher_exact([[a, b], [c, d]])
        assert 0.0 < p <= 1.0
        assert p == pytest.approx(fisher_exact([[c, d], [a, b]]))  # swap the groups
        assert p == pytest.approx(fisher_exact([[b, a], [d, c]]))  # swap the outcomes
    assert fisher_exact([[0, 0], [0, 0]]) == 1.0


def test_fisher_agrees_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed (only a cross-check)")
    for table in ([[20, 0], [12, 8]], [[47, 3], [40, 10]], [[1, 24], [6, 19]], [[0, 50], [3, 47]]):
        assert fisher_exact(table) == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)


def test_compare_rates_flags_only_real_differences():
    same = compare_rates(9, 10, 8, 10)
    assert not same["differ"] and same["p_value"] == pytest.approx(1.0)
    far = compare_rates(20, 20, 5, 20)
    assert far["differ"] and far["p_value"] < 1e-5
    assert far["rate_a"] == 1.0 and far["rate_b"] == 0.25
    # a significance level outside (0, 1) made every row "differ" (alpha=5) or none; only the CLI refused it
    for alpha in (0.0, 1.0, 5.0, float("nan")):
        with pytest.raises(ValueError, match=r"alpha .*must be in \(0, 1\)"):
            compare_rates(9, 10, 8, 10, alpha=alpha)
        with pytest.raises(ValueError, match="alpha"):
            compare_results(_eval_result({"t": (9, 10)}), _eval_result({"t": (8, 10)}), alpha=alpha)


def _eval_result(counts: dict[str, tuple[int, int]]) -> dict:
    return {"tasks": {t: {"successes": k, "episodes": n} for t, (k, n) in counts.items()}}


def test_compare_results_per_task_overall_and_unshared_tasks():
    a = _eval_result({"reach": (20, 20), "push": (10, 20), "door": (5, 5)})
    b = _eval_result({"reach": (4, 20), "push": (11, 20), "drawer": (1, 5)})
    cmp = compare_results(a, b)
    assert cmp["tasks"]["reach"]["differ"] and not cmp["tasks"]["push"]["differ"]
    assert cmp["tasks"]["push"]["a"] == [10, 20] and cmp["tasks"]["push"]["b"] == [11, 20]
    assert cmp["overall"]["a"] == [30, 40] and cmp["overall"]["b"] == [15, 40]  # shared tasks only
    assert cmp["overall"]["p_value"] == pytest.approx(fisher_exact([[30, 10], [15, 25]]))
    assert cmp["only_a"] == ["door"] and cmp["only_b"] == ["drawer"]


def test_compare_results_also_compares_instruction_following_when_both_count_it(capsys):
    from oft.sim.commands_compare import format_comparison

    a = _eval_result({"two-cube: red": (3, 50), "two-cube: blue": (2, 50)})
    b = _eval_result({"two-cube: red": (2, 50), "two-cube: blue": (2, 50)})
    assert "followed" not in compare_results(a, b)  # success only: nothing about following to compare
    for res, followed in ((a, (40, 45)), (b, (48, 2))):
        for row, k in zip(res["tasks"].values(), followed, strict=True):
            row["followed"] = k
    cmp = compare_results(a, b)
    blue = cmp["followed"]["tasks"]["two-cube: blue"]
    assert blue["a"] == [45, 50] and blue["b"] == [2, 50] and blue["differ"]
    assert cmp["followed"]["overall"]["a"] == [85, 100] and cmp["followed"]["overall"]["b"] == [50, 100]
    assert not cmp["tasks"]["two-cube: blue"]["differ"]  # success alike, following not
    text = format_comparison(cmp)
    assert "instruction followed" in text
    assert text.splitlines()[-1].startswith("overall") and "A better" in text.splitlines()[-1]
    del b["tasks"]["two-cube: red"]["followed"]  # one side without the count: not compared
    assert "followed" not in compare_results(a, b)


def test_compare_results_names_a_file_that_is_not_an_eval_result():
    with pytest.raises(ValueError, match="successes"):
        compare_results(_eval_result({"reach": (1, 2)}), {"tasks": {"reach": {"success_rate": 0.5}}})
    with pytest.raises(ValueError, match="tasks"):
        compare_results({"variants": []}, _eval_result({"reach": (1, 2)}))


# --- oft eval reports the intervals; oft eval-compare reads two results ----------------------------------
class _ZeroPolicy:
    """Chunks of zeros from the gripper camera: never solves a task (a policy, not a factory)."""

    def __init__(self):
        from oft.spec import get_spec

        self.spec = get_spec("metaworld").replace(cameras=("gripperPOV",))

    def reset(self):
        pass

    def predict_action_chunk(self, obs):
        import numpy as np

        return np.zeros((8, 4), np.float32)


def test_evaluate_reports_wilson_intervals_per_task_and_overall(tmp_path):
    pytest.importorskip("metaworld", reason="MetaWorld is not installed (pip install 'oft[sim]')")
    from oft.sim.evaluate import evaluate

    res = evaluate(_ZeroPolicy(), "metaworld", ["drawer-close-v3"], episodes=2, max_steps=8, out=tmp_path,
                   env_kwargs={"image_size": 32})  # fmt: skip
    task = res["tasks"]["drawer-close-v3"]
    assert task["successes"] == 0 and task["episodes"] == 2
    assert task["ci95"] == pytest.approx(list(wilson_interval(0, 2)))
    assert res["overall"]["ci95"] == pytest.approx([0.0, 0.6576], abs=1e-4)
    assert json.loads((tmp_path / "results.json").read_text())["overall"]["ci95"] == res["overall"]["ci95"]


def test_eval_table_prints_counts_and_intervals(capsys):
    from oft.sim.commands_eval import _print_table

    row = {"successes": 10, "episodes": 10, "success_rate": 1.0, "ci95": list(wilson_interval(10, 10))}
    results = {"tasks": {"reach-v3": row}, "overall": row, "wall_s": 1.0, "env_steps_per_s": 100.0}
    results |= {"episodes_per_s": 1.0, "workers": 1}  # what oft eval reports beside the table
    _print_table(results)
    out = capsys.readouterr().out
    assert "95% CI" in out and "10/10" in out and "[ 72.2, 100.0]" in out


def test_eval_compare_cli(tmp_path, capsys):
    from oft.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    for d, counts in (
        (a, {"reach-v3": (20, 20), "push-v3": (9, 20)}),
        (b, {"reach-v3": (3, 20), "push-v3": (10, 20)}),
    ):
        d.mkdir()
        (d / "results.json").write_text(json.dumps(_eval_result(counts)))
    assert main(["eval-compare", str(a / "results.json"), str(b), "--out", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    reach = next(line for line in out.splitlines() if line.startswith("reach-v3"))
    push = next(line for line in out.splitlines() if line.startswith("push-v3"))
    assert "A better" in reach and "same within chance" in push
    assert f"{fisher_exact([[20, 0], [3, 17]]):.4g}" in reach
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["tasks"]["push-v3"]["p_value"] == pytest.approx(1.0)
    assert main(["eval-compare", str(tmp_path / "missing.json"), str(b)]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err


def test_eval_compare_notes_results_on_different_layouts(tmp_path, capsys):
    from oft.cli import main

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_eval_result({"reach-v3": (18, 20)}) | {"layouts": "demonstrations of runs/d"}))
    b.write_text(json.dumps(_eval_result({"reach-v3": (4, 20)})))  # no key: an unseen-layout result
    assert main(["eval-compare", str(a), str(b)]) == 0
    assert "note: the layouts differ (A: demonstrations of runs/d; B: evaluation;" in capsys.readouterr().out
    assert main(["eval-compare", str(b), str(b)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_error_bars_are_the_distances_to_the_interval_in_percentage_points():
    # 3/10 -> Wilson [0.1078, 0.6032]: 19.22 points below, 30.32 above
    lo, hi = wilson_interval(3, 10)
    below, above = error_bars([0.3, 1.0], [(lo, hi), wilson_interval(10, 10)])
    assert below[0] == pytest.approx(100 * (0.3 - lo)) and above[0] == pytest.approx(100 * (hi - 0.3))
    assert below[1] == pytest.approx(100 * (1.0 - 0.7224672001), abs=1e-6) and above[1] == 0.0


def test_error_bars_never_negative_and_lengths_must_match():
    # a stored rate a rounding hair outside its stored interval draws no bar on that side
    assert error_bars([0.5], [(0.5000001, 0.7)]) == [[0.0], [pytest.approx(20.0)]]
    assert error_bars([0.25], [(0.1, 0.5)], scale=1.0) == [[pytest.approx(0.15)], [pytest.approx(0.25)]]
    with pytest.raises(ValueError, match="2 rates and 1 intervals"):
        error_bars([0.1, 0.2], [(0.0, 0.3)])
