"""What a person watching a run sees: a progress bar, TensorBoard (and wandb if installed), a loss curve.

Only rank 0 reports. Every logged step also goes to ``metrics.jsonl`` so the loss curve can be redrawn (and a
resumed run continues the same file) without TensorBoard.

Under a time budget (``max_minutes``) the bar's total is the step the run will stop at — ``max_steps``, or
where the budget runs out at the pace so far (:func:`budget_total`) — so its percentage and ETA tell when the
run ends, not when ``max_steps`` would have been reached.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from oft.progress import progress_bar

log = logging.getLogger(__name__)


class TrainFeedback:
    """Progress bar + TensorBoard + optional wandb + ``metrics.jsonl`` for one run (rank 0 only)."""

    def __init__(
        self,
        out_dir: Path,
        total_steps: int,
        start_step: int,
        enabled: bool,
        config: dict,
        wandb: bool = False,
        deadline: float | None = None,
    ) -> None:
        """deadline: the ``time.perf_counter()`` at which the time budget ends (None: steps only)."""
        self.enabled = enabled
        self.total_steps, self.start_step, self.deadline = total_steps, start_step, deadline
        self._t_start = time.perf_counter()
        self.out_dir = Path(out_dir)
        self.bar = None
        self.writer = None
        self.wandb_run = None
        self._last_time = time.perf_counter()
        self._last_samples = 0
        if not enabled:
            return
        self.bar = progress_bar(
            total_steps, desc="train", unit="step", initial=start_step, dynamic_ncols=True
        )
        self.metrics_file = open(self.out_dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        self.writer = _tensorboard_writer(self.out_dir / "tb")
        if wandb:
            self.wandb_run = _wandb_run(config, self.out_dir)

    def step(self, step: int, samples_seen: int, metrics: dict[str, float], log_now: bool) -> None:
        """Advance the bar by one optimizer step; write logs every ``log_every`` steps."""
        if not self.enabled:
            return
        self.bar.update(1)
        if not log_now:
            return
        now = time.perf_counter()
        if self.deadline is not None:
            self.bar.total = budget_total(
                step, step - self.start_step, now - self._t_start, self.deadline - now, self.total_steps
            )
        rate = (samples_seen - self._last_samples) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_samples = now, samples_seen
        metrics = {**metrics, "samples_per_s": rate}
        self.bar.set_postfix(
            loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}", samples_s=f"{rate:.0f}", refresh=False
        )
        self.metrics_file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.metrics_file.flush()
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"train/{name}", value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({f"train/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.metrics_file.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def budget_total(step: int, steps_done: int, elapsed_s: float, remaining_s: float, max_steps: int) -> int:
    """The step a run stops at: ``max_steps``, or earlier where ``remaining_s`` of budget runs out at the pace
    of ``steps_done`` steps in ``elapsed_s`` seconds (never before ``step``, the step reached)."""
    if steps_done <= 0 or elapsed_s <= 0:
        return max_steps
    reachable = step + int(steps_done / elapsed_s * max(remaining_s, 0.0))
    return max(step, min(max_steps, reachable))


def _tensorboard_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is a dependency, but a trimmed install should still train
        log.warning("TensorBoard logging off: %s", e)
        return None
    return SummaryWriter(log_dir=str(path))


def _wandb_run(config: dict, out_dir: Path):
    try:
        import wandb
    except ImportError:
        log.warning("wandb=True but wandb is not installed (pip install wandb); logging to TensorBoard only")
        return None
    return wandb.init(project=config.get("wandb_project", "oft"), config=config, dir=str(out_dir))


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``; a resumed run's repeated steps keep their latest value."""
    rows: dict[int, dict] = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def seconds_trained(train_dir: Path, samples_per_step: int, up_to_step: int | None = None) -> float:
    """Wall seconds a run (``train_dir``, resumed segments included) took to reach ``up_to_step``.

    up_to_step: default the latest complete checkpoint (0.0 when there is none: a new run).
    samples_per_step: ``batch_size * grad_accum * world_size``, the samples one optimizer step consumes.

    Read back from ``metrics.jsonl``: each row covers the steps since the previous row at its
    ``samples_per_s``, a rate measured over the wall time between the two rows (checkpoint writing included),
    so the sum is the run's wall time up to the last logged step at or before ``up_to_step``. Used to give a
    resumed run under a minutes budget only what is left (``oft study``), and to place checkpoints on a
    minutes axis (``oft eval-curve``).
    """
    from oft.train.checkpoint import CheckpointManager

    if up_to_step is None:
        ckpts = CheckpointManager(train_dir).checkpoints()
        if not ckpts:
            return 0.0
        up_to_step = ckpts[-1][0]
    seconds, prev = 0.0, 0
    for row in read_metrics(Path(train_dir) / "metrics.jsonl"):
        step, rate = int(row["step"]), row.get("samples_per_s")
        if step > up_to_step:
            break
        if rate:
            seconds += (step - prev) * samples_per_step / rate
        prev = step
    return seconds


TASK_LOSS = "task_loss/"
"""The prefix of each task's loss among the logged metrics: ``task_loss/<instruction>``."""
MAX_LOGGED_TASKS = 100
"""The most tasks whose loss is logged one by one (LIBERO-90 has 90); data with more distinct instructions
(one per episode, as in DROID) logs the mean loss only, and its tasks are not checked one by one either
(:func:`oft.train.build.warn_squeezed_tasks`)."""


def plot_loss_curve(metrics_path: Path, png_path: Path, title: str = "training loss") -> Path | None:
    """Draw loss (log scale), each task's loss where the run logged it (:data:`TASK_LOSS`) and lr
    against step from ``metrics.jsonl``; None if there is nothing to draw."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in rows], label="loss", color="tab:blue")
    tasks = sorted({k for r in rows for k in r if k.startswith(TASK_LOSS)})
    for k in tasks:  # a multi-task run: each task's loss, thin, under the mean
        task_steps = [r["step"] for r in rows if k in r]
        label = k.removeprefix(TASK_LOSS)[:40]
        ax.plot(task_steps, [r[k] for r in rows if k in r], linewidth=0.7, alpha=0.7, label=label)
    if tasks:
        ax.legend(fontsize=6, loc="upper right", ncol=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in rows], color="tab:orange", alpha=0.6, label="lr")
    lr_ax.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


__all__ = [
    "MAX_LOGGED_TASKS",
    "TASK_LOSS",
    "TrainFeedback",
    "budget_total",
    "plot_loss_curve",
    "read_metrics",
]
