"""What the DICOM outputs share: the equipment that made them and the rule that makes their UIDs.

Deterministic output UIDs
-------------------------
A study that is re-run (the PACS listener re-runs a study when late instances arrive) must produce outputs
that *replace* the previous ones in the PACS, so every output UID is a function of what identifies the
result, never random::

    uid = pydicom.uid.generate_uid(prefix, entropy_srcs=[StudyInstanceUID, source SeriesInstanceUID,
                                                         kind, pipeline version, config SHA-256, *extra])

``kind`` names the object ("SEG-series", "SEG-instance", "SR-series", "SR-instance", "SC-series",
"SC-instance", "tracking", "device"); ``extra`` distinguishes several objects of one kind (the overlay
name of a secondary capture, the label of a vertebra's tracking UID). The same study, source series,
pipeline version and configuration give the same UIDs; a new version or configuration gives new ones (a
different result must not silently overwrite a result made by other rules). ``generate_uid`` hashes the
sources with SHA-512 under ``prefix`` (default: pydicom's root; a site may configure its own root).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from pipeline.errors import InputError, PipelineError

if TYPE_CHECKING:
    from pipeline.report.study_report import StudyReport

logger = logging.getLogger(__name__)

SOFTWARE_NAME = "spine-assess"
_SPECIFIC_CHARACTER_SET = 0x00080005


@dataclass(frozen=True)
class DicomOutputConfig:
    """Equipment identification and series numbers of the DICOM outputs (section ``dicom_outputs``).

    ``uid_prefix`` must end with a dot; a site with its own UID root should set it.
    """

    manufacturer: str = "spine-assess open-source project"
    model_name: str = SOFTWARE_NAME
    device_serial_number: str = "1"
    institution_name: str = ""
    uid_prefix: str = PYDICOM_ROOT_UID
    seg_series_number: int = 9901
    sr_series_number: int = 9902
    sc_series_number: int = 9903

    def __post_init__(self) -> None:
        if not self.uid_prefix.endswith(".") or len(self.uid_prefix) > 40:
            raise ValueError(f"uid_prefix must end with '.' and be at most 40 characters, got {self.uid_prefix!r}")
        for name in ("seg_series_number", "sr_series_number", "sc_series_number"):
            if not 0 < getattr(self, name) < 2**31:
                raise ValueError(f"{name} must be a positive 32-bit integer")


DEFAULT_DICOM_CONFIG = DicomOutputConfig()


@dataclass(frozen=True)
class OutputIdentity:
    """Who made a result and from what: the inputs of the UID rule."""

    study_uid: str
    source_series_uid: str
    pipeline_version: str
    config_sha256: str

    @classmethod
    def from_report(cls, report: StudyReport) -> OutputIdentity:
        if report.segmentation is None:
            raise PipelineError(
                f"report of study {report.study.study_uid} has no segmentation: there is nothing to store as DICOM"
            )
        return cls(
            report.study.study_uid,
            report.segmentation.series_uid,
            report.pipeline_version,
            report.config_sha256,
        )

    def uid(self, kind: str, *extra: str, prefix: str = PYDICOM_ROOT_UID) -> str:
        """Deterministic UID of an output object (see the module docstring for the rule)."""
        sources = [
            self.study_uid,
            self.source_series_uid,
            kind,
            self.pipeline_version,
            self.config_sha256,
            *extra,
        ]
        return str(generate_uid(prefix=prefix, entropy_srcs=sources))

    @property
    def software_versions(self) -> list[str]:
        """SoftwareVersions values: the pipeline version and the configuration it ran with."""
        return [self.pipeline_version, f"config sha256 {self.config_sha256[:16] or 'none'}"]


def check_source_datasets(source_datasets: Sequence[Dataset], identity: OutputIdentity) -> None:
    """The source headers must be the segmented series of the reported study."""
    if not source_datasets:
        raise InputError(f"no source images given for series {identity.source_series_uid}")
    for ds in source_datasets:
        series_uid = getattr(ds, "SeriesInstanceUID", None)
        study_uid = getattr(ds, "StudyInstanceUID", None)
        if series_uid != identity.source_series_uid or study_uid != identity.study_uid:
            raise InputError(
                f"source instance {getattr(ds, 'SOPInstanceUID', '?')} belongs to series {series_uid} "
                f"of study {study_uid}, not to the segmented series {identity.source_series_uid} of study "
                f"{identity.study_uid}; pass the headers of the series the segmentation was made on"
            )


def save_dicom(dataset: Dataset, path: Path) -> Path:
    """Write a DICOM Part 10 file (with file meta information); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    marked = _mark_items_encoded(dataset)
    try:
        dataset.save_as(path, enforce_file_format=True)
    finally:
        for item in marked:
            item.set_original_encoding(None, None, "")
    logger.info("wrote %s %s to %s", dataset.get("Modality", "?"), dataset.SOPInstanceUID, path.name)
    return path


def _mark_items_encoded(dataset: Dataset) -> list[Dataset]:
    """Mark the sequence items made in memory as encoded in the file's transfer syntax; returns them.

    pydicom's writer corrects the ambiguous VRs ("US or SS", "OB or OW") of every dataset that was not read in the
    file's encoding, walking its whole subtree, and it does so again for each sequence item it writes: the SR's
    content tree (7 levels deep) was walked 7 times, a third of its writing time. The walk from the root already
    covers every item, so only the items pydicom's own walk would repeat are marked: items made in memory with no
    undecoded element (items read from a file keep their own encoding), and only when the root is walked at all.
    """
    syntax = getattr(dataset, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax is None:
        return []
    encoding = (syntax.is_implicit_VR, syntax.is_little_endian)
    if dataset.original_encoding == encoding:
        return []
    marked: list[Dataset] = []
    stack = [dataset]
    while stack:
        ds = stack.pop()
        raw = False
        for element in ds.elements():
            if element.is_raw:
                raw = True
            elif element.VR == "SQ":
                stack.extend(cast(Sequence[Dataset], element.value))
        if ds is not dataset and not raw and ds.original_encoding == (None, None):
            charset = ds.get(_SPECIFIC_CHARACTER_SET)
            # the character set pydicom gives an item made in memory; another value would only cost the walk
            ds.set_original_encoding(*encoding, convert_encodings(charset.value) if charset else default_encoding)
            marked.append(ds)
    return marked
