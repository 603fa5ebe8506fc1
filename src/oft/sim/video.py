"""Episode videos (MP4 through PyAV) and the success chart of an evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from oft.sim.eval_stats import error_bars

log = logging.getLogger(__name__)


def tile_cameras(frames: dict[str, np.ndarray]) -> np.ndarray:
    """Cameras side by side: {cam: (T, H_i, W_i, 3)} -> (T, H, sum W_i, 3), shorter views padded black."""
    views = list(frames.values())
    if not views:
        raise ValueError("no camera frames to tile")
    t = views[0].shape[0]
    if any(v.shape[0] != t for v in views):
        raise ValueError(f"cameras have different frame counts: {[v.shape[0] for v in views]}")
    h = max(v.shape[1] for v in views)
    padded = [np.pad(v, ((0, 0), (0, h - v.shape[1]), (0, 0), (0, 0))) for v in views]
    return np.concatenate(padded, axis=2)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 30.0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 (yuv420p, so H and W are padded to even sizes)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"video frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush
    return path


def plot_success(
    per_task: dict[str, float],
    overall: float,
    path: str | Path,
    title: str = "",
    intervals: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Horizontal bar chart of success rate per task, with the overall rate as a dashed line.

    intervals: {task: (lo, hi)} rates (e.g. 95% Wilson intervals) drawn as error bars.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_task)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.5))
    rates = [100 * per_task[n] for n in names]
    xerr = error_bars([per_task[n] for n in names], [intervals[n] for n in names]) if intervals else None
    ax.barh(names, rates, xerr=xerr, color="tab:blue", ecolor="black", capsize=3)
    ax.axvline(100 * overall, color="tab:red", linestyle="--", label=f"overall {100 * overall:.1f}%")
    ax.set_xlim(0, 100)
    ax.set_xlabel("success rate (%)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["plot_success", "tile_cameras", "write_mp4"]
