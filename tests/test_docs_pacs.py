"""docs/pacs.md: the DCMTK storescu command it gives, run literally against the listener for every sample study."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from pipeline.listener.spool import Spool
from pipeline.listener.state import StateDB
from tests.listener_helpers import dcmtk_tool, dicom_files, listener_config, receiving

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (ROOT / "sample_dicom").iterdir() if p.is_dir())


def documented_storescu() -> list[str]:
    """The one storescu command line of docs/pacs.md (a code line or inline code), split as a shell would."""
    doc = (ROOT / "docs" / "pacs.md").read_text(encoding="utf-8")
    found = set(re.findall(r"`((?:/usr/bin/)?storescu [^`\n]+)`", doc))
    found |= set(re.findall(r"^((?:/usr/bin/)?storescu .+)$", doc, re.M))
    assert len(found) == 1, f"docs/pacs.md should give exactly one storescu command, found {sorted(found)}"
    return shlex.split(found.pop())


def test_documented_command_is_dcmtks_by_absolute_path():
    # in a virtual environment pynetdicom's own 'storescu' script comes first on the PATH
    assert documented_storescu()[0] == "/usr/bin/storescu"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[int, Spool, StateDB]]:
    cfg = listener_config(
        tmp_path / "spool", access={"allowed_callers": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}]}
    )
    with receiving(cfg) as served:
        yield served


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_documented_storescu_command_sends_every_sample(listener: tuple[int, Spool, StateDB], sample: Path) -> None:
    if dcmtk_tool("storescu") != "/usr/bin/storescu":
        pytest.skip("DCMTK storescu not installed at /usr/bin/storescu (Debian package 'dcmtk')")
    port, spool, state = listener
    placeholders = {"host": "127.0.0.1", "11112": str(port), "folder/": f"{sample}/"}
    cmd = [placeholders.get(arg.lower(), arg) for arg in documented_storescu()]
    assert set(placeholders.values()) <= set(cmd), f"placeholders HOST 11112 FOLDER/ not all in {cmd}"
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sent = dicom_files(sample)
    (row,) = state.list_studies()
    assert row.n_instances == len(sent) == len(list(spool.scan()))
    # kept as stored: the compressed transfer syntax of the sample arrives unchanged
    stored = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for *_, p in spool.scan()}
    original = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in sent}
    assert stored == original
