"""The one place where the stages are chained: ingest -> segment -> morphometry / STIR -> eligibility -> report.

``run_study`` is what ``spine-assess run``, ``batch`` and the PACS listener all call. Its outputs are written
atomically: everything goes to a temporary sibling folder that is renamed into place only when complete, so an
interrupted run never leaves a half-written study folder that looks finished.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from pipeline.config import default_config_dir, file_sha256
from pipeline.eligibility import (
    RuleSet,
    evaluate,
    find_clinical_file,
    imaging_facts,
    load_rules,
)
from pipeline.errors import InputError, PipelineError, StudyError
from pipeline.fsio import FILE_MODE, fsync_dir, fsync_tree, remove_stale
from pipeline.ingest import (
    IngestConfig,
    choose_series,
    discover_study,
    load_ingest_config,
    load_usable_series,
    read_source_datasets,
)
from pipeline.level_anchor import anchor_warning, resolve_anchor
from pipeline.model import (
    LoadedSeries,
    Role,
    SegmentationResult,
    SeriesChoice,
    SeriesRecord,
    StirAssessment,
    StudyRecord,
    VertebraMorphometry,
)
from pipeline.morphometry import MorphometryConfig, load_morphometry_config, measure_vertebrae
from pipeline.outdir import check_not_overlapping, check_output_folder
from pipeline.report.dicom_common import DEFAULT_DICOM_CONFIG, DicomOutputConfig
from pipeline.report.outputs import DEFAULT_OUTPUTS, FILE_NAMES, OutputKind, write_outputs
from pipeline.report.study_report import ClinicalInputsUsed, OutputFiles, StageTimer, StudyReport
from pipeline.segment import Anchor, SegmentationConfig, load_segmentation_config, segment_vertebrae
from pipeline.stir import StirConfig, assess_stir, load_stir_config
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.nii.gz"
JOB_FILE = "job.json"  # RunOptions.job, written with the outputs
CONFIG_FILES = ("ingest.yaml", "segmentation.yaml", "morphometry.yaml", "stir.yaml", "eligibility.yaml")


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's settings, loaded and validated once at start-up, plus their combined hash."""

    config_dir: Path
    ingest: IngestConfig
    segmentation: SegmentationConfig
    morphometry: MorphometryConfig
    stir: StirConfig
    rules: RuleSet
    dicom: DicomOutputConfig = DEFAULT_DICOM_CONFIG
    sha256: str = ""


def load_pipeline_config(config_dir: Path | None = None) -> PipelineConfig:
    """Load and validate ``configs/*.yaml`` (raises :class:`~pipeline.errors.ConfigError` naming file and field)."""
    d = Path(config_dir) if config_dir else default_config_dir()
    present = [d / name for name in CONFIG_FILES if (d / name).is_file()]
    return PipelineConfig(
        config_dir=d,
        ingest=load_ingest_config(d / "ingest.yaml"),
        segmentation=load_segmentation_config(d / "segmentation.yaml"),
        morphometry=load_morphometry_config(d / "morphometry.yaml"),
        stir=load_stir_config(d / "stir.yaml"),
        rules=load_rules(d / "eligibility.yaml"),
        sha256=file_sha256(*present),
    )


@dataclass(frozen=True)
class RunOptions:
    """How to run one study.

    ``study_uid`` picks one study out of a folder that holds several (batch, listener); the clinical file
    beside the study (``clinical.yaml``) is then NOT picked up automatically, because a folder shared by
    several studies cannot tell whose it is: pass ``clinical_path``. ``job`` is the caller's record of this
    run (e.g. the batch input fingerprint); it is written as ``job.json`` together with the other outputs,
    inside the same atomic rename, so a finished output folder always says which inputs it came from.
    """

    outputs: frozenset[OutputKind] = DEFAULT_OUTPUTS
    clinical_path: Path | None = None  # default: clinical.yaml/.json beside the study, if any (not with study_uid)
    anchor: Anchor | None = None
    write_labels: bool = True
    study_uid: str | None = None
    job: Mapping[str, Any] | None = field(default=None, hash=False)
    # replace a previous spine-assess output of ANOTHER study in out_dir (one of the same study is always
    # replaced; a folder holding anything spine-assess did not write never is: see pipeline.outdir)
    force: bool = False


@dataclass(frozen=True)
class RunResult:
    """What a caller (CLI, batch, listener) needs to know about one finished study."""

    study_uid: str
    out_dir: Path
    report: StudyReport = field(repr=False)  # as written to report.json (StudyReport.to_json)
    runtime_s: float = 0.0

    @property
    def report_path(self) -> Path:
        return self.out_dir / FILE_NAMES[OutputKind.JSON]


def run_study(
    study_dir: Path,
    out_dir: Path,
    *,
    config: PipelineConfig,
    options: RunOptions = RunOptions(),
) -> RunResult:
    """Assess one study folder and write its outputs into ``out_dir``.

    ``out_dir`` must be new, empty, or a previous spine-assess output (of this study, or of another one with
    ``options.force``); it is then replaced atomically. Anything else is refused before any work (see
    :mod:`pipeline.outdir`): nothing the program did not write is ever removed.

    Raises
    ------
    OutputFolderError
        ``out_dir`` overlaps the input, or holds files spine-assess did not write (a ConfigError).
    InputError
        The folder holds no usable study (no DICOM/NIfTI, several studies or patients, no sagittal series).
    ConfigError
        The clinical-input file is invalid.
    """
    t_start = time.perf_counter()
    timer = StageTimer()
    warnings: list[str] = []
    study_dir = Path(study_dir)
    out_dir = Path(out_dir)
    check_not_overlapping(study_dir, out_dir)
    check_output_folder(out_dir, force=options.force)  # before the long work; the study is compared below

    with timer.stage("ingest"):
        study = discover_study(study_dir, cfg=config.ingest, study_uid=options.study_uid)
        check_output_folder(out_dir, study_uid=study.study_uid, force=options.force)
        choice = choose_series(study, cfg=config.ingest)
    logger.info(
        "study %s: %d series, anatomy=%s stir=%s t1=%s",
        study.study_uid,
        len(study.series),
        _uid(choice.anatomy),
        _uid(choice.stir),
        _uid(choice.t1),
    )
    if choice.anatomy is None:
        reasons = "; ".join(f"{d.series_uid}: {d.reason}" for d in choice.decisions) or "no image series"
        raise StudyError(f"{study_dir}: study {study.study_uid} has no usable sagittal series ({reasons})")

    clinical_path = options.clinical_path or (find_clinical_file(study_dir) if options.study_uid is None else None)
    clinical = None
    if clinical_path:  # validated before the long work
        from pipeline.eligibility.clinical import load_clinical  # pydantic: only when there is a file

        clinical = load_clinical(clinical_path)

    with timer.stage("load"):
        study, choice, loaded, load_warnings = _load_choice(study, choice, config)
        warnings += choice.warnings
        warnings += load_warnings
        if choice.anatomy is None:
            reasons = "; ".join(f"{d.series_uid}: {d.reason}" for d in choice.decisions)
            raise StudyError(f"{study_dir}: study {study.study_uid} has no usable sagittal series ({reasons})")
        anatomy = loaded[choice.anatomy.key]
        stir_vol = loaded[choice.stir.key] if choice.stir is not None else None
        t1_vol = loaded[choice.t1.key] if choice.t1 is not None else None
    if choice.anatomy.role is Role.STIR:
        warnings.append("no sagittal T1/T2: vertebral bodies were segmented on the STIR series (less reliable)")

    with timer.stage("segment"):
        seg = _segment(anatomy, choice.anatomy, config, options.anchor)
        warnings += seg.warnings

    with timer.stage("morphometry"):
        canal = anatomy if choice.anatomy.role in (Role.T2, Role.STIR) else stir_vol
        morph = measure_vertebrae(anatomy, seg, cfg=config.morphometry, canal_image=canal)

    with timer.stage("stir"):
        stir = _assess_stir(anatomy, seg, stir_vol, t1_vol, morph, choice.stir, choice.t1, choice.anatomy, config)
        warnings += stir.warnings

    with timer.stage("eligibility"):
        facts = imaging_facts(morph, stir)
        eligibility = evaluate(facts, clinical, config.rules)

    report = StudyReport(
        study=study,
        choice=choice,
        segmentation=seg,
        morphometry=tuple(morph),
        stir=stir,
        eligibility=eligibility,
        clinical_inputs=ClinicalInputsUsed(clinical_path.name if clinical_path else None, clinical is not None),
        warnings=tuple(warnings),
        outputs=OutputFiles(labels=LABELS_FILE if options.write_labels else None),
        config_sha256=config.sha256,
    )

    with _atomic_dir(out_dir, study_uid=study.study_uid, force=options.force) as tmp:
        with timer.stage("outputs"):
            if options.job is not None:
                (tmp / JOB_FILE).write_text(
                    json.dumps(dict(options.job), indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
            if options.write_labels:
                _write_image(seg.labels.to_sitk(), tmp / LABELS_FILE)
            dicom = _wants_dicom(options) and choice.anatomy.source == "dicom"
            sources = read_source_datasets(choice.anatomy) if dicom else []
        # write_outputs sets the report's timings from the timer (see its docstring)
        report = write_outputs(
            tmp, report, options.outputs, anatomy=anatomy, source_datasets=sources, config=config.dicom, timer=timer
        )
    runtime = time.perf_counter() - t_start
    logger.info("study %s: done in %.1f s -> %s", study.study_uid, runtime, out_dir)
    return RunResult(study.study_uid, Path(out_dir), report, runtime)


def _write_image(image: sitk.Image, path: Path) -> None:
    """``sitk.WriteImage`` (compressed); ITK reports a failed write (disk full, I/O error) as a RuntimeError, which
    is an OSError here so that callers retry it like any other I/O failure instead of treating it as a bug."""
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as exc:
        raise OSError(errno.EIO, f"cannot write {path.name} ({' '.join(str(exc).split())[:200]})", str(path)) from exc


def _segment(
    anatomy: Volume, series: SeriesRecord, config: PipelineConfig, anchor: Anchor | None
) -> SegmentationResult:
    """Segment and name the bodies; a user anchor is read against the automatic labelling (pipeline.level_anchor):
    ``LEVEL=lowest`` means the lowest body above a detected sacrum, and an anchor that contradicts the detected
    sacrum is used with a warning. With an anchor the image is segmented twice (without, then with it)."""

    def seg_with(a: Anchor | None) -> SegmentationResult:
        return segment_vertebrae(
            anatomy, cfg=config.segmentation, series_uid=series.series_uid, contrast=series.role, anchor=a
        )

    auto = seg_with(None)
    if anchor is None:
        return auto
    resolved = resolve_anchor(anchor, auto)
    anchored = seg_with(resolved.anchor)
    extra = [w for w in [anchor_warning(anchor.describe(), auto, anchored)] if w]
    method = anchored.labelling_method + (f" ({resolved.note})" if resolved.note else "")
    if extra:
        logger.warning("series %s: %s", series.series_uid, extra[0])
    return replace(anchored, labelling_method=method, warnings=(*anchored.warnings, *extra))


def _uid(s: SeriesRecord | None) -> str:
    return s.series_uid if s else "-"


def _wants_dicom(options: RunOptions) -> bool:
    return bool(set(options.outputs) & {OutputKind.SEG, OutputKind.SR, OutputKind.SC})


def _load_choice(
    study: StudyRecord, choice: SeriesChoice, config: PipelineConfig
) -> tuple[StudyRecord, SeriesChoice, dict[str, Volume], list[str]]:
    """Load the chosen anatomy, STIR and T1 series; a series that turns out not to load is marked unusable
    and the choice is made again, so its role falls back to the next best series (as if it had never been
    there). Undecodable slices at the edge of a slab are dropped by :func:`load_usable_series` (warning).

    Returns the study (with the records as loaded: dropped files removed, failed series carrying the
    problem), the final choice, the volumes by series key and the warnings.
    """
    loaded: dict[str, Volume] = {}
    warnings: list[str] = []
    for _ in range(len(study.series) + 1):
        failed: tuple[SeriesRecord, str] | None = None
        replaced: dict[str, SeriesRecord] = {}
        for series in (choice.anatomy, choice.stir, choice.t1):
            if series is None or series.key in loaded:
                continue
            try:
                usable = load_usable_series(series, cfg=config.ingest)
            except InputError as exc:
                failed = (series, str(exc))
                break
            loaded[series.key] = usable.volume
            warnings += usable.warnings
            if usable.series is not series:
                replaced[series.key] = usable.series
        if replaced:
            study = _replace_series(study, replaced)
            choice = _replace_in_choice(choice, replaced)
        if failed is None:
            used = {s.key: s for s in (choice.anatomy, choice.stir, choice.t1) if s is not None}
            warnings = [w for s in used.values() for w in s.warnings] + warnings
            return study, choice, loaded, warnings
        bad, why = failed
        text = f"series {bad.key} could not be loaded ({why}); using the next best series instead"
        logger.warning("study %s: %s", study.study_uid, text)
        warnings.append(text)
        study = _replace_series(study, {bad.key: replace(bad, problems=(why, *bad.problems))})
        choice = choose_series(study, cfg=config.ingest)
    return study, choice, loaded, warnings  # not reached: each pass marks one more series unusable


def _replace_series(study: StudyRecord, new: Mapping[str, SeriesRecord]) -> StudyRecord:
    return replace(study, series=tuple(new.get(s.key, s) for s in study.series))


def _replace_in_choice(choice: SeriesChoice, new: Mapping[str, SeriesRecord]) -> SeriesChoice:
    def swap(s: SeriesRecord | None) -> SeriesRecord | None:
        return new.get(s.key, s) if s is not None else None

    return replace(choice, anatomy=swap(choice.anatomy), stir=swap(choice.stir), t1=swap(choice.t1))


def _assess_stir(
    anatomy: Volume,
    seg: SegmentationResult,
    stir_vol: Volume | None,
    t1_vol: Volume | None,
    morph: tuple[VertebraMorphometry, ...],
    stir_series: SeriesRecord | None,
    t1_series: SeriesRecord | None,
    anatomy_series: SeriesRecord,
    config: PipelineConfig,
) -> StirAssessment:
    deformity = {m.label: bool(m.genant_grade) for m in morph if m.genant_grade is not None}
    return assess_stir(
        LoadedSeries.of(anatomy, anatomy_series),
        seg,
        LoadedSeries.of(stir_vol, stir_series) if stir_vol is not None and stir_series else None,
        cfg=config.stir,
        t1=LoadedSeries.of(t1_vol, t1_series) if t1_vol is not None and t1_vol is not anatomy and t1_series else None,
        deformity=deformity,
    )


# Names of the temporary folders of _atomic_dir: ".<name>.tmp-<pid>-<ns>" (being written) and ".<name>.old-<pid>-<ns>"
# (the previous result, being swapped out). Only a run killed mid-write (kill -9, power loss) leaves them behind.
_TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-\d+-\d+$")


def is_temporary_output(path: Path) -> bool:
    """True for a temporary folder of an unfinished ``run_study`` write (never a finished output folder)."""
    return bool(_TEMP_NAME.match(Path(path).name))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary folders that killed runs left in ``folder`` (not recursive); return them.

    Call this only when no other process is writing outputs into ``folder`` (the batch holds a lock on its
    output folder): a live run's temporary folder looks the same as a dead one's.
    """
    return remove_stale(folder, lambda p: is_temporary_output(p) and p.is_dir())


@contextmanager
def _atomic_dir(final: Path, *, study_uid: str | None = None, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; on success it replaces ``final`` in one rename.

    ``final`` is checked again just before it is replaced (:func:`pipeline.outdir.check_output_folder`):
    something written into it during the run is not lost either.
    """
    final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        yield tmp
        _restrict_tree(tmp)
        fsync_tree(tmp)
        check_output_folder(final, study_uid=study_uid, force=force)
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)  # put the previous result back rather than leave no folder at all
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Output folders: owner and group only (the files get fsio.FILE_MODE), whatever the process umask.
DIR_MODE = 0o750


def _restrict_tree(root: Path) -> None:
    """chmod every file under ``root`` to :data:`FILE_MODE` and every folder (``root`` included) to
    :data:`DIR_MODE`; writers such as ITK and pydicom create files with 0666 & ~umask."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, DIR_MODE)
        for name in files:
            os.chmod(os.path.join(dirpath, name), FILE_MODE)


__all__ = [
    "JOB_FILE",
    "PipelineConfig",
    "PipelineError",
    "RunOptions",
    "RunResult",
    "is_temporary_output",
    "load_pipeline_config",
    "remove_stale_temporaries",
    "run_study",
]
