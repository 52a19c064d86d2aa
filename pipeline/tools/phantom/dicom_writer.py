"""Write a rendered phantom as a DICOM study folder (classic MR Image Storage) plus ``truth.json``.

Layout (like a PACS export)::

    OUT/
      truth.json
      001_localizer/IM0001.dcm ...        (optional, 9 images, 3 orientations)
      002_t2_tse_sag/IM0001.dcm ...       sagittal T2
      003_t1_tse_sag/...                  sagittal T1
      004_t2_tirm_sag/...                 sagittal STIR
      005_t2_tse_tra/...                  (optional) oblique axial T2

Series names, numbers and sequence attributes follow the vendor chosen in the spec
(:mod:`pipeline.tools.phantom.vendors`). All sagittal series share one FrameOfReferenceUID and geometry.
UIDs are derived from the spec, so writing the same spec again reproduces the files exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from pipeline import __version__
from pipeline.errors import InputError
from pipeline.tools.phantom.render import Phantom, PlaneImage
from pipeline.tools.phantom.spec import PhantomSpec
from pipeline.tools.phantom.uids import make_uid
from pipeline.tools.phantom.vendors import EQUIPMENT, SeriesProtocol, protocol_for
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

#: Transfer syntaxes the writer supports, by the short names used on the command line.
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
}
BITS_STORED = 12
LARMOR_MHZ_PER_T = 42.577478


def resolve_transfer_syntax(name_or_uid: str) -> UID:
    """Short name (``explicit``, ``rle``, ``jpeg-ls``, ``jpeg2000``) or UID -> UID, else InputError."""
    if name_or_uid in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[name_or_uid]
    for uid in TRANSFER_SYNTAXES.values():
        if name_or_uid == str(uid):
            return uid
    raise InputError(
        f"unsupported transfer syntax {name_or_uid!r}; use one of {', '.join(TRANSFER_SYNTAXES)} "
        f"(or their UIDs {', '.join(str(u) for u in TRANSFER_SYNTAXES.values())})"
    )


def write_study(phantom: Phantom, out_dir: Path, *, transfer_syntax: str = "explicit", overwrite: bool = False) -> Path:
    """Write ``phantom`` as DICOM files (one sub-folder per series) and ``truth.json`` into ``out_dir``.

    Parameters
    ----------
    phantom : Phantom
        From :func:`pipeline.tools.phantom.render_phantom`.
    out_dir : Path
        Created if missing. A previous phantom study there is an error unless ``overwrite=True`` (then its
        series folders and truth.json are replaced; other files, e.g. ``clinical.yaml``, are kept).
    transfer_syntax : str
        ``explicit`` (Explicit VR Little Endian), ``rle`` (RLE Lossless), ``jpeg-ls`` (JPEG-LS Lossless) or
        ``jpeg2000`` (JPEG 2000 Lossless); a UID is accepted too.

    Returns
    -------
    Path
        ``out_dir``.
    """
    ts = resolve_transfer_syntax(transfer_syntax)
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    spec = phantom.spec
    study = phantom.truth["study"]
    series_info = {s["role"]: s for s in study["series"]}
    base = _base_dataset(spec, study["study_instance_uid"], study["frame_of_reference_uid"])
    n_files = 0
    for role, info in series_info.items():
        proto = protocol_for(spec.vendor, role)
        folder = out_dir / f"{proto.series_number:03d}_{_safe(proto.description)}"
        folder.mkdir()
        images = list(_images(phantom, role))
        for index, (pixels, geometry) in enumerate(images, start=1):
            ds = _instance(base, spec, proto, info["series_instance_uid"], index, pixels, geometry, len(images))
            _encode_and_save(ds, pixels, ts, folder / f"IM{index:04d}.dcm")
            n_files += 1
    (out_dir / "truth.json").write_text(json.dumps(phantom.truth, indent=1) + "\n", encoding="utf-8")
    logger.info("wrote phantom study %s: %d files, transfer syntax %s", study["study_instance_uid"], n_files, ts.name)
    return out_dir


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse an existing phantom study there unless ``overwrite`` (then replace it).

    Files that are not ours (e.g. a ``clinical.yaml`` added next to the images) are always kept.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = [e for e in out_dir.iterdir() if (e.is_dir() and _SERIES_DIR.fullmatch(e.name)) or e.name == "truth.json"]
    if ours and not overwrite:
        raise InputError(
            f"{out_dir}: already holds a phantom study; choose another folder, or replace it (spine-assess "
            "phantom --overwrite)"
        )
    for e in ours:
        if e.is_dir():
            shutil.rmtree(e)
        else:
            e.unlink()


_SERIES_DIR = re.compile(r"\d{3}_[A-Za-z0-9_.-]+")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "series"


Geometry = tuple[tuple[float, float, float], tuple[float, ...], tuple[float, float], float, float]


def _images(phantom: Phantom, role: str) -> Iterator[tuple[np.ndarray, Geometry]]:
    """Per image: pixels uint16 (rows, cols) and (IPP, IOP, pixel spacing, thickness, slice spacing)."""
    if role == "LOCALIZER":
        for im in phantom.localizer:
            yield _u16(im.pixels), _plane_geometry(im)
        return
    vol = phantom.axial_t2 if role == "AXIAL_T2" else phantom.series_volume(role)
    assert vol is not None
    thickness = 4.0 if role == "AXIAL_T2" else phantom.spec.slice_thickness_mm
    for s in range(vol.shape[0]):
        yield _u16(vol.array[s]), _volume_geometry(vol, s, thickness)


def _u16(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(np.rint(a), 0, 2**BITS_STORED - 1).astype(np.uint16))


def _volume_geometry(vol: Volume, s: int, thickness: float) -> Geometry:
    ipp = tuple(float(v) for v in vol.index_to_lps([s, 0, 0]))
    iop = tuple(float(v) for v in (*vol.axes_lps[2], *vol.axes_lps[1]))
    return ipp, iop, (vol.spacing_mm[1], vol.spacing_mm[2]), thickness, vol.spacing_mm[0]  # type: ignore[return-value]


def _plane_geometry(im: PlaneImage) -> Geometry:
    return im.origin_lps, (*im.row_dir, *im.col_dir), im.spacing_mm, im.thickness_mm, im.thickness_mm


def _study_datetime(spec: PhantomSpec) -> dt.datetime:
    return dt.datetime(2024, 1, 1, 8, 0, 0) + dt.timedelta(days=spec.seed % 700, minutes=(spec.seed * 37) % 540)


def _base_dataset(spec: PhantomSpec, study_uid: str, for_uid: str) -> Dataset:
    eq = EQUIPMENT[spec.vendor]
    when = _study_datetime(spec)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MRImageStorage
    # Patient (synthetic, obviously fake identifiers)
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = f"{when.year - spec.patient_age_years:04d}0101"
    ds.PatientSex = spec.patient_sex
    ds.PatientIdentityRemoved = "NO"
    # General Study / Patient Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"PH{spec.seed:06d}"
    ds.AccessionNumber = f"ACC-PH-{spec.seed:04d}"
    ds.StudyDescription = spec.study_description
    ds.PatientAge = f"{spec.patient_age_years:03d}Y"
    ds.PatientWeight = 72.0
    ds.PatientSize = 1.70
    # Frame of Reference
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = eq.manufacturer
    ds.ManufacturerModelName = eq.model
    ds.InstitutionName = "SPINE-ASSESS SYNTHETIC PHANTOM"
    ds.StationName = eq.station_name
    ds.DeviceSerialNumber = "PHANTOM-0001"
    ds.SoftwareVersions = [eq.software_versions.replace("\\", " "), f"spine-assess {__version__}"]
    ds.Modality = "MR"
    ds.BodyPartExamined = "SPINE"
    ds.PatientPosition = "HFS"
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = "SYNTHETIC PHANTOM, NOT A PATIENT"
    return ds


def _instance(
    base: Dataset,
    spec: PhantomSpec,
    proto: SeriesProtocol,
    series_uid: str,
    index: int,
    pixels: np.ndarray,
    geometry: Geometry,
    n_images: int,
) -> Dataset:
    eq = EQUIPMENT[spec.vendor]
    when = _study_datetime(spec) + dt.timedelta(minutes=4 * proto.series_number % 60 + 2)
    ipp, iop, spacing, thickness, between = geometry
    ds = Dataset()
    ds.update(base)
    ds.SOPInstanceUID = make_uid(spec, "instance", proto.role, index)
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    # General Series
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = proto.series_number
    ds.SeriesDescription = proto.description
    ds.ProtocolName = proto.protocol_name
    ds.SeriesDate = when.strftime("%Y%m%d")
    ds.SeriesTime = when.strftime("%H%M%S")
    # General Acquisition / Image
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = ds.SeriesTime
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.InstanceNumber = index
    ds.ImageType = ["ORIGINAL", "PRIMARY", *eq.image_type_suffix]
    ds.ImagesInAcquisition = n_images
    # Image Plane
    ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
    ds.ImageOrientationPatient = [_ds(v, 8) for v in iop]
    ds.ImagePositionPatient = [_ds(v) for v in ipp]
    ds.SliceThickness = _ds(thickness)
    normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
    ds.SliceLocation = _ds(float(np.dot(normal, ipp)))
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    lo, hi = np.percentile(pixels, [1.0, 99.5])
    ds.WindowCenter = _ds((lo + hi) / 2, 1)
    ds.WindowWidth = _ds(max(hi - lo, 1.0), 1)
    # MR Image
    ds.ScanningSequence = list(proto.scanning_sequence)
    ds.SequenceVariant = list(proto.sequence_variant) or "NONE"
    ds.ScanOptions = list(proto.scan_options) if proto.scan_options else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = proto.sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = _ds(proto.repetition_time_ms)
    ds.EchoTime = _ds(proto.echo_time_ms)
    if proto.inversion_time_ms is not None:
        ds.InversionTime = _ds(proto.inversion_time_ms)
    ds.EchoTrainLength = proto.echo_train_length
    ds.NumberOfAverages = _ds(proto.averages)
    ds.ImagingFrequency = _ds(eq.field_strength_t * LARMOR_MHZ_PER_T, 6)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.MagneticFieldStrength = _ds(eq.field_strength_t)
    ds.SpacingBetweenSlices = _ds(between)
    ds.NumberOfPhaseEncodingSteps = int(round(pixels.shape[0] * 0.8))
    ds.PercentSampling = 100
    ds.PercentPhaseFieldOfView = 100
    ds.PixelBandwidth = _ds(proto.pixel_bandwidth_hz)
    ds.ReceiveCoilName = "SPINE"
    ds.TransmitCoilName = "BODY"
    ds.AcquisitionMatrix = [0, int(pixels.shape[1]), int(round(pixels.shape[0] * 0.8)), 0]
    ds.InPlanePhaseEncodingDirection = proto.phase_direction
    ds.FlipAngle = _ds(proto.flip_angle_deg)
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = _ds(0.8 if proto.role != "LOCALIZER" else 0.1, 3)
    ds.dBdt = 0
    return ds


def _ds(value: float, nd: int = 6) -> str:
    """Decimal String value (<= 16 characters)."""
    text = f"{value:.{nd}f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    while len(text) > 16 and nd > 0:
        nd -= 1
        text = f"{value:.{nd}f}".rstrip("0").rstrip(".")
    return text


def _encode_and_save(ds: Dataset, pixels: np.ndarray, ts: UID, path: Path) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    if ts != ExplicitVRLittleEndian:
        ds.compress(ts, pixels, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
