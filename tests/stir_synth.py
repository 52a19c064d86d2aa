"""Tiny synthetic sagittal lumbar spines with known marrow oedema, for the STIR stage's tests.

Geometry: thick-slice sagittal stack (slice = left->right, row = head->feet, col = anterior->posterior),
bodies as elliptic cylinders (height along the rows) with a dark cortical rim, discs between them, and a
CSF-filled canal behind them. Oedema is written into the marrow as a band under the superior endplate
(``"band"``: the top ``fraction`` of the body's height) or as smooth random blotches covering ``fraction``
of the body (``"diffuse"``). Truth fractions are shares of the marrow voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.levels import Level
from pipeline.model import SegmentationResult
from pipeline.stir.labelmap import segmentation_from_label_map
from pipeline.volume import Volume

AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # slice L, rows to feet, cols posterior

# tissue: (STIR, T2, T1)
TISSUE = {
    "bg": (25.0, 250.0, 380.0),  # fat / soft tissue around
    "marrow": (100.0, 220.0, 420.0),
    "edema": (260.0, 330.0, 180.0),
    "cortex": (15.0, 40.0, 40.0),
    "disc": (300.0, 380.0, 200.0),
    "csf": (450.0, 650.0, 80.0),
    "cord": (200.0, 300.0, 250.0),
}


@dataclass(frozen=True)
class SynthSpine:
    stir: Volume
    t2: Volume
    t1: Volume
    labels: Volume
    segmentation: SegmentationResult
    truth: dict[int, float]  # label -> oedema fraction of the marrow (0 = none)
    patterns: dict[int, str]  # label -> "band" / "diffuse" / "none"


def make_spine(
    edema: dict[int, tuple[float, str]] | None = None,
    *,
    n_bodies: int = 6,
    spacing_mm: tuple[float, float, float] = (4.0, 0.9, 0.9),
    n_slices: int = 15,
    noise_sd: float = 8.0,
    seed: int = 0,
    bias_pct: float = 0.0,
    first_level: Level = Level.T12,
    t1_edema_dark: bool = True,
) -> SynthSpine:
    """A synthetic spine; ``edema`` maps label (1-based, cranial->caudal) -> (fraction, "band"/"diffuse")."""
    edema = edema or {}
    rng = np.random.default_rng(seed)
    body_h, disc_h, depth, width = 24.0, 8.0, 34.0, 40.0
    margin = 14.0
    length = n_bodies * body_h + (n_bodies + 1) * disc_h + 2 * margin
    n_rows = int(round(length / spacing_mm[1]))
    n_cols = int(round(110.0 / spacing_mm[2]))
    shape = (n_slices, n_rows, n_cols)
    s = (np.arange(n_slices) - (n_slices - 1) / 2) * spacing_mm[0]  # mm, 0 = midline
    r = np.arange(n_rows) * spacing_mm[1]
    c = np.arange(n_cols) * spacing_mm[2]
    S, R, C = np.meshgrid(s, r, c, indexing="ij")
    tissue = np.zeros(shape, dtype=np.int8)  # 0 bg
    names = ["bg", "marrow", "edema", "cortex", "disc", "csf", "cord"]
    code = {n: i for i, n in enumerate(names)}
    labels = np.zeros(shape, dtype=np.uint16)
    ant = 25.0
    ell = ((C - (ant + depth / 2)) / (depth / 2)) ** 2 + (S / (width / 2)) ** 2
    # canal behind the bodies
    wall = ant + depth
    canal = (((C - (wall + 9.0)) / 7.0) ** 2 + (S / 9.0) ** 2) <= 1.0
    tissue[canal & (margin / 2 < R) & (length - margin / 2 > R)] = code["csf"]
    cord = (((C - (wall + 9.0)) / 2.5) ** 2 + (S / 3.5) ** 2) <= 1.0
    tissue[cord & (margin / 2 < R) & (length / 2 > R)] = code["cord"]
    truth: dict[int, float] = {}
    patterns: dict[int, str] = {}
    top = margin + disc_h
    for k in range(n_bodies):
        lab = k + 1
        lo, hi = top + k * (body_h + disc_h), top + k * (body_h + disc_h) + body_h
        in_body = (ell <= 1.0) & (lo <= R) & (hi > R)
        labels[in_body] = lab
        tissue[in_body] = code["cortex"]
        rim = 1.0  # mm cortical shell
        inner = (ell <= (1 - 2 * rim / depth) ** 2) & (lo + rim <= R) & (hi - rim > R) & in_body
        tissue[inner] = code["marrow"]
        disc = (ell <= 1.0) & (hi <= R) & (hi + disc_h > R)
        tissue[disc] = code["disc"]
        if k == 0:
            tissue[(ell <= 1.0) & (lo - disc_h <= R) & (lo > R)] = code["disc"]
        frac, kind = edema.get(lab, (0.0, "none"))
        if frac > 0:
            if kind == "band":
                ed = inner & (lo + rim + frac * (hi - lo - 2 * rim) > R)
            else:
                field = ndimage.gaussian_filter(rng.standard_normal(shape), (0.5, 2.5, 2.5))
                vals = field[inner]
                ed = inner & (field >= np.quantile(vals, 1 - frac))
            tissue[ed] = code["edema"]
            truth[lab] = float(ed.sum() / inner.sum())
        else:
            truth[lab] = 0.0
        patterns[lab] = kind if frac > 0 else "none"
    vols = []
    for ch in range(3):
        lut = np.array([TISSUE[n][ch] for n in names])
        if ch == 2 and not t1_edema_dark:  # a T1 that does not corroborate: oedema looks like marrow
            lut[code["edema"]] = TISSUE["marrow"][2]
        img = ndimage.gaussian_filter(lut[tissue], (0.0, 0.6, 0.6))  # a little blur (PSF)
        vols.append(img)
    if bias_pct:
        # smooth multiplicative field, +/- bias_pct across the field of view (mostly head-feet)
        u = (R / length) * 2 - 1
        v = (C / c[-1]) * 2 - 1
        field = 1 + bias_pct / 100 * np.clip(0.8 * u + 0.2 * v * u + 0.2 * v, -1, 1)
        vols[0] = vols[0] * field
    out = []
    for img in vols:
        noisy = np.sqrt((img + rng.normal(0, noise_sd, shape)) ** 2 + rng.normal(0, noise_sd, shape) ** 2)
        out.append(Volume(noisy.astype(np.float32), spacing_mm, (0.0, 0.0, 0.0), AXES))
    lab_vol = Volume(labels, spacing_mm, (0.0, 0.0, 0.0), AXES)
    levels = {k + 1: first_level.offset(k) for k in range(n_bodies)}
    seg = segmentation_from_label_map(lab_vol, levels, series_uid="1.2.3")
    return SynthSpine(out[0], out[1], out[2], lab_vol, seg, truth, patterns)
