"""A real Orthanc PACS for the listener tests, started on free localhost ports with a generated config.

Skips (with the reason) when the Orthanc binary is not installed. REST through urllib only (no extra packages).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.listener_helpers import free_port

ORTHANC_BIN = os.environ.get("ORTHANC_BIN", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_available() -> str | None:
    """None if Orthanc can be used, else why not."""
    if not (Path(ORTHANC_BIN).is_file() or shutil.which("Orthanc")):
        return f"Orthanc not installed ({ORTHANC_BIN}; Debian package 'orthanc')"
    return None


class Orthanc:
    """One Orthanc process. ``modalities``: {name: (AET, host, port)} it may C-STORE to."""

    def __init__(
        self,
        workdir: Path,
        *,
        aet: str = "ORTHANC",
        modalities: dict[str, tuple[str, str, int]] | None = None,
        dicomweb: bool = False,
        dicom_port: int | None = None,
    ) -> None:
        reason = orthanc_available()
        if reason:
            pytest.skip(reason)
        if dicomweb and not DICOMWEB_PLUGIN.is_file():
            pytest.skip(f"Orthanc DICOMweb plugin not installed ({DICOMWEB_PLUGIN}; Debian 'orthanc-dicomweb')")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config: dict[str, Any] = {
            "Name": "spine-assess-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomCheckCalledAet": False,
            "DicomModalities": {k: list(v) for k, v in (modalities or {}).items()},
            "HttpsVerifyPeers": False,
            "StorageCompression": False,
            "SaveJobs": False,
            "DicomScuTimeout": 10,
            "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        }
        cfg_path = self.workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(config, indent=2))
        self.log = open(self.workdir / "orthanc.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([ORTHANC_BIN, str(cfg_path)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/system")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    log = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Orthanc did not start:\n{log}") from None
                time.sleep(0.2)

    # ------------------------------------------------------------------ REST
    def _request(self, method: str, path: str, data: bytes | None = None, ctype: str = "application/json") -> Any:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=60) as rsp:
            body = rsp.read()
        return json.loads(body) if body else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, json.dumps(body).encode())

    def upload(self, files: list[Path]) -> str:
        """POST /instances each file; returns the Orthanc ID of their study."""
        study = ""
        for f in files:
            r = self._request("POST", "/instances", f.read_bytes(), "application/dicom")
            study = r["ParentStudy"]
        return study

    def store_to(self, modality: str, resources: list[str], *, synchronous: bool = True) -> Any:
        return self.post(f"/modalities/{modality}/store", {"Resources": resources, "Synchronous": synchronous})

    def find_series(self, study_uid: str) -> list[dict[str, Any]]:
        """Every series of the study (MainDicomTags), by StudyInstanceUID."""
        ids = self.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
        out: list[dict[str, Any]] = []
        for sid in ids:
            out += self.get(f"/studies/{sid}/series")
        return out

    def instance_file(self, instance_id: str) -> bytes:
        req = urllib.request.Request(f"{self.url}/instances/{instance_id}/file")
        with urllib.request.urlopen(req, timeout=60) as rsp:
            return rsp.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
