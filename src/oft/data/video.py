"""MP4 video through PyAV: encode an episode, append it to a multi-episode file, decode a time segment.

LeRobot v3 stores many episodes back to back in one MP4 per camera and locates an episode by its
``from_timestamp``/``to_timestamp``; frame ``j`` of the episode sits at ``from_timestamp + j / fps``.
We encode without B-frames, so decode order equals presentation order and appending is a plain packet
copy (the way ``ffmpeg -f concat -c copy`` does it for LeRobot), with no re-encoding of what is on disk.

Default encoding: H.264 (libx264) ``crf=0`` in ``yuv444p`` — lossless in YUV, so the only error left is the
RGB <-> YUV rounding (a few levels out of 255; tests pin the bound). LeRobot's own default is AV1 ``crf=30``
``yuv420p``: much smaller and lossy; pass ``codec="libsvtav1", pix_fmt="yuv420p", crf=30`` to match it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from oft.files import reading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSettings:
    """How episodes are encoded. ``gop``: frames between key frames (LeRobot uses 2 for fast seeking)."""

    codec: str = "libx264"
    pix_fmt: str = "yuv444p"
    crf: int = 0
    gop: int = 2
    preset: str = "veryfast"

    def options(self) -> dict[str, str]:
        opts = {"crf": str(self.crf), "g": str(self.gop), "bf": "0"}
        if self.codec in ("libx264", "libx264rgb", "libx265"):
            opts["preset"] = self.preset
        if self.codec == "libsvtav1":
            opts = {"crf": str(self.crf), "g": str(self.gop), "preset": "8"}
        return opts


def encode_video(frames: np.ndarray, path: Path, fps: int, settings: VideoSettings = VideoSettings()) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an MP4 whose frame ``i`` is at ``i / fps`` seconds."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_video expects (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    _, h, w, _ = frames.shape
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(settings.codec, rate=int(fps), options=settings.options())
        stream.width, stream.height, stream.pix_fmt = w, h, settings.pix_fmt
        stream.codec_context.max_b_frames = 0
        stream.codec_context.time_base = Fraction(1, int(fps))
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, int(fps))
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))


def append_video(dst: Path, new: Path, cutoff_s: float, out: Path) -> None:
    """Write ``out`` = the packets of ``dst`` before ``cutoff_s`` seconds, then all of ``new`` shifted by
    ``cutoff_s``. ``dst`` may be missing (then ``out`` is ``new`` shifted). Packets are copied, not
    re-encoded.

    The cutoff is the committed end of the file: frames a crashed writer left after it are dropped here.
    """
    sources = [(dst, 0.0, cutoff_s)] if dst.exists() and cutoff_s > 0 else []
    sources.append((new, cutoff_s, None))
    with av.open(str(sources[0][0])) as first:
        template = first.streams.video[0]
        with av.open(str(out), "w", format="mp4") as container:
            ostream = container.add_stream_from_template(template)
            for path, offset_s, end_s in sources:
                _copy_packets(path, container, ostream, offset_s, end_s)


def _copy_packets(path: Path, container, ostream, offset_s: float, end_s: float | None) -> None:
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        tb = stream.time_base
        offset = round(Fraction(offset_s).limit_denominator(1_000_000) / tb)
        for packet in src.demux(stream):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            if end_s is not None and float(packet.pts * tb) >= end_s - 1e-6:
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = ostream
            container.mux(packet)


def decode_segment(path: Path, from_s: float, to_s: float, fps: float) -> np.ndarray:
    """Frames with ``from_s <= t < to_s`` (half a frame of tolerance) as (T, H, W, 3) uint8 RGB."""
    return decode_segment_timed(path, from_s, to_s, fps)[0]


def decode_segment_timed(path: Path, from_s: float, to_s: float, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_segment` and the presentation time of every frame, (T,) float64 seconds.

    A truncated or corrupt file raises :class:`~oft.files.CorruptFileError` naming it (PyAV's own errors do
    not); a flipped byte that still decodes is found only by checksums (:mod:`oft.checksums`).
    """
    half = 0.5 / fps
    frames, times = [], []
    with reading(path, "MP4 video"), av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if from_s > half:
            container.seek(int(max(from_s - half, 0) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else 0.0
            if t < from_s - half:
                continue
            if t >= to_s - half:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
    if not frames:
        raise ValueError(f"{path}: no video frames between {from_s:.4f}s and {to_s:.4f}s")
    return np.stack(frames), np.asarray(times, np.float64)


def video_info(path: Path, fps: int, settings: VideoSettings) -> dict:
    """The ``info`` entry LeRobot keeps per video feature in ``meta/info.json``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.codec_context.height,
            "video.width": stream.codec_context.width,
            "video.codec": stream.codec_context.name,
            "video.pix_fmt": stream.codec_context.pix_fmt or settings.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(fps),
            "video.channels": 3,
            "has_audio": False,
        }


def replace_file(tmp: Path, final: Path) -> None:
    """Atomic on POSIX: readers see the old file or the new one, never half of one."""
    os.replace(tmp, final)
