"""Real DICOM peers talking to the listener's SCP: DCMTK echoscu / storescu and an Orthanc PACS pushing a study.

These exercise receiving only; the end-to-end runs (processing and results back into Orthanc) are in
tests/test_listener_e2e.py. Each test skips with the reason when its peer is not installed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.listener.spool import Spool
from pipeline.listener.state import StateDB
from tests.listener_helpers import dcmtk_tool, dicom_files, listener_config, make_small_study, receiving
from tests.orthanc_peer import Orthanc

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_study(tmp_path_factory.mktemp("peers") / "s", seed=13)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[int, Spool, StateDB]]:
    cfg = listener_config(
        tmp_path / "spool",
        access={
            "allowed_callers": [
                {"ae_title": "STORESCU", "host": "127.0.0.1"},
                {"ae_title": "ECHOSCU", "host": "127.0.0.1"},
                {"ae_title": "ORTHANC", "host": "127.0.0.1"},
            ]
        },
    )
    with receiving(cfg) as served:
        yield served


def _tool(name: str) -> str:
    path = dcmtk_tool(name)
    if path is None:
        pytest.skip(f"DCMTK {name} not installed (Debian package 'dcmtk')")
    return path


def test_dcmtk_echoscu(scp: tuple[int, Spool, StateDB]) -> None:
    port = scp[0]
    echoscu = _tool("echoscu")
    ok = subprocess.run([echoscu, "-aet", "ECHOSCU", "-aec", "SPINEAI", "127.0.0.1", str(port)], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        [echoscu, "-aet", "STRANGER", "-aec", "SPINEAI", "127.0.0.1", str(port)], capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr or "Rejected" in refused.stderr


@pytest.mark.slow
def test_dcmtk_storescu_study(scp: tuple[int, Spool, StateDB], study: Path) -> None:
    port, spool, state = scp
    storescu = _tool("storescu")
    r = subprocess.run(
        [
            storescu,
            "-aet",
            "STORESCU",
            "-aec",
            "SPINEAI",
            "+sd",
            "+r",
            "+sp",
            "*.dcm",
            "127.0.0.1",
            str(port),
            str(study),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(dicom_files(study))
    assert len(list(spool.scan())) == n
    (row,) = state.list_studies()
    assert row.n_instances == n


@pytest.mark.slow
def test_orthanc_pushes_a_study(scp: tuple[int, Spool, StateDB], study: Path, tmp_path: Path) -> None:
    port, spool, state = scp
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"spineai": ("SPINEAI", "127.0.0.1", port)})
    try:
        sid = orthanc.upload(dicom_files(study))
        job = orthanc.store_to("spineai", [sid])
        assert job["FailedInstancesCount"] == 0
    finally:
        orthanc.close()
    n = len(dicom_files(study))
    assert job["InstancesCount"] == n
    (row,) = state.list_studies()
    assert row.n_instances == n and len(list(spool.scan())) == n
