"""Ingest on the project's sample studies (sample_dicom/, made by the phantom generator). Skips until they exist.

Known answers: each sample has a sagittal T2 (or T1), a STIR and a T1 sharing one frame of reference, and
``truth.json`` gives every vertebral body's centroid in patient coordinates, which must fall inside the
anatomy volume built by ingest; the volume's geometry must equal SimpleITK's reading of the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.ingest import choose_series, discover_study, load_series
from pipeline.model import Orientation, Role
from pipeline.volume import Volume

SAMPLES = Path(__file__).resolve().parent.parent / "sample_dicom"
STUDIES = sorted(d for d in SAMPLES.glob("*") if d.is_dir() and any(d.rglob("*.dcm")))

pytestmark = pytest.mark.skipif(not STUDIES, reason="sample_dicom/ has no DICOM studies on this branch yet")


@pytest.mark.parametrize("study_dir", STUDIES, ids=lambda d: d.name)
def test_sample_study(study_dir: Path):
    study = discover_study(study_dir)
    choice = choose_series(study)
    assert choice.anatomy is not None and choice.anatomy.role in (Role.T2, Role.T1)
    assert choice.stir is not None and choice.stir.role is Role.STIR
    assert choice.t1 is not None and choice.t1.role is Role.T1
    for s in (choice.anatomy, choice.stir, choice.t1):
        assert s.orientation is Orientation.SAGITTAL and s.usable
    assert choice.anatomy.frame_of_reference_uid == choice.stir.frame_of_reference_uid
    assert len(choice.decisions) == len(study.series)
    assert all(d.reason for d in choice.decisions)
    assert {s.path.name for s in study.skipped} <= {"clinical.yaml", "truth.json"}

    vol = load_series(choice.anatomy)
    files = [str(p) for p in choice.anatomy.files]  # in slice order
    ref = Volume.from_sitk(sitk.ReadImage(files, sitk.sitkFloat32))
    np.testing.assert_allclose(vol.origin_lps, ref.origin_lps, atol=1e-3)
    np.testing.assert_allclose(vol.spacing_mm, ref.spacing_mm, atol=1e-3)
    np.testing.assert_allclose(vol.axes_lps, ref.axes_lps, atol=1e-4)
    np.testing.assert_allclose(vol.array, ref.array, atol=1e-3)

    truth_path = study_dir / "truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        for v in truth["vertebrae"]:
            idx = vol.lps_to_index(v["centroid_lps_mm"])
            assert np.all(idx > -0.5) and np.all(idx < np.array(vol.shape) - 0.5), (v["level"], idx)
