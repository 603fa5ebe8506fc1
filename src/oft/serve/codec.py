"""Wire encodings for numpy arrays: openpi's msgpack-numpy and the json-numpy of the paper's deploy server.

Both are decoded here with an allow-list of dtypes and a size check, never with pickle: a request comes from
the network, and msgpack-numpy libraries that fall back to pickle for object arrays turn a malformed request
into code execution. This module needs only numpy and msgpack, so the robot-side client imports it without
torch.

msgpack (openpi ``openpi_client.msgpack_numpy``)::

    {"__ndarray__": True, "data": <raw bytes, C order>, "dtype": "<f4", "shape": [K, D]}

openpi packs these keys as msgpack *bin* (Python ``bytes``); both bytes and str keys are accepted.

json-numpy (PyPI ``json-numpy``, what ``json_numpy.patch()`` makes ``requests.post(json=...)`` send)::

    {"__numpy__": "<base64 of the raw bytes>", "dtype": "<f4", "shape": [K, D]}
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import msgpack
import numpy as np

# Booleans, integers and reals only: object, void (structured) and complex arrays have no business in a robot
# observation and object arrays are how pickle sneaks in.
ALLOWED_DTYPE_KINDS = ("b", "i", "u", "f")
MAX_NDIM = 8


class DecodeError(ValueError):
    """A payload that is not valid msgpack/json, or an array whose header does not match its data."""


def _dtype_from_wire(descr: Any) -> np.dtype:
    if isinstance(descr, bytes):
        descr = descr.decode("ascii", errors="replace")
    if not isinstance(descr, str) or len(descr) > 16:
        raise DecodeError(f"array dtype must be a short string like '<f4', got {descr!r}")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError) as e:  # numpy parses some strings as field lists
        raise DecodeError(f"unknown array dtype {descr!r}") from e
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.hasobject:
        raise DecodeError(f"array dtype {descr!r} not allowed; expected a bool, integer or float dtype")
    return dtype


def _shape_from_wire(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM:
        raise DecodeError(f"array shape must be a list of at most {MAX_NDIM} ints, got {shape!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise DecodeError(f"array shape must hold non-negative ints, got {shape!r}")
    return tuple(shape)


def array_from_buffer(data: Any, dtype_descr: Any, shape: Any) -> np.ndarray:
    """Build an array from wire parts, checking that the byte count matches dtype and shape."""
    dtype = _dtype_from_wire(dtype_descr)
    shape = _shape_from_wire(shape)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"array data must be bytes, got {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DecodeError(
            f"array data has {len(data)} bytes, expected {expected} for shape {list(shape)} dtype {dtype.str}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


# ---------------------------------------------------------------- msgpack


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise TypeError(f"cannot send numpy dtype {obj.dtype} (only bool/int/float arrays)")
    if isinstance(obj, np.ndarray):
        # bytes keys, as openpi's packer writes them, so an unmodified openpi client reads our replies
        arr = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot msgpack-encode {type(obj).__name__}")


def _get(obj: dict, key: str) -> Any:
    return obj[key] if key in obj else obj.get(key.encode())


def _unpack_hook(obj: dict) -> Any:
    if "__ndarray__" in obj or b"__ndarray__" in obj:
        return array_from_buffer(_get(obj, "data"), _get(obj, "dtype"), _get(obj, "shape"))
    if "__npgeneric__" in obj or b"__npgeneric__" in obj:
        dtype = _dtype_from_wire(_get(obj, "dtype"))
        value = _get(obj, "data")
        if not isinstance(value, (bool, int, float)):
            raise DecodeError(f"numpy scalar data must be a number, got {type(value).__name__}")
        try:
            return dtype.type(value)
        except (OverflowError, ValueError) as e:  # np.int8(300)
            raise DecodeError(f"numpy scalar {value!r} does not fit dtype {dtype.str}") from e
    return obj


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (dicts, lists, str, numbers, numpy arrays) as openpi-compatible msgpack."""
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode openpi msgpack; raises :class:`DecodeError` for anything malformed."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook, raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as e:
        raise DecodeError(f"payload is not valid msgpack: {type(e).__name__}: {e}") from None


def str_keys(obj: Any) -> Any:
    """Turn bytes keys (openpi packs some keys as bin) into str keys, recursively through dicts and lists."""
    if isinstance(obj, dict):
        return {
            (k.decode("utf-8", "replace") if isinstance(k, bytes) else k): str_keys(v) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [str_keys(v) for v in obj]
    return obj


# ---------------------------------------------------------------- json-numpy


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.kind not in ALLOWED_DTYPE_KINDS:
            raise TypeError(f"cannot send numpy dtype {obj.dtype} (only bool/int/float arrays)")
        arr = np.ascontiguousarray(obj)
        return {
            "__numpy__": base64.b64encode(arr.tobytes()).decode("ascii"),
            "dtype": np.lib.format.dtype_to_descr(arr.dtype),
            "shape": list(arr.shape),
        }
    raise TypeError(f"cannot json-encode {type(obj).__name__}")


def _json_hook(obj: dict) -> Any:
    if "__numpy__" not in obj:
        return obj
    encoded = obj["__numpy__"]
    if not isinstance(encoded, str):
        raise DecodeError(f"'__numpy__' must be a base64 string, got {type(encoded).__name__}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise DecodeError(f"'__numpy__' is not valid base64: {e}") from None
    shape = obj.get("shape")
    arr = array_from_buffer(data, obj.get("dtype"), shape)
    # json-numpy encodes a numpy scalar with shape [] and decodes it as a scalar
    return arr if arr.ndim else arr[()]


def json_dumps(obj: Any) -> str:
    """JSON with numpy arrays in json-numpy's format (``json_numpy.dumps``)."""
    return json.dumps(obj, default=_json_default)


def json_loads(text: str | bytes) -> Any:
    """Decode JSON with json-numpy arrays; raises :class:`DecodeError` for anything malformed."""
    try:
        return json.loads(text, object_hook=_json_hook)
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise DecodeError(f"payload is not valid JSON: {type(e).__name__}: {e}") from None


__all__ = ["DecodeError", "array_from_buffer", "json_dumps", "json_loads", "packb", "str_keys", "unpackb"]
