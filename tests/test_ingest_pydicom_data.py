"""pydicom's bundled real test files (many vendors and transfer syntaxes): each one either reads and decodes,
or fails with a documented DicomReadError. Only files shipped inside the pydicom package are used (never the
ones pydicom would download), so the test runs offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT

from pipeline.errors import DicomReadError
from pipeline.ingest import discover, read_frames, read_header

BUNDLED = Path(DATA_ROOT) / "test_files"
FILES = sorted(p for p in BUNDLED.iterdir() if p.is_file())

# The documented ways a file may be refused (every DicomReadError message contains one of these).
DOCUMENTED = (
    "not a DICOM file",
    "DICOM without pixel data",
    "DICOMDIR",
    "are not supported; only greyscale",
    "MONOCHROME1",
    "cannot decode pixel data",
    "truncated",
    "unreadable DICOM header",
    "missing SOPInstanceUID",
    "missing StudyInstanceUID",
    "missing SeriesInstanceUID",
    "image without valid Rows/Columns",
    "is not supported (no pixel data decoder)",
    "not a known transfer syntax",
    "BitsAllocated",
    "PerFrameFunctionalGroupsSequence has",
)

# Known outcomes (the rest must merely be one of "decodes" or a documented refusal).
EXPECTED_ERRORS = {
    "MR_truncated.dcm": "truncated",
    "test-SR.dcm": "DICOM without pixel data (Comprehensive SR Storage)",
    "reportsi.dcm": "DICOM without pixel data (Basic Text SR Storage)",
    "rtplan.dcm": "DICOM without pixel data (RT Plan Storage)",
    "README.txt": "not a DICOM file",
    "zipMR.gz": "not a DICOM file",
    "SC_rgb_jpeg.dcm": "RGB images with 3 samples per pixel are not supported",  # implicit VR inside
    "liver_1frame.dcm": "PerFrameFunctionalGroupsSequence has 3 items for 1 frames",
    "JPEG-lossy.dcm": "cannot decode pixel data (JPEG Extended (Process 2 and 4))",
}
MR_SMALL = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
]


def test_only_bundled_files_are_used():
    assert len(FILES) > 60
    assert all(BUNDLED in p.parents for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_bundled_file_loads_or_fails_as_documented(path: Path):
    try:
        frames = read_frames(path)
    except DicomReadError as exc:
        msg = str(exc)
        assert str(path) in msg
        assert any(d in msg for d in DOCUMENTED), msg
        if path.name in EXPECTED_ERRORS:
            assert EXPECTED_ERRORS[path.name] in msg
        return
    assert path.name not in EXPECTED_ERRORS, f"{path.name} was expected to fail"
    header = read_header(path)
    assert frames.dtype == np.float32
    assert frames.shape == (header.n_frames, header.rows, header.cols)
    assert np.isfinite(frames).all()


@pytest.mark.parametrize("name", MR_SMALL)
def test_mr_small_in_every_transfer_syntax_decodes_identically(name: str):
    reference = read_frames(Path(get_testdata_file("MR_small.dcm")))
    got = read_frames(Path(get_testdata_file(name)))
    np.testing.assert_array_equal(got, reference)
    h = read_header(Path(get_testdata_file(name)))
    assert h.modality == "MR" and h.frames[0].pixel_spacing_mm is not None


def test_rtdose_multiframe_without_functional_groups_decodes():
    frames = read_frames(Path(get_testdata_file("rtdose.dcm")))
    assert frames.shape == (15, 10, 10)


def test_discovery_over_the_whole_bundle_never_crashes(tmp_path: Path):
    root = tmp_path / "bundle"
    shutil.copytree(BUNDLED, root)
    found = discover(root)
    in_series = {f for st in found.studies for s in st.series for f in s.files}
    skipped = {s.path for s in found.skipped}
    assert found.n_files == len(in_series | skipped)  # every file is accounted for, exactly once
    assert not in_series & skipped
    mr_small = [s for st in found.studies for s in st.series if any(f.name == "MR_small.dcm" for f in s.files)]
    assert mr_small and mr_small[0].modality == "MR"
