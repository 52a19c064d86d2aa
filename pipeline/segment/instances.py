"""From the network's probabilities to one mask per vertebral body (anatomy as constraints).

Steps, on the working grid:

1. **Bodies** are voxels where body + S1 probability exceeds 0.5. Body *cores* (probability high and disc
   probability low, eroded in-plane) seed a watershed on the probability, so two bodies touching across a thin
   or dark disc become two instances, and a crushed body with a weak fracture line stays one.
2. **One body per slot**: neighbouring instances that meet across most of their width with no disc between them
   are merged (a body split by a fracture line); instances too small or too thin to be a vertebral body, a
   second candidate at the same level and candidates off the column's line are dropped.
3. **Shape**: on every sagittal slice a body keeps its largest section and the holes in it are filled; its
   slices form one contiguous run (a left-right extent that does not jump).
4. **Sub-voxel boundary**: the body probability is interpolated linearly onto the input grid and cut at 0.5
   inside each body's (slightly expanded) territory, so heights are measured on a boundary finer than the
   network's pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, watershed

from pipeline.segment.config import SegmentationConfig

logger = logging.getLogger(__name__)

BODY, DISC, S1 = 1, 2, 3


@dataclass(frozen=True)
class BodyInstance:
    """One vertebral body found on the working grid.

    Attributes
    ----------
    label : int
        Value in the working label map (before ordering).
    centroid : tuple of float
        ``(slice, row, col)`` centroid on the working grid.
    volume_mm3, height_mm, depth_mm, width_mm : float
        Size: voxels x voxel volume; head-feet and anterior-posterior extent of the largest sagittal section;
        left-right extent (slices x slice pitch).
    s1_score : float
        Mean share of S1 in the body's probability (0: an ordinary body, 1: certainly S1).
    certainty : float
        Mean ``2 p - 1`` of the body probability ``p`` over its voxels (0..1): how sure the network is.
    mid_slice : int
        Slice of the largest sagittal section.
    """

    label: int
    centroid: tuple[float, float, float]
    volume_mm3: float
    height_mm: float
    depth_mm: float
    width_mm: float
    s1_score: float
    certainty: float
    mid_slice: int
    touches_edge: bool
    cut_below: bool = False  # reaches the lower (feet) edge of the image: what lies below is not seen


def find_bodies(
    prob: np.ndarray, spacing_mm: tuple[float, float, float], cfg: SegmentationConfig
) -> tuple[np.ndarray, list[BodyInstance]]:
    """Body instances from ``prob`` ``(slice, class, row, col)`` on the working grid.

    Returns
    -------
    labels : numpy.ndarray
        ``(slice, row, col)`` int32 working label map (0 background), one value per body, cranial -> caudal.
    bodies : list of BodyInstance
        In the same order (label ``i + 1`` is ``bodies[i]``).
    """
    fg = prob[:, BODY] + prob[:, S1]
    disc = prob[:, DISC]
    mask = fg > 0.5
    if not mask.any():
        return np.zeros(fg.shape, np.int32), []
    pitch = float(spacing_mm[1])
    erode_px = max(1, int(round(cfg.core_erosion_mm / pitch)))
    core = (fg > cfg.core_probability) & (disc < 0.2)
    core = ndi.binary_erosion(core, structure=_in_plane_cross(), iterations=erode_px)
    markers, n = ndi.label(core, structure=_in_plane_cross_3d())
    if n == 0:
        markers, n = ndi.label(mask)
    markers = _split_bridged_markers(markers)
    labels = watershed(-fg, markers, mask=mask).astype(np.int32)
    labels = _merge_across_non_disc(labels, fg, disc, cfg)
    labels = _shape_constraints(labels)
    bodies = _describe(labels, fg, prob[:, S1], spacing_mm)
    kept = [b for b in bodies if _plausible(b, cfg)]
    for b in bodies:
        if b not in kept:
            logger.debug(
                "dropped candidate body: volume %.0f mm3, height %.0f mm, depth %.0f mm",
                b.volume_mm3,
                b.height_mm,
                b.depth_mm,
            )
    kept = _one_column(kept, spacing_mm, cfg, lambda a, b: _stacked(labels, a, b))
    kept.sort(key=lambda b: b.centroid[1])  # cranial -> caudal (rows run head -> feet)
    out = np.zeros(labels.shape, np.int32)
    ordered: list[BodyInstance] = []
    for i, b in enumerate(kept, start=1):
        out[labels == b.label] = i
        ordered.append(dataclasses.replace(b, label=i))
    return out, ordered


def _in_plane_cross() -> np.ndarray:
    s = np.zeros((1, 3, 3), bool)
    s[0, 1, :] = s[0, :, 1] = True
    return s


def _in_plane_cross_3d() -> np.ndarray:
    return ndi.generate_binary_structure(3, 1)


def _split_bridged_markers(markers: np.ndarray) -> np.ndarray:
    """Split a 3-D core that joins two bodies through a bridge on some lateral slice.

    On a body's central slices the cores of two neighbouring bodies are apart (the disc lies between them); a
    thin or dark disc may let them touch on a lateral slice, which joins them into one 3-D component. Each core is
    split by the 2-D components of its central slices: every voxel goes to the nearest one in-plane.
    """
    out = np.zeros_like(markers)
    next_label = 1
    for lab, sl in enumerate(ndi.find_objects(markers), start=1):
        if sl is None:
            continue
        sub = markers[sl] == lab
        areas = sub.sum(axis=(1, 2))
        best: tuple[int, np.ndarray] = (1, np.zeros(sub.shape[1:], np.int32))
        for k in np.flatnonzero(areas >= 0.5 * areas.max()):
            comp, nc = ndi.label(sub[k])
            if nc < 2:
                continue
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            big = np.flatnonzero(sizes >= 0.15 * sizes.max())
            if len(big) > best[0]:
                relabelled = np.zeros_like(comp)
                for i, c in enumerate(big, start=1):
                    relabelled[comp == c] = i
                best = (len(big), relabelled)
        n_parts, parts = best
        view = out[sl]
        if n_parts < 2:
            view[sub] = next_label
            next_label += 1
            continue
        _, (ri, ci) = ndi.distance_transform_edt(parts == 0, return_indices=True)
        nearest = parts[ri, ci]
        for i in range(1, n_parts + 1):
            view[sub & (nearest[None] == i)] = next_label
            next_label += 1
    return out


def _merge_across_non_disc(labels: np.ndarray, fg: np.ndarray, disc: np.ndarray, cfg: SegmentationConfig) -> np.ndarray:
    """Merge two instances that meet across most of their width with no disc between them (one body split in two
    by a fracture line). Two bodies joined by a bridge at a thin disc's edge touch over a small part of their width
    only, a real junction carries disc probability, and two whole bodies together are taller than one
    (``merge_max_height_ratio`` x the median instance): none of these is merged."""
    n = int(labels.max())
    if n < 2:
        return labels
    # boundary voxel pairs along rows (head-feet), where two instances meet across an endplate or fracture line
    a, b = labels[:, :-1, :], labels[:, 1:, :]
    touch = (a > 0) & (b > 0) & (a != b)
    if not touch.any():
        return labels
    la, lb = a[touch], b[touch]
    dmax = np.maximum(disc[:, :-1, :][touch], disc[:, 1:, :][touch])
    # footprint of each instance: the (slice, col) columns it covers, i.e. its width x depth in voxels; and its
    # head-feet row span, so that two whole bodies (twice a body's height together) are never merged
    footprint = np.zeros(n + 1, np.int64)
    span = np.zeros((n + 1, 2), np.int64)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None:
            footprint[lab] = int((labels[sl] == lab).any(axis=1).sum())
            span[lab] = (sl[1].start, sl[1].stop)
    present = footprint[1:] > 0
    med_rows = float(np.median((span[1:, 1] - span[1:, 0])[present])) if present.any() else 0.0
    parent = np.arange(n + 1)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs: dict[tuple[int, int], list[float]] = {}
    for x, y, d in zip(la.tolist(), lb.tolist(), dmax.tolist(), strict=True):
        pairs.setdefault((min(x, y), max(x, y)), []).append(d)
    for (x, y), ds in pairs.items():
        contact = len(ds) / max(1, min(footprint[x], footprint[y]))
        disc_share = float(np.mean(np.asarray(ds) > 0.3))
        merged_rows = max(span[x, 1], span[y, 1]) - min(span[x, 0], span[y, 0])
        if (
            contact >= cfg.merge_min_contact
            and disc_share < cfg.merge_max_disc_share
            and merged_rows <= cfg.merge_max_height_ratio * med_rows
        ):
            parent[find(y)] = find(x)
    roots = np.array([find(i) for i in range(n + 1)])
    return roots[labels]


def _shape_constraints(labels: np.ndarray) -> np.ndarray:
    """Largest section per slice, holes filled, one contiguous run of slices per body."""
    out = np.zeros_like(labels)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = labels[sl] == lab
        areas = sub.sum(axis=(1, 2))
        keep_slices = _main_run(areas)
        for k in range(sub.shape[0]):
            if not keep_slices[k]:
                sub[k] = False
                continue
            comp, nc = ndi.label(sub[k])
            if nc > 1:
                sizes = np.bincount(comp.ravel())
                sizes[0] = 0
                sub[k] = comp == int(np.argmax(sizes))
            sub[k] = ndi.binary_fill_holes(sub[k])
        view = out[sl]
        view[sub & (view == 0)] = lab
    return out


def _main_run(areas: np.ndarray) -> np.ndarray:
    """Slices of the contiguous run holding the largest section (a body does not skip slices)."""
    present = areas > 0
    if not present.any():
        return present
    peak = int(np.argmax(areas))
    lo = peak
    while lo > 0 and present[lo - 1]:
        lo -= 1
    hi = peak
    while hi < len(areas) - 1 and present[hi + 1]:
        hi += 1
    keep = np.zeros_like(present)
    keep[lo : hi + 1] = True
    return keep


def _describe(
    labels: np.ndarray, fg: np.ndarray, s1: np.ndarray, spacing_mm: tuple[float, float, float]
) -> list[BodyInstance]:
    sp = np.asarray(spacing_mm, dtype=float)
    out: list[BodyInstance] = []
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = labels[sl] == lab
        count = int(sub.sum())
        if count == 0:
            continue
        com = np.array(ndi.center_of_mass(sub)) + np.array([s.start for s in sl])
        areas = sub.sum(axis=(1, 2))
        k = int(np.argmax(areas))
        sec = sub[k]
        rows = np.flatnonzero(sec.any(axis=1))
        cols = np.flatnonzero(sec.any(axis=0))
        p = fg[sl][sub]
        share = s1[sl][sub] / np.maximum(p, 1e-6)
        cut_below = sl[1].stop >= labels.shape[1] - 1
        edge = sl[1].start == 0 or cut_below or sl[2].start == 0 or sl[2].stop == labels.shape[2]
        out.append(
            BodyInstance(
                label=lab,
                centroid=(float(com[0]), float(com[1]), float(com[2])),
                volume_mm3=count * float(np.prod(sp)),
                height_mm=float((rows[-1] - rows[0] + 1) * sp[1]),
                depth_mm=float((cols[-1] - cols[0] + 1) * sp[2]),
                width_mm=float(np.count_nonzero(areas) * sp[0]),
                s1_score=float(np.clip(np.mean(share), 0.0, 1.0)),
                certainty=float(np.clip(np.mean(2.0 * p - 1.0), 0.0, 1.0)),
                mid_slice=k + sl[0].start,
                touches_edge=bool(edge),
                cut_below=bool(cut_below),
            )
        )
    return out


def _one_column(
    bodies: list[BodyInstance],
    spacing_mm: tuple[float, float, float],
    cfg: SegmentationConfig,
    stacked: Callable[[int, int], bool],
) -> list[BodyInstance]:
    """The bodies of one column: one body per level, none far off the column's line.

    Two candidates side by side at the same head-feet level (rows overlapping by more than half the smaller) cannot
    both be vertebral bodies, unless ``stacked(a, b)`` says one lies above the other: the more convincing one
    (volume x certainty) is kept. A candidate whose centre lies more than ``column_max_offset_mm`` in front of or
    behind the line through its neighbours' centres is not part of the column (bowel, pelvic bone, a posterior
    element) and is dropped.
    """
    if len(bodies) < 2:
        return bodies
    sp = np.asarray(spacing_mm, dtype=float)
    ordered = sorted(bodies, key=lambda b: -b.volume_mm3 * max(b.certainty, 0.05))
    kept: list[BodyInstance] = []
    for b in ordered:
        r_lo, r_hi = b.centroid[1] - 0.5 * b.height_mm / sp[1], b.centroid[1] + 0.5 * b.height_mm / sp[1]
        clash = False
        for k in kept:
            k_lo, k_hi = k.centroid[1] - 0.5 * k.height_mm / sp[1], k.centroid[1] + 0.5 * k.height_mm / sp[1]
            overlap = min(r_hi, k_hi) - max(r_lo, k_lo)
            # one above the other (a vertebra plana under a neighbour whose head-feet extent is inflated by its
            # tilt), not two rivals at one level
            if overlap > 0.5 * min(r_hi - r_lo, k_hi - k_lo) and not stacked(b.label, k.label):
                clash = True
                break
        if not clash:
            kept.append(b)
    kept.sort(key=lambda b: b.centroid[1])
    if len(kept) < 3:
        return kept
    out = []
    rows = np.array([b.centroid[1] for b in kept]) * sp[1]
    cols = np.array([b.centroid[2] for b in kept]) * sp[2]
    for i, b in enumerate(kept):
        others = [j for j in range(len(kept)) if j != i]
        near = sorted(others, key=lambda j: abs(rows[j] - rows[i]))[:2]
        if len(near) < 2:
            out.append(b)
            continue
        lo, hi = sorted(near, key=lambda n: rows[n])
        if rows[hi] != rows[lo]:
            expected = cols[lo] + (cols[hi] - cols[lo]) * (rows[i] - rows[lo]) / (rows[hi] - rows[lo])
        else:
            expected = 0.5 * (cols[lo] + cols[hi])
        # beyond the end of the column the line is extrapolated (the lordosis bends it): allow more
        limit = cfg.column_max_offset_mm * (1.0 if rows[lo] < rows[i] < rows[hi] else 1.5)
        if abs(cols[i] - expected) <= limit:
            out.append(b)
        else:
            logger.debug("dropped a candidate %.0f mm off the column's line", abs(cols[i] - expected))
    return out


def _stacked(labels: np.ndarray, a: int, b: int) -> bool:
    """Whether instances ``a`` and ``b`` lie one above the other (not side by side).

    Stacked: they share at least half the smaller one's footprint (its sagittal slice x antero-posterior
    positions), and in nine in ten of the shared positions one lies wholly above the other. Two stacked instances
    that the merge step left apart are too tall together to be one body (``merge_max_height_ratio``): they are two
    levels, e.g. a vertebra plana under its neighbour. A piece beside a body (a lateral half, a pedicle) is not.
    """
    in_a, in_b = labels == a, labels == b
    fp_a, fp_b = in_a.any(axis=1), in_b.any(axis=1)
    shared = fp_a & fp_b
    n_shared = int(shared.sum())
    if n_shared == 0 or n_shared < 0.5 * min(int(fp_a.sum()), int(fp_b.sum())):
        return False
    # per (slice, column) position: each instance's highest and lowest row
    rows = np.arange(labels.shape[1])[None, :, None]
    top_a, top_b = np.where(in_a, rows, labels.shape[1]).min(axis=1), np.where(in_b, rows, labels.shape[1]).min(axis=1)
    low_a, low_b = np.where(in_a, rows, -1).max(axis=1), np.where(in_b, rows, -1).max(axis=1)
    above = int((shared & (low_a < top_b)).sum())
    below = int((shared & (low_b < top_a)).sum())
    return max(above, below) >= 0.9 * n_shared


def _plausible(b: BodyInstance, cfg: SegmentationConfig) -> bool:
    return (
        b.volume_mm3 >= cfg.min_volume_mm3
        and cfg.body_depth_mm[0] <= b.depth_mm <= cfg.body_depth_mm[1]
        and b.height_mm <= cfg.body_max_height_mm
        and b.height_mm >= cfg.body_min_height_mm
        and b.width_mm >= cfg.body_min_width_mm
    )


def gaps_mm(fg: np.ndarray, bodies: list[BodyInstance], spacing_mm: tuple[float, float, float]) -> list[float]:
    """Non-body length (mm) on the line between each pair of consecutive body centroids: the disc space.

    A missed body (a vertebra plana the network took for disc) shows as a gap about two discs long.
    """
    sp = np.asarray(spacing_mm, dtype=float)
    out: list[float] = []
    for a, b in zip(bodies[:-1], bodies[1:], strict=True):
        ca, cb = np.asarray(a.centroid), np.asarray(b.centroid)
        length = float(np.linalg.norm((cb - ca) * sp))
        n = max(2, int(length / 0.25))
        t = np.linspace(0.0, 1.0, n)
        pts = ca[:, None] + (cb - ca)[:, None] * t[None, :]
        vals = ndi.map_coordinates(fg, pts, order=1, mode="nearest")
        out.append(float(np.count_nonzero(vals < 0.5)) * length / n)
    return out


def labels_on_input(
    work_labels: np.ndarray,
    fg: np.ndarray,
    to_input: Callable[..., np.ndarray],
    expand_px: int = 2,
) -> np.ndarray:
    """Label map on the input grid with a sub-voxel boundary (see module docstring, step 4).

    ``to_input(array, order=...)`` maps a working-grid array onto the input grid (:meth:`WorkingGrid.to_input`).
    """
    territory = np.stack([expand_labels(work_labels[s], distance=expand_px) for s in range(work_labels.shape[0])])
    # the probability outside every body's territory cannot belong to a body: zero it before interpolating
    fg_t = np.where(territory > 0, fg, 0.0).astype(np.float32)
    rows = np.flatnonzero(territory.any(axis=(0, 2)))
    cols = np.flatnonzero(territory.any(axis=(0, 1)))
    if rows.size == 0:
        return to_input(np.zeros(work_labels.shape, np.uint16), order=0)
    window = (int(rows[0]) - 1, int(rows[-1]) + 2, int(cols[0]) - 1, int(cols[-1]) + 2)
    prob_in = to_input(fg_t, order=1, window=window)
    lab_in = to_input(territory.astype(np.uint16), order=0, window=window)
    out = np.where(prob_in > 0.5, lab_in, 0).astype(np.uint16)
    return out
