"""DICOM Segmentation of the vertebral bodies (highdicom), referencing the series it was made on.

One BINARY segment per vertebral body in the report's order (cranial -> caudal), coded with the SNOMED CT
vertebra codes of :mod:`pipeline.report.dicom_codes`; frames only where a segment is present. The label map
lives on the anatomy series' grid, so highdicom matches every frame to its source image ("spatial locations
preserved") from the geometry alone: no assumption about the order of ``source_datasets``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from pipeline.errors import AnalysisError, InputError
from pipeline.model import VertebraSeg
from pipeline.report import dicom_codes as dc
from pipeline.report.dicom_common import (
    DEFAULT_DICOM_CONFIG,
    SOFTWARE_NAME,
    DicomOutputConfig,
    OutputIdentity,
    check_source_datasets,
)
from pipeline.report.study_report import StudyReport
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

CONTENT_LABEL = "VERTEBRAE"


def segment_label(vertebra: VertebraSeg) -> str:
    """Human-readable segment label, e.g. ``"L1 vertebral body"``."""
    if vertebra.level is None:
        return f"vertebral body {vertebra.label} (level unknown)"
    suffix = " (sacrum)" if vertebra.is_sacrum else ""
    return f"{vertebra.level.value} vertebral body{suffix}"


def tracking_uid(identity: OutputIdentity, label: int, config: DicomOutputConfig) -> str:
    """Tracking UID of the vertebra with label-map value ``label`` (shared by the SEG and the SR)."""
    return identity.uid("tracking", str(label), prefix=config.uid_prefix)


def _hd_volume(labels: Volume, array: np.ndarray, frame_of_reference_uid: str) -> hd.Volume:
    """highdicom Volume with the same voxel -> LPS mapping as ``labels``."""
    affine = np.eye(4)
    affine[:3, :3] = (labels.axes_lps * np.asarray(labels.spacing_mm)[:, None]).T
    affine[:3, 3] = labels.origin_lps
    return hd.Volume(array, affine, coordinate_system="PATIENT", frame_of_reference_uid=frame_of_reference_uid)


def build_seg(
    report: StudyReport,
    source_datasets: Sequence[Dataset],
    *,
    config: DicomOutputConfig = DEFAULT_DICOM_CONFIG,
) -> hd.seg.Segmentation:
    """Build the DICOM Segmentation of the vertebral bodies.

    Parameters
    ----------
    report : StudyReport
        The study's report: its segmentation (label map, uint16, shape ``(slice, row, col)`` on the anatomy
        series grid, 1..N, and its bodies); study UID, pipeline version and configuration hash make the
        output UIDs.
    source_datasets : sequence of pydicom.Dataset
        Headers (pixel data not needed) of the anatomy series the label map was made on: all single-frame
        instances, or one multi-frame instance. Their patient/study modules are copied into the SEG.
    config : DicomOutputConfig
        Equipment identification, UID root and series number.

    Returns
    -------
    highdicom.seg.Segmentation
        Segment ``k`` is ``report.segmentation.vertebrae[k-1]``; ``save_as`` writes it.

    Raises
    ------
    InputError
        The source headers are not the segmented series, or its geometry does not match the label map.
    AnalysisError
        No vertebral body to store.
    """
    identity = OutputIdentity.from_report(report)  # refuses a report without a segmentation
    check_source_datasets(source_datasets, identity)
    segmentation = report.segmentation
    if segmentation is None or not segmentation.vertebrae:
        raise AnalysisError(
            f"no vertebral body was found in series {identity.source_series_uid}: there is nothing to store "
            "in a DICOM Segmentation (the report says why)"
        )

    labels = segmentation.labels.array
    lut = np.zeros(int(max(int(labels.max()), max(v.label for v in segmentation.vertebrae))) + 1, np.uint16)
    for number, v in enumerate(segmentation.vertebrae, start=1):
        lut[v.label] = number
    seg_array = lut[labels]
    # voxel counts per value (bincount: one pass, where np.unique sorts the whole label map)
    present = np.flatnonzero(np.bincount(labels.ravel()))
    stray = np.setdiff1d(present, [0, *[v.label for v in segmentation.vertebrae]])
    voxels = np.bincount(seg_array.ravel(), minlength=len(segmentation.vertebrae) + 1)
    if stray.size:
        logger.warning(
            "series %s: label values %s are not reported vertebrae; left out of the SEG",
            segmentation.series_uid,
            stray.tolist(),
        )

    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE_NAME,
        family=dc.ALGORITHM_FAMILY,
        version=identity.pipeline_version,
        source=config.manufacturer,
    )
    descriptions = []
    for number, v in enumerate(segmentation.vertebrae, start=1):
        region = dc.region_code(v.level, is_sacrum=v.is_sacrum)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=segment_label(v),
                segmented_property_category=dc.ANATOMICAL_STRUCTURE,
                segmented_property_type=dc.level_code(v.level, is_sacrum=v.is_sacrum),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=tracking_uid(identity, v.label, config),
                tracking_id=segment_label(v),
                anatomic_regions=[region] if region is not None else None,
            )
        )
        if voxels[number] == 0:
            logger.warning(
                "series %s: vertebra label %d has no voxel; its segment has no frame",
                segmentation.series_uid,
                v.label,
            )

    src0 = source_datasets[0]
    for_uid = getattr(src0, "FrameOfReferenceUID", None)
    if not for_uid:
        raise InputError(
            f"source instance {src0.SOPInstanceUID} has no FrameOfReferenceUID; a Segmentation needs the "
            "patient coordinate system of its source"
        )
    volume = _hd_volume(segmentation.labels, seg_array, for_uid)
    try:
        seg = hd.seg.Segmentation(
            source_images=list(source_datasets),
            pixel_array=volume,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=identity.uid("SEG-series", prefix=config.uid_prefix),
            series_number=config.seg_series_number,
            sop_instance_uid=identity.uid("SEG-instance", prefix=config.uid_prefix),
            instance_number=1,
            manufacturer=config.manufacturer,
            manufacturer_model_name=config.model_name,
            # a list: pydicom 3 stores a multi-valued LO from a list (a tuple, as typed by highdicom, warns)
            software_versions=identity.software_versions,  # type: ignore[arg-type]
            device_serial_number=config.device_serial_number,
            content_label=CONTENT_LABEL,
            content_description="Vertebral bodies (spine-assess)",
            series_description="spine-assess vertebral bodies",
            institution_name=config.institution_name or None,
            omit_empty_frames=True,
        )
    except ValueError as exc:
        raise InputError(
            f"cannot build a DICOM Segmentation of series {segmentation.series_uid}: {exc}; the label map "
            "must lie on the grid of the source series"
        ) from exc
    _fix_dimension_organization_uid(seg, identity.uid("SEG-dimension-organization", prefix=config.uid_prefix))
    logger.info(
        "SEG of series %s: %d segments, %d frames",
        segmentation.series_uid,
        len(descriptions),
        int(seg.NumberOfFrames),
    )
    return seg


def _fix_dimension_organization_uid(seg: hd.seg.Segmentation, uid: str) -> None:
    """Replace highdicom's random DimensionOrganizationUID by a derived one: a re-run writes the same bytes."""
    old = seg.DimensionOrganizationSequence[0].DimensionOrganizationUID
    seg.DimensionOrganizationSequence[0].DimensionOrganizationUID = uid
    for item in seg.DimensionIndexSequence:
        if item.get("DimensionOrganizationUID") == old:
            item.DimensionOrganizationUID = uid
