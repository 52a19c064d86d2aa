"""NIfTI input (``.nii`` / ``.nii.gz``): one file is a one-series "study", so research data runs through the
same pipeline as DICOM.

- UIDs are synthetic and deterministic: ``2.25.<decimal of 128 bits of SHA-256(tag + file bytes)>``, so the
  same file always gives the same StudyInstanceUID / SeriesInstanceUID / FrameOfReferenceUID.
- Geometry comes from the NIfTI header through SimpleITK (which converts RAS to LPS); the third NIfTI axis is
  the slice axis, and the orientation is classified from it like a DICOM ImageOrientationPatient.
- The role comes from a BIDS-style JSON sidecar (``name.json`` next to ``name.nii.gz``: SeriesDescription,
  ProtocolName, RepetitionTime/EchoTime/InversionTime in seconds, ScanOptions, ImageType ...) when present,
  else from the file name (``sub-01_T2w.nii.gz`` -> T2), else OTHER.
- There is no patient identity in a NIfTI file: ``patient_key`` is "".
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError, SeriesError
from pipeline.ingest.attributes import AcquisitionInfo
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.geometry import classify_orientation
from pipeline.ingest.headers import describe_exception, file_digest
from pipeline.ingest.roles import classify_role
from pipeline.model import Orientation, SeriesRecord, StudyRecord
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    for s in NIFTI_SUFFIXES[::-1]:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return path.stem


def sidecar_path(path: Path) -> Path:
    return path.with_name(nifti_stem(path) + ".json")


def skip_reason(path: Path, cfg: IngestConfig) -> str | None:
    """Why a NIfTI file is not an image to analyse (a label map / mask by its name), or None."""
    name = path.name.lower()
    for pattern in cfg.discovery.nifti_skip_patterns:
        if fnmatch.fnmatch(name, pattern.lower()):
            return f"NIfTI label map / mask by its file name (matches {pattern!r}), not an image"
    return None


def synthetic_uid(digest: str, kind: str) -> str:
    """Deterministic UID under the UUID-derived root 2.25 (at most 44 characters)."""
    h = hashlib.sha256(f"spine-assess nifti {kind} {digest}".encode()).hexdigest()
    return "2.25." + str(int(h[:32], 16))


def nifti_study(path: Path, *, cfg: IngestConfig) -> StudyRecord:
    """The one-series study of a NIfTI file (header only; the voxels are read by :func:`load_nifti`).

    Raises
    ------
    InputError
        The file cannot be read as an image by SimpleITK.
    """
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        digest = file_digest(path)
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}: unreadable NIfTI file ({describe_exception(exc)})") from None
    size = reader.GetSize()
    dim = reader.GetDimension()
    problems: list[str] = []
    if dim == 4 and size[3] != 1:
        problems.append(f"{path}: 4-D NIfTI with {size[3]} volumes; only a single 3-D volume can be analysed")
    elif dim not in (3, 4):
        problems.append(f"{path}: {dim}-D NIfTI; a 3-D volume is needed")
    if reader.GetNumberOfComponents() != 1:
        problems.append(f"{path}: {reader.GetNumberOfComponents()} components per voxel; a scalar image is needed")
    spacing = reader.GetSpacing()[:3]
    direction = np.asarray(reader.GetDirection(), dtype=float)
    if dim == 4:
        direction = direction.reshape(4, 4)[:3, :3].ravel()
    axes = direction.reshape(3, 3).T[::-1]  # rows: LPS directions of (slice, row, col)
    n_slices, rows, cols = (int(size[2]), int(size[1]), int(size[0])) if dim >= 3 else (1, 1, 1)
    try:
        iop = (*axes[2], *axes[1])
        orientation = classify_orientation(iop, tolerance_deg=cfg.geometry.orientation_tolerance_deg)
    except InputError as exc:
        orientation = Orientation.UNKNOWN
        problems.append(f"{path}: direction matrix is not usable: {exc}")
    if n_slices < cfg.geometry.min_slices:
        problems.append(f"{path}: only {n_slices} slice(s); a 3-D volume needs at least {cfg.geometry.min_slices}")
    megavoxels = n_slices * rows * cols / 1e6
    if megavoxels > cfg.geometry.max_megavoxels:
        problems.append(
            f"{path}: {megavoxels:.0f} million voxels exceeds geometry.max_megavoxels ({cfg.geometry.max_megavoxels:g})"
        )
    acq, note = _acquisition(path)
    role, rule, confidence, substitute = classify_role(acq, cfg=cfg)
    study_uid = synthetic_uid(digest, "study")
    normal = tuple(float(v) for v in axes[0])
    series = SeriesRecord(
        study_uid=study_uid,
        series_uid=synthetic_uid(digest, "series"),
        frame_of_reference_uid=synthetic_uid(digest, "frame-of-reference"),
        modality="MR",
        description=acq.series_description or nifti_stem(path),
        series_number=None,
        orientation=orientation,
        role=role,
        role_rule=f"{rule} [from {acq.origin}]",
        role_confidence=confidence,
        substitute=substitute,
        n_images=n_slices,
        rows=rows,
        cols=cols,
        pixel_spacing_mm=(float(spacing[1]), float(spacing[0])),
        slice_thickness_mm=float(spacing[2]),
        transfer_syntaxes=(),
        files=(path,),
        source="nifti",
        problems=tuple(problems),
        repetition_time_ms=acq.repetition_time_ms,
        echo_time_ms=acq.echo_time_ms,
        inversion_time_ms=acq.inversion_time_ms,
        manufacturer=acq.manufacturer,
        slice_normal_lps=(normal[0], normal[1], normal[2]),
        slice_spacing_mm=float(spacing[2]),
        field_strength_t=acq.field_strength_t,
        protocol_name=acq.protocol_name,
        notes=(note,) if note else (),
    )
    return StudyRecord(
        study_uid=study_uid,
        patient_key="",
        description=f"NIfTI {path.name}",
        study_date=None,
        series=(series,),
        root=path.parent,
    )


def load_nifti(series: SeriesRecord, *, cfg: IngestConfig) -> Volume:
    """Voxels of a NIfTI series record as a float32 :class:`Volume` (scl_slope/scl_inter applied by ITK)."""
    path = series.files[0]
    if series.problems:
        raise SeriesError(series.problems[0])
    try:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as exc:
        raise InputError(f"{path}: unreadable NIfTI file ({describe_exception(exc)})") from None
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    vol = Volume.from_sitk(image)
    arr = np.asarray(vol.array, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise SeriesError(f"{path}: the image contains NaN or infinite values")
    return vol.with_array(arr)


# --------------------------------------------------------------------------- sidecar
def _acquisition(path: Path) -> tuple[AcquisitionInfo, str]:
    side = sidecar_path(path)
    if side.is_file():
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            acq = _from_sidecar(data, side)
            if not (acq.series_description or acq.protocol_name or acq.sequence_name):
                acq = replace(acq, series_description=nifti_stem(path), origin=f"{acq.origin} and file name")
            return acq, ""
        except (OSError, ValueError, TypeError) as exc:
            note = f"JSON sidecar {side.name} ignored: {describe_exception(exc)}"
            logger.warning("%s: %s", path, note)
            return AcquisitionInfo(series_description=nifti_stem(path), origin="file name"), note
    return AcquisitionInfo(series_description=nifti_stem(path), origin="file name (no JSON sidecar)"), ""


def _from_sidecar(data: dict[str, Any], side: Path) -> AcquisitionInfo:
    def text(key: str) -> str:
        v = data.get(key)
        return str(v).strip() if isinstance(v, (str, int, float)) else ""

    def tokens(key: str) -> tuple[str, ...]:
        v = data.get(key)
        if isinstance(v, list):
            return tuple(str(x).strip().upper() for x in v if str(x).strip())
        if isinstance(v, str):
            # dcm2niix joins multi-valued attributes with "_" (ScanningSequence "SE_IR").
            return tuple(t.upper() for t in v.replace("\\", "_").split("_") if t)
        return ()

    def ms(key: str) -> float | None:
        v = data.get(key)
        if isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return float(v) * 1000.0  # BIDS stores times in seconds

    field = data.get("MagneticFieldStrength")
    return AcquisitionInfo(
        series_description=text("SeriesDescription"),
        protocol_name=text("ProtocolName"),
        sequence_name=text("SequenceName") or text("PulseSequenceName"),
        scanning_sequence=tokens("ScanningSequence"),
        sequence_variant=tokens("SequenceVariant"),
        scan_options=tokens("ScanOptions"),
        image_type=tokens("ImageType"),
        repetition_time_ms=ms("RepetitionTime"),
        echo_time_ms=ms("EchoTime"),
        inversion_time_ms=ms("InversionTime"),
        contrast_agent=text("ContrastBolusIngredient") or text("ContrastBolusAgent"),
        field_strength_t=float(field) if isinstance(field, (int, float)) and not isinstance(field, bool) else None,
        manufacturer=text("Manufacturer"),
        origin=f"BIDS sidecar {side.name}",
    )
