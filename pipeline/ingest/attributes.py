"""What a parsed DICOM data set says, read leniently into typed values.

:func:`instance_header` turns the data set that :func:`pipeline.ingest.headers.read_header` parsed into an
:class:`InstanceHeader`: identity, image size, transfer syntax, per-frame geometry (:func:`frames_from_dataset`),
acquisition parameters (:func:`acquisition_from_dataset`) and a salted :func:`patient_key`.

Values are read leniently: :func:`string`, :func:`strings`, :func:`number`, :func:`integer` and :func:`vector`
give an empty or ``None`` result for a value that is absent or cannot be decoded, never an exception; checking
what is missing is the caller's job (:mod:`pipeline.ingest.geometry` for the geometry).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pipeline.errors import DicomReadError

Vec3 = tuple[float, float, float]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
UNDEFINED_LENGTH = 0xFFFFFFFF  # the declared length of encapsulated (compressed) pixel data

# Dixon / multi-contrast components as they appear in ImageType (classic) or FrameType (Enhanced MR).
_DIXON_COMPONENTS = {
    "W": "WATER",
    "WATER": "WATER",
    "F": "FAT",
    "FAT": "FAT",
    "IP": "IN_PHASE",
    "IN_PHASE": "IN_PHASE",
    "OP": "OPPOSED_PHASE",
    "OPP": "OPPOSED_PHASE",
    "OUT_PHASE": "OPPOSED_PHASE",
    "OPP_PHASE": "OPPOSED_PHASE",
    "OPPOSED_PHASE": "OPPOSED_PHASE",
}


@dataclass(frozen=True)
class AcquisitionInfo:
    """What role classification looks at: names and MR acquisition parameters of a series.

    Times are in ms; multi-valued DICOM attributes are upper-case tuples.
    """

    series_description: str = ""
    protocol_name: str = ""
    sequence_name: str = ""  # SequenceName, or PulseSequenceName (Enhanced MR)
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    scan_options: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ()  # ImageType plus Enhanced MR FrameType values
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    inversion_time_ms: float | None = None
    inversion_recovery: bool | None = None  # Enhanced MR InversionRecovery YES/NO; None when not stated
    fat_suppression: str = ""  # Enhanced MR SpectrallySelectedSuppression
    contrast_agent: str = ""  # ContrastBolusAgent (non-empty: contrast was given)
    field_strength_t: float | None = None
    manufacturer: str = ""
    origin: str = "DICOM header"  # where the information came from (DICOM header, BIDS sidecar, file name)


@dataclass(frozen=True)
class FrameGeometry:
    """Geometry and intensity mapping of one 2-D frame (one file, or one frame of a multi-frame file)."""

    frame_number: int | None  # 1-based in a multi-frame file, None for single-frame files
    position_lps: Vec3 | None  # ImagePositionPatient, mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 direction cosines (row dir, col dir)
    pixel_spacing_mm: tuple[float, float] | None  # (between rows, between columns)
    slice_thickness_mm: float | None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    contrast: str = ""  # Dixon component / echo, to split multi-contrast series ("" when not stated)
    acquisition: AcquisitionInfo | None = None  # per-frame parameters (Enhanced MR), None -> the file's


@dataclass(frozen=True)
class PixelElement:
    """Where a file's pixel data element is (found without reading it)."""

    keyword: str  # PixelData, FloatPixelData or DoubleFloatPixelData
    length: int  # declared length in bytes; 0xFFFFFFFF for encapsulated (compressed) data
    value_offset: int  # file offset of the value; -1 for a deflated file (parsed from an inflated copy)
    vr: str | None  # as written (explicit VR files), else None
    little_endian: bool

    @property
    def encapsulated(self) -> bool:
        return self.length == UNDEFINED_LENGTH


@dataclass(frozen=True)
class InstanceHeader:
    """The header of one image file, as needed for discovery and volume building."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str | None
    patient_key: str  # salted hash, "" when the file has no patient identifiers at all
    modality: str
    study_description: str
    study_date: str | None
    series_number: int | None
    instance_number: int | None
    rows: int
    cols: int
    n_frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    transfer_syntax: str
    file_size: int
    acquisition: AcquisitionInfo
    frames: tuple[FrameGeometry, ...]
    multiframe: bool  # geometry from functional groups (Enhanced MR and other multi-frame IODs)
    # What decoding needs, so that pixels can be read without parsing the header a second time:
    bits_stored: int = 0
    high_bit: int = 0
    pixel_representation: int = 0
    pixel: PixelElement | None = None
    # When the image was acquired, as a sortable 'YYYYMMDDHHMMSS.ffffff' (AcquisitionDateTime, else the date and
    # AcquisitionTime, else ContentDate / ContentTime); '' when unknown. Used to keep the later of two images at
    # one slice position.
    acquired: str = ""

    def acquisition_of(self, frame: FrameGeometry) -> AcquisitionInfo:
        return frame.acquisition if frame.acquisition is not None else self.acquisition


# --------------------------------------------------------------------------- the header of one image
def instance_header(ds: Dataset, path: Path, size: int, pixel: PixelElement | None, salt: str) -> InstanceHeader:
    """The :class:`InstanceHeader` of a data set parsed up to its pixel data (``pixel``: where that element is).

    Raises
    ------
    DicomReadError
        A DICOMDIR, no pixel data, missing UIDs, no valid image size, or pixel data shorter than the image.
    """
    meta = getattr(ds, "file_meta", Dataset())
    media_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise DicomReadError(f"{path}: DICOMDIR (media directory), not an image")
    sop_class = string(ds, "SOPClassUID") or media_class
    if pixel is None:
        raise DicomReadError(f"{path}: DICOM without pixel data ({_uid_name(sop_class)}): not an image")
    required = {k: string(ds, k) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    missing = [k for k, v in required.items() if not v]
    if missing:
        raise DicomReadError(f"{path}: missing {', '.join(missing)}; the file cannot be placed in a series")
    rows, cols = integer(ds, "Rows"), integer(ds, "Columns")
    if not rows or not cols or rows < 1 or cols < 1:
        raise DicomReadError(f"{path}: image without valid Rows/Columns ({rows} x {cols})")
    n_frames = integer(ds, "NumberOfFrames") or 1
    if n_frames < 1:
        raise DicomReadError(f"{path}: NumberOfFrames must be at least 1, got {n_frames}")
    spp = integer(ds, "SamplesPerPixel") or 1
    bits = integer(ds, "BitsAllocated") or 0
    ts = str(meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ts = "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    keyword, length = pixel.keyword, pixel.length
    if length != UNDEFINED_LENGTH and keyword == "PixelData" and bits in (8, 16, 32):
        expected = rows * cols * n_frames * spp * (bits // 8)
        if length < expected:
            raise DicomReadError(
                f"{path}: pixel data has {length} bytes but {rows} x {cols} x {n_frames} frames x {spp} "
                f"samples x {bits} bits needs {expected}; the file is truncated or its header is wrong"
            )
    frames, multiframe = frames_from_dataset(ds, path)
    stored, high = integer(ds, "BitsStored") or bits, integer(ds, "HighBit")
    return InstanceHeader(
        path=path,
        sop_instance_uid=required["SOPInstanceUID"],
        sop_class_uid=sop_class,
        study_uid=required["StudyInstanceUID"],
        series_uid=required["SeriesInstanceUID"],
        frame_of_reference_uid=string(ds, "FrameOfReferenceUID") or None,
        patient_key=patient_key(ds, salt),
        modality=string(ds, "Modality").upper(),
        study_description=string(ds, "StudyDescription"),
        study_date=string(ds, "StudyDate") or None,
        series_number=integer(ds, "SeriesNumber"),
        instance_number=integer(ds, "InstanceNumber"),
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        samples_per_pixel=spp,
        photometric=string(ds, "PhotometricInterpretation").upper(),
        bits_allocated=bits,
        transfer_syntax=ts,
        file_size=size,
        acquisition=acquisition_from_dataset(ds),
        frames=frames,
        multiframe=multiframe,
        bits_stored=stored,
        high_bit=high if high is not None else stored - 1,
        pixel_representation=integer(ds, "PixelRepresentation") or 0,
        pixel=pixel,
        acquired=acquisition_moment(ds),
    )


def patient_key(ds: Dataset, salt: str) -> str:
    """Salted hash identifying the patient of a dataset, never the identifier itself.

    PatientID (with its issuer) when present, else PatientName + PatientBirthDate; "" when none exists.
    """
    pid = string(ds, "PatientID")
    if pid:
        basis = f"id:{pid}|{string(ds, 'IssuerOfPatientID')}"
    else:
        name, dob = string(ds, "PatientName"), string(ds, "PatientBirthDate")
        if not (name or dob):
            return ""
        basis = f"name:{name}|{dob}"
    digest = hmac.new(salt.encode(), basis.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return "pk-" + digest[:16]


def frames_from_dataset(ds: Dataset, path: Path) -> tuple[tuple[FrameGeometry, ...], bool]:
    """Per-frame geometry of a dataset (classic: one frame; multi-frame: from functional groups).

    Returns the frames and whether they came from functional groups. Missing values are ``None``;
    checking them is the job of :mod:`pipeline.ingest.geometry`.
    """
    n_frames = integer(ds, "NumberOfFrames") or 1
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    if shared_seq is None and per_frame_seq is None:
        frame = FrameGeometry(
            frame_number=None if n_frames == 1 else 1,
            position_lps=vector(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
            orientation=vector(ds, "ImageOrientationPatient", 6),
            pixel_spacing_mm=vector(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
            slice_thickness_mm=number(ds, "SliceThickness"),
            rescale_slope=_slope(number(ds, "RescaleSlope")),
            rescale_intercept=number(ds, "RescaleIntercept") or 0.0,
            contrast=_classic_contrast(ds),
        )
        if n_frames == 1:
            return (frame,), False
        # A multi-frame file without functional groups has no per-frame positions.
        return tuple(
            FrameGeometry(
                i + 1,
                None,
                frame.orientation,
                frame.pixel_spacing_mm,
                frame.slice_thickness_mm,
                frame.rescale_slope,
                frame.rescale_intercept,
            )
            for i in range(n_frames)
        ), True
    shared = shared_seq[0] if shared_seq else Dataset()
    per_frame = list(per_frame_seq or [])
    if len(per_frame) != n_frames:
        raise DicomReadError(
            f"{path}: PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {n_frames} frames"
        )
    base_acq = acquisition_from_dataset(ds)
    frames = []
    for i, item in enumerate(per_frame):
        pos = _group_vec(item, shared, "PlanePositionSequence", "ImagePositionPatient", 3)
        iop = _group_vec(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        ps = _group_vec(item, shared, "PixelMeasuresSequence", "PixelSpacing", 2)
        thick = _group_float(item, shared, "PixelMeasuresSequence", "SliceThickness")
        slope = _group_float(item, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_float(item, shared, "PixelValueTransformationSequence", "RescaleIntercept")
        acq = _frame_acquisition(item, shared, base_acq)
        frames.append(
            FrameGeometry(
                frame_number=i + 1,
                position_lps=pos,  # type: ignore[arg-type]
                orientation=iop,
                pixel_spacing_mm=ps,  # type: ignore[arg-type]
                slice_thickness_mm=thick,
                rescale_slope=_slope(slope),
                rescale_intercept=intercept or 0.0,
                contrast=_frame_contrast(acq),
                acquisition=acq,
            )
        )
    return tuple(frames), True


def acquisition_from_dataset(ds: Dataset) -> AcquisitionInfo:
    """Series names and MR parameters from the top level of a dataset (classic MR or Enhanced MR)."""
    seq_name = string(ds, "SequenceName") or string(ds, "PulseSequenceName")
    ti = number(ds, "InversionTime")
    return AcquisitionInfo(
        series_description=string(ds, "SeriesDescription"),
        protocol_name=string(ds, "ProtocolName"),
        sequence_name=seq_name,
        scanning_sequence=strings(ds, "ScanningSequence"),
        sequence_variant=strings(ds, "SequenceVariant"),
        scan_options=strings(ds, "ScanOptions"),
        image_type=strings(ds, "ImageType"),
        repetition_time_ms=number(ds, "RepetitionTime"),
        echo_time_ms=number(ds, "EchoTime"),
        inversion_time_ms=ti,
        fat_suppression=string(ds, "SpectrallySelectedSuppression").upper(),
        contrast_agent=string(ds, "ContrastBolusAgent") or ("yes" if _has_contrast_usage(ds) else ""),
        field_strength_t=number(ds, "MagneticFieldStrength"),
        manufacturer=string(ds, "Manufacturer"),
    )


def acquisition_moment(ds: Dataset) -> str:
    """When the image was acquired as a sortable ``YYYYMMDDHHMMSS.ffffff`` string, '' when unknown.

    AcquisitionDateTime; else AcquisitionDate (or ContentDate, SeriesDate, StudyDate) with AcquisitionTime;
    else ContentDate with ContentTime. Values that are not DICOM DA / TM / DT text give ''.
    """
    dt = string(ds, "AcquisitionDateTime")
    if dt:
        return _moment(dt[:8], dt[8:].split("+")[0].split("-")[0])
    date = next((d for k in ("AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate") if (d := string(ds, k))), "")
    time = string(ds, "AcquisitionTime")
    if time:
        return _moment(date, time)
    content = string(ds, "ContentTime")
    return _moment(string(ds, "ContentDate") or date, content) if content else ""


def _moment(date: str, time: str) -> str:
    date = date.replace(".", "").strip() or "00000000"
    time = time.replace(":", "").strip()
    whole, _, frac = time.partition(".")
    if not (
        date.isdigit()
        and len(date) == 8
        and whole.isdigit()
        and len(whole) in (2, 4, 6)
        and (frac.isdigit() or not frac)
    ):
        return ""
    return f"{date}{whole.ljust(6, '0')}.{frac[:6].ljust(6, '0')}"


# --------------------------------------------------------------------------- value helpers
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}


@lru_cache(maxsize=512)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def _value(ds: Dataset, keyword: str) -> Any:
    """The value of ``keyword`` or None; a value that cannot be decoded counts as absent.

    Raw (not yet converted) text and binary numeric values are decoded here directly: a header scan
    touches ~40 values per file and pydicom's general conversion machinery dominated the scan time.
    Anything else (sequences, deferred values, unusual VRs) goes through pydicom.
    """
    try:
        tag, dict_vr = _tag_and_vr(keyword)
        raw = ds.get_item(tag, keep_deferred=True)
        if raw is None:
            return None
        if isinstance(raw, RawDataElement) and raw.value is not None:
            vr = raw.VR or dict_vr
            if vr in _TEXT_VRS:
                return _decode_text(raw.value)
            fmt = _BINARY_VRS.get(vr)
            if fmt is not None:
                n = len(raw.value) // struct.calcsize(fmt)
                vals = struct.unpack(
                    ("<" if raw.is_little_endian else ">") + fmt * n, raw.value[: n * struct.calcsize(fmt)]
                )
                return vals[0] if n == 1 else (list(vals) if n else None)
        elem = ds.get(keyword)
    except Exception:  # noqa: BLE001 - an undecodable value is treated as missing
        return None
    return elem


def _decode_text(value: bytes) -> str | list[str] | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    text = text.strip("\x00 ")
    if not text:
        return None
    return [t.strip("\x00 ") for t in text.split("\\")] if "\\" in text else text


def string(ds: Dataset, keyword: str) -> str:
    v = _value(ds, keyword)
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = "\\".join(str(x) for x in v)
    return " ".join(str(v).replace("\x00", " ").split())


def strings(ds: Dataset, keyword: str, *, upper: bool = True) -> tuple[str, ...]:
    v = _value(ds, keyword)
    if v is None or v == "":
        return ()
    items = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else str(v).split("\\")
    cleaned = (str(x).strip() for x in items)
    return tuple(s.upper() if upper else s for s in cleaned if s)


def number(ds: Dataset, keyword: str) -> float | None:
    v = _value(ds, keyword)
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = v[0] if len(v) else None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def integer(ds: Dataset, keyword: str) -> int | None:
    f = number(ds, keyword)
    if f is None or abs(f) > 2**31:
        return None
    return int(f)


def vector(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    v = _value(ds, keyword)
    if v is None:
        return None
    try:
        vals = tuple(float(x) for x in (v if not isinstance(v, (str, bytes)) else str(v).split("\\")))
    except (TypeError, ValueError, OverflowError):
        return None
    if len(vals) != n or not all(math.isfinite(x) for x in vals):
        return None
    return vals


def _group_item(item: Dataset, shared: Dataset, seq: str) -> list[Dataset]:
    out = []
    for source in (item, shared):
        s = _value(source, seq)
        if s:
            with contextlib.suppress(Exception):
                out.append(s[0])
    return out


def _group_vec(item: Dataset, shared: Dataset, seq: str, keyword: str, n: int) -> tuple[float, ...] | None:
    for ds in _group_item(item, shared, seq):
        v = vector(ds, keyword, n)
        if v is not None:
            return v
    return None


def _group_float(item: Dataset, shared: Dataset, seq: str, keyword: str) -> float | None:
    for ds in _group_item(item, shared, seq):
        v = number(ds, keyword)
        if v is not None:
            return v
    return None


def _group_strs(item: Dataset, shared: Dataset, seq: str, keyword: str) -> tuple[str, ...]:
    for ds in _group_item(item, shared, seq):
        v = strings(ds, keyword)
        if v:
            return v
    return ()


def _frame_acquisition(item: Dataset, shared: Dataset, base: AcquisitionInfo) -> AcquisitionInfo:
    """Enhanced MR: TR, TE, TI, IR flag and frame type live in functional groups."""
    from dataclasses import replace

    tr = _group_float(item, shared, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    te = _group_float(item, shared, "MREchoSequence", "EffectiveEchoTime")
    ti = _group_float(item, shared, "MRModifierSequence", "InversionTimes")
    ir = _group_strs(item, shared, "MRModifierSequence", "InversionRecovery")
    frame_type = _group_strs(item, shared, "MRImageFrameTypeSequence", "FrameType")
    return replace(
        base,
        repetition_time_ms=tr if tr is not None else base.repetition_time_ms,
        echo_time_ms=te if te is not None else base.echo_time_ms,
        inversion_time_ms=ti if ti is not None else base.inversion_time_ms,
        inversion_recovery=(ir[0] == "YES") if ir else base.inversion_recovery,
        image_type=tuple(dict.fromkeys(base.image_type + frame_type)),
    )


def _dixon_component(values: Sequence[str]) -> str:
    for v in values[2:] if len(values) > 2 else ():
        comp = _DIXON_COMPONENTS.get(v)
        if comp:
            return comp
    return ""


def _classic_contrast(ds: Dataset) -> str:
    parts = [_dixon_component(strings(ds, "ImageType"))]
    echo = integer(ds, "EchoNumbers")
    if echo is not None and echo > 1:
        parts.append(f"echo {echo}")
    return ", ".join(p for p in parts if p)


def _frame_contrast(acq: AcquisitionInfo) -> str:
    parts = [_dixon_component(acq.image_type)]
    if acq.echo_time_ms is not None:
        parts.append(f"TE {acq.echo_time_ms:g} ms")
    return ", ".join(p for p in parts if p)


def _has_contrast_usage(ds: Dataset) -> bool:
    seq = _value(ds, "ContrastBolusUsageSequence")
    try:
        return bool(seq) and any(string(item, "ContrastBolusAdministered").upper() == "YES" for item in seq)
    except Exception:  # noqa: BLE001
        return False


def _uid_name(uid: str) -> str:
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001
        name = ""
    return name if name and name != uid else (f"SOP class {uid}" if uid else "no SOP class")


def _slope(v: float | None) -> float:
    """RescaleSlope; absent or zero (invalid) means 1."""
    return 1.0 if v is None or v == 0.0 else v


__all__ = [
    "AcquisitionInfo",
    "FrameGeometry",
    "InstanceHeader",
    "PixelElement",
    "acquisition_from_dataset",
    "acquisition_moment",
    "frames_from_dataset",
    "instance_header",
    "integer",
    "number",
    "patient_key",
    "string",
    "strings",
    "vector",
]
