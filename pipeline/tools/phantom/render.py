"""Rendering: sample the analytic anatomy into images with partial volume, bias field and Rician noise.

Each output slice is sampled on a finer grid (``supersample`` x ``supersample`` in-plane, ``slice_subsamples``
planes across the slice thickness, i.e. a rectangular slice profile), every sub-sample gets a tissue class,
the classes are turned into signal with :data:`pipeline.tools.phantom.tissues.CONTRAST` and averaged per voxel.
The signal is then multiplied by a smooth bias field (posterior coil fall-off plus a low-order random
polynomial) and a faint tissue texture, and corrupted by Rician noise (magnitude of complex Gaussian noise).
Stored values are integers (0..4095) as in the DICOM files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from pipeline.levels import Level
from pipeline.tools.phantom.anatomy import Anatomy, build_anatomy
from pipeline.tools.phantom.primitives import Canvas, Painter
from pipeline.tools.phantom.spec import PhantomSpec
from pipeline.tools.phantom.tissues import SEQUENCE_NOISE_FACTOR, SEQUENCE_SCALE, Tissue, contrast_lut
from pipeline.tools.phantom.truth import build_truth
from pipeline.tools.phantom.uids import study_uids
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

MAX_STORED = 4095


@dataclass(frozen=True)
class PlaneImage:
    """One image of a localizer (its own plane and geometry)."""

    plane: str  # "SAGITTAL", "CORONAL" or "AXIAL"
    pixels: np.ndarray  # (rows, cols) float32 integer values
    origin_lps: tuple[float, float, float]  # centre of pixel (0, 0)
    row_dir: tuple[float, float, float]  # direction of increasing column index (DICOM row direction)
    col_dir: tuple[float, float, float]  # direction of increasing row index
    spacing_mm: tuple[float, float]  # (between rows, between columns)
    thickness_mm: float


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom study, in memory.

    ``t1``, ``t2``, ``stir``, ``labels`` and ``edema`` share one sagittal grid (array axes slice: patient
    left -> right, row: head -> feet, col: anterior -> posterior). Intensities are float32 holding the
    integer values written to DICOM. ``labels`` is uint16, 1..N cranial to caudal (S1 last when present);
    ``edema`` is uint16 holding the body label where the voxel is mostly oedematous marrow.
    """

    spec: PhantomSpec
    t1: Volume
    t2: Volume
    stir: Volume
    labels: Volume
    levels: dict[int, Level]
    truth: dict[str, Any]
    edema: Volume
    axial_t2: Volume | None = None
    localizer: tuple[PlaneImage, ...] = field(default=())

    def series_volume(self, role: str) -> Volume:
        return {"T1": self.t1, "T2": self.t2, "STIR": self.stir}[role]


def render_phantom(spec: PhantomSpec) -> Phantom:
    """Render the study described by ``spec`` (deterministic; no files written).

    Parameters
    ----------
    spec : PhantomSpec

    Returns
    -------
    Phantom
        T1, T2, STIR and label volumes on the sagittal grid ``(n_slices, rows, cols)``, the oedema map,
        the truth dictionary (exactly what :func:`pipeline.tools.phantom.write_study` stores as truth.json) and,
        when requested, the axial T2 stack and localizer images.
    """
    anatomy = build_anatomy(spec)
    g = anatomy.grid
    stack = render_stack(
        anatomy.painters,
        np.asarray(g.origin_lps),
        g.axes_lps,
        g.spacing_mm,
        g.shape,
        spec.slice_thickness_mm,
        spec.slice_subsamples,
        spec.supersample,
        ("T1", "T2", "STIR"),
        with_labels=True,
    )
    ref = Volume(np.zeros(g.shape, np.float32), g.spacing_mm, g.origin_lps, g.axes_lps)
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xB1A5]))
    images = finish(stack["signal"], ref, anatomy, spec, rng)
    labels = stack["labels"].astype(np.uint16)
    edema = np.where(stack["edema"], labels, 0).astype(np.uint16)
    vols = {k: ref.with_array(v) for k, v in images.items()}
    label_vol = ref.with_array(labels)
    levels = {b.label: Level(b.name) for b in anatomy.labelled}
    axial = _render_axial(anatomy, spec, rng) if spec.include_axial_t2 else None
    loc = _render_localizer(anatomy, spec, rng) if spec.include_localizer else ()
    mid_slices = {}
    for b in anatomy.labelled:
        idx = ref.lps_to_index(np.array([b.x0, *b.frame.centre]))
        mid_slices[b.label] = int(np.clip(round(float(idx[0])), 0, g.shape[0] - 1))
    uids = study_uids(spec)
    series = _series_summary(spec, uids, g.shape, axial, loc)
    grid = {
        "shape": list(g.shape),
        "spacing_mm": [float(s) for s in g.spacing_mm],
        "origin_lps_mm": [round(float(o), 6) for o in g.origin_lps],
        "axes_lps": g.axes_lps.tolist(),
        "slice_thickness_mm": spec.slice_thickness_mm,
    }
    truth = build_truth(anatomy, uids, series, grid, mid_slices)
    return Phantom(
        spec=spec,
        t1=vols["T1"],
        t2=vols["T2"],
        stir=vols["STIR"],
        labels=label_vol,
        levels=levels,
        truth=truth,
        edema=ref.with_array(edema),
        axial_t2=axial,
        localizer=tuple(loc),
    )


def _series_summary(
    spec: PhantomSpec, uids: dict[str, Any], shape: tuple[int, int, int], axial: Volume | None, loc: Any
) -> list[dict[str, Any]]:
    from pipeline.tools.phantom.vendors import protocol_for

    out = []
    for role in ("LOCALIZER", "T2", "T1", "STIR", "AXIAL_T2"):
        if role == "LOCALIZER" and not loc:
            continue
        if role == "AXIAL_T2" and axial is None:
            continue
        proto = protocol_for(spec.vendor, role)
        n = (
            len(loc)
            if role == "LOCALIZER"
            else (axial.shape[0] if role == "AXIAL_T2" and axial is not None else shape[0])
        )
        out.append(
            {
                "role": role,
                "series_instance_uid": uids["series_instance_uids"][role],
                "series_number": proto.series_number,
                "series_description": proto.description,
                "orientation": proto.orientation,
                "n_images": int(n),
            }
        )
    return out


# --------------------------------------------------------------------------- core sampler
def render_stack(
    painters: list[Painter],
    origin: np.ndarray,
    axes: np.ndarray,
    spacing: tuple[float, float, float],
    shape: tuple[int, int, int],
    thickness: float,
    n_sub: int,
    ss: int,
    sequences: tuple[str, ...],
    with_labels: bool = False,
) -> dict[str, Any]:
    """Partial-volume signal of a stack of parallel slices.

    Parameters
    ----------
    origin : ndarray (3,)
        LPS of the centre of voxel (0, 0, 0).
    axes : ndarray (3, 3)
        Unit LPS directions of the slice, row and column index axes.
    spacing : (slice pitch, row, col) mm
    shape : (slices, rows, cols)
    thickness : float
        Slice thickness (mm) integrated over (rectangular profile).

    Returns
    -------
    dict
        ``signal[seq]``: float32 (slices, rows, cols) relative signal; with ``with_labels`` also ``labels``
        (uint8 majority body label) and ``edema`` (bool majority oedema).
    """
    S, R, C = shape
    luts = [contrast_lut(seq) for seq in sequences]
    pair_luts = [(lut[:, None] + lut[None, :]).ravel() for lut in luts]  # value of two sub-samples at once
    out: dict[str, Any] = {"signal": {seq: np.zeros(shape, np.float32) for seq in sequences}}
    if with_labels:
        out["labels"] = np.zeros(shape, np.uint8)
        out["edema"] = np.zeros(shape, bool)
    n_samples = n_sub * ss * ss
    axes = np.asarray(axes, float)
    steps = np.array([axes[0] * thickness / n_sub, axes[1] * spacing[1] / ss, axes[2] * spacing[2] / ss])
    sub_offsets = -(thickness / 2 - thickness / (2 * n_sub)) + np.arange(n_sub) * thickness / n_sub
    inplane0 = origin - axes[1] * (spacing[1] * (ss - 1) / (2 * ss)) - axes[2] * (spacing[2] * (ss - 1) / (2 * ss))
    plan = _plan(painters, inplane0, axes, steps, (R * ss, C * ss))
    for s in range(S):
        # positions of this slice's sub-planes along the slice normal, relative to slice 0's centre
        planes = s * spacing[0] + sub_offsets
        tissue = np.zeros((n_sub, R * ss, C * ss), np.uint8)
        label = np.zeros_like(tissue)
        for p, n_lo, n_hi, rs, cs, inplane in plan:
            sel = np.nonzero((planes >= n_lo) & (planes <= n_hi))[0]
            if sel.size == 0:
                continue
            i0, i1 = int(sel[0]), int(sel[-1]) + 1
            off = planes[i0:i1].astype(np.float32).reshape(-1, 1, 1)
            xyz = [c if abs(axes[0, d]) < 1e-12 else c + off * np.float32(axes[0, d]) for d, c in enumerate(inplane)]
            p.paint(Canvas(tissue[i0:i1, rs, cs], label[i0:i1, rs, cs]), xyz[0], xyz[1], xyz[2])
        if ss % 2 == 0:
            code = (tissue[:, :, 0::2].astype(np.uint16) << 8) | tissue[:, :, 1::2]
            for i, seq in enumerate(sequences):
                out["signal"][seq][s] = _pool_pairs(np.take(pair_luts[i], code), ss) / np.float32(n_samples)
        else:
            for i, seq in enumerate(sequences):
                out["signal"][seq][s] = _pool(np.take(luts[i], tissue), ss) / np.float32(n_samples)
        if with_labels:
            # majority vote; exact ties (half the sub-samples) are broken by a fixed checkerboard so that the
            # mask volume stays unbiased
            tie_in = (np.arange(R)[:, None] + np.arange(C)[None, :] + s) % 2 == 0
            count = _pool((label > 0).view(np.uint8), ss).astype(np.int32)
            majority = (2 * count > n_samples) | ((2 * count == n_samples) & tie_in)
            lmax = label.max(axis=0)
            lmax = np.maximum.reduce([lmax[i::ss, j::ss] for i in range(ss) for j in range(ss)])
            out["labels"][s] = np.where(majority, lmax, 0)
            ecount = _pool((tissue == Tissue.EDEMA).view(np.uint8), ss).astype(np.int32)
            out["edema"][s] = majority & ((2 * ecount > n_samples) | ((2 * ecount == n_samples) & tie_in))
    return out


def _plan(
    painters: list[Painter],
    inplane0: np.ndarray,
    axes: np.ndarray,
    steps: np.ndarray,
    plane_shape: tuple[int, int],
) -> list[tuple[Painter, float, float, slice, slice, list[np.ndarray]]]:
    """Per painter: its extent along the slice normal (mm from slice 0's centre plane), its in-plane index
    window, and the in-plane part of the sample coordinates (float32, broadcastable)."""
    plan = []
    H, W = plane_shape
    for p in painters:
        corners = np.array(
            [
                [
                    p.lo[0] if a == 0 else p.hi[0],
                    p.lo[1] if b == 0 else p.hi[1],
                    p.lo[2] if c == 0 else p.hi[2],
                ]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        rel = corners - inplane0
        n = rel @ axes[0]
        r = rel @ steps[1] / np.dot(steps[1], steps[1])
        c = rel @ steps[2] / np.dot(steps[2], steps[2])
        r0, r1 = max(int(np.floor(r.min())), 0), min(int(np.ceil(r.max())) + 1, H)
        c0, c1 = max(int(np.floor(c.min())), 0), min(int(np.ceil(c.max())) + 1, W)
        if r1 <= r0 or c1 <= c0:
            continue
        jr = np.arange(r0, r1, dtype=np.float32).reshape(1, -1, 1)
        kc = np.arange(c0, c1, dtype=np.float32).reshape(1, 1, -1)
        inplane = []
        for d in range(3):
            acc: np.ndarray = np.full((1, 1, 1), inplane0[d], np.float32)
            if abs(steps[1, d]) > 1e-12:
                acc = acc + np.float32(steps[1, d]) * jr
            if abs(steps[2, d]) > 1e-12:
                acc = acc + np.float32(steps[2, d]) * kc
            inplane.append(acc)
        plan.append((p, float(n.min()), float(n.max()), slice(r0, r1), slice(c0, c1), inplane))
    return plan


def _pool_pairs(a: np.ndarray, ss: int) -> np.ndarray:
    """Like :func:`_pool` for an array whose columns already hold sums of column pairs (n, R*ss, C*ss/2)."""
    t = a.sum(axis=0, dtype=np.float32)
    t = sum(t[i::ss] for i in range(ss))
    half = ss // 2
    return t if half == 1 else sum(t[:, j::half] for j in range(half))


def _pool(a: np.ndarray, ss: int) -> np.ndarray:
    """Sum over axis 0 and over ``ss`` x ``ss`` in-plane blocks: (n, R*ss, C*ss, ...) -> (R, C, ...)."""
    t = a.sum(axis=0, dtype=np.float32 if a.dtype != np.uint8 else np.uint16)
    if ss == 1:
        return t
    t = sum(t[i::ss] for i in range(ss))
    return sum(t[:, j::ss] for j in range(ss))


def finish(
    signal: dict[str, np.ndarray], ref: Volume, anatomy: Anatomy, spec: PhantomSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Apply texture, bias field, Rician noise and quantisation; returns float32 integer-valued images."""
    shape = ref.shape
    tex_rng = np.random.default_rng(rng.integers(2**32))
    small = (shape[0], max(shape[1] // 4, 2), max(shape[2] // 4, 2))
    coarse = gaussian_filter(tex_rng.standard_normal(small, dtype=np.float32), (0.8, 1.5, 1.5))
    coarse = zoom(coarse, (1, shape[1] / small[1], shape[2] / small[2]), order=1)[:, : shape[1], : shape[2]]
    coarse /= coarse.std() + 1e-6
    texture = 1.0 + 0.045 * coarse
    texture *= bias_field(ref, anatomy, spec, rng)
    out = {}
    for seq, sig in signal.items():
        # mild in-plane point-spread (k-space apodisation of the reconstruction)
        sig = gaussian_filter(sig, (0.0, 0.45, 0.45), truncate=3.0)
        img = sig * texture
        img *= np.float32(SEQUENCE_SCALE[seq])
        sigma = SEQUENCE_SCALE[seq] * spec.noise_pct / 100.0 * SEQUENCE_NOISE_FACTOR[seq]
        img += rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
        n2 = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
        img = np.sqrt(img * img + n2 * n2)
        out[seq] = np.clip(np.rint(img), 0, MAX_STORED).astype(np.float32)
    return out


def bias_field(ref: Volume, anatomy: Anatomy, spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field: posterior (spine coil) sensitivity plus a random low-order polynomial."""
    pts = []
    for d in range(3):
        acc: np.ndarray = np.full((1, 1, 1), ref.origin_lps[d], np.float32)
        for a, n in enumerate(ref.shape):
            coef = ref.axes_lps[a, d] * ref.spacing_mm[a]
            if abs(coef) > 1e-12:
                shp = [1, 1, 1]
                shp[a] = n
                acc = acc + np.float32(coef) * np.arange(n, dtype=np.float32).reshape(shp)
        pts.append(acc)
    return np.broadcast_to(bias_at(pts[0], pts[1], pts[2], anatomy, spec, rng), ref.shape)


def bias_at(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, anatomy: Anatomy, spec: PhantomSpec, rng: np.random.Generator
) -> np.ndarray:
    prof = anatomy.profile
    zc = 0.5 * (prof.zc("S1") + prof.zc(spec.top_level.value))
    y_back = float(np.interp(zc, prof.z_grid, prof.habitus["skin_post"]))
    depth = np.clip(y_back - y, 0.0, None)
    coil = 0.62 + 0.38 * np.exp(-depth / 110.0)
    a = rng.uniform(-1.0, 1.0, size=6) * spec.bias_pct / 100.0 / 2.0
    yn = (y - y_back + 150.0) / 150.0
    zn = (z - zc) / 180.0
    xn = (x - anatomy.x0) / 150.0
    in_plane = coil * np.exp(a[0] * yn + a[1] * zn + a[2] * zn * zn + a[3] * yn * zn + a[5] * yn * yn)
    return (in_plane * np.exp(a[4] * xn)).astype(np.float32)


# --------------------------------------------------------------------------- extra series
def _render_axial(anatomy: Anatomy, spec: PhantomSpec, rng: np.random.Generator) -> Volume:
    """Oblique axial T2 stack parallel to the L4/L5 disc, covering L3/L4 to L5/S1."""
    b4, b5 = anatomy.bodies["L4"], anatomy.bodies["L5"]
    p4 = b4.frame.to_world(b4.shape.inf_rim()[1])
    p5 = b5.frame.to_world(b5.shape.sup_rim()[1])
    normal_yz = -(b4.frame.v + b5.frame.v)
    normal_yz /= np.linalg.norm(normal_yz)  # towards the feet
    centre_yz = 0.5 * (p4 + p5) + 10.0 * (b4.frame.u + b5.frame.u) / 2
    n_sl, pitch, thick = spec.axial_n_slices, 4.4, 4.0
    rows = cols = spec.axial_matrix
    sp = 192.0 / spec.axial_matrix
    slice_dir = np.r_[0.0, normal_yz]  # slices advance caudally
    row_dir = np.array([1.0, 0.0, 0.0])  # columns run to the patient's left
    col_dir = np.cross(slice_dir, row_dir)  # rows run posteriorly
    if col_dir[1] < 0:
        col_dir = -col_dir
    # keep the DICOM normal (row x col) equal to the slice direction for a consistent stack
    if np.dot(np.cross(row_dir, col_dir), slice_dir) < 0:
        slice_dir = -slice_dir
    centre = np.r_[anatomy.x0, centre_yz]
    centre = centre + slice_dir * 0.0
    axes = np.array([slice_dir, col_dir, row_dir])
    origin = centre - slice_dir * pitch * (n_sl - 1) / 2 - col_dir * sp * (rows - 1) / 2 - row_dir * sp * (cols - 1) / 2
    origin = origin + col_dir * 25.0  # include the posterior muscles
    stack = render_stack(anatomy.painters, origin, axes, (pitch, sp, sp), (n_sl, rows, cols), thick, 3, 2, ("T2",))
    ref = Volume(np.zeros((n_sl, rows, cols), np.float32), (pitch, sp, sp), tuple(origin), axes)
    img = finish({"T2": stack["signal"]["T2"]}, ref, anatomy, spec, rng)["T2"]
    return ref.with_array(img)


def _render_localizer(anatomy: Anatomy, spec: PhantomSpec, rng: np.random.Generator) -> list[PlaneImage]:
    """Three sagittal, three coronal and three axial GRE images (large field of view, thick slices)."""
    prof = anatomy.profile
    zc = 0.5 * (prof.zc("L1") + prof.zc("S1"))
    yc = float(np.interp(zc, prof.z_grid, prof.y_post))
    centre = np.array([anatomy.x0, yc - 30.0, zc])
    n, sp, thick = 256, 1.35, 8.0
    planes = {
        "SAGITTAL": (np.array([-1.0, 0, 0]), np.array([0.0, 0, -1]), np.array([0.0, 1, 0])),
        "CORONAL": (np.array([0.0, 1, 0]), np.array([0.0, 0, -1]), np.array([1.0, 0, 0])),
        "AXIAL": (np.array([0.0, 0, 1]), np.array([0.0, 1, 0]), np.array([1.0, 0, 0])),
    }
    offsets = {"SAGITTAL": (-25.0, 0.0, 25.0), "CORONAL": (-20.0, 10.0, 40.0), "AXIAL": (-60.0, 0.0, 60.0)}
    images: list[PlaneImage] = []
    for plane, (normal, coldir, rowdir) in planes.items():
        for off in offsets[plane]:
            c = centre + normal * off
            if plane == "CORONAL":
                c = c.copy()
                c[1] = yc + off  # through the canal and the muscles / bodies
            axes = np.array([normal, coldir, rowdir])
            origin = c - coldir * sp * (n - 1) / 2 - rowdir * sp * (n - 1) / 2
            st = render_stack(anatomy.painters, origin, axes, (thick, sp, sp), (1, n, n), thick, 2, 1, ("LOC",))
            ref = Volume(np.zeros((1, n, n), np.float32), (thick, sp, sp), tuple(origin), axes)
            img = finish({"LOC": st["signal"]["LOC"]}, ref, anatomy, spec, rng)["LOC"][0]
            images.append(
                PlaneImage(
                    plane,
                    img,
                    _vec3(origin),
                    _vec3(rowdir),
                    _vec3(coldir),
                    (sp, sp),
                    thick,
                )
            )
    return images


def _vec3(a: np.ndarray) -> tuple[float, float, float]:
    return (float(a[0]), float(a[1]), float(a[2]))
