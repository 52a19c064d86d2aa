"""What a batch will do: every study under ROOT, its output folder name, clinical file and input fingerprint.

Output folder names (``key``, relative to the batch output folder) are stable between runs and never come
from patient data:

- a study whose files are in a folder of their own (the usual export layout, e.g. ``ROOT/site1/study07/``
  with series sub-folders) gets that folder's path relative to ROOT: ``site1/study07``;
- studies that share a folder (several studies in one export folder, or files straight in ROOT) get
  ``<folder>/study-<hash>``, ``<hash>`` being the first 12 hex digits of the SHA-256 of the
  StudyInstanceUID. The study folder is then read with that StudyInstanceUID. A study read from one NIfTI
  file is named after the file instead: ``<folder>/case01`` for ``case01.nii.gz``.

The study folder is the deepest folder holding all the study's files. A folder under ROOT that holds
DICOM image files but no usable study (all truncated, unreadable headers, ...) becomes an
:class:`UnreadableFolder`, reported as failed; folders holding only other files (text, PDF, JPEG,
DICOM objects without pixel data) are counted as skipped files.

Clinical files with ``--clinical-dir D`` (first that exists; two different matches are an error):
``D/<StudyInstanceUID>.yaml`` (or ``.yml`` / ``.json``), then ``D/<study folder relative to ROOT>.yaml``,
e.g. ``D/site1/study07.yaml``. Otherwise a ``clinical.yaml`` inside a study's own folder is used
(not in a folder shared by several studies: whose would it be?).

The input fingerprint hashes the pipeline version, the configuration hash, the requested outputs and
anchor, the StudyInstanceUID, the (relative path, size, modification time) of every file of the study and
the bytes of its clinical file: any change redoes the study on ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, InputError
from pipeline.ingest import IngestConfig, discover
from pipeline.model import StudyRecord

if TYPE_CHECKING:
    from pipeline.report.outputs import OutputKind
    from pipeline.segment import Anchor

logger = logging.getLogger(__name__)

CLINICAL_SUFFIXES = (".yaml", ".yml", ".json")
#: Names the batch keeps for itself at the top of its output folder.
RESERVED_NAMES = frozenset({"summary.csv", "summary.json", "index.html", "ledger.jsonl", ".batch.lock"})


@dataclass(frozen=True)
class PlannedStudy:
    """One study to assess."""

    key: str  # output folder relative to the batch output folder (POSIX separators)
    folder: str  # study folder relative to ROOT ("." for ROOT itself)
    study_dir: Path  # absolute study folder
    study_uid: str
    shared_folder: bool  # the folder holds other studies too (the study is picked by its UID)
    clinical_path: Path | None
    fingerprint: str
    n_files: int
    n_series: int


@dataclass(frozen=True)
class UnreadableFolder:
    """A folder with DICOM image files but no usable study (reported as a failed row)."""

    folder: str  # relative to ROOT
    error: str
    n_files: int


@dataclass(frozen=True)
class BatchPlan:
    root: Path
    studies: tuple[PlannedStudy, ...]
    unreadable: tuple[UnreadableFolder, ...]
    n_files: int  # regular files looked at under ROOT
    n_skipped: int  # files that are not part of any study (including those of unreadable folders)
    warnings: tuple[str, ...]


def options_salt(*, version: str, config_sha256: str, outputs: frozenset[OutputKind], anchor: Anchor | None) -> str:
    """The part of every study's fingerprint that depends on the batch settings, not on the study."""
    doc = {"version": version, "config": config_sha256, "outputs": sorted(outputs), "anchor": _anchor_text(anchor)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _anchor_text(anchor: Anchor | None) -> str | None:
    """The anchor in the form the user writes it (``L5=lowest``, ``L1=3``, ``L3=z:-120.5``), with z exact."""
    if anchor is None:
        return None
    if isinstance(anchor.position, float):
        return f"{anchor.level.value}=z:{anchor.position!r}"
    return anchor.describe()


def plan_batch(root: Path, *, ingest: IngestConfig, salt: str, clinical_dir: Path | None = None) -> BatchPlan:
    """Discover every study under ``root`` and decide its output folder, clinical file and fingerprint.

    Parameters
    ----------
    root : Path
        The batch input folder.
    ingest : IngestConfig
        Discovery settings (``configs/ingest.yaml``).
    salt : str
        :func:`options_salt` of the batch settings.
    clinical_dir : Path or None
        ``--clinical-dir``; see the module docstring for the naming rule.

    Raises
    ------
    InputError
        ``root`` is not a folder.
    ConfigError
        A clinical file is invalid or ambiguous (all problems are listed in one message).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give the folder that holds the studies")
    found = discover(root, cfg=ingest)
    warnings: list[str] = []

    files_of = {s.study_uid: _study_files(s) for s in found.studies}
    folder_of = {uid: _common_folder(files, root) for uid, files in files_of.items()}
    # studies with files in each folder's subtree: a study folder is "shared" when others live under it too
    under: dict[Path, set[str]] = defaultdict(set)
    for uid, files in files_of.items():
        for d in {f.parent for f in files}:
            for anc in _ancestors(d, root):
                under[anc].add(uid)

    studies: list[PlannedStudy] = []
    problems: list[str] = []
    used_clinical: set[Path] = set()
    keys: set[str] = set()
    for s in found.studies:
        folder = folder_of[s.study_uid]
        shared = under[folder] != {s.study_uid}
        rel = _rel(folder, root)
        key = _key(rel, s.study_uid, shared, keys, _nifti_name(s))
        keys.add(key)
        try:
            clinical = _clinical_for(s.study_uid, rel, shared, folder, clinical_dir)
        except ConfigError as exc:
            problems.append(str(exc))
            clinical = None
        if clinical is not None:
            used_clinical.add(clinical.resolve())
        if shared and clinical is None and any((folder / f"clinical{x}").is_file() for x in CLINICAL_SUFFIXES):
            warnings.append(
                f"{folder}: holds several studies, so its clinical file is not used for study {s.study_uid}; "
                "give clinical files per study with --clinical-dir (named by StudyInstanceUID)"
            )
        studies.append(
            PlannedStudy(
                key=key,
                folder=rel,
                study_dir=folder,
                study_uid=s.study_uid,
                shared_folder=shared,
                clinical_path=clinical,
                fingerprint=_fingerprint(salt, s.study_uid, files_of[s.study_uid], folder, clinical),
                n_files=len(files_of[s.study_uid]),
                n_series=len(s.series),
            )
        )

    problems += _validate_clinical(sorted({p for p in (s.clinical_path for s in studies) if p is not None}))
    if problems:
        raise ConfigError("clinical files:\n  " + "\n  ".join(problems))
    if clinical_dir is not None:
        unused = [
            p
            for p in sorted(Path(clinical_dir).rglob("*"))
            if p.is_file() and p.suffix.lower() in CLINICAL_SUFFIXES and p.resolve() not in used_clinical
        ]
        if unused:
            warnings.append(
                f"{clinical_dir}: {len(unused)} clinical file(s) match no study (e.g. {unused[0].name}); the names "
                "must be a StudyInstanceUID or a study folder's path relative to ROOT"
            )

    study_folders = set(folder_of.values())
    orphans = [
        f for f in found.skipped if not study_folders.intersection(_ancestors(Path(f.path).resolve().parent, root))
    ]
    unreadable = _unreadable_folders(orphans, root, set(under))
    studies.sort(key=lambda p: p.key)
    return BatchPlan(
        root=root,
        studies=tuple(studies),
        unreadable=tuple(unreadable),
        n_files=found.n_files,
        n_skipped=len(found.skipped),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- folders and names
def _study_files(study: StudyRecord) -> list[Path]:
    files = {Path(f).resolve() for s in study.series for f in s.files}
    return sorted(files)


def _common_folder(files: list[Path], root: Path) -> Path:
    if not files:
        return root
    common = Path(os.path.commonpath([str(f.parent) for f in files]))
    return common if _is_under(common, root) else root


def _ancestors(d: Path, root: Path) -> list[Path]:
    out = []
    while True:
        out.append(d)
        if d == root or d.parent == d:
            return out
        d = d.parent


def _is_under(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _rel(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return rel if rel else "."


def _nifti_name(study: StudyRecord) -> str | None:
    """``case01`` for a study read from one NIfTI file ``case01.nii.gz`` (its folder name then), else None."""
    files = {Path(f) for s in study.series for f in s.files}
    if len(files) != 1 or any(s.source != "nifti" for s in study.series):
        return None
    name = next(iter(files)).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return name or None


def _key(rel: str, uid: str, shared: bool, taken: set[str], nifti_name: str | None = None) -> str:
    tag = nifti_name or "study-" + hashlib.sha256(uid.encode()).hexdigest()[:12]
    if rel == ".":
        key = tag
    elif shared:
        key = f"{rel}/{tag}"
    else:
        key = rel
    if PurePosixPath(key).parts[0] in RESERVED_NAMES:
        key = f"study-{key}"
    base, n = key, 2
    while key in taken:
        key = f"{base}-{n}"
        n += 1
    return key


# --------------------------------------------------------------------------- clinical files
def _clinical_for(uid: str, rel: str, shared: bool, folder: Path, clinical_dir: Path | None) -> Path | None:
    if clinical_dir is not None:
        d = Path(clinical_dir)
        by_uid = [d / f"{uid}{x}" for x in CLINICAL_SUFFIXES if (d / f"{uid}{x}").is_file()]
        by_folder = [] if rel == "." else [d / f"{rel}{x}" for x in CLINICAL_SUFFIXES if (d / f"{rel}{x}").is_file()]
        if by_folder and shared:
            raise ConfigError(
                f"{by_folder[0]}: names the folder {rel}, which holds several studies; name the clinical file by "
                f"StudyInstanceUID instead (e.g. {uid}.yaml)"
            )
        matches = by_uid + by_folder
        if len(matches) > 1:
            raise ConfigError(
                f"study {uid} ({rel}): several clinical files match ({', '.join(str(m) for m in matches)}); keep one"
            )
        if matches:
            return matches[0].resolve()
    if shared:
        return None
    from pipeline.eligibility import find_clinical_file

    found = find_clinical_file(folder)  # ConfigError when several
    return found.resolve() if found else None


def _validate_clinical(paths: list[Path]) -> list[str]:
    from pipeline.eligibility import load_clinical

    problems = []
    for p in paths:
        try:
            load_clinical(p)
        except ConfigError as exc:
            problems.append(" ".join(str(exc).split()))
    return problems


# --------------------------------------------------------------------------- fingerprints
def _fingerprint(salt: str, uid: str, files: list[Path], folder: Path, clinical: Path | None) -> str:
    h = hashlib.sha256()
    h.update(salt.encode())
    h.update(b"\0" + uid.encode() + b"\0")
    for f in files:
        try:
            st = f.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.relpath(f, folder)}\0{stamp}\n".encode())
    if clinical is not None:
        h.update(b"clinical\0" + clinical.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- folders without a study
def _unreadable_folders(orphans: list[Any], root: Path, occupied: set[Path]) -> list[UnreadableFolder]:
    """Group skipped files outside every study folder by folder; keep folders that hold DICOM image files."""
    groups: dict[Path, list[Any]] = defaultdict(list)
    for skipped in orphans:
        groups[_unit(Path(skipped.path).resolve(), root, occupied)].append(skipped)
    out = []
    for unit, items in sorted(groups.items()):
        images = [i for i in items if _is_image_dicom(Path(i.path))]
        if not images:
            continue
        kinds = Counter(_reason_kind(i.reason) for i in items).most_common(3)
        first = images[0]
        error = (
            f"no usable study in this folder: {len(items)} file(s) skipped ("
            + "; ".join(f"{n} x {k}" for k, n in kinds)
            + f"), e.g. {_rel(Path(first.path).resolve(), root)}: {first.reason}"
        )
        out.append(UnreadableFolder(folder=_rel(unit, root), error=" ".join(error.split()), n_files=len(items)))
    return out


def _unit(path: Path, root: Path, occupied: set[Path]) -> Path:
    """The highest folder below ``root`` above ``path`` that holds no study; else the file's own folder."""
    parts = path.parent.relative_to(root).parts
    d = root
    for part in parts:
        d = d / part
        if d not in occupied:
            return d
    return path.parent


def _reason_kind(reason: str) -> str:
    return reason.split("(")[0].split(":")[0].strip()


def _is_image_dicom(path: Path) -> bool:
    """A file with the DICOM marker that has (or claims) pixel data; not DICOMDIR, SR, KOS, PR, ..."""
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head[128:132] != b"DICM":
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(path, defer_size=64, force=True)
    except Exception:  # noqa: BLE001 - a damaged DICOM file is what we are looking for
        return True
    if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return True
    # A file cut off inside its header reads "successfully" up to the cut, without pixel data: its SOP class still
    # says whether it was an image (issue 19: a folder of such files had no summary row).
    meta = getattr(ds, "file_meta", None)
    sop = str((meta.get("MediaStorageSOPClassUID") if meta is not None else None) or ds.get("SOPClassUID") or "")
    try:
        return "Image Storage" in pydicom.uid.UID(sop).name
    except Exception:  # noqa: BLE001 - an unreadable SOP class value: not evidence of an image
        return False


def plan_json(plan: BatchPlan) -> Mapping[str, Any]:
    """A small description of the plan for the ledger's start record."""
    return {
        "root": str(plan.root),
        "n_studies": len(plan.studies),
        "n_unreadable_folders": len(plan.unreadable),
        "n_files": plan.n_files,
        "n_skipped": plan.n_skipped,
    }
