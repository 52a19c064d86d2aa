"""Overlay pictures (PNG) for the HTML report and the secondary capture, drawn with Pillow.

``sagittal.png``: the anatomy series' central sagittal plane as a radiologist views it (anterior on the left,
head at the top, square millimetres whatever the voxel spacing), each vertebral body's outline from the section
it was measured on (else its own mid-sagittal section) coloured by Genant grade, the six landmarks and the three
heights (Ha, Hm, Hp), and a side panel per level with its numbers. Colour means the grade only (outline, panel
stripe, leader line); the eligibility decision is a white marker of its own shape (:func:`decision_marker`) beside
the body and in the panel, and the legend under the picture explains both.
``stir.png``: the STIR series resampled onto the same grid with the oedema map in red and each level's STIR ratio
and oedema fraction. ``planes.png``: the central plane and its two neighbours with each plane's own outlines.

Orientation comes from the volume's ``axes_lps`` (never from the array layout): the through-plane axis is the
array axis closest to left-right, the horizontal axis the one closest to anterior-posterior.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import measure

from pipeline.errors import PipelineError
from pipeline.model import Decision, EdemaPattern, GradeState, SegmentationResult
from pipeline.report.study_report import StudyReport, VertebraReport
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

# Display size of the image area (pixels) and limits on the magnification (pixels per mm).
_MAX_IMAGE_H, _MAX_IMAGE_W = 720, 520
_MAX_PX_PER_MM = 12.0
_PANEL_W = 225
_TITLE_H = 34

GRADE_COLOURS: dict[int | None, tuple[int, int, int]] = {
    0: (46, 204, 113),
    1: (241, 196, 15),
    2: (230, 126, 34),
    3: (231, 76, 60),
    None: (160, 168, 172),
}
SACRUM_COLOUR = (93, 173, 226)
# Decision markers are white shapes with a black edge: no hue, so they cannot be read as a grade colour.
MARKER_FILL = (255, 255, 255)
MARKER_EDGE = (0, 0, 0)
MARKER_SIZE = 19
LANDMARK_COLOUR = (0, 229, 255)
EDEMA_COLOUR = (255, 40, 40)
_PANEL_BG = (24, 28, 33)
_TEXT = (236, 240, 241)
_MUTED = (170, 178, 184)
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


OVERLAY_NAMES = ("sagittal.png", "stir.png", "planes.png")  # display order


def ordered(names: Sequence[str]) -> list[str]:
    """Overlay names in display order (known ones first, then the rest alphabetically)."""
    rank = {n: i for i, n in enumerate(OVERLAY_NAMES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow built without FreeType: the small bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class PlaneView:
    """How one plane of a Volume maps to the picture.

    ``through_axis`` is the array axis perpendicular to the picture; ``h_axis`` runs left -> right on screen
    (anterior -> posterior), ``v_axis`` top -> bottom (head -> feet). ``h_flip``/``v_flip`` say whether the
    array index runs against the screen direction. ``px_h``/``px_v`` are screen pixels per voxel along them
    (``px_per_mm`` times the voxel spacing, so that a millimetre is as long across as down).
    """

    through_axis: int
    h_axis: int
    v_axis: int
    h_flip: bool
    v_flip: bool
    n_h: int  # picture width in voxels (the crop window)
    n_v: int
    px_per_mm: float
    px_h: float
    px_v: float
    h0: int = 0  # crop window origin in the oriented plane (voxels)
    v0: int = 0
    full_h: int = 0  # size of the whole oriented plane (0: same as n_h / n_v)
    full_v: int = 0

    @classmethod
    def for_volume(
        cls,
        volume: Volume,
        max_h: float = _MAX_IMAGE_H,
        max_w: float = _MAX_IMAGE_W,
        *,
        around: np.ndarray | None = None,
        margin_mm: float = 30.0,
    ) -> PlaneView:
        """The sagittal view of ``volume``, magnified to fit ``max_w`` x ``max_h`` pixels.

        ``around`` (a boolean array on the volume's grid, e.g. the label map > 0) crops the picture to what it
        covers in any plane, plus ``margin_mm`` on every side.
        """
        axes = np.asarray(volume.axes_lps)
        through = int(np.argmax(np.abs(axes[:, 0])))  # closest to left-right
        rest = [a for a in range(3) if a != through]
        h_axis = max(rest, key=lambda a: abs(axes[a, 1]))  # closest to anterior-posterior
        v_axis = next(a for a in rest if a != h_axis)
        shape = volume.shape
        sp_h, sp_v = volume.spacing_mm[h_axis], volume.spacing_mm[v_axis]
        full = cls(
            through_axis=through, h_axis=h_axis, v_axis=v_axis,
            h_flip=bool(axes[h_axis, 1] < 0),  # +y is posterior in LPS: flip an axis pointing anterior
            v_flip=bool(axes[v_axis, 2] > 0),  # +z is superior: flip an axis pointing to the head
            n_h=shape[h_axis], n_v=shape[v_axis], px_per_mm=1.0, px_h=sp_h, px_v=sp_v,
            full_h=shape[h_axis], full_v=shape[v_axis],
        )  # fmt: skip
        h0, v0, n_h, n_v = 0, 0, shape[h_axis], shape[v_axis]
        if around is not None and np.any(around):
            proj = full._orient(np.any(around, axis=through))
            rows, cols = np.nonzero(proj.any(axis=1))[0], np.nonzero(proj.any(axis=0))[0]
            mh, mv = int(np.ceil(margin_mm / sp_h)), int(np.ceil(margin_mm / sp_v))
            h0, v0 = max(0, int(cols[0]) - mh), max(0, int(rows[0]) - mv)
            n_h = min(shape[h_axis], int(cols[-1]) + 1 + mh) - h0
            n_v = min(shape[v_axis], int(rows[-1]) + 1 + mv) - v0
        px_per_mm = min(max_h / (n_v * sp_v), max_w / (n_h * sp_h), _MAX_PX_PER_MM)
        return dataclasses.replace(
            full, n_h=n_h, n_v=n_v, h0=h0, v0=v0, px_per_mm=px_per_mm, px_h=sp_h * px_per_mm, px_v=sp_v * px_per_mm
        )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture in pixels."""
        return max(1, round(self.n_h * self.px_h)), max(1, round(self.n_v * self.px_v))

    def _orient(self, sl: np.ndarray) -> np.ndarray:
        """A 2-D array in the volume's (kept axes) order -> the whole plane in screen orientation."""
        kept = [a for a in range(3) if a != self.through_axis]
        if kept.index(self.v_axis) != 0:
            sl = sl.T
        if self.v_flip:
            sl = sl[::-1, :]
        if self.h_flip:
            sl = sl[:, ::-1]
        return sl

    def plane(self, array: np.ndarray, index: int) -> np.ndarray:
        """The 2-D plane ``index`` of a ``(slice, row, col)`` array, as ``(screen row, screen col)``, cropped."""
        sl = self._orient(np.take(array, index, axis=self.through_axis))
        return np.ascontiguousarray(sl[self.v0 : self.v0 + self.n_v, self.h0 : self.h0 + self.n_h])

    def plane_rc_to_xy(self, rc: np.ndarray) -> np.ndarray:
        """(screen row, screen col) in picture voxel units, shape ``(n, 2)`` -> pixel ``(x, y)``."""
        rc = np.asarray(rc, dtype=float).reshape(-1, 2)
        return np.stack([(rc[:, 1] + 0.5) * self.px_h, (rc[:, 0] + 0.5) * self.px_v], axis=1)

    def index_to_xy(self, index: np.ndarray) -> np.ndarray:
        """Continuous ``(slice, row, col)`` indices, shape ``(n, 3)`` -> pixel ``(x, y)``."""
        idx = np.asarray(index, dtype=float).reshape(-1, 3)
        h = idx[:, self.h_axis]
        v = idx[:, self.v_axis]
        if self.h_flip:
            h = (self.full_h or self.n_h) - 1 - h
        if self.v_flip:
            v = (self.full_v or self.n_v) - 1 - v
        return self.plane_rc_to_xy(np.stack([v - self.v0, h - self.h0], axis=1))


def _window(plane: np.ndarray) -> np.ndarray:
    """Robust grey-level window (1st-99.5th percentile) -> uint8."""
    values = plane[np.isfinite(plane)]
    if values.size == 0:
        return np.zeros(plane.shape, np.uint8)
    lo, hi = np.percentile(values, [1.0, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((plane - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def _grey_image(view: PlaneView, array: np.ndarray, index: int) -> Image.Image:
    plane = view.plane(array, index).astype(np.float32)  # the plane, not the whole volume
    img = Image.fromarray(_window(plane), mode="L").resize(view.size, Image.Resampling.BILINEAR)
    return img.convert("RGB")


def _contours(view: PlaneView, mask2d: np.ndarray) -> list[np.ndarray]:
    """Outlines (pixel ``(x, y)`` polylines) of a 2-D mask in screen orientation."""
    if not mask2d.any():
        return []
    padded = np.pad(mask2d.astype(np.float32), 1)
    return [view.plane_rc_to_xy(c - 1.0) for c in measure.find_contours(padded, 0.5)]


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


@dataclass(frozen=True)
class _Entry:
    """One level's line in the side panel."""

    label: int
    y: float  # pixel row of the body centre in the image
    x_anchor: float  # pixel x of the body's anterior edge
    colour: tuple[int, int, int]  # stripe and leader colour (the grade)
    lines: tuple[str, ...]
    decision: Decision | None = None  # marker drawn before line 1 (the decision line) and beside the body


def decision_marker(decision: Decision, size: int = MARKER_SIZE) -> Image.Image:
    """The decision's marker as an RGBA image: white shapes that differ in outline, not in colour.

    candidate: disc with a tick; candidate with cautions: triangle with "!"; contraindicated: disc with a bar
    (no entry); not indicated: open ring; indeterminate: square with "?".
    """
    scale = 4  # drawn large and reduced, for smooth edges
    n = size * scale
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    edge, fill, w = (*MARKER_EDGE, 255), (*MARKER_FILL, 255), 2 * scale
    box = [w // 2, w // 2, n - 1 - w // 2, n - 1 - w // 2]
    if decision is Decision.CANDIDATE:
        d.ellipse(box, fill=fill, outline=edge, width=w)
        d.line([(0.25 * n, 0.52 * n), (0.43 * n, 0.7 * n), (0.76 * n, 0.3 * n)], fill=edge, width=int(2.5 * scale))
    elif decision is Decision.CANDIDATE_WITH_CAUTIONS:
        d.polygon([(n / 2, 0), (n - 1, n - 1), (0, n - 1)], fill=edge)  # black triangle, white one inside
        d.polygon([(n / 2, 2.2 * w), (n - 1 - 1.3 * w, n - 1 - w), (1.3 * w, n - 1 - w)], fill=fill)
        d.rectangle([n / 2 - 1.1 * scale, 0.36 * n, n / 2 + 1.1 * scale, 0.66 * n], fill=edge)
        d.rectangle([n / 2 - 1.1 * scale, 0.73 * n, n / 2 + 1.1 * scale, 0.73 * n + 2.2 * scale], fill=edge)
    elif decision is Decision.CONTRAINDICATED:
        d.ellipse(box, fill=fill, outline=edge, width=w)
        d.rectangle([0.2 * n, 0.41 * n, 0.8 * n, 0.59 * n], fill=edge)
    elif decision is Decision.NOT_INDICATED:
        d.ellipse(box, outline=edge, width=3 * w)
        d.ellipse([2 * w, 2 * w, n - 1 - 2 * w, n - 1 - 2 * w], outline=fill, width=w)
    else:  # indeterminate
        d.rectangle(box, fill=fill, outline=edge, width=w)
        d.text((n / 2, n / 2 + scale), "?", fill=edge, font=_font(int(0.8 * n)), anchor="mm")
    return img.resize((size, size), Image.Resampling.LANCZOS)


@functools.cache
def _marker(decision: Decision) -> Image.Image:
    """:func:`decision_marker` drawn once per process (a picture pastes it up to 20 times); only read from."""
    return decision_marker(decision)


def _paste_marker(canvas: Image.Image, decision: Decision, centre: tuple[float, float]) -> None:
    marker = _marker(decision)
    x, y = round(centre[0] - marker.width / 2), round(centre[1] - marker.height / 2)
    canvas.paste(marker, (x, y), marker)


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
        lines.append(v.decision.text)  # second, so that a crowded panel keeps it (see _fit)
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


_GAP = 4


def _box_h(n_lines: int, line_h: int) -> float:
    return line_h * n_lines + 6


def _fit(entries: list[_Entry], line_h: int, height: int) -> list[_Entry]:
    """Drop detail lines (keeping the first ``k``) until the boxes fit beside the image."""
    for keep in (99, 3, 2, 1):
        fitted = [dataclasses.replace(e, lines=e.lines[:keep]) for e in entries]
        if sum(_box_h(len(e.lines), line_h) + _GAP for e in fitted) <= height:
            return fitted
    return fitted


def _place(entries: list[_Entry], line_h: int, height: int) -> list[float]:
    """Top y of each entry's text box: as near its body as possible, in body order, without overlaps."""
    order = sorted(range(len(entries)), key=lambda i: entries[i].y)
    heights = {i: _box_h(len(entries[i].lines), line_h) for i in order}
    tops = {i: entries[i].y - heights[i] / 2 for i in order}
    limit = float(height)
    for i in reversed(order):  # from the bottom: stay inside the panel and above the next box
        tops[i] = min(tops[i], limit - heights[i])
        limit = tops[i] - _GAP
    cursor = 0.0
    for i in order:  # from the top: stay below 0 and below the previous box
        tops[i] = max(tops[i], cursor)
        cursor = tops[i] + heights[i] + _GAP
    return [tops[i] for i in range(len(entries))]


# A legend is a list of sections, each a heading and its items; an item's key is a colour swatch or a decision
# marker.
LegendItem = tuple[tuple[int, int, int] | Decision, str]
Legend = Sequence[tuple[str, Sequence[LegendItem]]]


def _legend_height(legend: Legend) -> int:
    return sum((20 if heading else 0) + 20 * math.ceil(len(items) / 2) + 4 for heading, items in legend)


def _compose(
    image: Image.Image,
    title: str,
    entries: list[_Entry],
    legend: Legend,
    view: PlaneView,
    footnote: str = "Anterior left, head up. Outlines: each body's measured (mid-sagittal) section.",
) -> Image.Image:
    """Title bar + side panel (anterior side) + image + legend; draws leader lines, decision markers and
    orientation marks."""
    f_title, f_text, f_small = _font(17), _font(15), _font(13)
    line_h = 18
    w, h = image.size
    legend_h = 8 + _legend_height(legend) + 22
    canvas = Image.new("RGB", (_PANEL_W + w, _TITLE_H + h + legend_h), _PANEL_BG)
    canvas.paste(image, (_PANEL_W, _TITLE_H))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill=_TEXT, font=f_title)

    # orientation marks and scale bar on the image
    ox, oy = _PANEL_W, _TITLE_H
    for text, (x, y) in (
        ("A", (ox + 6, oy + h / 2)),
        ("P", (ox + w - 16, oy + h / 2)),
        ("S", (ox + w / 2, oy + 4)),
        ("I", (ox + w / 2, oy + h - 20)),
    ):
        draw.text((x, y), text, fill=(255, 255, 0), font=f_text, stroke_width=2, stroke_fill=(0, 0, 0))
    width_mm = w / view.px_per_mm
    bar_mm = 50 if width_mm > 150 else 20 if width_mm > 60 else 10
    bar_px = bar_mm * view.px_per_mm
    bx, by = ox + w - bar_px - 12, oy + h - 12
    draw.line([(bx, by), (bx + bar_px, by)], fill=_WHITE, width=3)
    draw.text((bx + bar_px, by - 5), f"{bar_mm} mm", fill=_WHITE, font=f_small, anchor="rb", stroke_width=2,
              stroke_fill=_BLACK)  # fmt: skip

    entries = _fit(entries, line_h, h)
    tops = _place(entries, line_h, h)
    for e, top in zip(entries, tops, strict=True):
        box_h = _box_h(len(e.lines), line_h)
        y0 = oy + top
        draw.rectangle([(6, y0), (10, y0 + box_h)], fill=e.colour)
        for k, line in enumerate(e.lines):
            x = 16
            if k == 1 and e.decision is not None:
                _paste_marker(canvas, e.decision, (x + MARKER_SIZE / 2, y0 + 3 + k * line_h + line_h / 2))
                x += MARKER_SIZE + 5
            draw.text(
                (x, y0 + 3 + k * line_h),
                line,
                fill=_TEXT if k == 0 else _MUTED,
                font=f_text if k == 0 else f_small,
            )
        end = (ox + e.x_anchor, oy + e.y)
        if e.decision is not None:  # the marker sits on the leader line, just in front of the body
            end = (max(ox + MARKER_SIZE, end[0] - MARKER_SIZE), end[1])
        draw.line([(_PANEL_W - 8, y0 + line_h / 2 + 3), end], fill=e.colour, width=1)
        if e.decision is not None:
            _paste_marker(canvas, e.decision, end)

    y = _TITLE_H + h + 8
    col_w = (canvas.width - 20) / 2
    for heading, items in legend:
        if heading:
            draw.text((10, y + 1), heading, fill=_MUTED, font=f_small)
            y += 20
        for k, (key, text) in enumerate(items):
            x = 10 + (k % 2) * col_w
            yk = y + (k // 2) * 20
            if isinstance(key, Decision):
                _paste_marker(canvas, key, (x + 6, yk + 9))
            else:
                draw.rectangle([(x, yk + 3), (x + 12, yk + 15)], fill=key)
            draw.text((x + 18, yk + 1), text, fill=_TEXT, font=f_small)
        y += 20 * math.ceil(len(items) / 2) + 4
    draw.text(
        (10, canvas.height - 18),
        footnote,
        fill=_MUTED,
        font=f_small,
    )
    return canvas


# zlib level of the PNG files. Lossless at any level (the pixels are the same). Measured on the sample studies'
# three overlays: level 9 (``optimize=True``) ~0.35 s per picture; level 3 ~24 ms; level 1 ~17 ms for files 12-15 %
# larger (about 0.95 instead of 0.85 MB per study, which the HTML report embeds); level 0 ~10 ms but 5x larger.
_PNG_COMPRESS_LEVEL = 1


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buf.getvalue()


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
        outlines[vs.label] = _contours(view, view.plane(labels.array, own) == vs.label)

    out: dict[str, bytes] = {}
    img = _grey_image(view, anatomy.array, index)
    draw = ImageDraw.Draw(img)
    entries: list[_Entry] = []
    for vs in segmentation.vertebrae:
        v = by_label[vs.label]
        colour = _outline_colour(v)
        for c in outlines[vs.label]:
            draw.line([tuple(p) for p in c], fill=colour, width=2, joint="curve")
        _draw_landmarks(draw, view, labels, v)
        cy, ax = _anchor(view, labels, vs, outlines[vs.label])
        entries.append(_Entry(vs.label, cy, ax, colour, _morph_lines(v), v.decision))
    legend = sagittal_legend([v.decision for v in report.vertebrae if v.decision is not None])
    title = f"{_series_title(report, 'anatomy', 'Sagittal anatomy')}  |  plane {index + 1}/{n_planes}"
    out["sagittal.png"] = _png(_compose(img, title, entries, legend, view))
    if n_planes >= 3:
        out["planes.png"] = _png(_strip(anatomy, segmentation, by_label, index))

    if stir is not None and stir.stir_on_grid is not None:
        if not stir.stir_on_grid.same_grid(anatomy):
            logger.warning("STIR volume is not on the anatomy grid; no STIR overlay drawn")
            return {n: out[n] for n in ordered(list(out))}
        simg = _grey_image(view, stir.stir_on_grid.array, index)
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
            sentries.append(_Entry(vs.label, cy, ax, colour, _stir_lines(v)))
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
        out["stir.png"] = _png(_compose(simg, stitle, sentries, slegend, view))
    return {n: out[n] for n in ordered(list(out))}


def _strip(
    anatomy: Volume, segmentation: SegmentationResult, by_label: Mapping[int, VertebraReport], index: int
) -> Image.Image:
    """The central plane and its two neighbours side by side, with each plane's own body outlines."""
    view = PlaneView.for_volume(anatomy, max_h=520, max_w=330, around=segmentation.labels.array > 0)
    n = anatomy.shape[view.through_axis]
    centre = min(max(index, 1), n - 2)
    planes = (centre - 1, centre, centre + 1)
    f_title, f_label = _font(16), _font(13)
    w, h = view.size
    gap = 8
    canvas = Image.new("RGB", (3 * w + 4 * gap, _TITLE_H + h + 26), _PANEL_BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 8), "Neighbouring planes: outlines of each plane's own bodies", fill=_TEXT, font=f_title)
    level_of = {vs.label: vs for vs in segmentation.vertebrae}
    for k, plane in enumerate(planes):
        img = _grey_image(view, anatomy.array, plane)
        d = ImageDraw.Draw(img)
        labels2d = view.plane(segmentation.labels.array, plane)
        for label in np.unique(labels2d[labels2d > 0]):
            vs = level_of.get(int(label))
            if vs is None:
                continue
            contours = _contours(view, labels2d == label)
            for c in contours:
                d.line([tuple(p) for p in c], fill=_outline_colour(by_label[vs.label]), width=2)
            pts = np.concatenate(contours)
            name = vs.level.value if vs.level else f"#{vs.label}"
            x, y = float(pts[:, 0].min()) - 4, float(pts[:, 1].mean())
            d.text((x, y), name, fill=_WHITE, font=f_label, anchor="rm", stroke_width=2, stroke_fill=_BLACK)
        x0 = gap + k * (w + gap)
        canvas.paste(img, (x0, _TITLE_H))
        caption = f"plane {plane + 1}/{n}" + ("  (shown above)" if plane == index else "")
        draw.text((x0, _TITLE_H + h + 5), caption, fill=_MUTED, font=f_label)
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
