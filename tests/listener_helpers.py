"""Helpers shared by the listener tests: configs, free ports, small studies, a DICOM SCU."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification

from pipeline.listener.config import ListenerConfig, parse_listener_config

TEST_AET = "TESTSCU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_config(spool: Path, **sections: dict[str, Any]) -> ListenerConfig:
    """A test configuration: localhost, any free port, a small disk guard, TESTSCU allowed; sections override."""
    data: dict[str, Any] = {
        "network": {"port": 0, "bind_address": "127.0.0.1"},
        "access": {"allowed_callers": [{"ae_title": TEST_AET, "host": "127.0.0.1"}]},
        "storage": {"spool_dir": str(spool), "min_free_mb": 1},
        "trigger": {"stable_seconds": 1.0, "poll_seconds": 0.1},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_listener_config(data, "test")


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.dcm"))


def scu(calling: str = TEST_AET, contexts: Iterable[str] = (MRImageStorage, Verification)) -> AE:
    ae = AE(ae_title=calling)
    for c in contexts:
        ae.add_requested_context(c)
    return ae


def store_files(
    port: int, files: Sequence[Path], *, calling: str = TEST_AET, called: str = "SPINEAI"
) -> list[int | None]:
    """C-STORE each file over one association; the status of each (None: no response)."""
    ae = AE(ae_title=calling)
    syntaxes: dict[str, set[str]] = {}
    for f in files:
        meta = read_file_meta_info(f)
        syntaxes.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(str(meta.TransferSyntaxUID))
    for sop, ts in syntaxes.items():
        ae.add_requested_context(sop, sorted(ts))
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "association refused"
    out: list[int | None] = []
    try:
        for f in files:
            st = assoc.send_c_store(f)
            out.append(int(st.Status) if st and "Status" in st else None)
    finally:
        assoc.release()
    return out


def make_small_study(out: Path, *, seed: int = 5, patient_name: str = "", patient_id: str = "") -> Path:
    """A small 3-series phantom study (T1, T2, STIR; 11 sagittal slices of 192 x 192) written as DICOM."""
    from pipeline.phantom import PhantomSpec, render_phantom, write_study

    spec = PhantomSpec.small(seed=seed, patient_name=patient_name, patient_id=patient_id)
    return write_study(render_phantom(spec), out)


def dcmtk_tool(name: str) -> str | None:
    """Path of DCMTK's ``name`` (echoscu, storescu), never pynetdicom's look-alike scripts on the PATH."""
    import shutil
    import subprocess

    for candidate in (f"/usr/bin/{name}", shutil.which(name)):
        if not candidate or not Path(candidate).is_file():
            continue
        try:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in out:
            return candidate
    return None
