"""Shared fixtures. Tests never touch the network beyond localhost and never need ../shared/realdata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pipeline.listener import Listener

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """``tiny_study(seed, dest) -> dest``: a coarse synthetic T1/T2/STIR DICOM study copied to ``dest``.

    Rendered once per seed and session (about 1 s each; 160 x 160 pixels of 2 mm, 7 slices), then copied, so
    tests can damage or touch their copy. Different seeds give different UIDs.
    """
    import shutil

    from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

    cache = tmp_path_factory.mktemp("tiny_studies")

    def make(seed: int, dest: Path) -> Path:
        src = cache / f"seed{seed}"
        if not src.exists():
            spec = PhantomSpec(seed=seed, rows=160, cols=160, pixel_spacing_mm=2.0, n_slices=7)
            write_study(render_phantom(spec), src)
        shutil.copytree(src, dest)
        return dest

    return make


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    """Listeners a test started (append them); every one is stopped at teardown."""
    started: list[Listener] = []
    yield started
    for lst in started:
        lst.stop()
