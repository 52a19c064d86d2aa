"""Shared fixtures. Tests never touch the network beyond localhost and never need ../shared/realdata."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
