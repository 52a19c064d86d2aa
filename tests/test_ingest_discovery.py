"""Discovery: walking folders, skipping what is not an image, grouping studies/series, refusing mixtures."""

from __future__ import annotations

import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from pipeline.errors import DicomReadError, InputError, SeriesError, StudyError
from pipeline.ingest import discover, discover_studies, discover_study, load_series, read_header
from pipeline.model import Orientation, Role
from tests.dicom_factory import (
    SeriesSpec,
    add_duplicate,
    set_attributes,
    truncate,
    write_deeply_nested,
    write_presentation_state,
    write_series,
    write_sr,
)

MPEG2 = "1.2.840.10008.1.2.4.100"


def _study(root: Path, **kw) -> SeriesSpec:
    spec = SeriesSpec(**kw)
    write_series(root / "t2", spec)
    return spec


def test_one_study_any_file_names_nested_folders(tmp_path: Path):
    st, fo = generate_uid(), generate_uid()
    write_series(tmp_path / "a" / "b" / "c", SeriesSpec(study_uid=st, frame_of_reference_uid=fo, file_names="none"))
    write_series(
        tmp_path / "x",
        SeriesSpec(
            study_uid=st,
            frame_of_reference_uid=fo,
            description="t1_tse_sag",
            tr=500,
            te=10,
            series_number=3,
            file_names="dcm",
        ),
    )
    study = discover_study(tmp_path)
    assert study.study_uid == st
    assert study.root == tmp_path
    assert [s.role for s in study.series] == [Role.T2, Role.T1]
    t2 = study.series[0]
    assert t2.orientation is Orientation.SAGITTAL
    assert t2.n_images == 5 and (t2.rows, t2.cols) == (12, 10)
    assert t2.pixel_spacing_mm == (0.8, 0.7) and t2.slice_spacing_mm == pytest.approx(4.0)
    assert t2.slice_thickness_mm == 3.5
    assert t2.transfer_syntaxes == ("1.2.840.10008.1.2.1",)
    assert t2.repetition_time_ms == 4000 and t2.echo_time_ms == 100 and t2.manufacturer == "SIEMENS"
    assert t2.slice_normal_lps == pytest.approx((-1.0, 0.0, 0.0))
    assert t2.problems == () and t2.usable
    assert study.skipped == ()


def test_files_are_listed_in_slice_order_not_instance_number(tmp_path: Path):
    spec = SeriesSpec(instance_order="reversed", file_names="none")
    written = write_series(tmp_path, spec)  # returned in slice order
    study = discover_study(tmp_path)
    assert list(study.series[0].files) == written


def test_patient_key_is_a_salted_hash_never_the_id(tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG, logger="pipeline")
    _study(tmp_path, patient_id="CANARY-PID-777", patient_name="Canary^Name")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 300)
    study = discover_study(tmp_path)
    assert study.patient_key.startswith("pk-") and "CANARY" not in study.patient_key
    text = repr(study) + caplog.text
    assert "CANARY" not in text and "Canary" not in text
    # Same patient and salt -> same key; another salt -> another key.
    from pipeline.ingest.config import DiscoveryConfig, IngestConfig, load_ingest_config

    cfg = load_ingest_config()
    other = IngestConfig(DiscoveryConfig(patient_key_salt="site-secret"), cfg.geometry, cfg.roles, cfg.selection)
    assert discover_study(tmp_path, cfg=cfg).patient_key == study.patient_key
    assert discover_study(tmp_path, cfg=other).patient_key != study.patient_key


def test_several_studies_are_listed_and_refused_by_discover_study(tmp_path: Path):
    a = _study(tmp_path / "one")
    b = _study(tmp_path / "two", study_date="20240305")
    studies = discover_studies(tmp_path)
    assert [s.study_uid for s in studies] == [a.study_uid, b.study_uid]  # sorted by date
    assert studies[0].root == tmp_path / "one" / "t2"
    with pytest.raises(StudyError, match=rf"2 studies found \({a.study_uid}, {b.study_uid}\).*spine-assess batch"):
        discover_study(tmp_path)
    assert discover_study(tmp_path, study_uid=b.study_uid).study_uid == b.study_uid
    with pytest.raises(StudyError, match="study 9.9 not found"):
        discover_study(tmp_path, study_uid="9.9")


def test_several_patients_in_one_study_are_refused(tmp_path: Path):
    st = generate_uid()
    write_series(tmp_path / "a", SeriesSpec(study_uid=st, patient_id="P1"))
    write_series(tmp_path / "b", SeriesSpec(study_uid=st, patient_id="P2", series_number=2))
    with pytest.raises(StudyError, match="2 different patient identities; refusing to mix patients") as exc:
        discover_study(tmp_path)
    assert "P1" not in str(exc.value) and "P2" not in str(exc.value)
    # batch discovery keeps the study, with the problem recorded
    (study,) = discover_studies(tmp_path)
    assert study.problems and study.patient_key == ""


def test_empty_folder_and_folder_without_images(tmp_path: Path):
    with pytest.raises(StudyError, match="no DICOM image series or NIfTI image found"):
        discover_study(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    write_sr(tmp_path / "report.dcm")
    with pytest.raises(StudyError, match=r"2 files looked at; skipped: 1 x not a DICOM file.*1 x DICOM without"):
        discover_study(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        discover(tmp_path / "missing")


def test_dicomdir_is_skipped_and_its_references_checked(tmp_path: Path):
    src = Path(get_testdata_file("DICOMDIR")).parent / "TINY_ALPHA"
    root = tmp_path / "cd"
    shutil.copytree(src, root)
    missing = root / "PT000000" / "ST000000" / "SE000000" / "IM000003"
    missing.unlink()
    found = discover(root)
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["DICOMDIR"].startswith("DICOMDIR (media directory), not an image; it references 50 files, 1 of")
    assert "IM000003" in reasons["DICOMDIR"] and "may be incomplete" in reasons["DICOMDIR"]


# --------------------------------------------------------------------------- bad input: the batch goes on
def _write_huge_length(path: Path) -> None:
    spec = SeriesSpec(series_uid=generate_uid(), series_number=9)

    def add_private(ds, k):
        ds.add_new(0x00091010, "OB", b"\x01" * 10)

    (p,) = write_series(path.parent / "tmp_huge", SeriesSpec(**{**spec.__dict__, "n_slices": 1}), mutate=add_private)
    data = bytearray(p.read_bytes())
    i = data.find(b"\x09\x00\x10\x10OB\x00\x00")
    struct.pack_into("<L", data, i + 8, 0x7FFFFFF0)
    path.write_bytes(bytes(data))
    shutil.rmtree(path.parent / "tmp_huge")


def _write_unsupported_ts(folder: Path) -> None:
    spec = SeriesSpec(transfer_syntax="1.2.840.10008.1.2.1", series_uid=generate_uid(), series_number=8)

    def mpeg(ds, k):
        ds.file_meta.TransferSyntaxUID = MPEG2
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
        ds["PixelData"].VR = "OB"

    write_series(folder, spec, mutate=mpeg)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("zero_byte", r"empty file \(0 bytes\)"),
        ("truncated", r"truncated file: pixel data declares \d+ bytes but the file ends \d+ bytes early"),
        ("non_dicom", r"not a DICOM file \(no 'DICM' marker at byte 128\)"),
        ("sr", r"DICOM without pixel data \(Basic Text SR Storage\): not an image"),
        ("pr", r"DICOM without pixel data \(Grayscale Softcopy Presentation State Storage\)"),
        (
            "huge_length",
            r"element \(0009,1010\) declares a length of 2147483632 bytes, more than the whole file",
        ),
        ("deep_sequences", r"unreadable DICOM header \(RecursionError"),
    ],
)
def test_bad_files_are_skipped_with_the_reason(tmp_path: Path, kind: str, match: str):
    spec = _study(tmp_path / "study")
    bad = tmp_path / "study" / "bad"
    bad.mkdir()
    target = bad / "file"
    if kind == "zero_byte":
        target.write_bytes(b"")
    elif kind == "truncated":
        (p,) = write_series(bad / "t", SeriesSpec(n_slices=1, study_uid=spec.study_uid, rows=64, cols=64))
        truncate(p, 0.7).rename(target)
    elif kind == "non_dicom":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 500)
    elif kind == "sr":
        write_sr(target, spec)
    elif kind == "pr":
        write_presentation_state(target, spec)
    elif kind == "huge_length":
        _write_huge_length(target)
    elif kind == "deep_sequences":
        write_deeply_nested(target, 3000, spec)
    with pytest.raises(DicomReadError, match=match) as exc:
        read_header(target)
    assert str(target) in str(exc.value)
    study = discover_study(tmp_path)
    (skip,) = [s for s in study.skipped if s.path == target]
    assert pytest.importorskip("re").search(match, skip.reason)
    # the good series is still there and loads
    (t2,) = [s for s in study.series if s.series_uid == spec.series_uid]
    assert load_series(t2).shape == (5, 12, 10)


def test_moderately_nested_private_sequences_are_fine(tmp_path: Path):
    target = tmp_path / "f.dcm"
    write_deeply_nested(target, 40)
    assert read_header(target).rows == 12


def test_unsupported_transfer_syntax(tmp_path: Path):
    _write_unsupported_ts(tmp_path / "mpeg")
    (series,) = discover_study(tmp_path).series
    assert series.transfer_syntaxes == (MPEG2,)
    assert "MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100) is not supported" in series.problems[0]
    with pytest.raises(DicomReadError, match=r"MPEG2 .* is not supported .*convert the files"):
        load_series(series)


@pytest.mark.parametrize("attr", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_attribute(tmp_path: Path, attr: str):
    write_series(tmp_path, SeriesSpec(), mutate=set_attributes(**{attr: None}))
    (series,) = discover_study(tmp_path).series
    assert f"has no valid {attr}" in series.problems[0]
    with pytest.raises(SeriesError, match=rf"IM000\d has no valid {attr} \(nor do 4 other slices\)"):
        load_series(series)


def test_single_slice_series_is_refused_for_3d(tmp_path: Path):
    write_series(tmp_path, SeriesSpec(n_slices=1))
    (series,) = discover_study(tmp_path).series
    assert "single-slice series" in series.problems[0]
    with pytest.raises(SeriesError, match="single-slice series; a 3-D volume needs at least 3"):
        load_series(series)


def test_mixed_orientation_series_is_split_into_stacks(tmp_path: Path):
    st, se = generate_uid(), generate_uid()
    for plane, n in (("SAGITTAL", 3), ("AXIAL", 3), ("CORONAL", 1)):
        write_series(
            tmp_path / plane,
            SeriesSpec(study_uid=st, series_uid=se, orientation=plane, n_slices=n, description="3-plane localizer"),
        )
    study = discover_study(tmp_path)
    assert [(s.stack, s.orientation, s.n_images) for s in study.series] == [
        ("AXIAL", Orientation.AXIAL, 3),
        ("CORONAL", Orientation.CORONAL, 1),
        ("SAGITTAL", Orientation.SAGITTAL, 3),
    ]
    assert {s.series_uid for s in study.series} == {se}
    assert len({s.key for s in study.series}) == 3
    for s in study.series:
        assert s.notes == ("split from a series mixing orientations (AXIAL: 3, CORONAL: 1, SAGITTAL: 3 images)",)
        assert s.role is Role.OTHER  # "localizer" name rule
    assert "single-slice" in study.series[1].problems[0]
    sag = study.series[2]
    vol = load_series(sag)  # the sagittal part alone is a valid stack
    assert vol.shape == (3, 12, 10)


def test_dixon_contrasts_in_one_series_are_split(tmp_path: Path):
    st, se = generate_uid(), generate_uid()
    for comp in ("W", "F"):
        write_series(
            tmp_path / comp,
            SeriesSpec(
                study_uid=st,
                series_uid=se,
                description="t2_tse_dixon_sag",
                image_type=("DERIVED", "PRIMARY", "DIXON", comp),
            ),
        )
    study = discover_study(tmp_path)
    by_stack = {s.stack: s for s in study.series}
    assert set(by_stack) == {"WATER", "FAT"}
    water = by_stack["WATER"]
    assert water.role is Role.STIR and water.substitute.value == "DIXON_WATER"
    assert by_stack["FAT"].role is Role.OTHER
    assert load_series(water).shape == (5, 12, 10)


def test_duplicate_sop_instance_uids(tmp_path: Path):
    paths = write_series(tmp_path / "s", SeriesSpec())
    copy = tmp_path / "copy_of_IM"
    shutil.copy(paths[2], copy)  # identical copy: harmless
    study = discover_study(tmp_path)
    (series,) = study.series
    assert series.usable and series.n_images == 5
    (skip,) = study.skipped
    assert skip.reason.startswith("duplicate copy of")
    other = paths[2] if skip.path == copy else copy
    assert skip.path in (copy, paths[2]) and str(other) in skip.reason


def test_conflicting_sop_instance_uids_make_the_series_unusable(tmp_path: Path):
    spec = SeriesSpec()
    paths = write_series(tmp_path / "s", spec)
    uid = pydicom.dcmread(paths[0]).SOPInstanceUID

    def same_uid_other_position(ds, k):
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid

    write_series(
        tmp_path / "t",
        SeriesSpec(**{**spec.__dict__, "n_slices": 1, "origin": (20.0, 0.0, 0.0)}),
        mutate=same_uid_other_position,
    )
    study = discover_study(tmp_path)
    (series,) = study.series
    assert "SOP Instance UIDs are shared with different images" in series.problems[0]
    assert any("is also used by a different image" in s.reason for s in study.skipped)
    with pytest.raises(SeriesError, match="SOP Instance UIDs are shared with different images"):
        load_series(series)


def test_a_file_given_directly(tmp_path: Path):
    paths = write_series(tmp_path, SeriesSpec(n_slices=3))
    (series,) = discover_study(paths[0]).series
    assert series.n_images == 1 and "only 1 slice" in series.problems[0] or "single-slice" in series.problems[0]


def test_geometry_problems_found_at_discovery(tmp_path: Path):
    def drop_third(ds, k):
        if k == 2:
            ds.ImagePositionPatient = [v + 0.0 for v in ds.ImagePositionPatient]

    paths = write_series(tmp_path, SeriesSpec(n_slices=6), mutate=drop_third)
    paths[2].unlink()  # a missing file in the middle
    (series,) = discover_study(tmp_path).series
    assert "missing slice(s): gap of 8.00 mm" in series.problems[0]
    with pytest.raises(SeriesError, match=r"missing slice\(s\): gap of 8.00 mm after .*IM0002"):
        load_series(series)


def test_file_count_limit(tmp_path: Path):
    from dataclasses import replace

    from pipeline.ingest.config import load_ingest_config

    for i in range(4):
        (tmp_path / f"f{i}").write_bytes(b"x")
    cfg = load_ingest_config()
    small = replace(cfg, discovery=replace(cfg.discovery, max_files=3))
    with pytest.raises(InputError, match=r"more than discovery.max_files \(3\) files"):
        discover(tmp_path, cfg=small)
    assert discover(tmp_path, cfg=replace(cfg, discovery=replace(cfg.discovery, max_files=4))).n_files == 4


# ------------------------------------------------------------ duplicate slice positions (issue 19 item 4)
def _timed(t: str):
    return set_attributes(AcquisitionDate="20240102", AcquisitionTime=t)


def test_identical_duplicate_at_a_slice_position_is_dropped(tmp_path: Path):
    spec = SeriesSpec()
    paths = write_series(tmp_path / "s", spec)
    extra = add_duplicate(paths[2], tmp_path / "s" / "IM9999")
    (series,) = discover_study(tmp_path).series
    assert series.usable and series.n_images == 5, series.problems
    assert len(series.files) == 5 and (extra in series.files) != (paths[2] in series.files)
    (warning,) = series.warnings
    assert "identical pixel data" in warning
    np.testing.assert_array_equal(load_series(series).array, spec.expected_array())


def test_conflicting_duplicate_keeps_the_later_acquisition(tmp_path: Path):
    spec = SeriesSpec()
    paths = write_series(tmp_path / "s", spec, mutate=_timed("101000"))
    later = add_duplicate(paths[2], tmp_path / "s" / "IM9999", pixel_offset=7, acquisition_time="101500")
    (series,) = discover_study(tmp_path).series
    assert series.usable and later in series.files and paths[2] not in series.files
    assert "later acquisition is kept" in series.warnings[0]
    expected = spec.expected_array()
    expected[2] += 7
    np.testing.assert_array_equal(load_series(series).array, expected)
    # the other way round: a stray earlier image is the one dropped
    shutil.rmtree(tmp_path / "s")
    paths = write_series(tmp_path / "s", spec, mutate=_timed("101000"))
    earlier = add_duplicate(paths[2], tmp_path / "s" / "IM9999", pixel_offset=7, acquisition_time="100500")
    (series,) = discover_study(tmp_path).series
    assert paths[2] in series.files and earlier not in series.files
    np.testing.assert_array_equal(load_series(series).array, spec.expected_array())


def test_conflicting_duplicate_at_the_same_time_keeps_the_one_consistent_with_the_series(tmp_path: Path):
    spec = SeriesSpec()
    paths = write_series(tmp_path / "s", spec, mutate=_timed("101000"))
    odd = add_duplicate(paths[2], tmp_path / "s" / "IM9999", pixel_offset=20000)  # far from slices 1 and 3
    (series,) = discover_study(tmp_path).series
    assert series.usable and odd not in series.files and paths[2] in series.files
    assert "consistent with its neighbours" in series.warnings[0]
    np.testing.assert_array_equal(load_series(series).array, spec.expected_array())


def test_every_position_doubled_is_still_refused(tmp_path: Path):
    """Two interleaved acquisitions (every slice twice) are not guessed apart: the series stays unusable."""
    paths = write_series(tmp_path / "s", SeriesSpec())
    for k, p in enumerate(paths):
        add_duplicate(p, tmp_path / "s" / f"DUP{k}", pixel_offset=3)
    (series,) = discover_study(tmp_path).series
    assert not series.usable and "duplicate slice position" in series.problems[0]
