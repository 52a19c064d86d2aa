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
file is refused before anything tries to read it. What the parsed data set says is read by
:mod:`pipeline.ingest.attributes`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from pipeline.errors import DicomReadError
from pipeline.ingest.attributes import UNDEFINED_LENGTH, InstanceHeader, PixelElement, instance_header, strings

logger = logging.getLogger(__name__)

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_MAX_MESSAGE = 200
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
            return instance_header(ds, path, st.st_size, pixel, patient_key_salt)
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
                parts = strings(rec, "ReferencedFileID", upper=False)
                if parts:
                    out.append(path.parent.joinpath(*parts))
        return out, None
    except Exception as exc:  # noqa: BLE001
        return [], describe_exception(exc)


def describe_exception(exc: BaseException) -> str:
    """Short ``Type: message`` for error messages (bounded length, one line)."""
    msg = " ".join(str(exc).split())
    if len(msg) > _MAX_MESSAGE:
        msg = msg[:_MAX_MESSAGE] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


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
    if length != UNDEFINED_LENGTH and value_start + length > size:
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
        if raw.length != UNDEFINED_LENGTH and raw.length > size:
            raise DicomReadError(
                f"{path}: element {tag} declares a length of {raw.length} bytes, more than the whole file "
                f"({size} bytes); the file is corrupt"
            )


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


__all__ = [
    "BoundedFile",
    "describe_exception",
    "dicomdir_references",
    "file_digest",
    "read_header",
    "read_until_pixels",
]
