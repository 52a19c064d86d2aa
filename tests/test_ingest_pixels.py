"""Volume building: decoding every supported transfer syntax, Enhanced MR, geometry against SimpleITK."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from pipeline.errors import DicomReadError, SeriesError
from pipeline.ingest import discover_study, load_series, pixels, read_source_datasets, slice_sources
from pipeline.ingest.pixels import transfer_syntax_problem
from pipeline.volume import Volume
from tests.dicom_factory import SeriesSpec, rotated_iop, write_enhanced, write_series

LOSSLESS = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    pytest.param(
        JPEGLosslessSV1,
        marks=pytest.mark.skipif(
            shutil.which("dcmcjpeg") is None, reason="DCMTK dcmcjpeg writes the JPEG lossless files"
        ),
    ),
]


def _load_only(root: Path):
    (series,) = discover_study(root).series
    assert series.problems == ()
    return series, load_series(series)


@pytest.mark.parametrize("ts", LOSSLESS)
def test_lossless_transfer_syntaxes_give_exact_voxels(tmp_path: Path, ts: str):
    # J2K needs images of at least 32 x 32 for its default resolution levels.
    spec = SeriesSpec(transfer_syntax=ts, rows=40, cols=36, rescale=(0.5, -20.0), instance_order="reversed")
    write_series(tmp_path, spec)
    series, vol = _load_only(tmp_path)
    assert series.transfer_syntaxes == (ts,)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, spec.expected_array())
    np.testing.assert_allclose(vol.axes_lps, spec.expected_axes(), atol=1e-9)
    assert vol.origin_lps == pytest.approx(spec.position(0))
    assert vol.spacing_mm == pytest.approx((4.0, 0.8, 0.7))


@pytest.mark.parametrize(("ts", "tol"), [(JPEGBaseline8Bit, 4.0), (JPEG2000, 20.0)])
def test_lossy_transfer_syntaxes_are_close(tmp_path: Path, ts: str, tol: float):
    bits = 8 if ts == JPEGBaseline8Bit else 16
    spec = SeriesSpec(transfer_syntax=ts, rows=40, cols=36, bits_allocated=bits)
    write_series(tmp_path, spec)
    _, vol = _load_only(tmp_path)
    err = np.abs(vol.array - spec.expected_array())
    assert float(err.mean()) < tol
    # slices are in the right order: each slice's mean is closest to its own expected mean
    means = vol.array.mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0)


def test_enhanced_mr_multiframe(tmp_path: Path):
    spec = SeriesSpec(
        description="T2W_TSE",
        manufacturer="Philips Medical Systems",
        rescale=(2.0, 1.0),
        tr=3500.0,
        te=90.0,
        n_slices=6,
    )
    write_enhanced(tmp_path / "enh.dcm", spec, frame_order=[3, 0, 5, 1, 4, 2])
    series, vol = _load_only(tmp_path)
    assert series.n_images == 6 and len(series.files) == 1
    assert series.role.value == "T2" and series.repetition_time_ms == 3500.0 and series.echo_time_ms == 90.0
    np.testing.assert_array_equal(vol.array, spec.expected_array())
    np.testing.assert_allclose(vol.axes_lps, spec.expected_axes(), atol=1e-9)
    assert vol.origin_lps == pytest.approx(spec.position(0))
    sources = slice_sources(series)
    assert [s.frame_number for s in sources] == [2, 4, 6, 1, 5, 3]  # frame j holds slice frame_order[j]
    (ds,) = read_source_datasets(series)
    assert ds.NumberOfFrames == 6 and "PixelData" not in ds


def test_enhanced_mr_stir_from_functional_groups(tmp_path: Path):
    spec = SeriesSpec(
        description="sag_ir",
        sequence_name="TIR",
        tr=5000.0,
        te=60.0,
        ti=160.0,
        transfer_syntax=JPEGLSLossless,
    )
    write_enhanced(tmp_path / "stir.dcm", spec)
    series, vol = _load_only(tmp_path)
    assert series.role.value == "STIR" and series.inversion_time_ms == 160.0
    assert "inversion recovery with short TI" in series.role_rule
    np.testing.assert_array_equal(vol.array, spec.expected_array())


def test_enhanced_mr_multiframe_compressed_rle(tmp_path: Path):
    spec = SeriesSpec(transfer_syntax=RLELossless)
    write_enhanced(tmp_path / "e.dcm", spec)
    _, vol = _load_only(tmp_path)
    np.testing.assert_array_equal(vol.array, spec.expected_array())


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_geometry_matches_simpleitk_series_reader(tmp_path: Path, tilt: float):
    spec = SeriesSpec(
        orientation=rotated_iop("SAGITTAL", tilt, (0, 1, 0)),
        n_slices=7,
        slice_spacing=3.3,
        pixel_spacing=(0.9, 0.6),
        origin=(12.5, -30.0, 80.0),
        file_names="none",
    )
    write_series(tmp_path, spec)
    series, vol = _load_only(tmp_path)
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(tmp_path))
    reader.SetFileNames(names)
    ref = Volume.from_sitk(reader.Execute())
    assert ref.shape == vol.shape
    np.testing.assert_allclose(vol.origin_lps, ref.origin_lps, atol=1e-4)
    np.testing.assert_allclose(vol.spacing_mm, ref.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(vol.axes_lps, ref.axes_lps, atol=1e-5)
    np.testing.assert_array_equal(vol.array, ref.array.astype(np.float32))
    # and a voxel's patient position agrees
    idx = np.array([3, 5, 7])
    np.testing.assert_allclose(vol.index_to_lps(idx), ref.index_to_lps(idx), atol=1e-4)


def test_slice_sources_and_datasets_follow_the_volume_order(tmp_path: Path):
    spec = SeriesSpec(instance_order="shuffled", seed=3, file_names="none")
    paths = write_series(tmp_path, spec)
    (series,) = discover_study(tmp_path).series
    sources = slice_sources(series)
    assert [s.path for s in sources] == paths
    assert all(s.frame_number is None for s in sources)
    datasets = read_source_datasets(series)
    assert [d.SOPInstanceUID for d in datasets] == [s.sop_instance_uid for s in sources]
    assert all("PixelData" not in d for d in datasets)


@pytest.mark.parametrize(
    ("mutate_slice", "match"),
    [
        (
            lambda ds: setattr(ds, "Rows", 11) or setattr(ds, "PixelData", ds.PixelData[: 11 * 10 * 2]),
            "is 11 x 10 pixels but",
        ),
        (lambda ds: setattr(ds, "PixelSpacing", [0.9, 0.7]), "has PixelSpacing"),
        (
            lambda ds: setattr(ds, "ImageOrientationPatient", list(rotated_iop("SAGITTAL", 8))),
            "is oriented differently",
        ),
        (
            # slice 2 moved onto slice 3: the duplicate is resolved (issue 19 item 4), the gap it leaves is not
            lambda ds: setattr(ds, "ImagePositionPatient", [-8.0 - 4.0 * 3, -40.0, 60.0]),
            "missing slice",
        ),
    ],
)
def test_inconsistent_series_raise_series_error(tmp_path: Path, mutate_slice, match: str):
    def mutate(ds, k):
        if k == 2:
            mutate_slice(ds)

    write_series(tmp_path, SeriesSpec(), mutate=mutate)
    (series,) = discover_study(tmp_path).series
    assert series.problems
    with pytest.raises(SeriesError, match=match):
        load_series(series)


def test_colour_and_monochrome1_are_refused(tmp_path: Path):
    def mono1(ds, k):
        ds.PhotometricInterpretation = "MONOCHROME1"

    write_series(tmp_path, SeriesSpec(), mutate=mono1)
    (series,) = discover_study(tmp_path).series
    assert "MONOCHROME1" in series.problems[0]
    with pytest.raises(DicomReadError, match="MONOCHROME1 .* is not supported"):
        load_series(series)


def test_file_changed_after_discovery_is_reported(tmp_path: Path):
    paths = write_series(tmp_path, SeriesSpec())
    (series,) = discover_study(tmp_path).series
    paths[1].write_bytes(b"gone")
    with pytest.raises(DicomReadError, match=r"IM0002: not a DICOM file"):
        load_series(series)


def test_corrupt_compressed_frame_is_a_decode_error(tmp_path: Path):
    paths = write_series(tmp_path, SeriesSpec(transfer_syntax=RLELossless))
    (series,) = discover_study(tmp_path).series
    data = bytearray(paths[0].read_bytes())
    data[-40:-8] = b"\xff" * 32  # scribble over the RLE segment
    paths[0].write_bytes(bytes(data))
    try:
        vol = load_series(series)
    except DicomReadError as exc:
        assert "cannot decode pixel data (RLE Lossless)" in str(exc)
    else:  # RLE cannot always detect damage; the other slices must still be right
        np.testing.assert_array_equal(vol.array[1:], SeriesSpec().expected_array()[1:])


def test_transfer_syntax_problem():
    assert transfer_syntax_problem(JPEGLSLossless) is None
    assert transfer_syntax_problem("1.2.840.10008.1.2.4.100") and "not supported" in transfer_syntax_problem(
        "1.2.840.10008.1.2.4.100"
    )
    assert "not a known transfer syntax" in transfer_syntax_problem("1.2.3.4")


def test_preferred_decoder_failure_falls_back_to_the_default_order(tmp_path: Path, monkeypatch):
    assert pixels._preferred_plugin(JPEGLSLossless) == "pyjpegls"  # CharLS first for JPEG-LS (speed)
    spec = SeriesSpec(transfer_syntax=RLELossless, rows=40, cols=36)
    write_series(tmp_path, spec)
    # pyjpegls is no RLE decoder: pydicom refuses it, and the default plugins must then decode the file
    monkeypatch.setattr(pixels, "_preferred_plugin", lambda ts: "pyjpegls")
    _, vol = _load_only(tmp_path)
    np.testing.assert_array_equal(vol.array, spec.expected_array())


def test_two_series_same_frame_of_reference_share_the_grid(tmp_path: Path):
    fo, st = generate_uid(), generate_uid()
    a = SeriesSpec(study_uid=st, frame_of_reference_uid=fo)
    b = SeriesSpec(
        study_uid=st,
        frame_of_reference_uid=fo,
        description="t1_tse_sag",
        tr=500,
        te=10,
        series_number=2,
        transfer_syntax=RLELossless,
    )
    write_series(tmp_path / "a", a)
    write_series(tmp_path / "b", b)
    s1, s2 = discover_study(tmp_path).series
    assert load_series(s1).same_grid(load_series(s2))


def test_decoder_panic_is_a_decode_error(tmp_path: Path):
    """pylibjpeg-rle (Rust) panics on this RLE segment with a pyo3 PanicException, a BaseException; found by
    the fuzz test. It must become a DicomReadError like any other corrupt frame."""
    import struct

    from pydicom.encaps import encapsulate

    from pipeline.ingest import read_frames

    header = struct.pack("<16L", 2, 64, 80, *([0] * 13))
    literal = bytes([0x7F]) + bytes(range(128))  # a 128-byte literal run into a 64-byte segment
    bad = header + literal[:16] + literal

    def corrupt(ds, k):
        ds.PixelData = encapsulate([bad])

    (path,) = write_series(
        tmp_path, SeriesSpec(n_slices=1, rows=8, cols=8, transfer_syntax=RLELossless), mutate=corrupt
    )
    with pytest.raises(DicomReadError, match=r"cannot decode pixel data \(RLE Lossless\)"):
        read_frames(path)


@pytest.mark.parametrize("ts", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_undecodable_edge_slice_is_dropped_with_a_warning(tmp_path: Path, ts: str):
    """Issue 19 item 3: one corrupt compressed slice at the edge of the slab no longer sinks the series."""
    from pipeline.ingest import load_usable_series, slice_sources
    from tests.dicom_factory import corrupt_compressed_pixels

    spec = SeriesSpec(transfer_syntax=ts, n_slices=6, rows=40, cols=36)
    paths = write_series(tmp_path, spec)
    corrupt_compressed_pixels(paths[-1])
    (series,) = discover_study(tmp_path).series
    with pytest.raises(DicomReadError, match="cannot decode pixel data"):
        load_series(series)  # the strict loader still refuses it
    usable = load_usable_series(series)
    np.testing.assert_array_equal(usable.volume.array, spec.expected_array()[:-1])
    assert usable.series.n_images == 5 and paths[-1] not in usable.series.files
    assert len(slice_sources(usable.series)) == 5  # SEG / SR references describe the same volume
    (warning,) = usable.warnings
    assert "1 slice(s) dropped" in warning and paths[-1].name in warning


def test_undecodable_middle_slice_leaves_a_gap_and_fails_the_series(tmp_path: Path):
    from pipeline.ingest import load_usable_series
    from tests.dicom_factory import corrupt_compressed_pixels

    paths = write_series(tmp_path, SeriesSpec(transfer_syntax=RLELossless, n_slices=6))
    corrupt_compressed_pixels(paths[2])
    (series,) = discover_study(tmp_path).series
    with pytest.raises(SeriesError, match=r"cannot be decoded .*missing slice"):
        load_usable_series(series)


def test_decode_problem_of_a_received_dataset(tmp_path: Path):
    import pydicom

    from pipeline.ingest import decode_problem
    from tests.dicom_factory import corrupt_compressed_pixels

    good, bad = write_series(tmp_path, SeriesSpec(transfer_syntax=JPEGLSLossless, n_slices=2))
    corrupt_compressed_pixels(bad)
    assert decode_problem(pydicom.dcmread(good)) is None
    assert "cannot decode pixel data (JPEG-LS Lossless" in decode_problem(pydicom.dcmread(bad))
