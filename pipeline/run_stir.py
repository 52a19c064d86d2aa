"""The STIR-only pipeline of ``spine-assess stir``: image files and a label map -> oedema per vertebral body.

Beside :func:`pipeline.run.run_study` (which finds the series in a DICOM study and segments them itself), this
chains reading the given files, :func:`pipeline.stir.assess_stir` and writing ``stir.json``, ``edema_map.nii.gz``
and a mid-sagittal overlay PNG.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from pipeline.errors import InputError
from pipeline.levels import Level
from pipeline.model import LoadedSeries, SegmentationResult, StirAssessment, Substitute
from pipeline.outdir import check_output_folder
from pipeline.report.json_report import jsonable, stir_sections
from pipeline.stir import StirConfig, assess_stir
from pipeline.stir.labelmap import segmentation_from_label_map
from pipeline.stir.overlay import overlay_rgb
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

STIR_JSON = "stir.json"
EDEMA_MAP = "edema_map.nii.gz"
OVERLAY_PNG = "stir_overlay.png"


@dataclass(frozen=True)
class StirInputs:
    """The image files of one STIR-only run (NIfTI, NRRD, MHA: anything SimpleITK reads, with its geometry).

    ``labels`` is the vertebral-body label map on the ``anatomy`` grid (1 = most cranial body); ``levels`` a JSON
    ``{"1": "L1", ...}`` naming the labels; ``stir`` None records that oedema cannot be assessed.
    ``different_frame``: the STIR and T1 were not acquired in the anatomy's frame of reference (register them).
    """

    anatomy: Path
    labels: Path
    stir: Path | None = None
    t1: Path | None = None
    levels: Path | None = None
    substitute: Substitute | None = None  # the STIR file is a fat-sat T2 / Dixon water image
    different_frame: bool = False


@dataclass(frozen=True)
class StirRunResult:
    assessment: StirAssessment
    segmentation: SegmentationResult  # the label map as read, with its levels
    out_dir: Path


def run_stir(inputs: StirInputs, out_dir: Path, *, cfg: StirConfig) -> StirRunResult:
    """Assess STIR oedema on ``inputs`` and write ``stir.json``, ``edema_map.nii.gz`` and ``stir_overlay.png``.

    Only these three files are ever overwritten in ``out_dir``; a folder holding anything else is refused
    (:func:`pipeline.outdir.check_output_folder`). The map and the overlay are written when the STIR was brought
    onto the anatomy grid. Raises :class:`~pipeline.errors.InputError` for an unreadable file.
    """
    check_output_folder(out_dir, names={STIR_JSON, EDEMA_MAP, OVERLAY_PNG})
    levels = _read_levels(inputs.levels) if inputs.levels else {}
    anatomy = _loaded(inputs.anatomy, inputs.anatomy)
    seg = segmentation_from_label_map(_read(inputs.labels), levels, method=f"label map {inputs.labels.name}")
    # Image files carry no FrameOfReferenceUID: the user says whether the STIR and T1 share the anatomy's frame
    # (named after the anatomy file) or each has its own (named after its file).
    frame_of = inputs.anatomy if not inputs.different_frame else None
    stir = _loaded(inputs.stir, frame_of or inputs.stir, inputs.substitute) if inputs.stir else None
    t1 = _loaded(inputs.t1, frame_of or inputs.t1) if inputs.t1 else None
    result = assess_stir(anatomy, seg, stir, cfg=cfg, t1=t1)
    out_dir.mkdir(parents=True, exist_ok=True)
    section, per_label = stir_sections(result)
    section["warnings"] = list(result.warnings)
    section["vertebrae"] = [
        {"label": v.label, "level": v.level.value if v.level else None, **per_label[v.label]} for v in seg.vertebrae
    ]
    (out_dir / STIR_JSON).write_text(json.dumps(jsonable(section), indent=2) + "\n", encoding="utf-8")
    if result.edema_map is not None and result.stir_on_grid is not None:
        sitk.WriteImage(result.edema_map.to_sitk(), str(out_dir / EDEMA_MAP))
        mid = int(round(float(np.median([v.mid_slice for v in seg.vertebrae]))))
        Image.fromarray(overlay_rgb(result, mid, seg.labels)).save(out_dir / OVERLAY_PNG)
    return StirRunResult(result, seg, out_dir)


def _read(path: Path) -> Volume:
    try:
        return Volume.from_sitk(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        why = str(exc).strip().splitlines()[-1][:160]
        raise InputError(f"{path}: cannot read image ({why})") from None


def _loaded(path: Path, frame_of: Path, substitute: Substitute | None = None) -> LoadedSeries:
    return LoadedSeries(_read(path), None, f"the frame of reference of {frame_of}", substitute)


def _read_levels(path: Path) -> dict[int, Level]:
    try:
        return {int(k): Level.parse(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not a JSON mapping of label -> level ({exc})") from None
