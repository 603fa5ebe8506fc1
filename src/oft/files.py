"""Readers that name the file: a corrupt, truncated or wrongly typed file is one :class:`CorruptFileError`.

Every loader of ``oft`` (checkpoint weights, adapters, tokenizers, ``.pt`` components, JSON configs, parquet,
MP4, HDF5) reports a file it cannot use as ``<path>: <what is wrong>`` in one line, raised ``from`` the
library's own exception (kept as ``__cause__`` for ``-v`` tracebacks). ``oft``'s command line prints that line
without a traceback (it is a ``ValueError``).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

MAX_DETAIL_CHARS = 200


class CorruptFileError(ValueError):
    """A file that exists but cannot be used: unreadable, truncated, holding the wrong kind of data, or
    disagreeing with what its dataset or checkpoint records. ``str(e)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def detail(e: BaseException) -> str:
    """The first line of a library's message, shortened: enough to say what is wrong, never a page."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else (lines or [""])[0]
    text = text or type(e).__name__
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """Parse a JSON file; a truncated or invalid one is a CorruptFileError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(path, f"not valid {what} ({detail(e)})") from e


def read_json_object(path: str | Path, what: str = "JSON") -> dict:
    """:func:`read_json` for a file that must hold an object (a config)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise CorruptFileError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


@contextmanager
def config_values(path: str | Path) -> Iterator[None]:
    """Wrongly typed or missing values met while building something from a config file name that file.

    ``with config_values(p): cfg = Config(**json)``: a TypeError/KeyError/ValueError/AttributeError raised
    inside becomes ``CorruptFileError(p, "wrongly typed or missing value (...)")``.
    """
    try:
        yield
    except CorruptFileError:
        raise
    except KeyError as e:
        raise CorruptFileError(path, f"missing value {e.args[0]!r}") from e
    except (TypeError, ValueError, AttributeError, IndexError, *_library_config_errors()) as e:
        raise CorruptFileError(path, f"wrongly typed or invalid value ({detail(e)})") from e


def _library_config_errors() -> tuple[type[Exception], ...]:
    """transformers' configs validate their fields with huggingface_hub's strict dataclasses, whose errors
    are not ValueErrors."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:
        return ()
    return (StrictDataclassError,)


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Any error of a third-party reader (safetensors, tokenizers, PyAV, pyarrow, h5py) inside the block
    becomes ``CorruptFileError(path, "unreadable <what> (...)")``. Our own errors pass through unchanged."""
    try:
        yield
    except (CorruptFileError, FileNotFoundError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # the readers raise their own classes (SafetensorError, a bare Exception, ...)
        raise CorruptFileError(path, f"unreadable {what} ({detail(e)})") from e


_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_tensors_file(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` of a state dict, on the CPU.

    A file holding pickled Python objects besides tensors is refused (loading it would run code from the
    file): one line naming the file and the object, not torch's advice to pass ``weights_only=False``.
    """
    path = Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        if found:
            raise CorruptFileError(
                path,
                f"holds non-tensor data (a pickled {found.group(1)}); refused for safety: "
                "only tensors are loaded from checkpoints",
            ) from None
        raise CorruptFileError(path, f"not a torch tensor file ({detail(e.__cause__ or e)})") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CorruptFileError(path, f"unreadable torch file, truncated or corrupt ({detail(e)})") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CorruptFileError(path, f"expected a state dict of tensors, found {type(sd).__name__}")
    return sd


__all__ = [
    "CorruptFileError",
    "config_values",
    "detail",
    "load_tensors_file",
    "read_json",
    "read_json_object",
    "reading",
]
