"""NIfTI input: a one-series study with synthetic UIDs, role from a BIDS sidecar or the file name."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.errors import SeriesError, StudyError
from pipeline.ingest import choose_series, discover, discover_study, load_series, read_source_datasets
from pipeline.ingest.nifti import synthetic_uid
from pipeline.model import Orientation, Role, Substitute


def _write_pir(path: Path, shape=(20, 24, 6), spacing=(0.9, 1.1, 4.0), scale: float | None = None) -> np.ndarray:
    """A NIfTI with axis codes PIR like the real research data: x anterior->posterior, y superior->inferior,
    z towards the patient's right (the slice axis)."""
    data = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(np.int16)
    affine = np.zeros((4, 4))
    affine[1, 0] = -spacing[0]  # x: towards posterior (RAS y decreasing)
    affine[2, 1] = -spacing[1]  # y: towards inferior
    affine[0, 2] = spacing[2]  # z: towards the right (RAS x increasing)
    affine[:3, 3] = (-10.0, 20.0, 30.0)
    affine[3, 3] = 1.0
    img = nib.Nifti1Image(data, affine)
    if scale is not None:
        img.header.set_slope_inter(scale, 5.0)
    nib.save(img, path)
    assert nib.aff2axcodes(affine) == ("P", "I", "R")
    return data


def test_nifti_without_sidecar_is_a_sagittal_other_study(tmp_path: Path):
    data = _write_pir(tmp_path / "image.nii.gz")
    study = discover_study(tmp_path)
    (series,) = study.series
    assert series.source == "nifti" and series.orientation is Orientation.SAGITTAL
    assert series.role is Role.OTHER and "file name (no JSON sidecar)" in series.role_rule
    assert (series.n_images, series.rows, series.cols) == (6, 24, 20)
    assert series.pixel_spacing_mm == pytest.approx((1.1, 0.9)) and series.slice_spacing_mm == pytest.approx(4.0)
    assert study.patient_key == "" and study.study_uid.startswith("2.25.")
    vol = load_series(series)
    assert vol.array.dtype == np.float32 and vol.shape == (6, 24, 20)
    # array axes (slice, row, col) = NIfTI (z, y, x); LPS: slice -> right, row -> inferior, col -> posterior
    np.testing.assert_allclose(vol.axes_lps, [[-1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-6)
    np.testing.assert_array_equal(vol.array, np.transpose(data, (2, 1, 0)).astype(np.float32))
    assert vol.spacing_mm == pytest.approx((4.0, 1.1, 0.9))
    # RAS (-10, 20, 30) is LPS (10, -20, 30)
    assert vol.origin_lps == pytest.approx((10.0, -20.0, 30.0))
    choice = choose_series(study)
    assert choice.anatomy == series
    assert any("role OTHER" in w for w in choice.warnings)
    assert read_source_datasets(series) == []


def test_uids_are_deterministic_hashes_of_the_file(tmp_path: Path):
    (tmp_path / "a").mkdir()
    _write_pir(tmp_path / "a" / "image.nii.gz")
    first = discover_study(tmp_path / "a")
    again = discover_study(tmp_path / "a")
    assert first.study_uid == again.study_uid and first.series[0].series_uid == again.series[0].series_uid
    assert len(first.study_uid) <= 64 and len(first.series[0].series_uid) <= 64
    assert first.study_uid != first.series[0].series_uid != first.series[0].frame_of_reference_uid
    assert synthetic_uid("abc", "study") != synthetic_uid("abd", "study")


@pytest.mark.parametrize(
    ("name", "role", "sub"),
    [
        ("sub-01_T2w.nii.gz", Role.T2, None),
        ("sub-01_T1w.nii", Role.T1, None),
        ("case_stir.nii.gz", Role.STIR, None),
        ("dixon_water.nii.gz", Role.STIR, Substitute.DIXON_WATER),
    ],
)
def test_role_from_file_name(tmp_path: Path, name: str, role: Role, sub):
    _write_pir(tmp_path / name)
    (series,) = discover_study(tmp_path).series
    assert (series.role, series.substitute) == (role, sub)


def test_role_from_bids_sidecar_with_seconds(tmp_path: Path):
    _write_pir(tmp_path / "sub-01_run-1.nii.gz")
    (tmp_path / "sub-01_run-1.json").write_text(
        json.dumps(
            {
                "SeriesDescription": "t2_tirm_sag",
                "RepetitionTime": 4.5,
                "EchoTime": 0.041,
                "InversionTime": 0.16,
                "ScanningSequence": "SE_IR",
                "MagneticFieldStrength": 1.5,
                "Manufacturer": "Siemens",
            }
        )
    )
    found = discover(tmp_path)
    assert found.skipped == ()  # the sidecar is read with its image, not skipped
    (series,) = found.studies[0].series
    assert series.role is Role.STIR and "BIDS sidecar sub-01_run-1.json" in series.role_rule
    assert series.inversion_time_ms == pytest.approx(160.0) and series.repetition_time_ms == pytest.approx(4500.0)
    assert "agree" in series.role_rule


def test_broken_sidecar_falls_back_to_the_file_name(tmp_path: Path):
    _write_pir(tmp_path / "T2w.nii.gz")
    (tmp_path / "T2w.json").write_text("{not json")
    (series,) = discover_study(tmp_path).series
    assert series.role is Role.T2 and "JSON sidecar T2w.json ignored" in series.notes[0]


def test_label_maps_are_skipped_and_scale_is_applied(tmp_path: Path):
    data = _write_pir(tmp_path / "image.nii.gz", scale=2.0)
    _write_pir(tmp_path / "labels.nii.gz")
    found = discover(tmp_path)
    assert [s.path.name for s in found.skipped] == ["labels.nii.gz"]
    assert "label map" in found.skipped[0].reason
    vol = load_series(found.studies[0].series[0])
    np.testing.assert_allclose(vol.array, np.transpose(data, (2, 1, 0)) * 2.0 + 5.0)


def test_two_nifti_files_are_two_studies(tmp_path: Path):
    _write_pir(tmp_path / "a_T2w.nii.gz")
    _write_pir(tmp_path / "b_T1w.nii.gz", shape=(20, 24, 5))
    with pytest.raises(StudyError, match="2 studies found"):
        discover_study(tmp_path)


def test_4d_nifti_is_not_usable(tmp_path: Path):
    img = nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.int16), np.eye(4))
    nib.save(img, tmp_path / "fmri.nii.gz")
    (series,) = discover_study(tmp_path).series
    assert "4-D NIfTI with 3 volumes" in series.problems[0]
    with pytest.raises(SeriesError, match="4-D NIfTI"):
        load_series(series)


def test_corrupt_nifti_is_skipped(tmp_path: Path):
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    found = discover(tmp_path)
    assert found.studies == () and "unreadable NIfTI file" in found.skipped[0].reason
