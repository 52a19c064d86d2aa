"""Finding studies and series under a folder (headers only).

The walk is recursive and looks at every regular file whatever its name (CD exports have none),
never follows symbolic links into loops, and never stops on a bad file: each file that is not a
usable image becomes a :class:`~pipeline.model.SkippedFile` with the reason, logged with its path.
DICOMDIR files are not images; their references are checked so that an incomplete copy of a CD is
reported. NIfTI files (``.nii`` / ``.nii.gz``) become one-series studies (:mod:`pipeline.ingest.nifti`).

Instances are grouped by StudyInstanceUID -> SeriesInstanceUID. A series whose images differ in
orientation (a 3-plane localizer) or contrast (Dixon water/fat/in/out-phase, several echoes in one
series) is split into stacks, each its own :class:`~pipeline.model.SeriesRecord` (``stack`` names it).
Every record carries its role (:func:`~pipeline.ingest.roles.classify_role`) and the problems that
stop it from becoming a volume (same checks as :func:`~pipeline.ingest.pixels.load_series`).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DicomReadError, InputError, SeriesError, StudyError
from pipeline.ingest.attributes import InstanceHeader
from pipeline.ingest.config import IngestConfig, default_ingest_config
from pipeline.ingest.duplicates import resolve_duplicate_positions
from pipeline.ingest.geometry import SliceRef, StackGeometry, assess_stack, frame_orientation
from pipeline.ingest.headers import dicomdir_references, read_header
from pipeline.ingest.nifti import is_nifti, nifti_study, sidecar_path, skip_reason
from pipeline.ingest.pixels import pixel_problem
from pipeline.ingest.roles import classify_role
from pipeline.model import Orientation, SeriesRecord, SkippedFile, StudyRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Discovery:
    """Everything found under a folder: studies (sorted by date, then UID) and every skipped file."""

    root: Path
    studies: tuple[StudyRecord, ...]
    skipped: tuple[SkippedFile, ...]
    n_files: int  # regular files looked at


def discover(root: Path, *, cfg: IngestConfig | None = None) -> Discovery:
    """Walk ``root`` (a folder, or a single DICOM / NIfTI file) and group what it holds.

    Raises
    ------
    InputError
        ``root`` does not exist, or holds more than ``discovery.max_files`` files.
    """
    cfg = cfg or default_ingest_config()
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    headers: list[InstanceHeader] = []
    skipped: list[SkippedFile] = []
    nifti_studies: list[StudyRecord] = []
    files = list(itertools.islice(_walk(root, skipped), cfg.discovery.max_files + 1))
    if len(files) > cfg.discovery.max_files:
        raise InputError(
            f"{root}: more than discovery.max_files ({cfg.discovery.max_files}) files; point at a study or batch "
            "folder, or raise the limit in configs/ingest.yaml"
        )
    sidecars = {sidecar_path(f) for f in files if is_nifti(f)}
    for path in files:
        if path in sidecars:
            continue
        if is_nifti(path):
            reason = skip_reason(path, cfg)
            if reason:
                _skip(skipped, path, reason)
                continue
            try:
                nifti_studies.append(nifti_study(path, cfg=cfg))
            except InputError as exc:
                _skip(skipped, path, _strip(str(exc), path))
            continue
        if path.name.upper() == "DICOMDIR":
            _skip(skipped, path, _dicomdir_reason(path))
            continue
        try:
            headers.append(
                read_header(
                    path,
                    defer_size_bytes=cfg.discovery.defer_size_bytes,
                    patient_key_salt=cfg.discovery.patient_key_salt,
                )
            )
        except DicomReadError as exc:
            _skip(skipped, path, _strip(str(exc), path))
    unique, conflicts = _deduplicate(headers, skipped)
    studies = _build_studies(unique, conflicts, cfg) + nifti_studies
    studies = [_attach_skipped(s, skipped) for s in studies]
    studies.sort(key=lambda s: (s.study_date or "", s.study_uid))
    logger.info("%s: %d files, %d studies, %d skipped", root, len(files), len(studies), len(skipped))
    return Discovery(root=root, studies=tuple(studies), skipped=tuple(skipped), n_files=len(files))


def discover_studies(root: Path, *, cfg: IngestConfig | None = None) -> list[StudyRecord]:
    """All studies under ``root`` (a batch folder may hold many; each keeps its own problems)."""
    return list(discover(root, cfg=cfg).studies)


def discover_study(root: Path, *, cfg: IngestConfig | None = None, study_uid: str | None = None) -> StudyRecord:
    """The one study under ``root`` (or the one with ``study_uid``).

    Raises
    ------
    StudyError
        No study; several studies and no ``study_uid``; ``study_uid`` not found; or the study mixes
        several patients. The message lists StudyInstanceUIDs (never patient identifiers) and the fix.
    """
    found = discover(root, cfg=cfg)
    studies = list(found.studies)
    if study_uid is not None:
        studies = [s for s in studies if s.study_uid == study_uid]
        if not studies:
            raise StudyError(
                f"{root}: study {study_uid} not found; found: {', '.join(s.study_uid for s in found.studies) or 'none'}"
            )
    if not studies:
        reasons = Counter(_reason_kind(s.reason) for s in found.skipped).most_common(3)
        detail = "; ".join(f"{n} x {r}" for r, n in reasons)
        raise StudyError(
            f"{root}: no DICOM image series or NIfTI image found ({found.n_files} files looked at"
            + (f"; skipped: {detail}" if detail else "")
            + ")"
        )
    if len(studies) > 1:
        raise StudyError(
            f"{root}: {len(studies)} studies found ({', '.join(s.study_uid for s in studies)}); this command "
            "processes one study: use `spine-assess batch` for a folder of studies, or point at one study's "
            "folder"
        )
    study = studies[0]
    if study.problems:
        raise StudyError(f"{root}: study {study.study_uid}: {study.problems[0]}")
    if study_uid is None:
        # The whole folder belongs to this study: every skipped file is reported with it.
        study = _with_skipped(study, found.skipped)
    return study


# --------------------------------------------------------------------------- walking
def _walk(root: Path, skipped: list[SkippedFile]) -> Iterator[Path]:
    if root.is_file():
        yield root
        return

    def onerror(exc: OSError) -> None:
        _skip(skipped, Path(exc.filename or root), f"cannot list folder ({exc.strerror or exc})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                if path.is_file():
                    yield path
                else:
                    _skip(skipped, path, "not a regular file (broken link, socket or device)")
            except OSError as exc:
                _skip(skipped, path, f"cannot read ({exc.strerror or exc})")


def _skip(skipped: list[SkippedFile], path: Path, reason: str) -> None:
    logger.info("skipped %s: %s", path, reason)
    skipped.append(SkippedFile(path, reason))


def _strip(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _reason_kind(reason: str) -> str:
    return reason.split("(")[0].split(":")[0].strip()


def _dicomdir_reason(path: Path) -> str:
    refs, problem = dicomdir_references(path)
    if problem:
        return f"DICOMDIR (media directory), not an image; unreadable ({problem})"
    missing = [r for r in refs if not r.is_file()]
    text = f"DICOMDIR (media directory), not an image; it references {len(refs)} files"
    if missing:
        text += f", {len(missing)} of them missing (e.g. {missing[0]}): the copy of the medium may be incomplete"
        logger.warning("%s: %s", path, text)
    return text + "; the files themselves are found by the folder walk"


# --------------------------------------------------------------------------- grouping
def _deduplicate(headers: list[InstanceHeader], skipped: list[SkippedFile]) -> tuple[list[InstanceHeader], set[str]]:
    """Drop files whose SOP Instance UID was already seen. Identical copies are harmless; a UID used by two
    different images is a conflict that makes its series unusable (returned as series UIDs)."""
    first: dict[str, InstanceHeader] = {}
    unique: list[InstanceHeader] = []
    conflicts: set[str] = set()
    for h in headers:
        prev = first.get(h.sop_instance_uid)
        if prev is None:
            first[h.sop_instance_uid] = h
            unique.append(h)
            continue
        same = (
            prev.series_uid == h.series_uid
            and prev.file_size == h.file_size
            and [f.position_lps for f in prev.frames] == [f.position_lps for f in h.frames]
        )
        if same:
            _skip(skipped, h.path, f"duplicate copy of {prev.path} (same SOP Instance UID {h.sop_instance_uid})")
        else:
            conflicts.add(prev.series_uid)
            conflicts.add(h.series_uid)
            _skip(
                skipped,
                h.path,
                f"SOP Instance UID {h.sop_instance_uid} is also used by a different image "
                f"({prev.path}); the export is inconsistent",
            )
    return unique, conflicts


def _build_studies(headers: list[InstanceHeader], conflicts: set[str], cfg: IngestConfig) -> list[StudyRecord]:
    by_study: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        by_study[h.study_uid].append(h)
    studies = []
    for study_uid, hs in by_study.items():
        by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
        for h in hs:
            by_series[h.series_uid].append(h)
        records: list[SeriesRecord] = []
        for series_uid, shs in by_series.items():
            shs.sort(key=lambda h: (h.instance_number if h.instance_number is not None else 1 << 31, str(h.path)))
            records.extend(_series_records(shs, series_uid in conflicts, cfg))
        records.sort(key=lambda r: (r.series_number if r.series_number is not None else 1 << 31, r.series_uid, r.stack))
        keys = sorted({h.patient_key for h in hs})
        problems = []
        if len(keys) > 1:
            problems.append(
                f"instances of this study carry {len(keys)} different patient identities; refusing to "
                "mix patients (check the export)"
            )
        first = hs[0]
        paths = [str(h.path.parent) for h in hs]
        studies.append(
            StudyRecord(
                study_uid=study_uid,
                patient_key=keys[0] if len(keys) == 1 else "",
                description=first.study_description,
                study_date=first.study_date,
                series=tuple(records),
                root=Path(os.path.commonpath(paths)),
                problems=tuple(problems),
            )
        )
    return studies


def _series_records(headers: list[InstanceHeader], conflict: bool, cfg: IngestConfig) -> list[SeriesRecord]:
    tol = cfg.geometry.orientation_tolerance_deg
    groups: dict[tuple[Orientation, str], list[tuple[InstanceHeader, SliceRef]]] = defaultdict(list)
    for h in headers:
        for f in h.frames:
            ref = SliceRef(h.path, f.frame_number if h.n_frames > 1 else None, h.sop_instance_uid, h.rows, h.cols, f)
            groups[(frame_orientation(f, tol), f.contrast)].append((h, ref))
    orientations = {k[0] for k in groups}
    contrasts = {k[1] for k in groups}
    split = len(groups) > 1
    notes: tuple[str, ...] = ()
    if split:
        summary = ", ".join(
            f"{_stack_name(k, orientations, contrasts)}: {len(v)}"
            for k, v in sorted(groups.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))
        )
        why = "orientations" if len(orientations) > 1 else "contrasts"
        notes = (f"split from a series mixing {why} ({summary} images)",)
        logger.info("series %s mixes %s (%s): split into %d stacks", headers[0].series_uid, why, summary, len(groups))
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        stack_name = _stack_name(key, orientations, contrasts) if split else ""
        out.append(_record(members, key[0], stack_name, notes, conflict, cfg))
    return out


def _stack_name(key: tuple[Orientation, str], orientations: set[Orientation], contrasts: set[str]) -> str:
    parts = []
    if len(orientations) > 1:
        parts.append(key[0].value)
    if len(contrasts) > 1:
        parts.append(key[1] or "unlabelled")
    return ", ".join(parts)


def _record(
    members: list[tuple[InstanceHeader, SliceRef]],
    orientation: Orientation,
    stack_name: str,
    notes: tuple[str, ...],
    conflict: bool,
    cfg: IngestConfig,
) -> SeriesRecord:
    first_h = members[0][0]
    where = f"series {first_h.series_uid}" + (f" [{stack_name}]" if stack_name else "")
    problems: list[str] = []
    if conflict:
        problems.append(f"{where}: some SOP Instance UIDs are shared with different images (see skipped files)")
    for h in dict.fromkeys(h for h, _ in members):
        problem = pixel_problem(h)
        if problem:
            problems.append(problem)
            break
    resolved = resolve_duplicate_positions(
        members, duplicate_position_mm=cfg.geometry.duplicate_position_mm, where=where
    )
    members = list(resolved.kept)
    slices = [ref for _, ref in members]
    stack: StackGeometry | None = None
    try:
        stack = assess_stack(slices, cfg.geometry, where=where)
    except SeriesError as exc:
        problems.append(str(exc))
    ordered = list(stack.slices) if stack is not None else slices
    files: list[Path] = list(dict.fromkeys(s.path for s in ordered))
    file_index = {p: i for i, p in enumerate(files)}
    multiframe = any(h.n_frames > 1 for h, _ in members)
    frames = (
        tuple((file_index[s.path], s.frame_number) for s in ordered if s.frame_number is not None)
        if multiframe and stack_name
        else ()
    )
    header_of = {h.path: h for h, _ in members}
    rep = ordered[0]
    acq = header_of[rep.path].acquisition_of(rep.geometry)
    role, rule, confidence, substitute = classify_role(acq, cfg=cfg)
    thick = [s.geometry.slice_thickness_mm for s in ordered if s.geometry.slice_thickness_mm]
    ps = stack.spacing_mm[1:] if stack is not None else rep.geometry.pixel_spacing_mm
    return SeriesRecord(
        study_uid=first_h.study_uid,
        series_uid=first_h.series_uid,
        frame_of_reference_uid=first_h.frame_of_reference_uid,
        modality=first_h.modality,
        description=acq.series_description or acq.protocol_name,
        series_number=first_h.series_number,
        orientation=orientation,
        role=role,
        role_rule=rule,
        role_confidence=confidence,
        substitute=substitute,
        n_images=len(ordered),
        rows=rep.rows,
        cols=rep.cols,
        pixel_spacing_mm=(float(ps[0]), float(ps[1])) if ps else None,
        slice_thickness_mm=float(np.median(thick)) if thick else None,
        transfer_syntaxes=tuple(sorted({h.transfer_syntax for h, _ in members})),
        files=tuple(files),
        source="dicom",
        problems=tuple(problems),
        repetition_time_ms=acq.repetition_time_ms,
        echo_time_ms=acq.echo_time_ms,
        inversion_time_ms=acq.inversion_time_ms,
        manufacturer=acq.manufacturer,
        stack=stack_name,
        frames=frames,
        slice_normal_lps=stack.normal_lps if stack is not None else None,
        slice_spacing_mm=stack.spacing_mm[0] if stack is not None else None,
        field_strength_t=acq.field_strength_t,
        protocol_name=acq.protocol_name,
        notes=notes,
        warnings=resolved.warnings,
    )


def _attach_skipped(study: StudyRecord, skipped: list[SkippedFile]) -> StudyRecord:
    """Skipped files inside the study's folder belong to its record."""
    root = study.root
    mine = tuple(s for s in skipped if _is_under(s.path, root))
    return _with_skipped(study, mine)


def _with_skipped(study: StudyRecord, skipped: tuple[SkippedFile, ...] | list[SkippedFile]) -> StudyRecord:
    from dataclasses import replace

    return replace(study, skipped=tuple(skipped))


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


__all__ = ["Discovery", "discover", "discover_studies", "discover_study"]
