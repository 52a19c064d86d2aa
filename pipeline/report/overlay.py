"""Overlay pictures (PNG) for the HTML report and the secondary capture, drawn with Pillow.

``sagittal.png``: the anatomy series' central sagittal plane as a radiologist views it (anterior on the left,
head at the top, square millimetres whatever the voxel spacing), each vertebral body's outline from the section
it was measured on (else its own mid-sagittal section) coloured by Genant grade, the six landmarks and the three
heights (Ha, Hm, Hp), and a side panel per level with its numbers. Colour means the grade only (outline, panel
stripe, leader line); the eligibility decision is a white marker of its own shape
(:func:`~pipeline.report.overlay_draw.decision_marker`) beside the body and in the panel, and the legend under the
picture explains both.
``stir.png``: the STIR series resampled onto the same grid with the oedema map in red and each level's STIR ratio
and oedema fraction. ``planes.png``: the central plane and its two neighbours with each plane's own outlines.

Orientation comes from the volume's ``axes_lps`` (never from the array layout): the through-plane axis is the
array axis closest to left-right, the horizontal axis the one closest to anterior-posterior.

Drawing primitives (screen geometry, markers, side panel, PNG encoding) are in :mod:`pipeline.report.overlay_draw`.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pipeline.errors import PipelineError
from pipeline.model import Decision, EdemaPattern, GradeState, SegmentationResult
from pipeline.report.overlay_draw import (
    BLACK,
    MUTED,
    PANEL_BG,
    TEXT,
    TITLE_H,
    WHITE,
    Legend,
    LegendItem,
    PanelEntry,
    PlaneView,
    compose,
    font,
    grey_image,
    mask_contours,
    png_bytes,
)
from pipeline.report.study_report import StudyReport, VertebraReport
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

GRADE_COLOURS: dict[int | None, tuple[int, int, int]] = {
    0: (46, 204, 113),
    1: (241, 196, 15),
    2: (230, 126, 34),
    3: (231, 76, 60),
    None: (160, 168, 172),
}
SACRUM_COLOUR = (93, 173, 226)
LANDMARK_COLOUR = (0, 229, 255)
EDEMA_COLOUR = (255, 40, 40)


OVERLAY_NAMES = ("sagittal.png", "stir.png", "planes.png")  # display order


def ordered(names: Sequence[str]) -> list[str]:
    """Overlay names in display order (known ones first, then the rest alphabetically)."""
    rank = {n: i for i, n in enumerate(OVERLAY_NAMES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _through_index(view: PlaneView, vertebra: Any, labels: Volume) -> int:
    """Plane of a body's own mid-section along the through-plane axis."""
    if view.through_axis == 0:
        return int(np.clip(vertebra.mid_slice, 0, labels.shape[0] - 1))
    idx = labels.lps_to_index(np.asarray(vertebra.centroid_lps_mm))
    return int(np.clip(round(float(idx[view.through_axis])), 0, labels.shape[view.through_axis] - 1))


def central_index(view: PlaneView, segmentation: SegmentationResult) -> int:
    """The plane shown: the median of the bodies' mid-sections (the middle plane when there is none)."""
    labels = segmentation.labels
    if not segmentation.vertebrae:
        return labels.shape[view.through_axis] // 2
    return int(np.median([_through_index(view, v, labels) for v in segmentation.vertebrae]))


def _fmt(value: float | None, unit: str = "", nd: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{float(value):.{nd}f}{unit}"


def _morph_lines(v: VertebraReport) -> tuple[str, ...]:
    g = v.grade
    morph = v.morphometry
    if v.is_sacrum:
        head = f"{v.name}  reference"
    elif morph is None:
        head = f"{v.name}  not measured"
    elif g.state is GradeState.NOT_ASSESSABLE:
        head = f"{v.name}  not assessable"
    elif g.state is GradeState.UNCERTAIN:
        head = f"{v.name}  {g.text}"
    else:
        head = f"{v.name}  {g.text}  {morph.morphology.value}"
    lines = [head]
    if v.decision is not None:
        lines.append(v.decision.text)  # second, so that a crowded panel keeps it (see overlay_draw._fit)
    h = morph.heights if morph is not None else None
    if morph is not None and h is not None:
        lines.append(f"Ha {_fmt(h.anterior_mm)}  Hm {_fmt(h.middle_mm)}  Hp {_fmt(h.posterior_mm)} mm")
        lines.append(f"height loss {_fmt(morph.height_loss_pct, '%')}")
    elif morph is not None and not v.is_sacrum:
        lines += _wrap(morph.reason or "not assessable")
    if g.state is GradeState.UNCERTAIN and not v.is_sacrum:
        lines.append("fracture status unknown")
    return tuple(lines)


def _stir_lines(v: VertebraReport) -> tuple[str, ...]:
    s = v.stir
    if s is None or s.edema is None:
        if v.is_sacrum:
            return (f"{v.name}  reference",)
        return (f"{v.name}  STIR not assessable", *_wrap(s.reason if s is not None else ""))
    head = f"{v.name}  oedema {'YES' if s.edema else 'no'}"
    frac = s.edema_fraction
    detail = f"ratio {_fmt(s.ratio, nd=2)}  fraction {_fmt(None if frac is None else frac * 100, '%', 0)}"
    lines = [head, detail]
    if s.edema and s.pattern not in (EdemaPattern.NONE, EdemaPattern.NOT_ASSESSABLE):
        lines.append(f"pattern: {s.pattern.value}")
    return tuple(lines)


def _wrap(text: str, width: int = 30, lines: int = 2) -> list[str]:
    """A reason on at most ``lines`` panel lines (the last one shortened with an ellipsis)."""
    out = textwrap.wrap(text, width) or [""]
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1].rstrip() + "\u2026"
    return out


def _series_title(report: StudyReport, used_as: str, fallback: str) -> str:
    s = report.used_series(used_as)
    return fallback if s is None else f"{s.description or fallback} (series {s.series_number})"


def _outline_colour(v: VertebraReport) -> tuple[int, int, int]:
    """The grade's colour (grey when not assessable, as :attr:`VertebraReport.grade` says); blue for the sacrum."""
    if v.is_sacrum:
        return SACRUM_COLOUR
    return GRADE_COLOURS.get(v.grade.grade, GRADE_COLOURS[None])


def sagittal_legend(decisions: Sequence[Decision]) -> list[tuple[str, list[LegendItem]]]:
    """The sagittal overlay's legend: outline colours (the grade) and the markers of ``decisions``."""
    grades: list[LegendItem] = [
        (GRADE_COLOURS[0], "Genant 0 (normal)"),
        (GRADE_COLOURS[1], "Genant 1 (mild)"),
        (GRADE_COLOURS[2], "Genant 2 (moderate)"),
        (GRADE_COLOURS[3], "Genant 3 (severe)"),
        (GRADE_COLOURS[None], "not assessable"),
        (SACRUM_COLOUR, "sacrum (reference)"),
        (LANDMARK_COLOUR, "landmarks, Ha / Hm / Hp"),
    ]
    legend = [("Outline and stripe colour: Genant grade (? = uncertain, see the panel)", grades)]
    shown = sorted(set(decisions), key=list(Decision).index)
    if shown:
        legend.append(("Marker: eligibility decision", [(d, d.text) for d in shown]))
    return legend


def render_overlays(anatomy: Volume, report: StudyReport) -> dict[str, bytes]:
    """Draw the overlay pictures of a study.

    Parameters
    ----------
    anatomy : Volume
        The anatomy series (array ``(slice, row, col)``), on the same grid as the segmentation's label map.
    report : StudyReport
        The study's report, with a segmentation: label map and bodies, and each body's grade, heights,
        landmarks, STIR finding and eligibility decision. A STIR assessment with ``stir_on_grid`` (and
        ``edema_map``) on the anatomy grid adds ``stir.png``.

    Returns
    -------
    dict
        File name -> PNG bytes: ``"sagittal.png"`` always, ``"planes.png"`` with at least three planes,
        ``"stir.png"`` when STIR was resampled.
    """
    segmentation, stir = report.segmentation, report.stir
    if segmentation is None:
        raise PipelineError(f"study {report.study.study_uid} has no segmentation: there is nothing to draw")
    labels = segmentation.labels
    if not anatomy.same_grid(labels):
        raise PipelineError(
            f"the label map of series {segmentation.series_uid} does not lie on the anatomy grid; "
            "render the overlays with the volume the segmentation was made on"
        )
    view = PlaneView.for_volume(anatomy, around=labels.array > 0)
    index = central_index(view, segmentation)
    by_label = {v.label: v for v in report.vertebrae}
    n_planes = anatomy.shape[view.through_axis]

    outlines: dict[int, list[np.ndarray]] = {}
    for vs in segmentation.vertebrae:
        own = _through_index(view, vs, labels)
        morph = by_label[vs.label].morphometry
        measured = morph.measured_slice if morph is not None else None
        if view.through_axis == 0 and measured is not None and 0 <= measured < labels.shape[0]:
            own = int(measured)  # the section the landmarks were measured on
        outlines[vs.label] = mask_contours(view, view.plane(labels.array, own) == vs.label)

    out: dict[str, bytes] = {}
    img = grey_image(view, anatomy.array, index)
    draw = ImageDraw.Draw(img)
    entries: list[PanelEntry] = []
    for vs in segmentation.vertebrae:
        v = by_label[vs.label]
        colour = _outline_colour(v)
        for c in outlines[vs.label]:
            draw.line([tuple(p) for p in c], fill=colour, width=2, joint="curve")
        _draw_landmarks(draw, view, labels, v)
        cy, ax = _anchor(view, labels, vs, outlines[vs.label])
        entries.append(PanelEntry(vs.label, cy, ax, colour, _morph_lines(v), v.decision))
    legend = sagittal_legend([v.decision for v in report.vertebrae if v.decision is not None])
    title = f"{_series_title(report, 'anatomy', 'Sagittal anatomy')}  |  plane {index + 1}/{n_planes}"
    out["sagittal.png"] = png_bytes(compose(img, title, entries, legend, view))
    if n_planes >= 3:
        out["planes.png"] = png_bytes(_strip(anatomy, segmentation, by_label, index))

    if stir is not None and stir.stir_on_grid is not None:
        if not stir.stir_on_grid.same_grid(anatomy):
            logger.warning("STIR volume is not on the anatomy grid; no STIR overlay drawn")
            return {n: out[n] for n in ordered(list(out))}
        simg = grey_image(view, stir.stir_on_grid.array, index)
        if stir.edema_map is not None and stir.edema_map.same_grid(anatomy):
            edema = view.plane(stir.edema_map.array, index) > 0
            if edema.any():
                mask = Image.fromarray((edema * 150).astype(np.uint8), mode="L").resize(
                    view.size, Image.Resampling.NEAREST
                )
                simg = Image.composite(Image.new("RGB", view.size, EDEMA_COLOUR), simg, mask)
        sdraw = ImageDraw.Draw(simg)
        sentries = []
        for vs in segmentation.vertebrae:
            v = by_label[vs.label]
            found = v.stir.edema if v.stir is not None else None
            colour = EDEMA_COLOUR if found else GRADE_COLOURS[0] if found is False else GRADE_COLOURS[None]
            for c in outlines[vs.label]:
                sdraw.line([tuple(p) for p in c], fill=(230, 230, 230), width=1)
            cy, ax = _anchor(view, labels, vs, outlines[vs.label])
            sentries.append(PanelEntry(vs.label, cy, ax, colour, _stir_lines(v)))
        slegend: Legend = [
            (
                "",
                [
                    (EDEMA_COLOUR, "oedema map (above threshold)"),
                    (GRADE_COLOURS[0], "no oedema"),
                    (GRADE_COLOURS[None], "not assessable"),
                    ((230, 230, 230), "body outline"),
                ],
            )
        ]
        desc = _series_title(report, "stir", "STIR")
        if stir.substitute is not None:
            desc += f" - substitute: {stir.substitute.value}"
        stitle = f"{desc} on the anatomy grid  |  plane {index + 1}/{n_planes}"
        out["stir.png"] = png_bytes(compose(simg, stitle, sentries, slegend, view))
    return {n: out[n] for n in ordered(list(out))}


def _strip(
    anatomy: Volume, segmentation: SegmentationResult, by_label: Mapping[int, VertebraReport], index: int
) -> Image.Image:
    """The central plane and its two neighbours side by side, with each plane's own body outlines."""
    view = PlaneView.for_volume(anatomy, max_h=520, max_w=330, around=segmentation.labels.array > 0)
    n = anatomy.shape[view.through_axis]
    centre = min(max(index, 1), n - 2)
    planes = (centre - 1, centre, centre + 1)
    f_title, f_label = font(16), font(13)
    w, h = view.size
    gap = 8
    canvas = Image.new("RGB", (3 * w + 4 * gap, TITLE_H + h + 26), PANEL_BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 8), "Neighbouring planes: outlines of each plane's own bodies", fill=TEXT, font=f_title)
    level_of = {vs.label: vs for vs in segmentation.vertebrae}
    for k, plane in enumerate(planes):
        img = grey_image(view, anatomy.array, plane)
        d = ImageDraw.Draw(img)
        labels2d = view.plane(segmentation.labels.array, plane)
        for label in np.unique(labels2d[labels2d > 0]):
            vs = level_of.get(int(label))
            if vs is None:
                continue
            contours = mask_contours(view, labels2d == label)
            for c in contours:
                d.line([tuple(p) for p in c], fill=_outline_colour(by_label[vs.label]), width=2)
            pts = np.concatenate(contours)
            name = vs.level.value if vs.level else f"#{vs.label}"
            x, y = float(pts[:, 0].min()) - 4, float(pts[:, 1].mean())
            d.text((x, y), name, fill=WHITE, font=f_label, anchor="rm", stroke_width=2, stroke_fill=BLACK)
        x0 = gap + k * (w + gap)
        canvas.paste(img, (x0, TITLE_H))
        caption = f"plane {plane + 1}/{n}" + ("  (shown above)" if plane == index else "")
        draw.text((x0, TITLE_H + h + 5), caption, fill=MUTED, font=f_label)
    return canvas


def _anchor(view: PlaneView, labels: Volume, vs: Any, outline: list[np.ndarray]) -> tuple[float, float]:
    """(y of the body centre, x of its anterior edge) in image pixels."""
    centre = view.index_to_xy(labels.lps_to_index(np.asarray(vs.centroid_lps_mm)))[0]
    if outline:
        pts = np.concatenate(outline)
        near = pts[np.abs(pts[:, 1] - centre[1]) <= max(3.0, view.px_v)]
        x = float(near[:, 0].min()) if near.size else float(pts[:, 0].min())
    else:
        x = float(centre[0])
    return float(centre[1]), x


def _pair(landmarks: Mapping[str, Any], position: str) -> tuple[Any, Any] | None:
    for sup, inf in (
        (f"{position}_superior", f"{position}_inferior"),
        (f"superior_{position}", f"inferior_{position}"),
    ):
        if landmarks.get(sup) is not None and landmarks.get(inf) is not None:
            return landmarks[sup], landmarks[inf]
    return None


def _draw_landmarks(draw: ImageDraw.ImageDraw, view: PlaneView, labels: Volume, v: VertebraReport) -> None:
    landmarks = v.morphometry.landmarks_lps if v.morphometry is not None else {}
    if not landmarks:
        return
    for position in ("anterior", "middle", "posterior"):
        pair = _pair(landmarks, position)
        if pair is None:
            continue
        (x0, y0), (x1, y1) = view.index_to_xy(labels.lps_to_index(np.asarray(pair, dtype=float)))
        draw.line([(x0, y0), (x1, y1)], fill=LANDMARK_COLOUR, width=2)
    for point in landmarks.values():
        if point is None:
            continue
        x, y = view.index_to_xy(labels.lps_to_index(np.asarray(point, dtype=float)))[0]
        draw.ellipse([(x - 3.5, y - 3.5), (x + 3.5, y + 3.5)], fill=LANDMARK_COLOUR, outline=(0, 0, 0))
