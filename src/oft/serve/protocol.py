"""Turn a request from an existing robot client into an :class:`~oft.Observation`, and describe errors.

Two families of clients exist in the wild and both must work unchanged:

* openpi's examples (websocket + msgpack). LIBERO sends ``observation/image``, ``observation/wrist_image``,
  ``observation/state``, ``prompt``; ALOHA sends ``images`` (a dict by camera name, ``cam_high``,
  ``cam_left_wrist``, ``cam_right_wrist``, images often (3, H, W) after openpi's ``resize_with_pad``),
  ``state``, ``prompt``.
* the OpenVLA-OFT deploy server (``vla-scripts/deploy.py``, HTTP ``POST /act`` + json-numpy): ``full_image``,
  ``wrist_image`` or ``left_wrist_image`` + ``right_wrist_image``, ``state``, ``instruction``.

A policy's cameras are named by its ``spec.cameras`` (e.g. ``("corner", "gripperPOV")`` for MetaWorld). Each
camera is found by its own name first, then by its *position*: the spec lists the third-person camera first
and the wrist camera(s) after it, which is also the order both client families use. So an openpi LIBERO
client can drive a MetaWorld policy without renaming anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oft.observation import Observation
from oft.spec import RobotSpec

PROTOCOL_VERSION = 1
MAX_IMAGE_SIDE = 4096
MAX_INSTRUCTION_CHARS = 4096  # a cheap first cut; the server also limits tokens
MAX_ERROR_CHARS = 500

# Names clients use for the camera at each position of ``spec.cameras`` (0: third-person, 1: (left) wrist,
# 2: right wrist). openpi LIBERO keys are looked up with their ``observation/`` prefix removed.
POSITION_ALIASES: tuple[tuple[str, ...], ...] = (
    ("image", "full_image", "cam_high", "agentview_image", "base_image", "image_0", "primary_image"),
    ("wrist_image", "left_wrist_image", "cam_left_wrist", "wrist_image_left", "image_1"),
    ("right_wrist_image", "cam_right_wrist", "wrist_image_right", "image_2"),
)
STATE_KEYS = ("state", "observation/state", "proprio")
INSTRUCTION_KEYS = ("prompt", "instruction", "task", "language_instruction")
# top-level keys (besides the ``images`` dict and ``observation/*``) that carry an image
TOP_LEVEL_IMAGE_KEYS = ("full_image", "wrist_image", "left_wrist_image", "right_wrist_image", "image")


class RequestError(ValueError):
    """A request the server refuses; ``type`` goes into the structured error reply."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


def error_reply(type_: str, message: str) -> dict:
    """The one error shape of both protocols: ``{"error": {"type": ..., "message": ...}}``.

    The message is cut to ``MAX_ERROR_CHARS``: it may quote the request (key names, values), and a request
    with 100,000 keys must not get a reply as large as itself.
    """
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 20] + f"... ({len(message)} chars)"
    return {"error": {"type": str(type_)[:64], "message": message}}


@dataclass(frozen=True)
class CameraMap:
    """Where to find each of a policy's cameras in a request."""

    cameras: tuple[str, ...]

    def candidates(self, index: int) -> tuple[str, ...]:
        name = self.cameras[index]
        aliases = POSITION_ALIASES[index] if index < len(POSITION_ALIASES) else ()
        return (name, *(a for a in aliases if a != name))


def collect_images(payload: dict) -> dict[str, tuple[str, Any]]:
    """Images of a request by name: from the ``images`` dict, ``observation/<name>`` and top-level keys."""
    found: dict[str, tuple[str, Any]] = {}  # name -> (key as the client sent it, value)
    for key in TOP_LEVEL_IMAGE_KEYS:
        if key in payload:
            found[key] = (key, payload[key])
    for key, value in payload.items():
        if isinstance(key, str) and key.startswith("observation/") and key != "observation/state":
            found[key[len("observation/") :]] = (key, value)
    images = payload.get("images")
    if images is not None:
        if not isinstance(images, dict):
            raise RequestError(
                "invalid_field",
                f"'images' must be a dict of camera name -> array, got {type(images).__name__}",
            )
        found.update({name: (f"images[{name!r}]", value) for name, value in images.items()})
    return found


def to_hwc_uint8(name: str, value: Any) -> np.ndarray:
    """Validate one image: uint8, (H, W, 3) or channel-first (3, H, W) as openpi's ALOHA example sends."""
    if not isinstance(value, np.ndarray):
        raise RequestError(
            "invalid_image", f"image {name!r} must be a uint8 array (H, W, 3), got {type(value).__name__}"
        )
    if value.dtype != np.uint8:
        raise RequestError("invalid_image", f"image {name!r} has dtype {value.dtype}, expected uint8")
    if value.ndim == 3 and value.shape[0] == 3 and value.shape[2] != 3:
        value = value.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    if value.ndim != 3 or value.shape[2] != 3:
        raise RequestError(
            "invalid_image", f"image {name!r} has shape {list(value.shape)}, expected (H, W, 3)"
        )
    h, w = value.shape[:2]
    if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
        raise RequestError(
            "invalid_image", f"image {name!r} is {h}x{w}; expected each side between 1 and {MAX_IMAGE_SIDE}"
        )
    # a private, writable copy: frombuffer arrays are read-only views of the request bytes
    return np.ascontiguousarray(value).copy()


def find_images(payload: dict, cameras: tuple[str, ...]) -> list[np.ndarray]:
    available = collect_images(payload)
    camera_map = CameraMap(cameras)
    images = []
    for i, cam in enumerate(cameras):
        names = camera_map.candidates(i)
        key = next((n for n in names if n in available), None)
        if key is None:
            raise RequestError(
                "missing_key",
                f"no image for camera {cam!r} (camera {i} of the policy's {list(cameras)}); send it under "
                f"one of {list(names)} (top level, 'observation/<name>' or in the 'images' dict); got images "
                f"{sorted(map(str, available))}",
            )
        images.append(to_hwc_uint8(*available[key]))
    return images


def find_state(payload: dict, proprio_dim: int) -> np.ndarray | None:
    key = next((k for k in STATE_KEYS if k in payload), None)
    if proprio_dim == 0:
        return None
    if key is None:
        raise RequestError(
            "missing_key", f"missing robot state: send a [{proprio_dim}] float array as 'state'"
        )
    value = payload[key]
    if isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise RequestError("invalid_state", f"{key!r} must be a list of numbers") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in ("i", "u", "f"):
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise RequestError("invalid_state", f"{key!r} must be a numeric array, got {kind}")
    if value.shape != (proprio_dim,):
        raise RequestError(
            "invalid_state", f"{key!r} has shape {list(value.shape)}; expected [{proprio_dim}]"
        )
    state = value.astype(np.float32)
    if not np.all(np.isfinite(state)):
        raise RequestError("invalid_state", f"{key!r} contains NaN or inf: {state.tolist()}")
    return state


def find_instruction(payload: dict) -> str:
    key = next((k for k in INSTRUCTION_KEYS if k in payload), None)
    if key is None:
        raise RequestError("missing_key", "missing task instruction: send a string 'prompt' or 'instruction'")
    value = payload[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in ("U", "S") and value.size == 1:
        value = str(value.item())
    if not isinstance(value, str):
        raise RequestError("invalid_field", f"{key!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_INSTRUCTION_CHARS:
        raise RequestError(
            "invalid_field", f"{key!r} has {len(value)} characters; at most {MAX_INSTRUCTION_CHARS}"
        )
    return value


def parse_observation(payload: Any, spec: RobotSpec) -> Observation:
    """An Observation in ``spec.cameras`` order from either client family's request; RequestError if bad."""
    if not isinstance(payload, dict):
        raise RequestError("invalid_request", f"request must be a map/object, got {type(payload).__name__}")
    obs = Observation(
        images=find_images(payload, spec.cameras),
        proprio=find_state(payload, spec.proprio_dim),
        instruction=find_instruction(payload),
    )
    try:
        obs.validate(num_cameras=spec.num_cameras, proprio_dim=spec.proprio_dim)
    except ValueError as e:
        raise RequestError("invalid_request", str(e)) from None
    return obs


def server_metadata(
    spec: RobotSpec,
    max_message_bytes: int,
    max_batch: int,
    policy_info: dict | None = None,
    limits: dict | None = None,
) -> dict:
    """What the server tells a client on connect (openpi's metadata message) and at ``GET /metadata``."""
    return {
        "server": "oft",
        "protocol_version": PROTOCOL_VERSION,
        "spec": spec.to_dict(),
        "cameras": list(spec.cameras),
        "camera_aliases": {
            cam: list(CameraMap(spec.cameras).candidates(i)) for i, cam in enumerate(spec.cameras)
        },
        "action_dim": spec.action_dim,
        "chunk_len": spec.chunk_len,
        "proprio_dim": spec.proprio_dim,
        "action_shape": [spec.chunk_len, spec.action_dim],
        "max_message_bytes": max_message_bytes,
        "max_batch": max_batch,
        "policy": policy_info or {},
        "limits": limits or {"max_message_bytes": max_message_bytes},
    }


__all__ = [
    "PROTOCOL_VERSION",
    "CameraMap",
    "RequestError",
    "error_reply",
    "parse_observation",
    "server_metadata",
]
