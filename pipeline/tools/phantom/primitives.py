"""Sampling grids and analytic shapes that paint tissue codes into a sub-sampled tissue map.

Every shape works on coordinate arrays that *broadcast* against each other (``x``, ``y``, ``z`` in LPS mm).
A sagittal grid whose rows run along -z and columns along +y gives ``x`` of shape ``(S, 1, 1)``,
``y`` of shape ``(1, 1, W)`` and ``z`` of shape ``(1, H, 1)``; expressions that depend only on ``y`` and ``z``
are then evaluated once per plane and broadcast over the sub-planes, which keeps rendering fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.tools.phantom.tissues import Tissue

Array = np.ndarray
_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class SampleGrid:
    """Affine grid of sample points.

    LPS of index ``(i, j, k)`` is ``origin + i*steps[0] + j*steps[1] + k*steps[2]``.

    Parameters
    ----------
    origin : ndarray, shape (3,)
        LPS mm of sample ``(0, 0, 0)``.
    steps : ndarray, shape (3, 3)
        Row ``a`` is the LPS displacement (mm) of one step along index axis ``a``.
    shape : tuple of int
        Number of samples along the three index axes ``(sub-plane, row, col)``.
    """

    origin: Array
    steps: Array
    shape: tuple[int, int, int]
    _inv: Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=float).reshape(3))
        object.__setattr__(self, "steps", np.asarray(self.steps, dtype=float).reshape(3, 3))
        object.__setattr__(self, "_inv", np.linalg.inv(self.steps))

    def window(self, lo: Array, hi: Array) -> tuple[slice, slice, slice] | None:
        """Index window holding every sample inside the LPS box ``[lo, hi]``, or ``None`` when empty."""
        corners = np.array(
            [
                [lo[0] if a == 0 else hi[0], lo[1] if b == 0 else hi[1], lo[2] if c == 0 else hi[2]]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        idx = (corners - self.origin) @ self._inv
        start = np.floor(idx.min(axis=0)).astype(int)
        stop = np.ceil(idx.max(axis=0)).astype(int) + 1
        start = np.maximum(start, 0)
        stop = np.minimum(stop, self.shape)
        if np.any(stop <= start):
            return None
        return (
            slice(int(start[0]), int(stop[0])),
            slice(int(start[1]), int(stop[1])),
            slice(int(start[2]), int(stop[2])),
        )

    def coords(self, win: tuple[slice, slice, slice]) -> tuple[Array, Array, Array]:
        """Broadcastable float32 ``(x, y, z)`` arrays of the samples in ``win`` (zero terms are dropped)."""
        idx = [np.arange(s.start, s.stop, dtype=np.float32) for s in win]
        shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
        out = []
        for dim in range(3):
            acc: Array = np.full((1, 1, 1), self.origin[dim], dtype=np.float32)
            for axis in range(3):
                coef = self.steps[axis, dim]
                if abs(coef) > 1e-12:
                    acc = acc + np.float32(coef) * idx[axis].reshape(shapes[axis])
            out.append(acc)
        return out[0], out[1], out[2]


@dataclass
class Canvas:
    """Window views into the tissue map and the body-label map being painted."""

    tissue: Array  # uint8
    label: Array  # uint8


def fill(canvas: Canvas, mask: Array, tissue: Tissue | int, label: int | None = None) -> None:
    """Paint ``tissue`` where ``mask`` is true (broadcast); also set ``label`` when given (0 clears it).

    Body labels are painted last (bodies are the last painters), so other shapes leave labels alone.
    """
    np.copyto(canvas.tissue, np.uint8(tissue), where=mask)
    if label is not None:
        np.copyto(canvas.label, np.uint8(label), where=mask)


def dot(dx: Array, dy: Array, dz: Array, vec: Sequence[float] | Array) -> Array:
    """``(dx, dy, dz) . vec`` skipping zero components (keeps broadcast shapes small)."""
    acc: Array | float = 0.0
    for d, c in zip((dx, dy, dz), vec, strict=True):
        if abs(c) > 1e-12:
            acc = acc + d * np.float32(c)
    if isinstance(acc, float):
        return np.zeros((1, 1, 1), dtype=np.float32)
    return acc


class Painter:
    """A shape with an LPS bounding box that paints itself into a canvas window."""

    lo: Array
    hi: Array

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _orthonormal_pair(axis: Array, hint: Array) -> tuple[Array, Array]:
    """Two unit vectors perpendicular to ``axis``; the first as close to ``hint`` as possible."""
    a = axis / (np.linalg.norm(axis) + _EPS)
    e1 = hint - np.dot(hint, a) * a
    n = np.linalg.norm(e1)
    if n < 1e-6:
        e1 = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.cross(a, [0.0, 1.0, 0.0])
        n = np.linalg.norm(e1)
    e1 = e1 / n
    e2 = np.cross(a, e1)
    return e1, e2


@dataclass(eq=False)
class Capsule(Painter):
    """Elliptic capsule: segment ``p0 -> p1`` swept by an ellipse of radii ``r1`` (along ``hint``), ``r2``.

    End caps are half-ellipsoids with axial radius ``min(r1, r2)``. ``shrink`` (mm) evaluates the
    capsule with all radii reduced (for the marrow inside a cortical shell).
    """

    p0: Array
    p1: Array
    r1: float
    r2: float
    hint: Array
    tissue: Tissue
    label: int = 0

    def __post_init__(self) -> None:
        self.p0 = np.asarray(self.p0, float)
        self.p1 = np.asarray(self.p1, float)
        axis = self.p1 - self.p0
        self.length = float(np.linalg.norm(axis))
        self.axis = axis / max(self.length, _EPS)
        self.e1, self.e2 = _orthonormal_pair(self.axis, np.asarray(self.hint, float))
        r = max(self.r1, self.r2)
        self.lo = np.minimum(self.p0, self.p1) - r
        self.hi = np.maximum(self.p0, self.p1) + r

    def components(self, x: Array, y: Array, z: Array) -> tuple[Array, ...]:
        """Offsets from the axis segment along ``e1``, ``e2`` and the axis (beyond the segment ends)."""
        dx, dy, dz = x - np.float32(self.p0[0]), y - np.float32(self.p0[1]), z - np.float32(self.p0[2])
        t = dot(dx, dy, dz, self.axis)
        ax = t - np.clip(t, 0.0, self.length)
        return dot(dx, dy, dz, self.e1), dot(dx, dy, dz, self.e2), ax

    def q_from(self, comps: tuple[Array, ...], shrink: float = 0.0) -> Array:
        a, b, ax = comps
        r1, r2 = max(self.r1 - shrink, 0.3), max(self.r2 - shrink, 0.3)
        re = min(r1, r2)
        return (a / np.float32(r1)) ** 2 + (b / np.float32(r2)) ** 2 + (ax / np.float32(re)) ** 2

    def q(self, x: Array, y: Array, z: Array, shrink: float = 0.0) -> Array:
        """Normalised radius (<= 1 inside)."""
        return self.q_from(self.components(x, y, z), shrink)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        fill(canvas, self.q(x, y, z) <= 1.0, self.tissue, self.label or None)


@dataclass(eq=False)
class Ellipsoid(Painter):
    """Ellipsoid with centre ``c``, unit axes ``axes`` (rows) and radii."""

    c: Array
    axes: Array
    radii: Array
    tissue: Tissue
    label: int = 0

    def __post_init__(self) -> None:
        self.c = np.asarray(self.c, float)
        self.axes = np.asarray(self.axes, float)
        self.radii = np.asarray(self.radii, float)
        ext = np.sqrt(((self.axes * self.radii[:, None]) ** 2).sum(axis=0))
        self.lo = self.c - ext
        self.hi = self.c + ext

    def components(self, x: Array, y: Array, z: Array) -> tuple[Array, ...]:
        dx, dy, dz = x - np.float32(self.c[0]), y - np.float32(self.c[1]), z - np.float32(self.c[2])
        return tuple(dot(dx, dy, dz, ax) for ax in self.axes)

    def q_from(self, comps: tuple[Array, ...], shrink: float = 0.0) -> Array:
        acc: Array | float = 0.0
        for c, r in zip(comps, self.radii, strict=True):
            acc = acc + (c / np.float32(max(r - shrink, 0.3))) ** 2
        return acc  # type: ignore[return-value]

    def q(self, x: Array, y: Array, z: Array, shrink: float = 0.0) -> Array:
        return self.q_from(self.components(x, y, z), shrink)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        fill(canvas, self.q(x, y, z) <= 1.0, self.tissue, self.label or None)


@dataclass(eq=False)
class Tube(Painter):
    """Round capsule with a wall: ``wall`` tissue in the outer ``wall_mm``, ``content`` inside (bowel)."""

    p0: Array
    p1: Array
    r: float
    wall_mm: float
    wall: Tissue
    content: Tissue | None

    def __post_init__(self) -> None:
        self.cap = Capsule(self.p0, self.p1, self.r, self.r, np.array([1.0, 0.0, 0.0]), self.wall)
        self.lo, self.hi = self.cap.lo, self.cap.hi

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        q = self.cap.q(x, y, z)  # squared distance / r^2
        fill(canvas, q <= 1.0, self.wall)
        if self.content is not None:
            fill(canvas, q <= ((self.r - self.wall_mm) / self.r) ** 2, self.content)


@dataclass(eq=False)
class BoneGroup(Painter):
    """Union of capsules/ellipsoids drawn as bone: a cortical shell around the union, marrow inside."""

    parts: list[Capsule | Ellipsoid]
    cortex_mm: float = 1.2
    marrow: Tissue = Tissue.MARROW

    def __post_init__(self) -> None:
        self.lo = np.min([p.lo for p in self.parts], axis=0)
        self.hi = np.max([p.hi for p in self.parts], axis=0)

    def paint(self, canvas: Canvas, x: Array, y: Array, z: Array) -> None:
        inner = []
        for p in self.parts:  # cortical shells of the union first, then the marrow of the union
            sl = _sub_window(p, x, y, z, self.lo, self.hi)
            if sl is None:
                continue
            xs, ys, zs = (a[s] for a, s in zip((x, y, z), _per_array(sl, x, y, z), strict=True))
            comps = p.components(xs, ys, zs)
            view = Canvas(canvas.tissue[sl], canvas.label[sl])
            fill(view, p.q_from(comps) <= 1.0, Tissue.CORTEX)
            inner.append((view, p.q_from(comps, self.cortex_mm) <= 1.0))
        for view, mask in inner:
            fill(view, mask, self.marrow)


def _axis_ranges(a: Array) -> tuple[int, Array]:
    """For a broadcast coordinate array varying along exactly one axis: (axis, 1-D values); else (-1, a)."""
    varying = [i for i, n in enumerate(a.shape) if n > 1]
    if len(varying) == 1:
        return varying[0], a.reshape(-1)
    return -1, a


def _sub_window(part: Painter, x: Array, y: Array, z: Array, lo: Array, hi: Array) -> tuple[slice, ...] | None:
    """Sub-window of the current window holding ``part``'s box (only narrows separable axes)."""
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    sl = [slice(0, n) for n in shape]
    for arr, d in ((x, 0), (y, 1), (z, 2)):
        axis, vals = _axis_ranges(arr)
        if axis < 0:
            continue
        inside = np.nonzero((vals >= part.lo[d]) & (vals <= part.hi[d]))[0]
        if inside.size == 0:
            return None
        cur = sl[axis]
        start, stop = max(cur.start, int(inside[0])), min(cur.stop, int(inside[-1]) + 1)
        if stop <= start:
            return None
        sl[axis] = slice(start, stop)
    return tuple(sl)


def _per_array(sl: tuple[slice, ...], *arrays: Array) -> list[tuple[slice, ...]]:
    """Apply a 3-D window to broadcast arrays (axes of length 1 are left whole)."""
    return [tuple(s if n > 1 else slice(None) for s, n in zip(sl, a.shape, strict=True)) for a in arrays]


def smooth_noise_3d(rng: np.random.Generator, n_waves: int, wavelength_mm: tuple[float, float]):
    """A random smooth scalar field in [-1, 1] (sum of plane waves), evaluable at broadcast coordinates."""
    dirs = rng.normal(size=(n_waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves)
    phase = rng.uniform(0, 2 * np.pi, size=n_waves)
    vecs = (dirs * k[:, None]).astype(np.float32)

    def field(a: Array, b: Array, c: Array) -> Array:
        acc: Array | float = 0.0
        for v, ph in zip(vecs, phase, strict=True):
            acc = acc + np.cos(dot(a, b, c, v) + np.float32(ph))
        return np.asarray(acc, dtype=np.float32) / np.float32(np.sqrt(n_waves / 2.0) * 2.0)

    return field
