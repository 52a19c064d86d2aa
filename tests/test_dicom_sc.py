"""Secondary Capture of the overlays: re-read, same pixels as the PNG, patient copied, UIDs, dciodvfy."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from pipeline.report.dicom_common import save_dicom
from pipeline.report.dicom_sc import build_sc
from pipeline.report.overlay import render_overlays
from tests.dicom_validation import dciodvfy
from tests.report_fixtures import PATIENT_ID, STUDY_UID, make_case

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    case = make_case(tmp_path_factory.mktemp("sc"))
    overlays = render_overlays(case.anatomy, case.report)
    out = tmp_path_factory.mktemp("scout")
    paths = [
        save_dicom(sc, out / f"sc{i}.dcm") for i, sc in enumerate(build_sc(overlays, case.datasets, case.report))
    ]
    return case, overlays, paths


def test_sc_rereads_with_the_overlay_pixels(made):
    case, overlays, paths = made
    assert len(paths) == 3
    for path, name in zip(paths, ["sagittal.png", "stir.png", "planes.png"], strict=True):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == SC_STORAGE and ds.StudyInstanceUID == STUDY_UID and ds.PatientID == PATIENT_ID
        assert ds.PhotometricInterpretation == "RGB" and ds.BurnedInAnnotation == "YES"
        want = np.asarray(Image.open(io.BytesIO(overlays[name])).convert("RGB"))
        np.testing.assert_array_equal(ds.pixel_array, want)
    a, b = (pydicom.dcmread(p) for p in paths[:2])
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert (a.InstanceNumber, b.InstanceNumber) == (1, 2)


def test_sc_uids_are_deterministic(made):
    case, overlays, paths = made
    again = build_sc(overlays, case.datasets, case.report)
    assert [s.SOPInstanceUID for s in again] == [pydicom.dcmread(p).SOPInstanceUID for p in paths]


def test_sc_passes_dciodvfy(made):
    _case, _overlays, paths = made
    for p in paths:
        errors, _warnings = dciodvfy(p)
        assert errors == []
