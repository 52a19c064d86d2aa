"""Secondary Capture of the overlay pictures, for viewers that show images but neither SR nor SEG.

One RGB Secondary Capture Image per overlay, all in one series of the source study (patient and study
modules copied from the anatomy series). The pictures carry burned-in annotation (level names, numbers), but
never patient identity. UIDs follow :mod:`pipeline.report.dicom_common`'s rule, with the overlay name as an
extra source.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.errors import PipelineError
from pipeline.report.dicom_common import (
    DEFAULT_DICOM_CONFIG,
    DicomOutputConfig,
    OutputIdentity,
    check_source_datasets,
)
from pipeline.report.overlay import ordered
from pipeline.report.study_report import StudyReport

logger = logging.getLogger(__name__)

_DESCRIPTIONS = {
    "sagittal.png": "spine-assess sagittal overlay",
    "stir.png": "spine-assess STIR oedema overlay",
    "planes.png": "spine-assess neighbouring planes",
}


def build_sc(
    overlays: Mapping[str, bytes],
    source_datasets: Sequence[Dataset],
    report: StudyReport,
    *,
    config: DicomOutputConfig = DEFAULT_DICOM_CONFIG,
) -> list[hd.sc.SCImage]:
    """Secondary Capture images of the overlays (sagittal first).

    Parameters
    ----------
    overlays : mapping
        File name -> PNG bytes from :func:`pipeline.report.overlay.render_overlays`.
    source_datasets : sequence of pydicom.Dataset
        Headers of the anatomy series (patient/study modules are copied from the first).
    report : StudyReport
        The study's report (output UIDs depend on its study, source series, version and configuration hash).
    config : DicomOutputConfig
        Equipment identification, UID root and series number.

    Returns
    -------
    list of highdicom.sc.SCImage
        One RGB image per overlay in display order, instance numbers 1..n (PatientOrientation ``P\\F``:
        along a row the picture runs to posterior, down a column to the feet).
    """
    identity = OutputIdentity.from_report(report)
    check_source_datasets(source_datasets, identity)
    names = ordered(list(overlays))
    images = []
    for number, name in enumerate(names, start=1):
        try:
            rgb = np.asarray(Image.open(io.BytesIO(overlays[name])).convert("RGB"))
        except OSError as exc:
            raise PipelineError(f"overlay {name!r} is not a readable image: {exc}") from exc
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source_datasets[0],
            pixel_array=np.ascontiguousarray(rgb),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=identity.uid("SC-series", prefix=config.uid_prefix),
            series_number=config.sc_series_number,
            sop_instance_uid=identity.uid("SC-instance", name, prefix=config.uid_prefix),
            instance_number=number,
            manufacturer=config.manufacturer,
            patient_orientation=("P", "F"),
            series_description="spine-assess overlays",
            manufacturer_model_name=config.model_name,
            software_versions=identity.software_versions,
            device_serial_number=config.device_serial_number,
            institution_name=config.institution_name or None,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        if source_datasets[0].get("BodyPartExamined"):
            sc.BodyPartExamined = source_datasets[0].BodyPartExamined
        sc.BurnedInAnnotation = "YES"  # level names and numbers; no patient identity
        sc.ImageComments = _DESCRIPTIONS.get(name, f"spine-assess {name}")
        sc.ConversionType = "WSD"  # workstation: made by software from the source images
        images.append(sc)
    logger.info("secondary capture of study %s: %d images", identity.study_uid, len(images))
    return images
