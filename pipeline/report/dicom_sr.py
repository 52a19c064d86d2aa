"""DICOM Comprehensive 3D SR measurement report (TID 1500) of the vertebrae, via highdicom.

One Volumetric ROI group (TID 1411) per vertebra, whose region is the vertebra's segment in the SEG
(``ReferencedSegment``, with the source series), carrying the report's numbers as measurements and its
findings as coded qualitative evaluations (codes: :mod:`pipeline.report.dicom_codes`). A value the report
does not have (not assessable, stage not run) is *left out*, never written as 0 or "No": a receiver sees
absence, not a false negative. The observer is the device (spine-assess and its version); the document is
COMPLETE, UNVERIFIED and PRELIMINARY, since no clinician has verified it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.errors import InputError
from pipeline.model import GradeState
from pipeline.report import dicom_codes as dc
from pipeline.report.dicom_common import (
    DEFAULT_DICOM_CONFIG,
    SOFTWARE_NAME,
    DicomOutputConfig,
    OutputIdentity,
    check_source_datasets,
)
from pipeline.report.dicom_seg import tracking_uid
from pipeline.report.study_report import StudyReport, VertebraReport

logger = logging.getLogger(__name__)


def _num(name: Code, value: float | None, unit: Code, scale: float = 1.0) -> hd.sr.Measurement | None:
    if value is None or not math.isfinite(value):
        return None
    return hd.sr.Measurement(name=name, value=float(value) * scale, unit=unit)


def _qual(name: Code, value: Code | None) -> hd.sr.QualitativeEvaluation | None:
    return None if value is None else hd.sr.QualitativeEvaluation(name=name, value=value)


def _yes_no(value: Any) -> Code | None:
    return None if value is None else (dc.YES if value else dc.NO)


def vertebra_measurements(v: VertebraReport) -> list[hd.sr.Measurement]:
    """Numeric measurements of one vertebra, as report.json has them (only those the report has)."""
    morph = v.morphometry
    heights = morph.heights if morph is not None else None
    wall = morph.posterior_wall if morph is not None and morph.posterior_wall.assessable else None
    stir = v.stir
    items = [
        _num(dc.HEIGHT_ANTERIOR, heights.anterior_mm if heights else None, dc.MM),
        _num(dc.HEIGHT_MIDDLE, heights.middle_mm if heights else None, dc.MM),
        _num(dc.HEIGHT_POSTERIOR, heights.posterior_mm if heights else None, dc.MM),
        _num(dc.HEIGHT_REFERENCE, morph.reference_height_mm if morph else None, dc.MM),
        _num(dc.HEIGHT_LOSS, morph.height_loss_pct if morph else None, dc.PERCENT),
        _num(dc.WEDGE_ANGLE, morph.wedge_angle_deg if morph else None, dc.DEGREE),
        _num(dc.POSTERIOR_WALL_BULGE, wall.bulge_mm if wall else None, dc.MM),
        _num(dc.CANAL_COMPROMISE, wall.canal_compromise_pct if wall else None, dc.PERCENT),
        _num(dc.STIR_RATIO, stir.ratio if stir else None, dc.RATIO),
        _num(dc.STIR_EDEMA_FRACTION, stir.edema_fraction if stir else None, dc.PERCENT, scale=100.0),
        _num(dc.VOLUME, v.seg.volume_mm3 or None, dc.MM3),
    ]
    return [m for m in items if m is not None]


def vertebra_evaluations(v: VertebraReport) -> list[hd.sr.QualitativeEvaluation]:
    """Coded findings of one vertebra; unknown findings are never encoded as "No".

    The grade follows :attr:`VertebraReport.grade`: a definite grade gives its Genant grade, shape and
    "fracture present" Yes/No; an uncertain one (at the fracture threshold, low-confidence mask) gives
    "fracture present: Indeterminate" and no grade or shape (the measured height loss is still a measurement);
    a grade that is not assessable gives no grade or fracture item at all.
    """
    g = v.grade
    edema = v.stir.edema if v.stir is not None else None
    pattern = v.stir.pattern.value if v.stir is not None and edema is not None else None
    definite = g.state is GradeState.DEFINITE and g.grade is not None
    if g.state is GradeState.UNCERTAIN and not v.is_sacrum:
        fracture: Code | None = dc.INDETERMINATE  # measured, but it cannot say fractured or not
    else:
        fracture = _yes_no(g.fractured) if definite else None  # not assessable: left out, as every unknown
    shape = v.morphometry.morphology.value if v.morphometry is not None else ""
    items = [
        _qual(dc.GENANT, dc.GENANT_GRADES.get(g.grade) if definite and g.grade is not None else None),
        _qual(dc.FRACTURE, fracture),
        _qual(dc.SHAPE, dc.SHAPES.get(shape) if definite else None),
        _qual(dc.MARROW_EDEMA, _yes_no(edema)),
        _qual(dc.EDEMA_PATTERN, dc.EDEMA_PATTERNS.get(pattern) if pattern is not None else None),
        _qual(dc.ELIGIBILITY, dc.ELIGIBILITY_DECISIONS[v.decision.value] if v.decision else None),
    ]
    return [q for q in items if q is not None]


def build_sr(
    report: StudyReport,
    seg: Dataset,
    source_datasets: Sequence[Dataset],
    *,
    config: DicomOutputConfig = DEFAULT_DICOM_CONFIG,
) -> hd.sr.Comprehensive3DSR:
    """Build the TID 1500 measurement report of every vertebra in ``report``.

    Parameters
    ----------
    report : StudyReport
        The study's report, with a segmentation (one measurement group per vertebra).
    seg : pydicom.Dataset
        The Segmentation from :func:`pipeline.report.dicom_seg.build_seg` for the same report (segments are
        matched by tracking UID, so a SEG of another run is refused).
    source_datasets : sequence of pydicom.Dataset
        Headers of the anatomy series (referenced in the image library and as evidence).
    config : DicomOutputConfig
        Equipment identification, UID root and series number.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Measurements in mm, %, degrees and ratio; see :mod:`pipeline.report.dicom_codes` for the codes.
    """
    identity = OutputIdentity.from_report(report)
    check_source_datasets(source_datasets, identity)
    segment_by_tracking = {str(s.TrackingUID): int(s.SegmentNumber) for s in seg.SegmentSequence if "TrackingUID" in s}
    algorithm = hd.sr.AlgorithmIdentification(name=SOFTWARE_NAME, version=identity.pipeline_version)
    sources = _source_images_by_segment(seg)

    groups = []
    for v in report.vertebrae:
        label = v.label
        number = segment_by_tracking.get(tracking_uid(identity, label, config))
        if number is None:
            raise InputError(
                f"the Segmentation {seg.SOPInstanceUID} has no segment for vertebra label {label} of study "
                f"{identity.study_uid}; build the SEG and the SR from the same report"
            )
        site = dc.level_code(v.level, is_sacrum=v.is_sacrum)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=tracking_uid(identity, label, config), identifier=f"{v.name} vertebral body"
                ),
                referenced_segment=(
                    hd.sr.ReferencedSegment(seg.SOPClassUID, seg.SOPInstanceUID, number, source_images=sources[number])
                    if sources.get(number)
                    else hd.sr.ReferencedSegment.from_segmentation(seg, number)  # its fallbacks and errors
                ),
                finding_type=dc.VERTEBRA,
                finding_sites=[hd.sr.FindingSite(site)],
                algorithm_id=algorithm,
                measurements=vertebra_measurements(v) or None,
                qualitative_evaluations=vertebra_evaluations(v) or None,
            )
        )

    observer = hd.sr.ObserverContext(
        observer_type=dc.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.uid("device", prefix=config.uid_prefix),
            name=SOFTWARE_NAME,
            manufacturer_name=config.manufacturer,
            model_name=f"{config.model_name} {identity.pipeline_version}",
            serial_number=config.device_serial_number,
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=dc.PROCEDURE_REPORTED,
        imaging_measurements=groups or None,
    )
    root = content[0]
    # the image library where MeasurementReport(referenced_images=...) puts it: before the imaging measurements
    for item in reversed(image_library(source_datasets)):
        root.ContentSequence.insert(len(root.ContentSequence) - 1, item)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, seg],
        content=_without_children(root),
        series_instance_uid=identity.uid("SR-series", prefix=config.uid_prefix),
        series_number=config.sr_series_number,
        sop_instance_uid=identity.uid("SR-instance", prefix=config.uid_prefix),
        instance_number=1,
        manufacturer=config.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=config.institution_name or None,
        manufacturer_model_name=config.model_name,
        software_versions=identity.software_versions,
        device_serial_number=config.device_serial_number,
        series_description="spine-assess vertebral measurements",
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=dc.PRIVATE_SCHEME,
                name=dc.PRIVATE_SCHEME_NAME,
                responsible_organization=dc.PRIVATE_SCHEME_ORGANIZATION,
            )
        ],
    )
    # the document holds the root's own elements (as the constructor would have put them) and ``sr.content`` the
    # report that made them (the constructor's view is a parsed deep copy of the same tree)
    sr.ContentSequence = root.ContentSequence
    sr._content = content
    logger.info("SR of study %s: %d vertebra groups", identity.study_uid, len(groups))
    return sr


#: image attributes that highdicom's library entry descriptors (TID 1602, 1604 for CT/MR/PT) are made of
_DESCRIBED = ("SOPClassUID", "Modality", "FrameOfReferenceUID", "Rows", "Columns", "PixelSpacing", "SliceThickness",
              "ImageOrientationPatient", "SpacingBetweenSlices")  # fmt: skip
_POSITION_NAMES = (codes.DCM.ImagePositionPatientX, codes.DCM.ImagePositionPatientY,
                   codes.DCM.ImagePositionPatientZ)  # fmt: skip


def image_library(datasets: Sequence[Dataset]) -> hd.sr.ImageLibrary:
    """``highdicom.sr.ImageLibrary(datasets)`` (TID 1600), made faster for the images of one series.

    highdicom makes each entry's 17 descriptors from the image's header and checks its SOP class against the IOD
    tables every time: about 6 ms per image, half of the SR's CPU time. When every image has the first one's
    described attributes but its position, each entry is the first one's with its own image reference and position
    items (made by highdicom) and the 14 other descriptors shared (the same items in every entry; nothing changes
    them once built). The last image's entry is also made by highdicom and compared: any difference (a newer
    highdicom, an attribute it describes that ``_DESCRIBED`` lacks) and the whole library is highdicom's.
    """
    first = datasets[0]
    library = hd.sr.ImageLibrary(datasets[:1])
    described = [(k, first.get(k)) for k in _DESCRIBED]
    if (
        len(datasets) < 3
        or first.get("Modality") not in ("CT", "MR", "PT")
        or any(ds.get(k) != v for ds in datasets[1:] for k, v in described)
    ):
        return hd.sr.ImageLibrary(datasets)
    group = library[0].ContentSequence[-1]  # the image library group, its items: frame of reference, then images
    template = group.ContentSequence[-1]
    axes = {name: axis for axis, name in enumerate(_POSITION_NAMES)}
    slots = {k: axes[item.name] for k, item in enumerate(template.ContentSequence) if item.name in axes}
    entries = [_entry_like(template, slots, ds) for ds in datasets[1:]]
    reference = hd.sr.ImageLibrary(datasets[-1:])[0].ContentSequence[-1].ContentSequence[-1]
    if entries[-1] != reference:
        logger.warning("image library: highdicom describes the images differently than assumed; built image by image")
        return hd.sr.ImageLibrary(datasets)
    group.ContentSequence.extend(entries)
    return library


def _entry_like(template: hd.sr.ImageContentItem, slots: dict[int, int], ds: Dataset) -> hd.sr.ImageContentItem:
    """An image library entry for ``ds``: ``template``'s descriptors, its own image reference and, in the descriptor
    slots given (descriptor index -> axis), its own position."""
    entry = hd.sr.ImageContentItem(
        name=template.name,
        referenced_sop_class_uid=ds.SOPClassUID,
        referenced_sop_instance_uid=ds.SOPInstanceUID,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    descriptors = list(template.ContentSequence)
    for k, axis in slots.items():
        descriptors[k] = hd.sr.NumContentItem(
            name=descriptors[k].name,
            value=ds.ImagePositionPatient[axis],
            relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
            unit=descriptors[k].unit,
        )
    entry.ContentSequence = hd.sr.ContentSequence(descriptors)
    return entry


def _source_images_by_segment(seg: Dataset) -> dict[int, list[hd.sr.SourceImageForSegmentation]]:
    """Segment number -> its source images as ``ReferencedSegment.from_segmentation`` lists them (frame order, each
    instance once, with its referenced frames), in one pass over the frames instead of one pass per segment; an
    image that is the source of several segments is one item in all of them (nothing changes it once built)."""
    found: dict[int, dict[str, hd.sr.SourceImageForSegmentation]] = {}
    made: dict[tuple[str, tuple[int, ...] | None], hd.sr.SourceImageForSegmentation] = {}  # one item per image
    for frame in seg.PerFrameFunctionalGroupsSequence:
        images = found.setdefault(int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber), {})
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                uid = source.ReferencedSOPInstanceUID
                if uid in images:
                    continue
                frames = None
                if "ReferencedFrameNumber" in source:
                    element = source["ReferencedFrameNumber"]
                    frames = (element.value,) if element.VM == 1 else tuple(element.value)
                key = (uid, frames)
                if key not in made:
                    made[key] = hd.sr.SourceImageForSegmentation(
                        source.ReferencedSOPClassUID, uid, None if frames is None else list(frames)
                    )
                images[uid] = made[key]
    return {number: list(images.values()) for number, images in found.items()}


def _without_children(root: Dataset) -> Dataset:
    """``root`` with an empty content sequence, for highdicom's SR constructor; its children are attached after.

    The constructor deep-copies the content tree, parses the copy back into content items (for ``sr.content``)
    and searches it for the instances it references: 2/3 of the SR's CPU time (about 300 of 470 ms with 9-12
    vertebrae and 15-24 source images), for a tree that highdicom's templates have just built and checked. What it
    writes does not depend on the tree: it stores the root's elements themselves (not the copy) and lists every
    evidence dataset, referenced or not. Every instance the tree references is in the evidence by construction
    (the source images and the SEG; tested).
    """
    stub = Dataset()
    for element in root:
        if element.keyword != "ContentSequence":
            stub.add(element)
    stub.ContentSequence = []
    return stub
