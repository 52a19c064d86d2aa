"""DICOM output of the phantom: valid, bit-exact, same geometry through pydicom and SimpleITK."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from phantom_cases import tiny_phantom

from pipeline.errors import InputError
from pipeline.tools.phantom import TRANSFER_SYNTAXES, write_study
from pipeline.tools.phantom.vendors import PROTOCOLS
from pipeline.volume import Volume
from tests.dicom_validation import dciodvfy


def _series_dirs(study: Path) -> dict[str, Path]:
    out = {}
    for d in sorted(p for p in study.iterdir() if p.is_dir()):
        role = str(pydicom.dcmread(next(d.iterdir()), stop_before_pixels=True).SeriesDescription)
        out[role] = d
    return out


def _role_dirs(study: Path, phantom) -> dict[str, Path]:
    by_desc = _series_dirs(study)
    return {s["role"]: by_desc[s["series_description"]] for s in phantom.truth["study"]["series"]}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    ph = tiny_phantom()
    root = tmp_path_factory.mktemp("phantom_dicom")
    return {name: write_study(ph, root / name, transfer_syntax=name) for name in TRANSFER_SYNTAXES}


@pytest.mark.parametrize("ts_name", list(TRANSFER_SYNTAXES))
def test_pixels_decode_bit_exactly(written, ts_name):
    ph = tiny_phantom()
    dirs = _role_dirs(written[ts_name], ph)
    expected = {"T1": ph.t1, "T2": ph.t2, "STIR": ph.stir, "AXIAL_T2": ph.axial_t2}
    for role, vol in expected.items():
        files = sorted(dirs[role].iterdir())
        assert len(files) == vol.shape[0]
        for i, f in enumerate(files):
            ds = pydicom.dcmread(f)
            assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[ts_name]
            assert int(ds.InstanceNumber) == i + 1
            np.testing.assert_array_equal(ds.pixel_array, vol.array[i].astype(np.uint16))
    loc = sorted(dirs["LOCALIZER"].iterdir())
    for f, im in zip(loc, ph.localizer, strict=True):
        np.testing.assert_array_equal(pydicom.dcmread(f).pixel_array, im.pixels.astype(np.uint16))


@pytest.mark.parametrize("ts_name", list(TRANSFER_SYNTAXES))
def test_simpleitk_reads_the_same_grid_and_values(written, ts_name):
    ph = tiny_phantom()
    dirs = _role_dirs(written[ts_name], ph)
    for role, vol in {"T2": ph.t2, "STIR": ph.stir, "AXIAL_T2": ph.axial_t2}.items():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dirs[role])))
        back = Volume.from_sitk(reader.Execute())
        assert back.same_grid(vol, tol_mm=1e-3), role
        np.testing.assert_array_equal(back.array.astype(np.float32), vol.array)


def test_headers_share_study_and_frame_of_reference(written):
    ph = tiny_phantom()
    study = ph.truth["study"]
    dirs = _role_dirs(written["explicit"], ph)
    for info in study["series"]:
        ds = pydicom.dcmread(next(dirs[info["role"]].iterdir()), stop_before_pixels=True)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.StudyInstanceUID == study["study_instance_uid"]
        assert ds.SeriesInstanceUID == info["series_instance_uid"]
        assert ds.FrameOfReferenceUID == study["frame_of_reference_uid"]
        assert str(ds.PatientName) == "PHANTOM^SEED7" and ds.PatientID == "PH-0007"
        assert ds.Modality == "MR" and ds.Manufacturer == "SIEMENS"
    t1 = pydicom.dcmread(next(dirs["T1"].iterdir()), stop_before_pixels=True)
    t2 = pydicom.dcmread(next(dirs["T2"].iterdir()), stop_before_pixels=True)
    stir = pydicom.dcmread(next(dirs["STIR"].iterdir()), stop_before_pixels=True)
    assert float(t1.RepetitionTime) < 1000 and float(t1.EchoTime) < 20
    assert float(t2.RepetitionTime) > 2000 and float(t2.EchoTime) > 60
    assert "IR" in stir.ScanningSequence and 100 < float(stir.InversionTime) < 250
    assert "InversionTime" not in t2
    assert [float(v) for v in t2.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert float(t2.SpacingBetweenSlices) == pytest.approx(ph.spec.slice_pitch_mm)
    assert float(t2.SliceThickness) == pytest.approx(ph.spec.slice_thickness_mm)


def test_localizer_holds_three_orientations(written):
    ph = tiny_phantom()
    files = sorted(_role_dirs(written["explicit"], ph)["LOCALIZER"].iterdir())
    normals = set()
    for f, im in zip(files, ph.localizer, strict=True):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        np.testing.assert_allclose(iop, [*im.row_dir, *im.col_dir], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], im.origin_lps, atol=1e-4)
        normals.add(tuple(np.abs(np.cross(iop[:3], iop[3:])).round(3)))
    assert len(normals) == 3


def test_same_spec_writes_identical_files(written, tmp_path):
    again = write_study(tiny_phantom(), tmp_path / "again", transfer_syntax="explicit")
    first = written["explicit"]
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_existing_study_needs_overwrite_and_other_files_are_kept(tmp_path):
    ph = tiny_phantom()
    out = write_study(ph, tmp_path / "s", transfer_syntax="rle")
    (out / "clinical.yaml").write_text("note: kept\n")
    with pytest.raises(InputError, match="already holds a phantom study"):
        write_study(ph, out)
    write_study(ph, out, overwrite=True)
    assert (out / "clinical.yaml").read_text() == "note: kept\n"
    assert len([p for p in out.iterdir() if p.is_dir()]) == len(ph.truth["study"]["series"])


def test_unknown_transfer_syntax_is_rejected(tmp_path):
    with pytest.raises(InputError, match="unsupported transfer syntax 'jpeg-xl'"):
        write_study(tiny_phantom(), tmp_path / "x", transfer_syntax="jpeg-xl")


def test_truth_json_is_the_in_memory_truth(written):
    import json

    for path in written.values():
        assert json.loads((path / "truth.json").read_text()) == tiny_phantom().truth


def test_vendor_registry_names_match_the_clinical_conventions():
    from pipeline.tools.phantom import Vendor

    desc = {v: {role: p.description for role, p in PROTOCOLS[v].items()} for v in Vendor}
    assert desc[Vendor.SIEMENS]["STIR"] == "t2_tirm_sag" and desc[Vendor.SIEMENS]["T2"] == "t2_tse_sag"
    assert desc[Vendor.GE]["STIR"] == "SAG STIR" and desc[Vendor.GE]["T2"] == "SAG T2 FSE"
    assert desc[Vendor.PHILIPS]["STIR"] == "STIR_LONGTR" and desc[Vendor.PHILIPS]["T1"] == "T1W_TSE"
    assert desc[Vendor.CANON]["T2"] == "T2 FSE SAG"
    for v in Vendor:
        assert PROTOCOLS[v]["STIR"].inversion_time_ms is not None
        assert all(PROTOCOLS[v][r].inversion_time_ms is None for r in ("T1", "T2", "AXIAL_T2"))


@pytest.mark.parametrize("ts_name", ["explicit", "jpeg-ls"])
def test_dciodvfy_reports_no_errors(written, ts_name):
    ph = tiny_phantom()
    for role, folder in _role_dirs(written[ts_name], ph).items():
        errors, warnings = dciodvfy(next(folder.iterdir()))
        assert not errors, f"{role}: {errors}"
        # only the Siemens conventions remain: ImageType value 3 "M", ScanOptions "IR" on the STIR
        assert all("<M>" in w or "<IR>" in w for w in warnings), f"{role}: {warnings}"
