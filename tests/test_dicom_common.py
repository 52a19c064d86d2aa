"""The output UID rule and the DICOM output configuration."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pipeline.config import parse_section
from pipeline.errors import ConfigError, PipelineError
from pipeline.report.dicom_common import DicomOutputConfig, OutputIdentity, save_dicom
from pipeline.report.dicom_seg import build_seg
from pipeline.report.dicom_sr import build_sr
from tests.report_fixtures import make_case

UID_RE = re.compile(r"^[1-9][0-9]*(\.(0|[1-9][0-9]*))*$")
BASE = OutputIdentity("1.2.3", "1.2.3.4", "0.1.0", "ab" * 32)


def test_uids_are_valid_deterministic_and_depend_on_every_input():
    uid = BASE.uid("SEG-instance")
    assert UID_RE.match(uid) and len(uid) <= 64
    assert uid == OutputIdentity("1.2.3", "1.2.3.4", "0.1.0", "ab" * 32).uid("SEG-instance")
    variants = {
        OutputIdentity("1.2.3.9", "1.2.3.4", "0.1.0", "ab" * 32).uid("SEG-instance"),  # other study
        OutputIdentity("1.2.3", "1.2.3.5", "0.1.0", "ab" * 32).uid("SEG-instance"),  # other source series
        OutputIdentity("1.2.3", "1.2.3.4", "0.2.0", "ab" * 32).uid("SEG-instance"),  # other version
        OutputIdentity("1.2.3", "1.2.3.4", "0.1.0", "cd" * 32).uid("SEG-instance"),  # other configuration
        BASE.uid("SR-instance"),  # other kind
        BASE.uid("SEG-instance", "x"),  # other extra source
    }
    assert uid not in variants and len(variants) == 6
    assert BASE.uid("SEG-instance", prefix="1.2.999.").startswith("1.2.999.")


def test_identity_needs_a_report_with_a_segmentation():
    from pipeline.report.study_report import StudyReport
    from tests.test_study_report import _segmentation, _study

    report = StudyReport(_study(), pipeline_version="0.1.0", config_sha256="ab")
    with pytest.raises(PipelineError, match="no segmentation"):
        OutputIdentity.from_report(report)
    report = dataclasses.replace(report, segmentation=_segmentation())
    assert OutputIdentity.from_report(report) == OutputIdentity("1.2.3", "1.2.3.1", "0.1.0", "ab")


def test_config_section_parses_and_validates():
    where = "configs/pipeline.yaml: dicom_outputs"
    cfg = parse_section(DicomOutputConfig, {"manufacturer": "Hospital IT", "sr_series_number": 800}, where)
    assert cfg.manufacturer == "Hospital IT" and cfg.sr_series_number == 800 and cfg.seg_series_number == 9901
    with pytest.raises(ConfigError, match="seg_series_number must be a positive"):
        parse_section(DicomOutputConfig, {"seg_series_number": 0}, where)
    with pytest.raises(ConfigError, match="uid_prefix must end with"):
        parse_section(DicomOutputConfig, {"uid_prefix": "1.2.3"}, where)
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        parse_section(DicomOutputConfig, {"colour": "red"}, where)


@pytest.fixture(scope="module")
def seg_and_sr(tmp_path_factory):
    case = make_case(tmp_path_factory.mktemp("case"))
    seg = build_seg(case.report, case.datasets)
    return seg, build_sr(case.report, seg, case.datasets)


def _items(ds):
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _items(item)


def test_save_dicom_writes_the_bytes_pydicom_writes_and_leaves_the_dataset_as_it_was(seg_and_sr, tmp_path):
    for ds in seg_and_sr:
        before = [item.original_encoding for item in _items(ds)]
        assert before and set(before) == {(None, None)}  # made in memory: pydicom corrects every item's VRs
        save_dicom(ds, tmp_path / "fast.dcm")  # marks the items as encoded while it writes
        assert [item.original_encoding for item in _items(ds)] == before
        assert [item.original_character_set for item in _items(ds)] == [""] * len(before)
        ds.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
        assert (tmp_path / "fast.dcm").read_bytes() == (tmp_path / "plain.dcm").read_bytes()
