"""Reading one DICOM file's header, defensively, into a small typed summary.

:func:`read_header` never lets a pydicom/numpy/OS exception escape: every way a file can be
unusable becomes a :class:`~pipeline.errors.DicomReadError` naming the path and the problem.
pydicom raises many exception types on malformed input (``InvalidDicomError``, ``EOFError``,
``struct.error``, ``ValueError``, ``KeyError``, ``OverflowError``, ``RecursionError`` on deeply
nested sequences, ``MemoryError`` ...) and compiled decoders add their own (pylibjpeg-rle panics with a
pyo3 ``PanicException``, a ``BaseException``), so at this boundary -- and only here and in
:mod:`pipeline.ingest.pixels` -- all of them except KeyboardInterrupt / SystemExit are converted, with
the exception type kept in the message for debugging.

Reading is bounded: pixel data is never read (``stop_before_pixels``), values longer than
``defer_size_bytes`` are skipped (only their length is kept), and a declared length larger than the
file is refused before anything tries to read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pipeline.errors import DicomReadError

logger = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_UNDEFINED = 0xFFFFFFFF
_MAX_MESSAGE = 200

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


_SMALL_READ = 1 << 16


class BoundedFile:
    """A binary file whose ``read(n)`` never asks for more than what is left in the file.

    ``io.BufferedReader.read(n)`` allocates ``n`` bytes before reading, so a corrupt length field of 4 GB
    makes pydicom allocate 4 GB even in a 2 kB file. Every pydicom read in the ingest stage goes through
    this class (pydicom also re-opens files with it for deferred values).
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "rb") -> None:
        if mode != "rb":
            raise ValueError("BoundedFile is read-only")
        self._fp = open(path, "rb")  # noqa: SIM115 - closed by close() / the context manager
        self._size = os.fstat(self._fp.fileno()).st_size
        self.name = str(path)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._fp.read()
        if n <= _SMALL_READ:  # the common case (one element at a time): no clamping needed
            return self._fp.read(n)
        return self._fp.read(max(0, min(n, self._size - self._fp.tell())))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def close(self) -> None:
        self._fp.close()

    @property
    def closed(self) -> bool:
        return self._fp.closed

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        return self.length == _UNDEFINED


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


# --------------------------------------------------------------------------- public functions
def read_header(path: Path, *, defer_size_bytes: int = 4096, patient_key_salt: str = "") -> InstanceHeader:
    """Read the header of one DICOM image file (pixel data is not read).

    Parameters
    ----------
    path : Path
        Any file; names and extensions do not matter.
    defer_size_bytes : int
        Values longer than this are skipped while parsing.
    patient_key_salt : str
        HMAC key for :func:`patient_key`.

    Raises
    ------
    DicomReadError
        Empty, truncated, not DICOM, a DICOMDIR, no pixel data (SR, PR, ...), missing UIDs, a declared
        length beyond the end of the file, or any other parse failure. The message names the path.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise DicomReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DicomReadError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise DicomReadError(f"{path}: empty file (0 bytes)")
    try:
        with _quiet(), BoundedFile(path) as fp:
            ds, pixel = read_until_pixels(fp, path, defer_size_bytes, st.st_size)
            _refuse_oversized_deferred(ds, path, st.st_size)
            return _summarise(ds, path, st.st_size, pixel, patient_key_salt)
    except DicomReadError:
        raise
    except RecursionError:
        raise DicomReadError(f"{path}: unreadable DICOM header (RecursionError: sequences nested too deeply)") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the boundary: see module docstring
        raise DicomReadError(f"{path}: unreadable DICOM header ({describe_exception(exc)})") from None


def dicomdir_references(path: Path) -> tuple[list[Path], str | None]:
    """Files a DICOMDIR refers to (absolute paths) and a problem description, if it could not be read."""
    try:
        with _quiet():
            with BoundedFile(path) as fp:
                ds = pydicom.dcmread(fp, defer_size=1 << 20)
            records = ds.get("DirectoryRecordSequence") or []
            out = []
            for rec in records:
                parts = _strs(rec, "ReferencedFileID", upper=False)
                if parts:
                    out.append(path.parent.joinpath(*parts))
        return out, None
    except Exception as exc:  # noqa: BLE001
        return [], describe_exception(exc)


def patient_key(ds: Dataset, salt: str) -> str:
    """Salted hash identifying the patient of a dataset, never the identifier itself.

    PatientID (with its issuer) when present, else PatientName + PatientBirthDate; "" when none exists.
    """
    pid = _str(ds, "PatientID")
    if pid:
        basis = f"id:{pid}|{_str(ds, 'IssuerOfPatientID')}"
    else:
        name, dob = _str(ds, "PatientName"), _str(ds, "PatientBirthDate")
        if not (name or dob):
            return ""
        basis = f"name:{name}|{dob}"
    digest = hmac.new(salt.encode(), basis.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return "pk-" + digest[:16]


def describe_exception(exc: BaseException) -> str:
    """Short ``Type: message`` for error messages (bounded length, one line)."""
    msg = " ".join(str(exc).split())
    if len(msg) > _MAX_MESSAGE:
        msg = msg[:_MAX_MESSAGE] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def frames_from_dataset(ds: Dataset, path: Path) -> tuple[tuple[FrameGeometry, ...], bool]:
    """Per-frame geometry of a dataset (classic: one frame; multi-frame: from functional groups).

    Returns the frames and whether they came from functional groups. Missing values are ``None``;
    checking them is the job of :mod:`pipeline.ingest.geometry`.
    """
    n_frames = _int(ds, "NumberOfFrames") or 1
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    if shared_seq is None and per_frame_seq is None:
        frame = FrameGeometry(
            frame_number=None if n_frames == 1 else 1,
            position_lps=_vec(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
            orientation=_vec(ds, "ImageOrientationPatient", 6),
            pixel_spacing_mm=_vec(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
            slice_thickness_mm=_float(ds, "SliceThickness"),
            rescale_slope=_slope(_float(ds, "RescaleSlope")),
            rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
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
    seq_name = _str(ds, "SequenceName") or _str(ds, "PulseSequenceName")
    ti = _float(ds, "InversionTime")
    return AcquisitionInfo(
        series_description=_str(ds, "SeriesDescription"),
        protocol_name=_str(ds, "ProtocolName"),
        sequence_name=seq_name,
        scanning_sequence=_strs(ds, "ScanningSequence"),
        sequence_variant=_strs(ds, "SequenceVariant"),
        scan_options=_strs(ds, "ScanOptions"),
        image_type=_strs(ds, "ImageType"),
        repetition_time_ms=_float(ds, "RepetitionTime"),
        echo_time_ms=_float(ds, "EchoTime"),
        inversion_time_ms=ti,
        fat_suppression=_str(ds, "SpectrallySelectedSuppression").upper(),
        contrast_agent=_str(ds, "ContrastBolusAgent") or ("yes" if _has_contrast_usage(ds) else ""),
        field_strength_t=_float(ds, "MagneticFieldStrength"),
        manufacturer=_str(ds, "Manufacturer"),
    )


# --------------------------------------------------------------------------- reading
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pydicom warns about every oddity it tolerates; those are logged at debug level instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught[:3]:
        logger.debug("pydicom: %s", w.message)


def read_until_pixels(fp: Any, path: Path, defer_size: int, size: int) -> tuple[Dataset, PixelElement | None]:
    """Parse up to the pixel data (values over ``defer_size`` are skipped) and locate the pixel element.

    Raises
    ------
    DicomReadError
        Not DICOM, or the pixel data runs past the end of the file (truncated).
    """
    _refuse_deflate_bomb(fp, path, size)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=defer_size)
    except InvalidDicomError:
        fp.seek(0)
        if not _looks_like_raw_dataset(fp.read(8)):
            raise DicomReadError(f"{path}: not a DICOM file (no 'DICM' marker at byte 128)") from None
        fp.seek(0)
        ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=defer_size, force=True)
    if _is_deflated(ds):
        return _deflated_pixel_info(ds, fp)
    pos = fp.tell()
    if pos >= size:
        return ds, None
    head = fp.read(12)
    if len(head) < 8:
        return ds, None
    _, little = _encoding(ds)
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    tag = group << 16 | elem
    if tag not in _PIXEL_TAGS:
        return ds, None
    # Some writers encode implicit VR under an explicit transfer syntax (pydicom reads them anyway):
    # trust the bytes, as pydicom does - an explicit header has a 2-letter VR and two zero bytes.
    implicit = not (head[4:6].isalpha() and head[4:6].isupper() and head[6:8] == b"\x00\x00")
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
    else:
        if len(head) < 12:
            raise DicomReadError(f"{path}: truncated in the pixel data element header")
        (length,) = struct.unpack(endian + "L", head[8:12])
    value_start = pos + (8 if implicit else 12)
    if length != _UNDEFINED and value_start + length > size:
        missing = value_start + length - size
        raise DicomReadError(
            f"{path}: truncated file: pixel data declares {length} bytes but the file ends {missing} bytes "
            "early (incomplete copy or transfer); re-export the series"
        )
    vr = None if implicit else head[4:6].decode("ascii")
    return ds, PixelElement(_PIXEL_TAGS[tag], length, value_start, vr, little)


MAX_INFLATED_BYTES = 512 << 20  # a deflated data set larger than this when inflated is refused (zip bomb)


def _refuse_deflate_bomb(fp: Any, path: Path, size: int) -> None:
    """pydicom inflates a Deflated Explicit VR data set whole, before anything can be checked: measure the
    inflated size first (streaming, nothing kept) and refuse above :data:`MAX_INFLATED_BYTES`."""
    head = fp.read(2048)
    fp.seek(0)
    if DeflatedExplicitVRLittleEndian.encode() not in head or head[128:132] != b"DICM":
        return
    try:
        (group_length,) = struct.unpack("<L", head[140:144])
    except struct.error:
        raise DicomReadError(f"{path}: deflated file with an unreadable File Meta Information header") from None
    fp.seek(144 + group_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while chunk := fp.read(1 << 16):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 20))
                chunk = inflater.unconsumed_tail
                if total > MAX_INFLATED_BYTES:
                    raise DicomReadError(
                        f"{path}: deflated data set inflates to more than {MAX_INFLATED_BYTES >> 20} MB "
                        f"from {size} bytes; refused"
                    )
    except zlib.error as exc:
        raise DicomReadError(f"{path}: corrupt deflated data set ({exc})") from None
    finally:
        fp.seek(0)


def _is_deflated(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    return meta is not None and str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian


def _deflated_pixel_info(ds: Dataset, fp: Any) -> tuple[Dataset, PixelElement | None]:
    """A deflated data set is parsed from an inflated copy, so the file position says nothing: read it whole.

    Deflated MR files are rare; the inflated size is not bounded here (see the pixels module docstring).
    """
    fp.seek(0)
    full = pydicom.dcmread(fp, force=True)
    for tag, keyword in _PIXEL_TAGS.items():
        if tag in full:
            return ds, PixelElement(keyword, len(full[tag].value or b""), -1, full[tag].VR, True)
    return ds, None


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A DICOM data set without preamble starts with a group 0x0002 or 0x0008 element (either endianness)."""
    if len(head) < 8:
        return False
    group_le = struct.unpack("<H", head[:2])[0]
    group_be = struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _encoding(ds: Dataset) -> tuple[bool, bool]:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None:
        try:
            uid = UID(str(ts))
            if uid.is_transfer_syntax:
                return uid.is_implicit_VR, uid.is_little_endian
        except Exception:  # noqa: BLE001 - fall back to what the parser saw
            pass
    enc = getattr(ds, "original_encoding", (True, True))
    return bool(enc[0]), bool(enc[1])


def _refuse_oversized_deferred(ds: Dataset, path: Path, size: int) -> None:
    """A value whose declared length runs past the end of the file is corrupt; never try to read it."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.value is not None:
            continue
        if raw.length != _UNDEFINED and raw.length > size:
            raise DicomReadError(
                f"{path}: element {tag} declares a length of {raw.length} bytes, more than the whole file "
                f"({size} bytes); the file is corrupt"
            )


def _summarise(ds: Dataset, path: Path, size: int, pixel: PixelElement | None, salt: str) -> InstanceHeader:
    meta = getattr(ds, "file_meta", Dataset())
    media_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise DicomReadError(f"{path}: DICOMDIR (media directory), not an image")
    sop_class = _str(ds, "SOPClassUID") or media_class
    if pixel is None:
        raise DicomReadError(f"{path}: DICOM without pixel data ({_uid_name(sop_class)}): not an image")
    required = {k: _str(ds, k) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    missing = [k for k, v in required.items() if not v]
    if missing:
        raise DicomReadError(f"{path}: missing {', '.join(missing)}; the file cannot be placed in a series")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not cols or rows < 1 or cols < 1:
        raise DicomReadError(f"{path}: image without valid Rows/Columns ({rows} x {cols})")
    n_frames = _int(ds, "NumberOfFrames") or 1
    if n_frames < 1:
        raise DicomReadError(f"{path}: NumberOfFrames must be at least 1, got {n_frames}")
    spp = _int(ds, "SamplesPerPixel") or 1
    bits = _int(ds, "BitsAllocated") or 0
    ts = str(meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ts = "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    keyword, length = pixel.keyword, pixel.length
    if length != _UNDEFINED and keyword == "PixelData" and bits in (8, 16, 32):
        expected = rows * cols * n_frames * spp * (bits // 8)
        if length < expected:
            raise DicomReadError(
                f"{path}: pixel data has {length} bytes but {rows} x {cols} x {n_frames} frames x {spp} "
                f"samples x {bits} bits needs {expected}; the file is truncated or its header is wrong"
            )
    frames, multiframe = frames_from_dataset(ds, path)
    stored, high = _int(ds, "BitsStored") or bits, _int(ds, "HighBit")
    return InstanceHeader(
        path=path,
        sop_instance_uid=required["SOPInstanceUID"],
        sop_class_uid=sop_class,
        study_uid=required["StudyInstanceUID"],
        series_uid=required["SeriesInstanceUID"],
        frame_of_reference_uid=_str(ds, "FrameOfReferenceUID") or None,
        patient_key=patient_key(ds, salt),
        modality=_str(ds, "Modality").upper(),
        study_description=_str(ds, "StudyDescription"),
        study_date=_str(ds, "StudyDate") or None,
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        samples_per_pixel=spp,
        photometric=_str(ds, "PhotometricInterpretation").upper(),
        bits_allocated=bits,
        transfer_syntax=ts,
        file_size=size,
        acquisition=acquisition_from_dataset(ds),
        frames=frames,
        multiframe=multiframe,
        bits_stored=stored,
        high_bit=high if high is not None else stored - 1,
        pixel_representation=_int(ds, "PixelRepresentation") or 0,
        pixel=pixel,
        acquired=acquisition_moment(ds),
    )


def acquisition_moment(ds: Dataset) -> str:
    """When the image was acquired as a sortable ``YYYYMMDDHHMMSS.ffffff`` string, '' when unknown.

    AcquisitionDateTime; else AcquisitionDate (or ContentDate, SeriesDate, StudyDate) with AcquisitionTime;
    else ContentDate with ContentTime. Values that are not DICOM DA / TM / DT text give ''.
    """
    dt = _str(ds, "AcquisitionDateTime")
    if dt:
        return _moment(dt[:8], dt[8:].split("+")[0].split("-")[0])
    date = next((d for k in ("AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate") if (d := _str(ds, k))), "")
    time = _str(ds, "AcquisitionTime")
    if time:
        return _moment(date, time)
    content = _str(ds, "ContentTime")
    return _moment(_str(ds, "ContentDate") or date, content) if content else ""


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


def _str(ds: Dataset, keyword: str) -> str:
    v = _value(ds, keyword)
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = "\\".join(str(x) for x in v)
    return " ".join(str(v).replace("\x00", " ").split())


def _strs(ds: Dataset, keyword: str, *, upper: bool = True) -> tuple[str, ...]:
    v = _value(ds, keyword)
    if v is None or v == "":
        return ()
    items = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else str(v).split("\\")
    cleaned = (str(x).strip() for x in items)
    return tuple(s.upper() if upper else s for s in cleaned if s)


def _float(ds: Dataset, keyword: str) -> float | None:
    v = _value(ds, keyword)
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = v[0] if len(v) else None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _int(ds: Dataset, keyword: str) -> int | None:
    f = _float(ds, keyword)
    if f is None or abs(f) > 2**31:
        return None
    return int(f)


def _vec(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
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
        v = _vec(ds, keyword, n)
        if v is not None:
            return v
    return None


def _group_float(item: Dataset, shared: Dataset, seq: str, keyword: str) -> float | None:
    for ds in _group_item(item, shared, seq):
        v = _float(ds, keyword)
        if v is not None:
            return v
    return None


def _group_strs(item: Dataset, shared: Dataset, seq: str, keyword: str) -> tuple[str, ...]:
    for ds in _group_item(item, shared, seq):
        v = _strs(ds, keyword)
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
    parts = [_dixon_component(_strs(ds, "ImageType"))]
    echo = _int(ds, "EchoNumbers")
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
        return bool(seq) and any(_str(item, "ContrastBolusAdministered").upper() == "YES" for item in seq)
    except Exception:  # noqa: BLE001
        return False


def _uid_name(uid: str) -> str:
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001
        name = ""
    return name if name and name != uid else (f"SOP class {uid}" if uid else "no SOP class")


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _slope(v: float | None) -> float:
    """RescaleSlope; absent or zero (invalid) means 1."""
    return 1.0 if v is None or v == 0.0 else v


__all__ = [
    "AcquisitionInfo",
    "BoundedFile",
    "PixelElement",
    "FrameGeometry",
    "InstanceHeader",
    "acquisition_from_dataset",
    "describe_exception",
    "dicomdir_references",
    "file_digest",
    "frames_from_dataset",
    "patient_key",
    "read_header",
    "read_until_pixels",
]
