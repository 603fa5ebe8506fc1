"""Hub names (``lerobot/aloha_sim_transfer_cube_human``, ``openvla/openvla-7b@<revision>``) as local folders.

Every place that takes a dataset or a checkpoint path (``oft train --dataset/--base``, ``load_policy``,
``oft info/eval/serve``, ``oft stats``) passes it through :func:`resolve`:

* a local path that exists always wins (a folder named ``lerobot/pusht`` in the working directory is read);
* otherwise a name of the form ``org/name[@revision]`` is a Hub repository, fetched by ``huggingface_hub``'s
  ``snapshot_download`` into its cache (``HF_HOME`` / ``HF_HUB_CACHE``); a copy already in the cache is used
  without the network, and with ``HF_HUB_OFFLINE=1`` the network is never tried;
* with neither a cached copy nor the network, :class:`HubNotFoundError` names the id, the cache that was
  searched and the command that downloads it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@(?P<rev>[\w.\-/]+))?$")
REPO_TYPES = ("dataset", "model")


class HubNotFoundError(FileNotFoundError):
    """A Hub id that is neither cached nor downloadable here."""


def parse_hub_id(name: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``name`` reads as ``org/name[@revision]``, else None."""
    m = _HUB_ID.match(str(name))
    if m is None or str(name).startswith((".", "/", "~")):
        return None
    return m["repo"], m["rev"]


def is_hub_id(name: str | Path) -> bool:
    """``name`` is not an existing local path and reads as a Hub id."""
    return not os.path.exists(name) and parse_hub_id(str(name)) is not None


def download_command(repo_id: str, revision: str | None, repo_type: str) -> str:
    rev = f" --revision {revision}" if revision else ""
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return f"huggingface-cli download{kind} {repo_id}{rev}"


def resolve(name: str | Path, repo_type: str = "dataset") -> Path:
    """The local folder of ``name``: itself when it exists, the Hub snapshot when it is a Hub id.

    Anything else is returned as a Path unchanged (the caller reports a missing path its own way).
    """
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
    if os.path.exists(name):
        return Path(name)
    parsed = parse_hub_id(str(name))
    if parsed is None:
        return Path(name)
    repo_id, revision = parsed
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        folder = snapshot_download(repo_id, revision=revision, repo_type=repo_type)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as e:
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise HubNotFoundError(
            f"{name!r} is not a local path, and the Hub {repo_type} {repo_id!r}"
            f"{f' at revision {revision!r}' if revision else ''} is not in the cache "
            f"{constants.HF_HUB_CACHE} "
            f"and could not be downloaded{offline}: {type(e).__name__}. Download it where there is network "
            f"with `{download_command(repo_id, revision, repo_type)}` (set HF_HOME to share the cache), or "
            "pass a local path"
        ) from e
    log.info("%s: Hub %s snapshot %s", name, repo_type, folder)
    return Path(folder)


__all__ = ["HubNotFoundError", "download_command", "is_hub_id", "parse_hub_id", "resolve"]
