"""TID 1500 Comprehensive 3D SR: re-read, references to SEG and source, numbers round-trip, dciodvfy."""

from __future__ import annotations

import copy
import dataclasses

import highdicom as hd
import pydicom
import pytest

from pipeline.errors import InputError
from pipeline.levels import Level
from pipeline.report import dicom_codes as dc
from pipeline.report import dicom_sr
from pipeline.report.dicom_common import save_dicom
from pipeline.report.dicom_seg import build_seg
from pipeline.report.dicom_sr import _source_images_by_segment, build_sr, image_library
from tests.dicom_validation import dciodvfy
from tests.report_fixtures import PATIENT_ID, SERIES_UID, STUDY_UID, make_case

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    case = make_case(tmp_path_factory.mktemp("sr"))
    out = tmp_path_factory.mktemp("srout")
    seg = build_seg(case.report, case.datasets)
    seg_path = save_dicom(seg, out / "seg.dcm")
    sr_path = save_dicom(build_sr(case.report, seg, case.datasets), out / "sr.dcm")
    return case, seg_path, sr_path


def _groups_by_identifier(sr_path):
    sr = hd.sr.srread(sr_path)
    return {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}


def _numbers(group) -> dict[str, tuple[float, str]]:
    return {m.name.value: (m.value, m.unit.value) for m in group.get_measurements()}


def _codes(group) -> dict[str, str]:
    return {q.name.value: q.value.value for q in group.get_qualitative_evaluations()}


def test_sr_rereads_with_patient_and_evidence(written):
    case, seg_path, sr_path = written
    ds = pydicom.dcmread(sr_path)
    seg = pydicom.dcmread(seg_path)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.StudyInstanceUID == STUDY_UID and ds.PatientID == PATIENT_ID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == (
        "COMPLETE",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    evidence = {
        s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
        for st in ds.CurrentRequestedProcedureEvidenceSequence
        for s in st.ReferencedSeriesSequence
    }
    assert evidence[SERIES_UID] == {d.SOPInstanceUID for d in case.datasets}
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == dc.PRIVATE_SCHEME


def _referenced_instances(item) -> set[str]:
    refs = {r.ReferencedSOPInstanceUID for r in item.get("ReferencedSOPSequence", [])}
    return refs.union(*(_referenced_instances(child) for child in item.get("ContentSequence", [])))


def test_every_instance_the_content_references_is_in_the_evidence(written):
    # build_sr gives highdicom's constructor the root without its children (which skips highdicom's own check)
    _case, _seg, sr_path = written
    ds = pydicom.dcmread(sr_path)
    evidence = {
        i.ReferencedSOPInstanceUID
        for st in ds.CurrentRequestedProcedureEvidenceSequence
        for s in st.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    referenced = _referenced_instances(ds)
    assert len(referenced) > 1 and referenced <= evidence


def test_built_sr_content_is_the_written_tree(written):
    case, seg_path, sr_path = written
    sr = build_sr(case.report, pydicom.dcmread(seg_path), case.datasets)
    assert sr.content[0].ContentSequence is sr.ContentSequence
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == list(_groups_by_identifier(sr_path))


def test_source_images_of_each_segment_are_those_highdicom_finds(written):
    _case, seg_path, _sr = written
    seg = pydicom.dcmread(seg_path)
    sources = _source_images_by_segment(seg)
    for s in seg.SegmentSequence:
        want = hd.sr.ReferencedSegment.from_segmentation(seg, s.SegmentNumber)
        got = hd.sr.ReferencedSegment(
            seg.SOPClassUID, seg.SOPInstanceUID, s.SegmentNumber, source_images=sources[s.SegmentNumber]
        )
        assert len(got) == len(want) > 1 and list(got) == list(want)


def _shares_descriptors(library) -> bool:
    images = library[0].ContentSequence[-1].ContentSequence[1:]
    return images[0].ContentSequence[0] is images[1].ContentSequence[0]


def test_image_library_is_highdicoms(written):
    case, _seg, _sr = written
    datasets = list(case.datasets)
    library = image_library(datasets)
    assert _shares_descriptors(library)  # the series' images: the fast way
    assert list(library) == list(hd.sr.ImageLibrary(datasets))


def test_image_library_of_images_that_differ_is_made_image_by_image(written, monkeypatch, caplog):
    case, _seg, _sr = written
    datasets = [copy.deepcopy(d) for d in case.datasets]
    datasets[2].SliceThickness = 2.5
    library = image_library(datasets)
    assert not _shares_descriptors(library) and list(library) == list(hd.sr.ImageLibrary(datasets))
    # an attribute highdicom describes that image_library does not compare: caught on the last image
    monkeypatch.setattr(dicom_sr, "_DESCRIBED", tuple(k for k in dicom_sr._DESCRIBED if k != "SliceThickness"))
    datasets[2].SliceThickness = datasets[0].SliceThickness
    datasets[-1].SliceThickness = 2.5
    with caplog.at_level("WARNING", logger="pipeline.report.dicom_sr"):
        library = image_library(datasets)
    assert "describes the images differently" in caplog.text
    assert not _shares_descriptors(library) and list(library) == list(hd.sr.ImageLibrary(datasets))


def test_each_vertebra_references_its_segment_and_the_source_images(written):
    case, seg_path, sr_path = written
    seg = hd.seg.segread(seg_path)
    segments = {s.TrackingUID: (s.SegmentNumber, s.SegmentLabel) for s in seg.SegmentSequence}
    source_uids = {d.SOPInstanceUID for d in case.datasets}
    groups = hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(case.report.to_json()["vertebrae"]) == 4
    for g, v in zip(groups, case.report.to_json()["vertebrae"], strict=True):
        ref = g.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        number, label = segments[g.tracking_uid]  # same tracking UID in SEG and SR
        assert ref.referenced_segment_numbers == [number]
        assert label.startswith(v["level"]) and g.tracking_identifier.startswith(v["level"])
        sources = {i.referenced_sop_instance_uid for i in ref.source_images_for_segmentation}
        assert sources and sources <= source_uids  # the slices this body was segmented on
        assert g.finding_sites[0].value.value == dc.level_code(Level.parse(v["level"]), is_sacrum=v["is_sacrum"]).value


def test_measurements_round_trip_to_the_report(written):
    case, _seg, sr_path = written
    groups = _groups_by_identifier(sr_path)
    l4 = next(v for v in case.report.to_json()["vertebrae"] if v["level"] == "L4")
    got = _numbers(groups["L4 vertebral body"])
    want = {
        "VB-HA": (l4["heights_mm"]["anterior"], "mm"),
        "VB-HM": (l4["heights_mm"]["middle"], "mm"),
        "VB-HP": (l4["heights_mm"]["posterior"], "mm"),
        "VB-HREF": (l4["reference_height_mm"], "mm"),
        "VB-HLOSS": (l4["height_loss_pct"], "%"),
        "VB-WEDGE-ANGLE": (l4["wedge_angle_deg"], "deg"),
        "PW-BULGE": (l4["morphometry"]["posterior_wall"]["bulge_mm"], "mm"),
        "CANAL-COMPROMISE": (l4["morphometry"]["posterior_wall"]["canal_compromise_pct"], "%"),
        "STIR-RATIO": (l4["stir"]["ratio"], "{ratio}"),
        "STIR-EDEMA-FRAC": (l4["stir"]["edema_fraction"] * 100.0, "%"),
        "118565006": (l4["volume_mm3"], "mm3"),
    }
    assert set(got) == set(want)
    for code, (value, unit) in want.items():
        assert got[code][1] == unit
        assert got[code][0] == pytest.approx(value, abs=1e-6), code
    assert _codes(groups["L4 vertebral body"]) == {
        "GENANT": "GENANT-2",
        "VCF": dc.YES.value,
        "VB-SHAPE": "SHAPE-WEDGE",
        "MARROW-EDEMA": dc.YES.value,
        "EDEMA-PATTERN": "PATTERN-BAND",
        "VA-ELIGIBILITY": "VA-CANDIDATE",
    }
    assert _codes(groups["L3 vertebral body"])["VCF"] == dc.NO.value  # grade 0 -> "No" (known)
    assert _codes(groups["L3 vertebral body"])["MARROW-EDEMA"] == dc.NO.value


def test_unknown_values_are_absent_not_false(written):
    _case, _seg, sr_path = written
    groups = _groups_by_identifier(sr_path)
    l5_numbers, l5_codes = _numbers(groups["L5 vertebral body"]), _codes(groups["L5 vertebral body"])
    # L5: morphometry not assessable and STIR not assessable -> no heights, grade, fracture or oedema items
    assert not {"VB-HA", "VB-HM", "VB-HP", "VB-HLOSS", "STIR-RATIO", "STIR-EDEMA-FRAC"} & set(l5_numbers)
    assert not {"GENANT", "VCF", "VB-SHAPE", "MARROW-EDEMA", "EDEMA-PATTERN"} & set(l5_codes)
    assert l5_codes["VA-ELIGIBILITY"] == "VA-NOT-INDICATED"  # no pain at L5 decides it despite the gaps
    s1_codes = _codes(groups["S1 vertebral body"])
    assert "MARROW-EDEMA" not in s1_codes and "VA-ELIGIBILITY" not in s1_codes


def test_observer_is_the_device_with_its_version(written):
    case, _seg, sr_path = written
    ds = pydicom.dcmread(sr_path)
    context = {
        item.ConceptNameCodeSequence[0].CodeMeaning: item.get("TextValue", item.get("UID"))
        for item in ds.ContentSequence
        if item.RelationshipType == "HAS OBS CONTEXT"
    }
    assert context["Device Observer Name"] == "spine-assess"
    assert context["Device Observer Model Name"] == f"spine-assess {case.report.to_json()['pipeline']['version']}"
    assert context["Device Observer UID"]
    assert list(ds.SoftwareVersions)[0] == case.report.to_json()["pipeline"]["version"]


def test_sr_uids_are_deterministic(written):
    case, seg_path, _sr = written
    seg = pydicom.dcmread(seg_path)
    a = build_sr(case.report, seg, case.datasets)
    b = build_sr(case.report, seg, case.datasets)
    assert (a.SeriesInstanceUID, a.SOPInstanceUID) == (b.SeriesInstanceUID, b.SOPInstanceUID)
    assert a.SOPInstanceUID != seg.SOPInstanceUID


def test_sr_passes_dciodvfy(written):
    _case, _seg, sr_path = written
    errors, warnings = dciodvfy(sr_path)
    assert errors == []
    # the only warnings: our private coding scheme is not one of DICOM's defined terms (it is declared in
    # the Coding Scheme Identification Sequence)
    assert all("99SPINEASSESS" in w for w in warnings)


def test_sr_refuses_a_seg_of_another_run(written):
    case, seg_path, _sr = written
    other = dataclasses.replace(case.report, config_sha256="ef" * 32)
    with pytest.raises(InputError, match="no segment for vertebra label"):
        build_sr(other, pydicom.dcmread(seg_path), case.datasets)
