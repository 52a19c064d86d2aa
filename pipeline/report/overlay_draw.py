"""Drawing of the overlay pictures, independent of what they show: how a plane of a Volume maps to screen pixels
(:class:`PlaneView`), grey-level windowing, mask outlines, the decision markers, the side panel with its leader
lines and the legend (:func:`compose`), and PNG encoding. :mod:`pipeline.report.overlay` decides what goes on them.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import measure

from pipeline.model import Decision
from pipeline.volume import Volume

# Display size of the image area (pixels) and limits on the magnification (pixels per mm).
_MAX_IMAGE_H, _MAX_IMAGE_W = 720, 520
_MAX_PX_PER_MM = 12.0
PANEL_W = 225
TITLE_H = 34

# Decision markers are white shapes with a black edge: no hue, so they cannot be read as a grade colour.
MARKER_FILL = (255, 255, 255)
MARKER_EDGE = (0, 0, 0)
MARKER_SIZE = 19
PANEL_BG = (24, 28, 33)
TEXT = (236, 240, 241)
MUTED = (170, 178, 184)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (one object per size and process)."""
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


def grey_image(view: PlaneView, array: np.ndarray, index: int) -> Image.Image:
    """Plane ``index`` of ``array`` windowed to grey levels, at the picture size, as RGB."""
    plane = view.plane(array, index).astype(np.float32)  # the plane, not the whole volume
    img = Image.fromarray(_window(plane), mode="L").resize(view.size, Image.Resampling.BILINEAR)
    return img.convert("RGB")


def mask_contours(view: PlaneView, mask2d: np.ndarray) -> list[np.ndarray]:
    """Outlines (pixel ``(x, y)`` polylines) of a 2-D mask in screen orientation."""
    if not mask2d.any():
        return []
    padded = np.pad(mask2d.astype(np.float32), 1)
    return [view.plane_rc_to_xy(c - 1.0) for c in measure.find_contours(padded, 0.5)]


@dataclass(frozen=True)
class PanelEntry:
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
        d.text((n / 2, n / 2 + scale), "?", fill=edge, font=font(int(0.8 * n)), anchor="mm")
    return img.resize((size, size), Image.Resampling.LANCZOS)


@functools.cache
def _marker(decision: Decision) -> Image.Image:
    """:func:`decision_marker` drawn once per process (a picture pastes it up to 20 times); only read from."""
    return decision_marker(decision)


def _paste_marker(canvas: Image.Image, decision: Decision, centre: tuple[float, float]) -> None:
    marker = _marker(decision)
    x, y = round(centre[0] - marker.width / 2), round(centre[1] - marker.height / 2)
    canvas.paste(marker, (x, y), marker)


_GAP = 4


def _box_h(n_lines: int, line_h: int) -> float:
    return line_h * n_lines + 6


def _fit(entries: list[PanelEntry], line_h: int, height: int) -> list[PanelEntry]:
    """Drop detail lines (keeping the first ``k``) until the boxes fit beside the image."""
    for keep in (99, 3, 2, 1):
        fitted = [dataclasses.replace(e, lines=e.lines[:keep]) for e in entries]
        if sum(_box_h(len(e.lines), line_h) + _GAP for e in fitted) <= height:
            return fitted
    return fitted


def _place(entries: list[PanelEntry], line_h: int, height: int) -> list[float]:
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


def compose(
    image: Image.Image,
    title: str,
    entries: list[PanelEntry],
    legend: Legend,
    view: PlaneView,
    footnote: str = "Anterior left, head up. Outlines: each body's measured (mid-sagittal) section.",
) -> Image.Image:
    """Title bar + side panel (anterior side) + image + legend; draws leader lines, decision markers and
    orientation marks."""
    f_title, f_text, f_small = font(17), font(15), font(13)
    line_h = 18
    w, h = image.size
    legend_h = 8 + _legend_height(legend) + 22
    canvas = Image.new("RGB", (PANEL_W + w, TITLE_H + h + legend_h), PANEL_BG)
    canvas.paste(image, (PANEL_W, TITLE_H))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill=TEXT, font=f_title)

    # orientation marks and scale bar on the image
    ox, oy = PANEL_W, TITLE_H
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
    draw.line([(bx, by), (bx + bar_px, by)], fill=WHITE, width=3)
    draw.text((bx + bar_px, by - 5), f"{bar_mm} mm", fill=WHITE, font=f_small, anchor="rb", stroke_width=2,
              stroke_fill=BLACK)  # fmt: skip

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
                fill=TEXT if k == 0 else MUTED,
                font=f_text if k == 0 else f_small,
            )
        end = (ox + e.x_anchor, oy + e.y)
        if e.decision is not None:  # the marker sits on the leader line, just in front of the body
            end = (max(ox + MARKER_SIZE, end[0] - MARKER_SIZE), end[1])
        draw.line([(PANEL_W - 8, y0 + line_h / 2 + 3), end], fill=e.colour, width=1)
        if e.decision is not None:
            _paste_marker(canvas, e.decision, end)

    y = TITLE_H + h + 8
    col_w = (canvas.width - 20) / 2
    for heading, items in legend:
        if heading:
            draw.text((10, y + 1), heading, fill=MUTED, font=f_small)
            y += 20
        for k, (key, text) in enumerate(items):
            x = 10 + (k % 2) * col_w
            yk = y + (k // 2) * 20
            if isinstance(key, Decision):
                _paste_marker(canvas, key, (x + 6, yk + 9))
            else:
                draw.rectangle([(x, yk + 3), (x + 12, yk + 15)], fill=key)
            draw.text((x + 18, yk + 1), text, fill=TEXT, font=f_small)
        y += 20 * math.ceil(len(items) / 2) + 4
    draw.text(
        (10, canvas.height - 18),
        footnote,
        fill=MUTED,
        font=f_small,
    )
    return canvas


# zlib level of the PNG files. Lossless at any level (the pixels are the same). Measured on the sample studies'
# three overlays: level 9 (``optimize=True``) ~0.35 s per picture; level 3 ~24 ms; level 1 ~17 ms for files 12-15 %
# larger (about 0.95 instead of 0.85 MB per study, which the HTML report embeds); level 0 ~10 ms but 5x larger.
_PNG_COMPRESS_LEVEL = 1


def png_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buf.getvalue()
