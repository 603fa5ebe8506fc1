"""The study's tables and chart, in the shape of the paper's Table I (success per task, average) and Table II
(throughput, latency), plus the budget each variant had (training minutes, steps)."""

from __future__ import annotations

import math
from pathlib import Path

from oft.sim.eval_stats import error_bars


def _short(name: str) -> str:
    """Display name: MetaWorld's ``-v3`` suffix dropped (``told faucet-close @ faucet-open``)."""
    return name.replace("-v3", "")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}"


def _with_ci(rate: float, ci: list[float]) -> str:
    return f"{100 * rate:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def markdown_tables(results: dict) -> str:
    """Table I (success % per task and average with its 95% CI) and Table II (speed and budget)."""
    rows = results["variants"]
    tasks = list(dict.fromkeys(t for r in rows for t in r["per_task"]))
    episodes = sorted({n for r in rows for n in r.get("per_task_episodes", {}).values()})
    withheld = any("withheld" in r for r in rows)
    lines = [f"# Study: {results['suite']}", ""]
    per = "/".join(str(n) for n in episodes) or "?"
    what = "direction (instruction given @ layouts of)" if withheld else "task"
    lines += [
        f"Success rate (%) on layouts no demonstration used, {per} episodes per {what}; the average with its "
        "95% Wilson interval.",
        "",
        "**Table I: success rate (%)**",
        "",
        "| Variant | "
        + " | ".join(_short(t) for t in tasks)
        + " | Average [95% CI] |"
        + (" Instruction withheld [95% CI] |" if withheld else ""),
        "|---|" + "---:|" * len(tasks) + "---:|" + ("---:|" if withheld else ""),
    ]
    for r in rows:
        cells = [_pct(r["per_task"].get(t)) for t in tasks] + [_with_ci(r["success_rate"], r["ci95"])]
        if withheld:
            cells.append(_with_ci(r["withheld_success_rate"], r["withheld_ci95"]) if "withheld" in r else "-")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Table II: speed and training budget**",
        "",
        "| Variant | Throughput (Hz) | Latency (s) | Actions per chunk | Train (min) | Steps "
        "| Train samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r.get("train_samples_per_s")
        lines.append(
            f"| {r['name']} | {r['throughput_hz']:.1f} | {r['latency_s']:.4f} | {r.get('chunk_len', '-')} "
            f"| {r['train_minutes']:.1f} | {r['steps']} | {'-' if rate is None else f'{rate:.0f}'} |"
        )
    lines += [
        "",
        "Throughput: actions per second of one process (chunk length / median chunk latency). "
        "Train samples/s: the training loop's rate, which sets how many steps a minutes budget buys.",
    ]
    return "\n".join(lines) + "\n"


def write_markdown(results: dict, path: Path) -> Path:
    path.write_text(markdown_tables(results))
    return path


def write_chart(results: dict, path: Path) -> Path:
    """Success (%) with 95% intervals per variant (and the withheld-instruction control as a marker), and
    throughput (Hz, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["variants"]
    names = [r["name"] for r in rows]
    rates = [100 * r["success_rate"] for r in rows]
    err = error_bars([r["success_rate"] for r in rows], [r["ci95"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 2.0), sharey=True)
    ax1.barh(names, rates, xerr=err, color="tab:blue", capsize=3)
    held = [(i, 100 * r["withheld_success_rate"]) for i, r in enumerate(rows) if "withheld_success_rate" in r]
    if held:
        ax1.scatter([v for _, v in held], [i for i, _ in held], color="tab:red", marker="x", zorder=3,
                    label="instruction withheld")  # fmt: skip
        ax1.legend(loc="lower right")
    ax1.set_xlim(0, 100)
    ax1.set_xlabel("success rate (%), 95% CI")
    ax1.invert_yaxis()
    hz = [r["throughput_hz"] for r in rows]
    ax2.barh(names, hz, color="tab:gray")
    ax2.set_xscale("log")
    positive = [h for h in hz if h > 0]
    if positive:  # whole decades around the values, so every bar and its axis labels show
        ax2.set_xlim(
            10 ** (math.floor(math.log10(min(positive))) - 1), 10 ** math.ceil(math.log10(max(positive)))
        )
    for i, h in enumerate(hz):
        ax2.annotate(f"{h:.0f}", (h, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: crowded labels otherwise
    ax2.set_xlabel("throughput (actions/s), log scale")
    fig.suptitle(f"oft study: {results['suite']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["markdown_tables", "write_chart", "write_markdown"]
