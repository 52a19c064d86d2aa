"""Bring a second series (STIR or T1) onto the anatomy grid.

- The anatomy series itself, or the same grid in the same frame of reference: used as is.
- Same FrameOfReferenceUID: resampled with the DICOM geometry (linear), then, unless disabled, checked for
  patient motion between the series. First a probe: the match (mutual information) at the scanner geometry
  against the match after a shift of ``misalignment_tolerance_mm`` each way along each free axis, and a turn
  that moves the bodies as much. When every probe matches worse, and about equally so both ways, there is no
  sign of motion and nothing more is done (the usual case; issue 18: the registration was most of the STIR
  stage's time). Otherwise a rigid registration measures the motion and is adopted when it moves the body
  centroids by more than ``misalignment_tolerance_mm`` reproducibly.
- Different or unknown frame of reference: rigid registration (Mattes mutual information, own
  multi-resolution pyramid, started from the scanner geometry and from perturbed starts).

The registration works in the anatomy's own axes (x = slice normal, y = row, z = column), so that for
thick-slice series (slices thicker than ``out_of_plane_max_slice_mm``) only the in-plane rotation and the
three translations are optimised: 15 slices of 4 mm cannot pin down rotations about in-plane axes.

Residual (``residual_mm``): the largest mean distance, at the body centroids, between the result of the
best run and the results of the runs started from perturbed positions (``restart_shift_mm``,
``restart_rotation_deg``). It measures how reproducibly the optimum is reached (capture and precision), not
accuracy against a ground truth; accuracy against known transforms is measured by ``benchmarks/stir.py``.
``correction_mm``: mean distance the registration moved the body centroids away from the scanner geometry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.errors import AnalysisError
from pipeline.stir.config import RegistrationConfig
from pipeline.volume import Volume

logger = logging.getLogger(__name__)


class RegistrationFailed(AnalysisError):
    """The second series could not be brought onto the anatomy grid reliably."""


@dataclass(frozen=True, eq=False)
class GridResult:
    """A series on the anatomy grid. ``valid`` (bool, anatomy shape) marks voxels inside its field of view."""

    volume: Volume
    valid: np.ndarray
    method: str
    residual_mm: float | None
    correction_mm: float | None
    warnings: tuple[str, ...] = ()
    matrix_lps: np.ndarray | None = None  # (4, 4): anatomy LPS mm -> moving-series LPS mm; None = identity

    @property
    def registered(self) -> bool:
        return self.method.startswith("rigid")


def bring_onto_grid(
    anatomy: Volume,
    moving: Volume,
    *,
    same_frame: bool | None,
    landmarks_lps: Sequence[Sequence[float]],
    region: tuple[slice, slice, slice] | None,
    cfg: RegistrationConfig,
    what: str = "STIR",
) -> GridResult:
    """Resample or register ``moving`` onto ``anatomy``'s grid.

    Parameters
    ----------
    anatomy, moving : Volume
        Fixed (anatomy) and moving series.
    same_frame : bool or None
        True when both FrameOfReferenceUIDs are known and equal, False when they differ, None when unknown.
    landmarks_lps : sequence of (3,) LPS mm
        Body centroids: where correction and residual are measured, and the rotation centre.
    region : tuple of slices, optional
        Anatomy-grid box around the column (bodies plus margin): the metric region; None = everything.
    cfg : RegistrationConfig
    what : str
        Name used in messages ("STIR", "T1").

    Raises
    ------
    RegistrationFailed
        Registration threw, found no shared structure (mutual information below ``min_mutual_information``)
        or was not reproducible (residual above ``max_residual_mm``).
    """
    same_grid = same_frame is not False and moving.same_grid(anatomy)
    if moving is anatomy or (same_grid and not cfg.check_same_frame_alignment):
        return GridResult(moving, np.ones(anatomy.shape, dtype=bool), "same grid (no resampling)", None, None)
    if same_frame is not False:
        geo = moving if same_grid else moving.resample_like(anatomy, linear=True)
        # on the same grid the field of view is the same: no need to resample a mask to learn that
        valid = np.ones(anatomy.shape, dtype=bool) if same_grid else _valid_mask(anatomy, moving)
        label = "same frame of reference" if same_frame else "frame of reference unknown, scanner geometry"
        if not cfg.check_same_frame_alignment:
            return GridResult(geo, valid, f"{label} (resampled)", None, None)
        reg = _Registration(anatomy, moving, landmarks_lps, region, cfg)
        step = cfg.misalignment_tolerance_mm
        try:
            still = reg.looks_aligned(step, level=cfg.alignment_check_levels)
        except RuntimeError as exc:  # e.g. too few samples in the overlap: let the registration decide
            logger.info("%s alignment probe failed (%s); registering", what, _short(exc))
            still = False
        if still:
            return GridResult(
                geo, valid, f"{label} (resampled; alignment checked, no sign of {step:g} mm motion)", None, None
            )
        try:
            first = reg.run(reg.identity(), levels=cfg.alignment_check_levels)
        except RuntimeError as exc:
            logger.warning("%s alignment check failed (%s); scanner geometry used", what, exc)
            return GridResult(
                geo,
                valid,
                f"{label} (resampled; alignment check failed)",
                None,
                None,
                (f"{what}: the alignment check could not run; scanner geometry used",),
            )
        corr = reg.correction(first.transform)
        if corr <= cfg.misalignment_tolerance_mm:
            return GridResult(geo, valid, f"{label} (resampled; alignment checked, {corr:.1f} mm)", None, corr)
        try:
            best, residual = reg.run_with_restarts(reg.run(first.transform))
        except (RegistrationFailed, RuntimeError) as exc:  # not confirmed, or SimpleITK gave up
            return GridResult(
                geo,
                valid,
                f"{label} (resampled)",
                None,
                corr,
                (
                    f"{what}: the alignment check suggested {corr:.1f} mm of motion but registration did not "
                    f"confirm it ({exc}); scanner geometry used: check the overlay",
                ),
            )
        corr = reg.correction(best.transform)
        if not best.metric < reg.metric_at(reg.identity()):
            return GridResult(
                geo,
                valid,
                f"{label} (resampled)",
                None,
                corr,
                (
                    f"{what}: registration moved the bodies {corr:.1f} mm without improving the match; "
                    "scanner geometry used: check the overlay",
                ),
            )
        vol, valid = reg.resample(best.transform)
        return GridResult(
            vol,
            valid,
            f"rigid MI (patient motion between series; {label})",
            residual,
            corr,
            (
                f"{what} and anatomy share a frame of reference but were {corr:.1f} mm apart at the bodies "
                "(patient motion between series); registered",
            ),
            reg.matrix_lps(best.transform),
        )
    reg = _Registration(anatomy, moving, landmarks_lps, region, cfg)
    try:
        first = reg.run(reg.identity())
    except RuntimeError as exc:
        raise RegistrationFailed(
            f"{what} could not be registered to the anatomy series (different frames of reference): {_short(exc)}"
        ) from None
    best, residual = reg.run_with_restarts(first)
    vol, valid = reg.resample(best.transform)
    corr = reg.correction(best.transform)
    return GridResult(
        vol,
        valid,
        "rigid MI (different frames of reference)",
        residual,
        corr,
        matrix_lps=reg.matrix_lps(best.transform),
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else type(exc).__name__
    return msg[:200]


def _valid_mask(anatomy: Volume, moving: Volume) -> np.ndarray:
    """bool mask on the anatomy grid: inside the moving series' field of view (scanner geometry)."""
    ones = moving.with_array(np.ones(moving.shape, dtype=np.uint8))
    return np.asarray(ones.resample_like(anatomy, linear=False).array > 0)


@dataclass(frozen=True)
class _Run:
    transform: sitk.Euler3DTransform  # in the anatomy frame
    metric: float  # final Mattes value (negative mutual information; lower is better)


class _Registration:
    """One fixed/moving pair, prepared once (frame change, crop, pyramid), registered from several starts."""

    def __init__(
        self,
        anatomy: Volume,
        moving: Volume,
        landmarks_lps: Sequence[Sequence[float]],
        region: tuple[slice, slice, slice] | None,
        cfg: RegistrationConfig,
    ) -> None:
        self.anatomy = anatomy
        self.moving = moving
        self.cfg = cfg
        self.q = np.asarray(anatomy.axes_lps, dtype=float)  # LPS -> anatomy frame: v_frame = q @ v_lps
        self.fixed_f = self._to_frame(anatomy.with_array(np.asarray(anatomy.array, dtype=np.float32)))
        self.moving_f = self._to_frame(moving.with_array(np.asarray(moving.array, dtype=np.float32)))
        pts = np.asarray(landmarks_lps, dtype=float).reshape(-1, 3)
        if len(pts) == 0:
            pts = anatomy.index_to_lps((np.asarray(anatomy.shape) - 1) / 2.0)[None, :]
        self.points = pts @ self.q.T  # landmarks in the frame
        self.centre = self.points.mean(axis=0)
        # the metric sees only the column region of the anatomy, and the part of the moving series that can
        # map into it (scanner geometry + a motion margin): much less work than whole fields of view
        self.fixed_roi = _crop(self.fixed_f, region) if region is not None else self.fixed_f
        self.moving_roi = _crop(self.moving_f, _box_covering(self.moving_f, self.fixed_roi, _MOTION_MARGIN_MM))
        thick = max(max(anatomy.spacing_mm), max(moving.spacing_mm)) > cfg.out_of_plane_max_slice_mm
        # Euler3D parameters: (rot about frame x = slice normal, rot y, rot z, tx, ty, tz)
        self.weights = (1.0, 0.0, 0.0, 1.0, 1.0, 1.0) if thick else (1.0,) * 6
        self._levels: dict[int, tuple[sitk.Image, sitk.Image, float]] = {}  # built when first used

    # ---------------------------------------------------------------- frame and pyramid
    def _to_frame(self, v: Volume) -> Volume:
        return Volume(v.array, v.spacing_mm, tuple(self.q @ np.asarray(v.origin_lps)), v.axes_lps @ self.q.T)

    def level(self, k: int) -> tuple[sitk.Image, sitk.Image, float]:
        """(fixed, moving, sampling fraction) of pyramid level ``k`` (negative: from the finest), built once."""
        k = range(len(self.cfg.pyramid_inplane_mm))[k]
        if k not in self._levels:
            self._levels[k] = self._level(self.cfg.pyramid_inplane_mm[k])
        return self._levels[k]

    def _level(self, pitch_mm: float) -> tuple[sitk.Image, sitk.Image, float]:
        """(fixed, moving, sampling fraction) of one pyramid level; both coarsened to ``pitch_mm``."""
        fixed = _coarsen(self.fixed_roi, pitch_mm)
        moving = _coarsen(self.moving_roi, pitch_mm)
        frac = min(1.0, self.cfg.metric_samples / float(np.prod(fixed.shape)))
        return fixed.to_sitk(), moving.to_sitk(), frac

    # ---------------------------------------------------------------- transforms
    def identity(self) -> sitk.Euler3DTransform:
        t = sitk.Euler3DTransform()
        t.SetCenter(tuple(float(c) for c in self.centre))
        return t

    def perturbed(self, k: int) -> sitk.Euler3DTransform:
        """k-th perturbed start: in-plane shifts along row/column and rotations about the slice normal."""
        s, a = self.cfg.restart_shift_mm, math.radians(self.cfg.restart_rotation_deg)
        signs = [(1, -1, 1), (-1, 1, -1), (1, 1, -1), (-1, -1, 1)]
        sy, sz, sa = signs[k % len(signs)]
        scale = 1 + k // len(signs)
        t = self.identity()
        t.SetRotation(sa * a * scale, 0.0, 0.0)
        t.SetTranslation((0.0, sy * s * scale, sz * s * scale))
        return t

    def matrix_lps(self, t: sitk.Euler3DTransform) -> np.ndarray:
        """(4, 4) homogeneous matrix of ``t`` in LPS: anatomy point (mm) -> moving-series point (mm)."""
        a = np.asarray(t.GetMatrix(), dtype=float).reshape(3, 3)
        c = np.asarray(t.GetCenter(), dtype=float)
        b = np.asarray(t.GetTranslation(), dtype=float) + c - a @ c
        m = np.eye(4)
        m[:3, :3] = self.q.T @ a @ self.q
        m[:3, 3] = self.q.T @ b
        return m

    def _apply(self, t: sitk.Transform, pts: np.ndarray) -> np.ndarray:
        return np.array([t.TransformPoint(tuple(float(c) for c in p)) for p in pts])

    def correction(self, t: sitk.Transform) -> float:
        """Mean displacement (mm) of the body centroids by ``t``."""
        return float(np.mean(np.linalg.norm(self._apply(t, self.points) - self.points, axis=1)))

    def distance(self, a: sitk.Transform, b: sitk.Transform) -> float:
        """Mean distance (mm) at the body centroids between the mappings of two transforms."""
        return float(np.mean(np.linalg.norm(self._apply(a, self.points) - self._apply(b, self.points), axis=1)))

    # ---------------------------------------------------------------- optimisation
    def run(self, start: sitk.Euler3DTransform, levels: int | None = None) -> _Run:
        """Multi-resolution Mattes-MI registration from ``start`` over the first ``levels`` pyramid levels
        (all by default); raises RuntimeError from SimpleITK."""
        t = sitk.Euler3DTransform(start)
        metric = float("nan")
        for k in range(len(self.cfg.pyramid_inplane_mm))[: levels or None]:
            fixed, moving, frac = self.level(k)
            r = self._method(frac)
            r.SetInterpolator(sitk.sitkLinear)
            r.SetOptimizerAsRegularStepGradientDescent(
                learningRate=2.0,
                minStep=0.01,
                numberOfIterations=self.cfg.iterations_per_level,
                relaxationFactor=0.6,
                gradientMagnitudeTolerance=1e-8,
            )
            r.SetOptimizerScalesFromPhysicalShift()
            r.SetOptimizerWeights(list(self.weights))
            r.SetInitialTransform(t, inPlace=True)
            r.Execute(fixed, moving)
            metric = float(r.GetMetricValue())
        return _Run(t, metric)

    def _method(self, frac: float) -> sitk.ImageRegistrationMethod:
        """Mattes MI on ``frac`` random voxels of the fixed region, linear interpolation; gradients computed
        at the sample points only (no whole-image gradient filters)."""
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=self.cfg.histogram_bins)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(frac, self.cfg.random_seed)
        r.SetMetricUseFixedImageGradientFilter(False)
        r.SetMetricUseMovingImageGradientFilter(False)
        r.SetInterpolator(sitk.sitkLinear)
        return r

    def metric_at(self, t: sitk.Transform, level: int = -1) -> float:
        """Mattes value of ``t`` on pyramid level ``level`` (default the finest; no optimisation)."""
        fixed, moving, frac = self.level(level)
        r = self._method(frac)
        r.SetInitialTransform(sitk.Euler3DTransform(t))
        return float(r.MetricEvaluate(fixed, moving))

    def looks_aligned(self, step_mm: float, *, level: int) -> bool:
        """True when the scanner geometry looks aligned to within about ``step_mm``: along each free axis, probes
        ``step_mm`` away both ways (a shift, or a turn that moves the bodies by ``step_mm`` on average) both
        match worse than the geometry itself, and about equally so (one side losing less than a third of what
        the other loses puts the best match a third of a step or more off the geometry, toward that side).
        The match is mutual information at the resolution of the alignment check's finest pyramid level (the
        first ``level`` levels). False means a shift may exist, not that it does: register to measure it."""
        pitch = self.cfg.pyramid_inplane_mm[max(0, min(level, len(self.cfg.pyramid_inplane_mm)) - 1)]
        box = _box_covering(self.moving_f, self.fixed_roi, step_mm + 2.0 * pitch + 2.0 * max(self.moving.spacing_mm))
        probe = _MatchProbe(
            _smooth(self.fixed_roi, pitch),
            _smooth(_crop(self.moving_f, box), pitch),
            samples=self.cfg.metric_samples,
            bins=self.cfg.histogram_bins,
            seed=self.cfg.random_seed,
        )
        base = probe.mutual_information(self.identity())
        offsets = self.points - self.centre
        for axis, weight in enumerate(self.weights):
            if not weight:
                continue
            if axis < 3:  # a turn about this frame axis through the centre: mean body displacement step_mm
                reach = float(np.mean(np.linalg.norm(np.delete(offsets, axis, axis=1), axis=1)))
                amount = step_mm / max(reach, _MIN_TURN_REACH_MM)
            else:
                amount = step_mm
            losses = []
            for sign in (1.0, -1.0):
                t = self.identity()
                move = [0.0] * 6
                move[axis] = sign * amount
                t.SetRotation(*move[:3])
                t.SetTranslation(tuple(move[3:]))
                losses.append(base - probe.mutual_information(t))
            if min(losses) < 0.0 or min(losses) < max(losses) / 3.0:
                return False
        return True

    def run_with_restarts(self, first: _Run) -> tuple[_Run, float]:
        """Best of ``first`` and the perturbed starts, and the residual (see module docstring)."""
        runs = [first]
        for k in range(self.cfg.restarts):
            try:
                runs.append(self.run(self.perturbed(k)))
            except RuntimeError as exc:
                raise RegistrationFailed(
                    f"registration from a start {self.cfg.restart_shift_mm:g} mm / "
                    f"{self.cfg.restart_rotation_deg:g} deg away failed: {_short(exc)}"
                ) from None
        best = min(runs, key=lambda r: r.metric)
        mi = -best.metric
        if not mi >= self.cfg.min_mutual_information:
            raise RegistrationFailed(
                f"no shared structure found (mutual information {mi:.3f} < "
                f"{self.cfg.min_mutual_information:g}): is this the same patient and body region?"
            )
        residual = max((self.distance(r.transform, best.transform) for r in runs), default=0.0)
        logger.info(
            "registration: %d runs, best MI %.3f, residual %.2f mm, correction %.2f mm",
            len(runs),
            mi,
            residual,
            self.correction(best.transform),
        )
        if residual > self.cfg.max_residual_mm:
            raise RegistrationFailed(
                f"registration not reproducible: runs started {self.cfg.restart_shift_mm:g} mm / "
                f"{self.cfg.restart_rotation_deg:g} deg apart ended {residual:.1f} mm apart at the vertebral "
                f"bodies (limit {self.cfg.max_residual_mm:g} mm)"
            )
        return best, residual

    def resample(self, t: sitk.Transform) -> tuple[Volume, np.ndarray]:
        """Moving series on the anatomy grid through ``t`` (linear), and its field-of-view mask."""
        fixed = self.fixed_f.to_sitk()
        moving = self.moving_f.to_sitk()
        out = Volume.from_sitk(sitk.Resample(moving, fixed, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        ones = self.moving_f.with_array(np.ones(self.moving.shape, dtype=np.uint8)).to_sitk()
        valid = Volume.from_sitk(sitk.Resample(ones, fixed, t, sitk.sitkNearestNeighbor, 0.0)).array > 0
        return self.anatomy.with_array(np.asarray(out.array)), np.asarray(valid)


_MIN_TURN_REACH_MM = 20.0  # a turn probe is at most step / 20 mm rad (~4 deg for 1.5 mm), even for one body


class _MatchProbe:
    """Mutual information of two series at one fixed random sample of the fixed region, for a few transforms.

    A joint histogram of the fixed values and the linearly interpolated moving values: a few evaluations cost a
    few milliseconds, where SimpleITK's Mattes metric draws its samples over the whole image on every call.
    Used to decide whether to register at all, never as the registration's metric.
    """

    def __init__(self, fixed: Volume, moving: Volume, *, samples: int, bins: int, seed: int) -> None:
        size = int(np.prod(fixed.shape))
        pick = np.random.default_rng(seed).choice(size, size=min(samples, size), replace=False)
        index = np.stack(np.unravel_index(np.sort(pick), fixed.shape), axis=1)
        self.points = fixed.index_to_lps(index.astype(float))  # frame mm
        self.fixed_bins = _bin(np.asarray(fixed.array)[tuple(index.T)], bins)
        self.moving = moving
        self.moving_array = np.asarray(moving.array, dtype=np.float32)
        self.moving_range = (float(self.moving_array.min()), float(self.moving_array.max()))
        self.bins = bins

    def mutual_information(self, t: sitk.Euler3DTransform) -> float:
        """Mutual information (nats) with the moving series sampled through ``t`` (fixed -> moving points);
        samples that map outside the moving series are left out."""
        a = np.asarray(t.GetMatrix(), dtype=float).reshape(3, 3)
        c = np.asarray(t.GetCenter(), dtype=float)
        mapped = (self.points - c) @ a.T + c + np.asarray(t.GetTranslation(), dtype=float)
        index = self.moving.lps_to_index(mapped)
        inside = np.all((index >= 0) & (index <= np.asarray(self.moving.shape) - 1), axis=1)
        if np.count_nonzero(inside) < 2:
            return 0.0
        values = ndimage.map_coordinates(self.moving_array, index[inside].T, order=1)
        return _mutual_information(self.fixed_bins[inside], _bin(values, self.bins, self.moving_range), self.bins)


def _bin(values: np.ndarray, bins: int, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Histogram bin (0 .. bins - 1) of each value, over ``value_range`` (default: the values' own)."""
    lo, hi = value_range if value_range is not None else (float(values.min()), float(values.max()))
    k = np.floor((np.asarray(values, dtype=float) - lo) * (bins / max(hi - lo, 1e-12))).astype(np.int64)
    return np.clip(k, 0, bins - 1)


def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Mutual information (nats) of two binned samples."""
    joint = np.bincount(a * bins + b, minlength=bins * bins).reshape(bins, bins) / float(a.size)
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])))


_MOTION_MARGIN_MM = 40.0  # moving-series margin around the fixed region (covers the restarts and real motion)


def _crop(v: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """Sub-volume ``v.array[box]`` with its own origin (same axes and spacing)."""
    start = [sl.start for sl in box]
    return Volume(np.ascontiguousarray(v.array[box]), v.spacing_mm, tuple(v.index_to_lps(start)), v.axes_lps)


def _box_covering(v: Volume, other: Volume, margin_mm: float) -> tuple[slice, slice, slice]:
    """Index box of ``v`` covering ``other``'s extent (same physical frame) plus ``margin_mm``; the whole of
    ``v`` when they do not overlap (registration will then fail with a clear message)."""
    corners = np.array(
        [[i, j, k] for i in (0, other.shape[0] - 1) for j in (0, other.shape[1] - 1) for k in (0, other.shape[2] - 1)],
        dtype=float,
    )
    idx = v.lps_to_index(other.index_to_lps(corners))
    pad = margin_mm / np.asarray(v.spacing_mm)
    lo = np.floor(idx.min(axis=0) - pad).astype(int)
    hi = np.ceil(idx.max(axis=0) + pad).astype(int) + 1
    lo = np.clip(lo, 0, np.asarray(v.shape))
    hi = np.clip(hi, 0, np.asarray(v.shape))
    if np.any(hi - lo < 2):
        return (slice(0, v.shape[0]), slice(0, v.shape[1]), slice(0, v.shape[2]))
    return (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(int(lo[2]), int(hi[2])))


def _coarsen(v: Volume, pitch_mm: float) -> Volume:
    """Smooth and subsample ``v`` to about ``pitch_mm`` along every axis finer than that (0 = unchanged)."""
    if pitch_mm <= 0:
        return v
    sp = np.asarray(v.spacing_mm)
    f = np.maximum(1, np.round(pitch_mm / sp)).astype(int)
    if np.all(f == 1):
        return v
    sm = _smooth(v, pitch_mm)
    shape = tuple(int(math.ceil(n / k)) for n, k in zip(v.shape, f, strict=True))
    origin = v.index_to_lps((f - 1) / 2.0)
    grid = Volume(np.zeros(shape, dtype=np.float32), tuple(sp * f), tuple(origin), v.axes_lps)
    return sm.resample_like(grid, linear=True)


def _smooth(v: Volume, pitch_mm: float) -> Volume:
    """Gaussian with sigma 0.5 * ``pitch_mm`` along axes finer than ``pitch_mm`` (0 = unchanged)."""
    if pitch_mm <= 0:
        return v
    sp = np.asarray(v.spacing_mm)
    sig = [0.5 * pitch_mm / p if p < pitch_mm else 0.0 for p in sp]
    return v.with_array(ndimage.gaussian_filter(np.asarray(v.array, dtype=np.float32), sig, mode="nearest"))
