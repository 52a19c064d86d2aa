"""DICOM Segmentation of the vertebral bodies: re-read, references, codes, pixels, UIDs, dciodvfy."""

from __future__ import annotations

import copy
import dataclasses

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.errors import AnalysisError, InputError
from pipeline.report.dicom_common import DicomOutputConfig, save_dicom
from pipeline.report.dicom_seg import build_seg
from tests.dicom_validation import dciodvfy
from tests.report_fixtures import PATIENT_ID, PATIENT_NAME, SERIES_UID, STUDY_UID, make_case

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module", params=[False, True], ids=["anterior-left", "flipped"])
def case(request, tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("seg"), flipped=request.param)


@pytest.fixture(scope="module")
def seg_file(case, tmp_path_factory):
    return save_dicom(
        build_seg(case.report, case.datasets),
        tmp_path_factory.mktemp("segout") / "seg.dcm",
    )


def test_seg_rereads_and_references_the_source_series(case, seg_file):
    ds = pydicom.dcmread(seg_file)
    assert ds.SOPClassUID == SEG_STORAGE and ds.Modality == "SEG"
    assert ds.StudyInstanceUID == STUDY_UID and ds.FrameOfReferenceUID == case.datasets[0].FrameOfReferenceUID
    assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID  # patient module copied for PACS
    assert ds.SegmentationType == "BINARY"
    assert [s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence] == [SERIES_UID]
    source_uids = {d.SOPInstanceUID for d in case.datasets}
    referenced = {i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= source_uids and referenced
    per_frame = {
        src.ReferencedSOPInstanceUID
        for f in ds.PerFrameFunctionalGroupsSequence
        for d in f.DerivationImageSequence
        for src in d.SourceImageSequence
    }
    assert per_frame <= source_uids
    assert ds.Manufacturer and ds.ManufacturerModelName == "spine-assess"
    assert list(ds.SoftwareVersions)[0] == case.report.to_json()["pipeline"]["version"]


def test_segments_are_the_reported_vertebrae_with_snomed_codes(case, seg_file):
    seg = hd.seg.segread(seg_file)
    levels = [v["level"] for v in case.report.to_json()["vertebrae"]]
    assert [s.SegmentNumber for s in seg.SegmentSequence] == [1, 2, 3, 4]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "L3 vertebral body",
        "L4 vertebral body",
        "L5 vertebral body",
        "S1 vertebral body (sacrum)",
    ]
    assert levels == ["L3", "L4", "L5", "S1"]
    types = [
        (
            s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
        )
        for s in seg.SegmentSequence
    ]
    # SNOMED CT (DICOM CID 7602): L3 36470004, L4 11994002, L5 49668003; S1 coded as Sacrum 54735007.
    assert types == [("36470004", "SCT"), ("11994002", "SCT"), ("49668003", "SCT"), ("54735007", "SCT")]
    for s in seg.SegmentSequence:
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"  # Anatomical Structure
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        algo = s.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmName == "spine-assess" and algo.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
    assert len({s.TrackingUID for s in seg.SegmentSequence}) == 4


def test_seg_pixels_round_trip_to_the_label_map(case, seg_file):
    seg = hd.seg.segread(seg_file)
    uids = [d.SOPInstanceUID for d in case.datasets]
    present = [u for u, sl in zip(uids, case.segmentation.labels.array, strict=True) if sl.any()]
    got = seg.get_pixels_by_source_instance(present, combine_segments=True)
    want = np.stack([sl for sl in case.segmentation.labels.array if sl.any()])
    np.testing.assert_array_equal(got, want)
    # frames only where a segment is present: 4 bodies x 3 slices
    assert seg.NumberOfFrames == 12


def _all_uids(ds) -> list[str]:
    found: list[str] = []
    ds.walk(lambda _ds, elem: found.append(str(elem.value)) if elem.VR == "UI" else None)
    return found


def test_seg_uids_are_deterministic_and_change_with_the_configuration(case):
    a = build_seg(case.report, case.datasets)
    b = build_seg(case.report, case.datasets)
    assert (a.SeriesInstanceUID, a.SOPInstanceUID) == (b.SeriesInstanceUID, b.SOPInstanceUID)
    assert [s.TrackingUID for s in a.SegmentSequence] == [s.TrackingUID for s in b.SegmentSequence]
    assert _all_uids(a) == _all_uids(b)  # every UID, including highdicom's dimension organization
    c = build_seg(dataclasses.replace(case.report, config_sha256="cd" * 32), case.datasets)
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.SeriesInstanceUID != a.SeriesInstanceUID
    assert len({a.SOPInstanceUID, a.SeriesInstanceUID, c.SOPInstanceUID}) == 3
    assert all(len(u) <= 64 for u in (a.SOPInstanceUID, a.SeriesInstanceUID))


def test_seg_passes_dciodvfy(seg_file):
    errors, _warnings = dciodvfy(seg_file)
    assert errors == []


def test_seg_refuses_headers_of_another_series(case):
    other = [copy.deepcopy(d) for d in case.datasets]
    for d in other:
        d.SeriesInstanceUID = "1.2.3.4.5"
    with pytest.raises(InputError, match="not to the segmented series"):
        build_seg(case.report, other)


def test_seg_refuses_an_empty_segmentation(case):
    empty = dataclasses.replace(case.segmentation, vertebrae=())
    with pytest.raises(AnalysisError, match="no vertebral body"):
        build_seg(dataclasses.replace(case.report, segmentation=empty), case.datasets)


def test_seg_uses_the_configured_series_number_and_equipment(case):
    cfg = DicomOutputConfig(manufacturer="Hospital IT", seg_series_number=700, institution_name="General Hospital")
    seg = build_seg(case.report, case.datasets, config=cfg)
    assert seg.SeriesNumber == 700 and seg.Manufacturer == "Hospital IT"
    assert seg.InstitutionName == "General Hospital"


def test_seg_of_a_multiframe_source_references_its_frames(case, tmp_path):
    full = [pydicom.dcmread(p) for p in case.files]
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        full, series_instance_uid=full[0].SeriesInstanceUID, series_number=3, sop_instance_uid=hd.UID(),
        instance_number=1,
    )  # fmt: skip
    path = save_dicom(build_seg(case.report, [mf]), tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    refs = {
        (src.ReferencedSOPInstanceUID, int(src.ReferencedFrameNumber))
        for f in seg.PerFrameFunctionalGroupsSequence
        for d in f.DerivationImageSequence
        for src in d.SourceImageSequence
    }
    assert {uid for uid, _ in refs} == {mf.SOPInstanceUID}
    # frame n of the multi-frame source is the slice with the same position in the volume
    ipp = [[float(x) for x in d.ImagePositionPatient] for d in case.datasets]
    for _, frame in refs:
        pos = mf.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0].ImagePositionPatient
        s = next(i for i, p in enumerate(ipp) if np.allclose(p, [float(x) for x in pos]))
        got = seg.get_pixels_by_source_frame(mf.SOPInstanceUID, [frame], combine_segments=True)[0]
        np.testing.assert_array_equal(got, case.segmentation.labels.array[s])


def test_seg_leaves_out_stray_labels_and_says_which_body_has_no_voxel(case, caplog):
    labels = case.segmentation.labels.array.copy()
    first, last = case.segmentation.vertebrae[0].label, case.segmentation.vertebrae[-1].label
    body = np.argwhere(labels == first)
    labels[tuple(body[: len(body) // 2].T)] = 9  # half of the first body: a value no vertebra has
    labels[labels == last] = 0
    seg = dataclasses.replace(case.segmentation, labels=case.segmentation.labels.with_array(labels))
    with caplog.at_level("WARNING", logger="pipeline.report.dicom_seg"):
        ds = build_seg(dataclasses.replace(case.report, segmentation=seg), case.datasets)
    assert "label values [9] are not reported vertebrae" in caplog.text
    assert f"vertebra label {last} has no voxel" in caplog.text
    assert f"vertebra label {first} has no voxel" not in caplog.text
    assert len(ds.SegmentSequence) == len(case.segmentation.vertebrae)
