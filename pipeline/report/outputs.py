"""Which report outputs to write, their file names, and writing them all from the one report.

The registry below is the single source of truth for ``--outputs`` choices and file names, shared by the CLI,
batch and the PACS listener. ``report.json`` is always written: it is the record of the run and every other
output is derived from it. ``sr`` needs ``seg`` (the SR's measurements point at the SEG's segments), so
asking for ``sr`` writes ``seg`` too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Sequence
from contextlib import nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pipeline.report.dicom_common import DicomOutputConfig
    from pipeline.report.study_report import OutputFiles, StageTimer, StudyReport
    from pipeline.volume import Volume

logger = logging.getLogger(__name__)


class OutputKind(StrEnum):
    JSON = "json"  # report.json (always written)
    HTML = "html"  # report.html, self-contained
    SEG = "seg"  # DICOM Segmentation of the vertebral bodies
    SR = "sr"  # DICOM Comprehensive 3D SR (TID 1500); implies seg
    SC = "sc"  # DICOM Secondary Capture of the overlays
    OVERLAYS = "overlays"  # the overlay PNG files


DEFAULT_OUTPUTS: frozenset[OutputKind] = frozenset({OutputKind.JSON, OutputKind.HTML, OutputKind.SEG, OutputKind.SR})
#: DEFAULT_OUTPUTS as ``--outputs`` takes it: "json,html,seg,sr"
DEFAULT_OUTPUTS_TEXT = ",".join(k.value for k in OutputKind if k in DEFAULT_OUTPUTS)

FILE_NAMES = {
    OutputKind.JSON: "report.json",
    OutputKind.HTML: "report.html",
    OutputKind.SEG: "seg.dcm",
    OutputKind.SR: "sr.dcm",
}
OVERLAY_DIR = "overlays"
SC_DIR = "sc"

OUTPUTS_HELP = (
    "comma-separated outputs to write: "
    + ", ".join(k.value for k in OutputKind)
    + f", or 'all' (default: {DEFAULT_OUTPUTS_TEXT}). report.json is always written; sr implies seg."
)


def parse_outputs(text: str) -> frozenset[OutputKind]:
    """Parse ``"json,html,sr,seg"`` (or ``"all"``); adds ``json`` always and ``seg`` when ``sr`` is asked."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words:
        raise ConfigError(f"--outputs is empty; {OUTPUTS_HELP}")
    if words == ["all"]:
        return frozenset(OutputKind)
    kinds = set()
    for w in words:
        try:
            kinds.add(OutputKind(w))
        except ValueError:
            raise ConfigError(f"--outputs: unknown output {w!r}; {OUTPUTS_HELP}") from None
    kinds.add(OutputKind.JSON)
    if OutputKind.SR in kinds:
        kinds.add(OutputKind.SEG)
    return frozenset(kinds)


def write_outputs(
    out_dir: Path,
    report: StudyReport,
    outputs: Collection[OutputKind] = DEFAULT_OUTPUTS,
    *,
    anatomy: Volume | None = None,
    source_datasets: Sequence[Dataset] = (),
    config: DicomOutputConfig | None = None,
    timer: StageTimer | None = None,
) -> StudyReport:
    """Write the chosen outputs of one study into ``out_dir`` and return the final report.

    Parameters
    ----------
    out_dir : Path
        Study output folder (created). File names: :data:`FILE_NAMES`, ``overlays/*.png``, ``sc/*.dcm``.
    report : StudyReport
        The study's report (its ``outputs`` may already list files written beside, e.g. the label map).
    outputs : collection of OutputKind
        What to write (see :func:`parse_outputs`); ``report.json`` is always written.
    anatomy : Volume, optional
        The anatomy series: the overlays (and so the secondary capture) need it and a segmentation with at
        least one body, as the DICOM outputs do.
    source_datasets : sequence of pydicom.Dataset
        Headers of the anatomy series (``pipeline.ingest.read_source_datasets``), needed for SEG/SR/SC.
    config : DicomOutputConfig, optional
        Equipment identification, UID root and series numbers of the DICOM outputs (default:
        :data:`pipeline.report.dicom_common.DEFAULT_DICOM_CONFIG`).
    timer : StageTimer, optional
        The run's timer: the time spent here before rendering the HTML and JSON (overlays, DICOM objects)
        is added to its ``outputs`` stage, and the report's ``timings_ms`` are set from it, once, just
        before the HTML and JSON are rendered. Without it the report's timings are written as they are.

    Returns
    -------
    StudyReport
        The report as written to ``report.json``: ``outputs`` lists the files (relative paths) and
        ``warnings`` says why a requested output could not be written. A DICOM output that fails is a
        warning, not an exception, so that the JSON and HTML are always there to explain the run.
    """
    # The writers load their libraries (highdicom, Jinja2, PIL) here, not when this module is imported: the CLI
    # reads this module's registry for --help, and a run writing report.json only never needs them (issue 18).
    from pipeline.report.dicom_common import DEFAULT_DICOM_CONFIG
    from pipeline.report.json_report import validate_report, write_json

    config = config or DEFAULT_DICOM_CONFIG
    kinds = set(outputs) | {OutputKind.JSON}
    if OutputKind.SR in kinds:
        kinds.add(OutputKind.SEG)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with timer.stage("outputs") if timer is not None else nullcontext():
        files, warnings, overlays = _write_pictures_and_dicom(out_dir, report, kinds, anatomy, source_datasets, config)
    if OutputKind.HTML in kinds:
        files = dataclasses.replace(files, html=FILE_NAMES[OutputKind.HTML])
    final = dataclasses.replace(
        report,
        outputs=files,
        warnings=(*report.warnings, *warnings),
        timings_ms=timer.timings_ms() if timer is not None else report.timings_ms,
    )
    if OutputKind.HTML in kinds:
        from pipeline.report.html import render_html

        (out_dir / FILE_NAMES[OutputKind.HTML]).write_text(render_html(final, overlays), encoding="utf-8")
    data = final.to_json()
    validate_report(data)
    write_json(data, out_dir / FILE_NAMES[OutputKind.JSON])
    return final


def _write_pictures_and_dicom(
    out_dir: Path,
    report: StudyReport,
    kinds: set[OutputKind],
    anatomy: Volume | None,
    source_datasets: Sequence[Dataset],
    config: DicomOutputConfig,
) -> tuple[OutputFiles, list[str], dict[str, bytes]]:
    """The overlays, SEG, SR and SC asked for: (the files as the report lists them, warnings, overlay PNGs)."""
    files = report.outputs
    warnings: list[str] = []
    has_bodies = report.segmentation is not None and bool(report.segmentation.vertebrae)
    overlays: dict[str, bytes] = {}
    if has_bodies and anatomy is not None and kinds & {OutputKind.HTML, OutputKind.OVERLAYS, OutputKind.SC}:
        from pipeline.report.overlay import render_overlays

        overlays = render_overlays(anatomy, report)
    if OutputKind.OVERLAYS in kinds and overlays:
        (out_dir / OVERLAY_DIR).mkdir(exist_ok=True)
        for name, png in overlays.items():
            (out_dir / OVERLAY_DIR / name).write_bytes(png)
        files = dataclasses.replace(files, overlays=tuple(f"{OVERLAY_DIR}/{name}" for name in overlays))

    dicom_kinds = kinds & {OutputKind.SEG, OutputKind.SR, OutputKind.SC}
    if dicom_kinds and not (has_bodies and source_datasets):
        why = "no vertebral body was segmented" if not has_bodies else "the source DICOM headers were not given"
        warnings.append(f"DICOM outputs ({', '.join(sorted(k.value for k in dicom_kinds))}) not written: {why}")
    elif dicom_kinds:
        from pipeline.report.dicom_common import save_dicom
        from pipeline.report.dicom_sc import build_sc
        from pipeline.report.dicom_seg import build_seg
        from pipeline.report.dicom_sr import build_sr

        study_uid = report.study.study_uid
        if OutputKind.SEG in kinds:
            try:
                seg = build_seg(report, source_datasets, config=config)
                save_dicom(seg, out_dir / FILE_NAMES[OutputKind.SEG])
                files = dataclasses.replace(files, seg=FILE_NAMES[OutputKind.SEG])
                if OutputKind.SR in kinds:
                    sr = build_sr(report, seg, source_datasets, config=config)
                    save_dicom(sr, out_dir / FILE_NAMES[OutputKind.SR])
                    files = dataclasses.replace(files, sr=FILE_NAMES[OutputKind.SR])
            except PipelineError as exc:
                logger.error("study %s: DICOM SEG/SR not written: %s", study_uid, exc)
                warnings.append(f"DICOM SEG/SR not written: {exc}")
        if OutputKind.SC in kinds and overlays:
            try:
                paths = []
                for k, sc in enumerate(build_sc(overlays, source_datasets, report, config=config), start=1):
                    rel = f"{SC_DIR}/overlay_{k}.dcm"
                    save_dicom(sc, out_dir / rel)
                    paths.append(rel)
                files = dataclasses.replace(files, sc=tuple(paths))
            except PipelineError as exc:
                logger.error("study %s: secondary capture not written: %s", study_uid, exc)
                warnings.append(f"DICOM secondary capture not written: {exc}")
    return files, warnings, overlays
