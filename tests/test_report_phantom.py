"""Report outputs on a phantom study written to DICOM and read back by ingest (the real file path to PACS).

The phantom's truth label map stands in for the segmentation, so that this test checks the report stage
alone: SEG/SR/SC references resolve to the files ingest read, pixels land on the right source frames, and
dciodvfy accepts every object.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.levels import Level
from pipeline.model import SegmentationResult, VertebraSeg
from pipeline.report.json_report import validate_report
from pipeline.report.outputs import parse_outputs, write_outputs
from pipeline.report.study_report import StudyReport
from tests.dicom_validation import dciodvfy

phantom = pytest.importorskip("pipeline.tools.phantom", reason="the phantom generator is not on this branch yet")
ingest = pytest.importorskip("pipeline.ingest", reason="the ingest stage is not on this branch yet")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    spec = phantom.PhantomSpec(
        seed=7, top_level=Level.T12, n_slices=7, pixel_spacing_mm=2.0, rows=160, cols=128, supersample=1,
        slice_subsamples=1,
    )  # fmt: skip
    ph = phantom.render_phantom(spec)
    root = tmp_path_factory.mktemp("phantom") / "study"
    phantom.write_study(ph, root)
    record = ingest.discover_study(root)
    choice = ingest.choose_series(record)
    anatomy = ingest.load_series(choice.anatomy)
    sources = ingest.read_source_datasets(choice.anatomy)
    labels = ph.labels.resample_like(anatomy, linear=False)
    labels = labels.with_array(np.rint(labels.array).astype(np.uint16))
    verts = []
    for label, level in sorted(ph.levels.items()):
        mask = labels.array == label
        pos = np.argwhere(mask)
        verts.append(
            VertebraSeg(
                label, level, 1.0, tuple(float(x) for x in labels.index_to_lps(pos.mean(axis=0))),
                int(np.argmax(mask.sum(axis=(1, 2)))), (*pos.min(axis=0).tolist(), *(pos.max(axis=0) + 1).tolist()),
                1.0, float(mask.sum() * labels.voxel_volume_mm3), is_sacrum=level is Level.S1,
            )
        )  # fmt: skip
    seg = SegmentationResult(labels, tuple(verts), choice.anatomy.series_uid, True, "phantom truth")
    report = StudyReport(record, choice, seg, config_sha256="ab" * 32)
    out = tmp_path_factory.mktemp("out")
    final = write_outputs(out, report, parse_outputs("all"), anatomy=anatomy, source_datasets=sources).to_json()
    return choice, seg, sources, out, final


def test_outputs_are_written_and_the_report_validates(study):
    _choice, _seg, _sources, out, final = study
    validate_report(final)
    assert {"seg", "sr", "sc", "html", "overlays"} <= set(final["outputs"])
    assert not [w for w in final["warnings"] if "not written" in w]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2  # sagittal, planes (no STIR)


def test_seg_frames_reference_the_ingested_files_and_match_the_labels(study):
    choice, seg, sources, out, _final = study
    ds = pydicom.dcmread(out / "seg.dcm")
    on_disk = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in choice.anatomy.files}
    by_uid = {d.SOPInstanceUID: i for i, d in enumerate(sources)}
    assert set(by_uid) == on_disk
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == choice.anatomy.series_uid
    hseg = hd.seg.segread(out / "seg.dcm")
    assert [s.SegmentLabel.split()[0] for s in hseg.SegmentSequence] == [v.level.value for v in seg.vertebrae]
    refs = [
        src.ReferencedSOPInstanceUID
        for f in ds.PerFrameFunctionalGroupsSequence
        for d in f.DerivationImageSequence
        for src in d.SourceImageSequence
    ]
    assert refs and set(refs) <= on_disk
    for uid in sorted(set(refs)):
        got = hseg.get_pixels_by_source_instance([uid], combine_segments=True)[0]
        np.testing.assert_array_equal(got, seg.labels.array[by_uid[uid]])


@pytest.mark.parametrize("name", ["seg.dcm", "sr.dcm", "sc/overlay_1.dcm"])
def test_dicom_outputs_pass_dciodvfy(study, name):
    *_rest, out, _final = study
    errors, warnings = dciodvfy(out / name)
    assert errors == []
    assert all("99SPINEASSESS" in w for w in warnings)
