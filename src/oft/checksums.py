"""sha256 checksums of the files of a dataset or checkpoint ``oft`` writes, and their verification.

Silent corruption (a flipped byte in an MP4 decodes to wrong pixels without any error; one in a safetensors
file is a wrong weight) is found only by comparing against what was written. Writers record, after their
files and atomically (temporary file + rename), one extra file other readers ignore:

* a LeRobot dataset: ``meta/oft_checksums.json`` (:data:`DATASET_CHECKSUMS`), updated by every
  :meth:`~oft.data.lerobot.LeRobotWriter.add_episode` (only the files it rewrote are hashed again) and by
  ``save_stats``;
* a checkpoint (``oft train`` step, ``Policy.save``, ``oft train --export``): ``oft_checksums.json``.

Format: ``{"format": "oft-checksums", "algorithm": "sha256", "files": {relative path: {"sha256", "size"}},
...}``; a dataset's also records the ``total_episodes`` it describes, so a writer killed between committing
an episode and recording its checksums is told apart from corruption.

:func:`verify` (``oft verify PATH``) reports every file that is missing or differs. Training verifies its
datasets and ``load_policy`` the files a policy is made of, whenever a checksum file is present.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from oft.files import CorruptFileError, read_json_object

log = logging.getLogger(__name__)

CHECKSUMS_FILE = "oft_checksums.json"
DATASET_CHECKSUMS = "meta/" + CHECKSUMS_FILE
FORMAT = "oft-checksums"
# what a training checkpoint holds besides the policy: load_policy neither reads nor verifies these
TRAINER_FILES = ("trainer_state.pt", "resume_state.json", "train_config.json", "resumes.jsonl")
_SKIP_MARKS = (".tmp-", ".old-")
_CHUNK = 1 << 22  # 4 MiB reads


class ChecksumError(CorruptFileError):
    """Files that are missing or differ from the checksums recorded when they were written."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        bad = report.problems
        first = bad[0][0]
        more = f" (and {len(bad) - 1} more: {', '.join(p for p, _ in bad[1:4])}...)" if len(bad) > 1 else ""
        why = f"; {report.notes[0]}" if report.notes else ""
        super().__init__(report.root / first, f"{bad[0][1]}{more}{why}; see `oft verify {report.root}`")


def checksum_path(root: str | Path) -> Path:
    """Where ``root``'s checksums live: ``meta/oft_checksums.json`` in a LeRobot dataset, else the top."""
    root = Path(root)
    return root / DATASET_CHECKSUMS if (root / "meta" / "info.json").is_file() else root / CHECKSUMS_FILE


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _listed_files(root: Path, record: Path) -> list[str]:
    """Every regular file under ``root`` except the checksum file and writers' temporary files."""
    out = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(_SKIP_MARKS))
        for name in sorted(files):
            p = Path(dirpath) / name
            if p == record or any(m in name for m in _SKIP_MARKS) or name.endswith(".tmp"):
                continue
            if p.is_file() and not p.is_symlink():
                out.append(p.relative_to(root).as_posix())
    return out


def _entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def read_checksums(root: str | Path) -> dict | None:
    """The checksum record of ``root``, or None when it has none."""
    path = checksum_path(root)
    if not path.is_file():
        return None
    data = read_json_object(path, "checksum record")
    if data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise CorruptFileError(path, f"not an {FORMAT} record (format={data.get('format')!r})")
    return data


def _write_record(path: Path, files: dict[str, dict], extra: dict) -> None:
    record = {"format": FORMAT, "algorithm": "sha256", **extra, "files": dict(sorted(files.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def write_checksums(root: str | Path, files: Iterable[str] | None = None, **extra) -> Path:
    """Hash every file under ``root`` (or only ``files``, paths relative to it) and record them atomically;
    returns the checksum file. ``extra``: more fields of the record (a dataset's ``total_episodes``)."""
    root = Path(root)
    path = checksum_path(root)
    names = _listed_files(root, path) if files is None else sorted(Path(f).as_posix() for f in files)
    _write_record(path, {rel: _entry(root / rel) for rel in names}, extra)
    return path


def update_checksums(root: str | Path, changed: Iterable[str | Path] | None, **extra) -> Path:
    """Hash again only the files in ``changed`` (paths under ``root``), keep the other recorded hashes, drop
    entries of files that no longer exist, and add files not yet recorded. ``changed=None`` or no record
    yet: hash everything."""
    root = Path(root)
    old = read_checksums(root)
    if old is None or changed is None:
        return write_checksums(root, **extra)
    path = checksum_path(root)
    recorded: dict[str, dict] = old["files"]
    changed_rel = {Path(c).resolve().relative_to(root.resolve()).as_posix() for c in changed}
    files = {}
    for rel in _listed_files(root, path):
        keep = recorded.get(rel)
        files[rel] = keep if keep is not None and rel not in changed_rel else _entry(root / rel)
    _write_record(path, files, {k: v for k, v in old.items() if k not in ("format", "algorithm", "files")}
                  | extra)  # fmt: skip
    return path


def refresh_checksums(root: str | Path, changed: Iterable[str | Path]) -> None:
    """:func:`update_checksums` when ``root`` has a record (a file rewritten in a dataset oft checksums)."""
    if checksum_path(root).is_file():
        update_checksums(root, changed)


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``problems``: (relative path, what is wrong) for every missing or
    differing file; ``unlisted``: files present but not recorded (not an error: e.g. a README added later);
    ``notes``: anything else worth saying (a stale record)."""

    root: Path
    checked: int = 0
    bytes: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(root: str | Path, select: Callable[[str], bool] | None = None) -> VerifyReport:
    """Check every recorded file of ``root`` (those ``select(relative_path)`` keeps) against its sha256.

    Raises FileNotFoundError when ``root`` has no checksum record.
    """
    root = Path(root)
    record = read_checksums(root)
    if record is None:
        raise FileNotFoundError(f"{checksum_path(root)}: missing; {root} carries no checksums to verify")
    report = VerifyReport(root)
    for rel, want in record["files"].items():
        if select is not None and not select(rel):
            continue
        problem = _check_file(root / rel, want)
        report.checked += 1
        report.bytes += int(want.get("size", 0))
        if problem:
            report.problems.append((rel, problem))
    listed = set(record["files"])
    report.unlisted = [r for r in _listed_files(root, checksum_path(root)) if r not in listed]
    _note_stale_dataset(root, record, report)
    return report


def _check_file(path: Path, want: dict) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if "size" in want and size != int(want["size"]):
        return f"size {size} bytes, recorded {want['size']}"
    got = sha256_file(path)
    if got != want.get("sha256"):
        return f"sha256 {got[:12]}..., recorded {str(want.get('sha256'))[:12]}...: contents changed"
    return None


def _note_stale_dataset(root: Path, record: dict, report: VerifyReport) -> None:
    info = root / "meta" / "info.json"
    if "total_episodes" not in record or not info.is_file():
        return
    try:
        committed = int(json.loads(info.read_text()).get("total_episodes", -1))
    except (json.JSONDecodeError, TypeError, ValueError):
        return  # info.json itself will be reported as differing
    if committed != int(record["total_episodes"]):
        report.notes.append(
            f"the checksums describe {record['total_episodes']} episodes, meta/info.json {committed}: "
            "a writer was interrupted between the two; resuming it (the same `oft collect`) rewrites them"
        )


def policy_files(rel: str) -> bool:
    """The files ``load_policy`` reads (weights, configs, tokenizer), not a training run's optimizer state."""
    return Path(rel).name not in TRAINER_FILES


def verify_checkpoint(path: str | Path) -> VerifyReport | None:
    """Verify a checkpoint's policy files when it has a checksum record; raise :class:`ChecksumError`."""
    return _verify_if_recorded(Path(path), policy_files, "checkpoint")


def verify_dataset(path: str | Path) -> VerifyReport | None:
    """Verify a dataset directory when it has a checksum record; raise :class:`ChecksumError`."""
    return _verify_if_recorded(Path(path), None, "dataset")


def _verify_if_recorded(path: Path, select, what: str) -> VerifyReport | None:
    if not path.is_dir() or not checksum_path(path).is_file():
        return None
    import time

    t0 = time.perf_counter()
    report = verify(path, select)
    log.info("%s %s: %d files (%.1f MB) match their checksums in %.2f s", what, path, report.checked,
             report.bytes / 1e6, time.perf_counter() - t0)  # fmt: skip
    if not report.ok:
        raise ChecksumError(report)
    return report


__all__ = [
    "CHECKSUMS_FILE",
    "DATASET_CHECKSUMS",
    "ChecksumError",
    "VerifyReport",
    "checksum_path",
    "read_checksums",
    "refresh_checksums",
    "update_checksums",
    "verify",
    "verify_checkpoint",
    "verify_dataset",
    "write_checksums",
]
