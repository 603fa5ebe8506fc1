"""Fixtures shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def fixture_dir(shared_fixtures) -> Path:
    """The reference implementation's tiny LIBERO checkpoint (``../shared/fixtures``); skips without it."""
    d = shared_fixtures / "openvla-oft-tiny-libero"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d
