"""Pixel data: decoding a series into a float32 :class:`~pipeline.volume.Volume` with its geometry.

Decoders. pydicom 3's pixel handlers with the pylibjpeg plugins (libjpeg: JPEG baseline / extended /
lossless; openjpeg: JPEG 2000 and HTJ2K; pylibjpeg-rle and pydicom's own RLE) and pyjpegls (JPEG-LS),
plus Pillow as a fallback for 8-bit JPEG / JPEG 2000. Together they decode every transfer syntax MR
scanners and PACS exports use. python-gdcm is **not** a dependency: tried on pydicom's bundled test
files it decoded nothing the plugins could not (the two files both fail on, ``JPEG-lossy.dcm`` and
``JPEG2000-embedded-sequence-delimiter.dcm``, are malformed streams), it adds ~43 MB and writes
decoder errors to stderr from C++. A file no plugin can decode raises :class:`DicomReadError` naming the
transfer syntax; converting it with ``dcmdjpeg`` / ``dcmdrle`` (DCMTK) or ``gdcmconv --raw`` first is the
workaround. MPEG / HEVC video transfer syntaxes are not supported (not used for MR slices).

Order of work in :func:`load_series`: read every header first (bounded, no pixels), check the stack
geometry (:func:`~pipeline.ingest.geometry.assess_stack`), check the size limit, and only then decode,
one file at a time, into the pre-allocated float32 array. RescaleSlope / RescaleIntercept (per frame for
Enhanced MR) are applied.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_undefined_length_value
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.tag import SequenceDelimiterTag
from pydicom.uid import UID

from pipeline.errors import DicomReadError, SeriesError
from pipeline.ingest.attributes import InstanceHeader
from pipeline.ingest.config import IngestConfig, default_ingest_config
from pipeline.ingest.geometry import SliceRef, StackGeometry, assess_stack
from pipeline.ingest.headers import BoundedFile, _quiet, describe_exception, read_header
from pipeline.ingest.integrity import truncation
from pipeline.ingest.nifti import load_nifti
from pipeline.model import SeriesRecord
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

GREYSCALE = ("MONOCHROME2", "MONOCHROME1")


@dataclass(frozen=True)
class SliceSource:
    """Where slice ``k`` of a loaded volume came from (for references in DICOM SEG / SR)."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    frame_number: int | None  # 1-based frame of a multi-frame instance, None for single-frame


@lru_cache(maxsize=64)
def transfer_syntax_problem(uid: str) -> str | None:
    """Why pixel data in transfer syntax ``uid`` cannot be decoded here, or None when it can."""
    try:
        ts = UID(uid)
        name = ts.name if ts.name != uid else "unknown"
        if not ts.is_valid or not ts.is_transfer_syntax:
            return f"transfer syntax {uid} ({name}) is not a known transfer syntax"
        decoder = get_decoder(ts)
    except NotImplementedError:
        return (
            f"transfer syntax {name} ({uid}) is not supported (no pixel data decoder); convert the files "
            "to an uncompressed transfer syntax (e.g. DCMTK dcmdjpeg, gdcmconv --raw)"
        )
    except Exception as exc:  # noqa: BLE001 - a malformed UID string
        return f"transfer syntax {uid!r} is not usable ({describe_exception(exc)})"
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in decoder.missing_dependencies)
        return f"transfer syntax {name} ({uid}): no decoder plugin installed ({missing})"
    return None


def pixel_problem(header: InstanceHeader) -> str | None:
    """Why the pixels of this file cannot become a greyscale volume, or None."""
    if header.samples_per_pixel != 1 or header.photometric not in GREYSCALE:
        return (
            f"{header.path}: {header.photometric or 'unknown'} images with {header.samples_per_pixel} "
            "samples per pixel are not supported; only greyscale (MONOCHROME2) MR images"
        )
    if header.photometric == "MONOCHROME1":
        return (
            f"{header.path}: MONOCHROME1 (inverted greyscale) is not supported for quantitative MR; "
            "re-export as MONOCHROME2"
        )
    if header.bits_allocated not in (8, 16, 32, 64):
        return f"{header.path}: BitsAllocated {header.bits_allocated} is not supported (8, 16, 32 or 64)"
    problem = transfer_syntax_problem(header.transfer_syntax)
    return f"{header.path}: {problem}" if problem else None


def series_slices(series: SeriesRecord, *, cfg: IngestConfig) -> tuple[list[InstanceHeader], list[SliceRef]]:
    """Read the headers of a series' files and list its slices (only the frames that belong to the record)."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for file_index, frame_number in series.frames:
        wanted[file_index].add(frame_number)
    headers: list[InstanceHeader] = []
    slices: list[SliceRef] = []
    for i, path in enumerate(series.files):
        h = read_header(
            path,
            defer_size_bytes=cfg.discovery.defer_size_bytes,
            patient_key_salt=cfg.discovery.patient_key_salt,
        )
        if h.series_uid != series.series_uid:
            raise SeriesError(
                f"{path}: belongs to series {h.series_uid}, not {series.series_uid}; "
                "the folder changed since it was scanned"
            )
        headers.append(h)
        for f in h.frames:
            if series.frames and (f.frame_number is None or f.frame_number not in wanted.get(i, ())):
                continue
            slices.append(
                SliceRef(path, f.frame_number if h.n_frames > 1 else None, h.sop_instance_uid, h.rows, h.cols, f)
            )
    return headers, slices


def plan_series(series: SeriesRecord, *, cfg: IngestConfig | None = None) -> tuple[list[InstanceHeader], StackGeometry]:
    """Headers and validated stack geometry of a DICOM series (no pixels read)."""
    cfg = cfg or default_ingest_config()
    if series.source != "dicom":
        raise SeriesError(f"series {series.series_uid}: source {series.source!r} has no DICOM instances")
    headers, slices = series_slices(series, cfg=cfg)
    for h in headers:
        problem = pixel_problem(h)
        if problem:
            raise DicomReadError(problem)
    stack = assess_stack(slices, cfg.geometry, where=f"series {series.key}")
    if series.problems:
        # Found at discovery but not visible from this record's own files (e.g. SOP Instance UIDs shared with
        # other images): still a reason not to use the series.
        raise SeriesError(series.problems[0])
    return headers, stack


def load_series(series: SeriesRecord, *, cfg: IngestConfig | None = None) -> Volume:
    """Decode a series into a float32 volume, slices sorted along the normal.

    Parameters
    ----------
    series : SeriesRecord
        From :func:`~pipeline.ingest.discovery.discover_study` (DICOM or NIfTI).
    cfg : IngestConfig, optional
        Default: the shipped ``configs/ingest.yaml``.

    Returns
    -------
    Volume
        ``array`` float32 of shape ``(n_slices, rows, cols)`` with RescaleSlope/Intercept applied;
        spacing ``(slice pitch from positions, PixelSpacing[0], PixelSpacing[1])`` mm; origin at the
        first slice's ImagePositionPatient; ``axes_lps = [normal, column direction, row direction]``.

    Raises
    ------
    DicomReadError
        A file is unreadable, truncated, colour, or in a transfer syntax that cannot be decoded.
    SeriesError
        The slices do not form one regular stack (see :func:`~pipeline.ingest.geometry.assess_stack`).
    """
    cfg = cfg or default_ingest_config()
    if series.source == "nifti":
        return load_nifti(series, cfg=cfg)
    headers, stack = plan_series(series, cfg=cfg)
    by_path = {h.path: h for h in headers}
    out = np.empty((stack.n_slices, stack.rows, stack.cols), dtype=np.float32)
    positions: dict[Path, list[tuple[int, SliceRef]]] = defaultdict(list)
    for k, s in enumerate(stack.slices):
        positions[s.path].append((k, s))
    for path, items in positions.items():
        header = by_path[path]
        frames = _decode(header, [s.frame_number for _, s in items])
        for (k, s), arr in zip(items, frames, strict=True):
            if arr.shape != (stack.rows, stack.cols):
                raise DicomReadError(
                    f"{path}: decoded frame has shape {arr.shape}, expected {(stack.rows, stack.cols)}"
                )
            g = s.geometry
            out[k] = arr.astype(np.float32) * np.float32(g.rescale_slope) + np.float32(g.rescale_intercept)
    if not np.isfinite(out).all():
        raise SeriesError(f"series {series.key}: pixel values are not finite after rescaling (check RescaleSlope)")
    logger.debug("loaded series %s: %s voxels, spacing %s mm", series.key, out.shape, stack.spacing_mm)
    return Volume(out, stack.spacing_mm, stack.origin_lps, stack.axes_lps)


@dataclass(frozen=True)
class UsableSeries:
    """A series loaded by :func:`load_usable_series`: the volume, the record it was loaded from (without the
    files that could not be decoded) and what was dropped, as warnings for the report."""

    volume: Volume
    series: SeriesRecord
    warnings: tuple[str, ...] = ()


def load_usable_series(series: SeriesRecord, *, cfg: IngestConfig | None = None) -> UsableSeries:
    """Like :func:`load_series`, but a slice whose pixel data cannot be decoded is dropped instead of sinking
    the series, as long as what is left is still one regular stack (no gap: an undecodable first or last
    slice of the slab can go, one in the middle cannot).

    The returned ``series`` lists only the files that were used, so :func:`slice_sources` and
    :func:`read_source_datasets` on it describe exactly the returned volume.

    Raises
    ------
    DicomReadError
        A multi-frame file cannot be decoded (one file is the whole series), or no slice decodes.
    SeriesError
        The slices left after dropping the undecodable ones do not form a regular stack (a gap where the
        slice was); the message names the dropped files. The caller falls back to another series.
    """
    cfg = cfg or default_ingest_config()
    if series.source == "nifti":
        return UsableSeries(load_nifti(series, cfg=cfg), series)
    headers, stack = plan_series(series, cfg=cfg)
    by_path = {h.path: h for h in headers}
    decoded: dict[tuple[Path, int | None], np.ndarray] = {}
    bad: dict[Path, str] = {}
    positions: dict[Path, list[SliceRef]] = defaultdict(list)
    for s in stack.slices:
        positions[s.path].append(s)
    for path, items in positions.items():
        header = by_path[path]
        try:
            frames = _decode(header, [s.frame_number for s in items])
            for s, arr in zip(items, frames, strict=True):
                if arr.shape != (stack.rows, stack.cols):
                    raise DicomReadError(
                        f"{path}: decoded frame has shape {arr.shape}, expected {(stack.rows, stack.cols)}"
                    )
                decoded[(path, s.frame_number)] = arr
        except DicomReadError as exc:
            if header.n_frames > 1:
                raise
            bad[path] = str(exc)
    if not bad:
        kept_stack = stack
    else:
        names = ", ".join(sorted(p.name for p in bad))
        left = [s for s in stack.slices if s.path not in bad]
        first_reason = next(iter(bad.values()))
        if not left:
            raise DicomReadError(f"series {series.key}: no slice can be decoded (e.g. {first_reason})")
        try:
            kept_stack = assess_stack(left, cfg.geometry, where=f"series {series.key}")
        except SeriesError as exc:
            raise SeriesError(
                f"series {series.key}: {len(bad)} slice(s) cannot be decoded ({names}; e.g. {first_reason}) and "
                f"without them the series is not a regular stack ({exc})"
            ) from None
        files = tuple(f for f in series.files if f not in bad)
        series = replace(series, files=files, n_images=kept_stack.n_slices)
    out = np.empty((kept_stack.n_slices, kept_stack.rows, kept_stack.cols), dtype=np.float32)
    for k, s in enumerate(kept_stack.slices):
        g = s.geometry
        out[k] = decoded[(s.path, s.frame_number)].astype(np.float32) * np.float32(g.rescale_slope) + np.float32(
            g.rescale_intercept
        )
    if not np.isfinite(out).all():
        raise SeriesError(f"series {series.key}: pixel values are not finite after rescaling (check RescaleSlope)")
    warnings: tuple[str, ...] = ()
    if bad:
        text = (
            f"series {series.key}: {len(bad)} slice(s) dropped because their pixel data cannot be decoded "
            f"({', '.join(sorted(str(p) for p in bad))}); assessed on the remaining {kept_stack.n_slices} slices"
        )
        for reason in bad.values():
            logger.warning("%s", reason)
        logger.warning("%s", text)
        warnings = (text,)
    return UsableSeries(
        Volume(out, kept_stack.spacing_mm, kept_stack.origin_lps, kept_stack.axes_lps), series, warnings
    )


def decode_problem(ds: Dataset) -> str | None:
    """Why the pixel data of an in-memory data set (with ``file_meta``) cannot be decoded, or None.

    The same decoders and plugin order as :func:`load_series`; every frame is decoded. Used by the listener
    to test compressed instances before acknowledging them.
    """
    try:
        n = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return "NumberOfFrames is not an integer"
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    problem = transfer_syntax_problem(ts) if ts else "no transfer syntax"
    if problem:
        return problem
    preferred = _preferred_plugin(ts)
    where = Path("<received>")
    try:
        with _quiet():
            try:
                _decode_frames(ds, n, list(range(n)), where, preferred)
            except (KeyboardInterrupt, SystemExit, GeneratorExit):
                raise
            except BaseException:  # noqa: BLE001 - as in _decode: let pydicom try every plugin
                if not preferred:
                    raise
                _decode_frames(ds, n, list(range(n)), where, "")
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except DicomReadError as exc:
        return str(exc).removeprefix(f"{where}: ")
    except BaseException as exc:  # noqa: BLE001 - boundary: any decoder failure (incl. pyo3 panics)
        return f"cannot decode pixel data ({UID(ts).name}): {describe_exception(exc)}"
    return None


def read_frames(path: Path, *, cfg: IngestConfig | None = None) -> np.ndarray:
    """All frames of one greyscale image file, rescaled, as float32 ``(n_frames, rows, cols)``.

    For 2-D use (thumbnails, single images) and for checking that a file decodes; no 3-D checks.

    Raises
    ------
    DicomReadError
        Unreadable, not an image, colour, or the pixel data cannot be decoded.
    """
    cfg = cfg or default_ingest_config()
    header = read_header(
        path, defer_size_bytes=cfg.discovery.defer_size_bytes, patient_key_salt=cfg.discovery.patient_key_salt
    )
    problem = pixel_problem(header)
    if problem:
        raise DicomReadError(problem)
    megavoxels = header.n_frames * header.rows * header.cols / 1e6
    if megavoxels > cfg.geometry.max_megavoxels:
        raise DicomReadError(f"{path}: {megavoxels:.0f} million pixels exceeds geometry.max_megavoxels")
    numbers: list[int | None] = [None] if header.n_frames == 1 else list(range(1, header.n_frames + 1))
    frames = _decode(header, numbers)
    out = np.empty((len(frames), header.rows, header.cols), dtype=np.float32)
    for k, (arr, geo) in enumerate(zip(frames, header.frames, strict=True)):
        if arr.shape != (header.rows, header.cols):
            raise DicomReadError(f"{path}: decoded frame has shape {arr.shape}, expected {(header.rows, header.cols)}")
        out[k] = arr.astype(np.float32) * np.float32(geo.rescale_slope) + np.float32(geo.rescale_intercept)
    return out


def slice_sources(series: SeriesRecord, *, cfg: IngestConfig | None = None) -> tuple[SliceSource, ...]:
    """For each slice of :func:`load_series`'s volume, in order: the instance (and frame) it came from."""
    cfg = cfg or default_ingest_config()
    if series.source != "dicom":
        return ()
    headers, stack = plan_series(series, cfg=cfg)
    sop_class = {h.path: h.sop_class_uid for h in headers}
    return tuple(SliceSource(s.path, s.sop_instance_uid, sop_class[s.path], s.frame_number) for s in stack.slices)


def read_source_datasets(series: SeriesRecord, *, cfg: IngestConfig | None = None) -> list[Dataset]:
    """Headers (no pixel data) of the instances of a series, in volume slice order (each instance once).

    A multi-frame series gives one dataset per file; use :func:`slice_sources` for per-frame references.
    NIfTI input has no DICOM instances: the list is empty.
    """
    cfg = cfg or default_ingest_config()
    out: list[Dataset] = []
    seen: set[Path] = set()
    for src in slice_sources(series, cfg=cfg):
        if src.path in seen:
            continue
        seen.add(src.path)
        try:
            with _quiet(), BoundedFile(src.path) as fp:
                out.append(
                    pydicom.dcmread(
                        fp,
                        stop_before_pixels=True,
                        defer_size=cfg.discovery.defer_size_bytes,
                        force=True,
                    )
                )
        except Exception as exc:  # noqa: BLE001 - boundary, see headers module docstring
            raise DicomReadError(f"{src.path}: unreadable DICOM header ({describe_exception(exc)})") from None
    return out


# --------------------------------------------------------------------------- decoding
def _decode(header: InstanceHeader, frame_numbers: Sequence[int | None]) -> list[np.ndarray]:
    """Decoded 2-D frames of one file, in the order asked (``None`` = the single frame)."""
    path = header.path
    n = header.n_frames
    indices = [0 if f is None else f - 1 for f in frame_numbers]
    if any(i < 0 or i >= n for i in indices):
        raise DicomReadError(f"{path}: frame numbers {frame_numbers} out of range 1..{n}")
    wanted = sorted(set(indices))
    decoded: dict[int, np.ndarray] = {}
    try:
        with _quiet():
            ds = _dataset_with_pixels(header)
            preferred = _preferred_plugin(header.transfer_syntax)
            try:
                decoded = _decode_frames(ds, n, wanted, path, preferred)
            except (DicomReadError, KeyboardInterrupt, SystemExit, GeneratorExit):
                raise
            except BaseException:  # noqa: BLE001 - the preferred plugin failed: let pydicom try all of them
                if not preferred:
                    raise
                decoded = _decode_frames(ds, n, wanted, path, "")
    except (DicomReadError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the boundary: any decoder failure is this file's problem.
        # BaseException, not Exception: the Rust RLE decoder (pylibjpeg-rle, pyo3) reports corrupt input as a
        # pyo3 PanicException, which derives from BaseException (found by tests/test_ingest_fuzz.py).
        ts = UID(header.transfer_syntax)
        cut = truncation(path)
        if cut:
            raise DicomReadError(f"{path}: {cut} (re-export or re-send this file)") from None
        raise DicomReadError(f"{path}: cannot decode pixel data ({ts.name}): {describe_exception(exc)}") from None
    return [decoded[i] for i in indices]


def _decode_frames(ds: Dataset, n: int, wanted: list[int], path: Path, plugin: str) -> dict[int, np.ndarray]:
    if n == 1:
        return {0: _as_2d(pydicom.pixels.pixel_array(ds, decoding_plugin=plugin, allow_excess_frames=False), path)}
    frames = iter_pixels(ds, indices=wanted, decoding_plugin=plugin, allow_excess_frames=False)
    return {i: _as_2d(arr, path) for i, arr in zip(wanted, frames, strict=True)}


# Decoding plugin to try first, by transfer syntax ("" = pydicom's own order, which tries pylibjpeg's libjpeg
# first for JPEG-LS). CharLS (pyjpegls) decodes the sample studies' 384x384 JPEG-LS frames in ~3.5 ms instead of
# ~14 ms; JPEG-LS decoding is exactly specified, so the pixels are the same. If it fails on a file, pydicom's
# default order is tried before the file is declared undecodable.
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
}


@lru_cache(maxsize=32)
def _preferred_plugin(transfer_syntax: str) -> str:
    plugin = _PREFERRED_PLUGINS.get(transfer_syntax, "")
    if not plugin:
        return ""
    try:
        return plugin if plugin in get_decoder(UID(transfer_syntax)).available_plugins else ""
    except (NotImplementedError, ValueError):
        return ""


def _dataset_with_pixels(header: InstanceHeader) -> Dataset:
    """A minimal data set for the decoders: the image pixel attributes from the header summary plus the pixel
    data element, read with bounded memory (only the bytes it really occupies in the file, nothing after it).
    A deflated file is parsed whole (its pixel offset is in the inflated copy)."""
    path, pixel = header.path, header.pixel
    if pixel is None:
        raise DicomReadError(f"{path}: no pixel data")
    if pixel.value_offset < 0:
        with BoundedFile(path) as fp:
            return pydicom.dcmread(fp, force=True)
    with BoundedFile(path) as fp:
        if fp.seek(pixel.value_offset) != pixel.value_offset:
            raise DicomReadError(f"{path}: changed since it was scanned")
        if pixel.encapsulated:
            value = read_undefined_length_value(
                cast(BinaryIO, fp), pixel.little_endian, SequenceDelimiterTag, defer_size=None
            )
        else:
            value = fp.read(pixel.length)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(header.transfer_syntax)
    ds.Rows, ds.Columns = header.rows, header.cols
    ds.SamplesPerPixel = header.samples_per_pixel
    ds.PhotometricInterpretation = header.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = header.bits_allocated, header.bits_stored, header.high_bit
    ds.PixelRepresentation = header.pixel_representation
    if header.n_frames > 1:
        ds.NumberOfFrames = header.n_frames
    vr = pixel.vr or ("OB" if pixel.encapsulated or header.bits_allocated <= 8 else "OW")
    if pixel.keyword != "PixelData":
        vr = pixel.vr or ("OF" if pixel.keyword == "FloatPixelData" else "OD")
    ds[pixel.keyword] = DataElement(pixel.keyword, vr, value)
    ds.set_original_encoding(False, pixel.little_endian)
    return ds


def _as_2d(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 2:
        raise DicomReadError(f"{path}: decoded pixel data has shape {arr.shape}; a greyscale 2-D frame was expected")
    return arr
