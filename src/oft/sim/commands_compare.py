"""``oft eval-compare A.json B.json``: do two evaluations differ beyond chance, task by task?

oft eval-compare runs/eval_a/results.json runs/eval_b/results.json
oft eval-compare runs/study/variants/pdac_l1/eval runs/study/variants/ar_discrete/eval   # directories

Each task's two success counts are compared with Fisher's exact test (two-sided, oft.sim.eval_stats); a task
"differs" when p < --alpha. The p-values are per task, not corrected for comparing several tasks. Results on
different layouts (one of them ``oft eval --demonstration-layouts``) are compared, with a note saying so.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from oft.cli import Bounded

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path, help="results.json of the first evaluation (oft eval --out DIR)")
    p.add_argument("b", type=Path, help="results.json of the second evaluation")
    p.add_argument(
        "--alpha", type=Bounded(float, gt=0, lt=1), default=0.05, help="significance level (default 0.05)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")


def _load(path: Path) -> dict:
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected an oft eval results.json or its directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e}); expected an oft eval results.json") from None


def run(args: argparse.Namespace) -> int:
    from oft.sim.eval_stats import compare_results

    a, b = _load(args.a), _load(args.b)
    cmp = compare_results(a, b, alpha=args.alpha)
    print(format_comparison(cmp, str(args.a), str(args.b)))
    layouts = [r.get("layouts", "evaluation") for r in (a, b)]  # results before the key: unseen layouts
    if layouts[0] != layouts[1]:
        print(
            f"note: the layouts differ (A: {layouts[0]}; B: {layouts[1]}; oft eval --demonstration-layouts): "
            "the difference includes what generalizing to unseen layouts costs, not only the policies'"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(cmp | {"a": str(args.a), "b": str(args.b)}, indent=2))
        log.info("wrote %s", args.out)
    return 0


def format_comparison(cmp: dict, name_a: str = "A", name_b: str = "B") -> str:
    """A text table: per task A and B successes/episodes and rate, Fisher p-value, verdict; the same for
    the episodes whose instruction was followed when both results count them."""
    lines = [f"A = {name_a}", f"B = {name_b}", ""]
    lines += _table(cmp, cmp["alpha"])
    if "followed" in cmp:
        lines += ["", "instruction followed (what the instruction names was acted on):"]
        lines += _table(cmp["followed"], cmp["alpha"])
    for side, tasks in (("A", cmp["only_a"]), ("B", cmp["only_b"])):
        if tasks:
            lines.append(f"only in {side} (not compared): {', '.join(tasks)}")
    return "\n".join(lines)


def _table(cmp: dict, alpha: float) -> list[str]:
    rows = [*cmp["tasks"].items(), ("overall", cmp["overall"])]
    width = max(len(t) for t in [*cmp["tasks"], "task", "overall"])
    header = f"{'task':<{width}}  {'A':>14}  {'B':>14}  {'p (Fisher)':>10}"
    lines = [f"{header}  verdict (alpha {alpha})"]
    for task, r in rows:
        cells = [_cell(*r["a"]), _cell(*r["b"])]
        verdict = "same within chance"
        if r["differ"]:
            verdict = "A better" if r["rate_a"] > r["rate_b"] else "B better"
        lines.append(f"{task:<{width}}  {cells[0]:>14}  {cells[1]:>14}  {r['p_value']:>10.4g}  {verdict}")
    return lines


def _cell(k: int, n: int) -> str:
    return f"{k}/{n} {100 * k / n:3.0f}%" if n else "0/0    -"
