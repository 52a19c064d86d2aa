"""Training cases for the vertebral-body network: real scans with manual masks and rendered phantoms.

A :class:`TrainingCase` is one sagittal series on the network's working grid (:mod:`pipeline.segment.grid`)
with a per-voxel class target:

====  ===========================================================================================
  0   background
  1   vertebral body (thoracic / lumbar)
  2   intervertebral disc space (between two consecutive labelled bodies; derived, see below)
  3   S1 (the first sacral body; the anchor of the level count)
  4   a fractured vertebral body (phantoms, whose truth says which): trained as class 1, but its patches are
      drawn more often and its pixels (and the disc / background around them) weigh more in the loss, because
      fractured bodies are few and the network filled their depressed endplates and wedged corners
 255  ignored (not used by the loss): the column above the most cranial and below the most caudal
      labelled body, where the research masks leave real bodies unlabelled
====  ===========================================================================================

The real masks label bodies only. The disc class is derived: on each sagittal slice where two consecutive
bodies are both present, the convex hull of the pair minus the two bodies is the disc space between them.

No torch here: loading, targets and augmentation (:mod:`.augment`) are plain NumPy and tested without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image

from pipeline.levels import Level
from pipeline.segment.grid import make_working_grid
from pipeline.volume import Volume

logger = logging.getLogger(__name__)

BACKGROUND, BODY, DISC, S1 = 0, 1, 2, 3
FRACTURED = 4  # stored in targets only; the network's class is BODY (see the module docstring)
BONY = (BODY, S1, FRACTURED)  # target values of a vertebral body of any kind
IGNORE = 255
CLASS_NAMES = ("background", "vertebral_body", "disc", "s1")
# how far (mm) the ignored zone reaches in front of / behind the end bodies, plus a widening per mm of distance
_IGNORE_MARGIN_MM = 12.0
_IGNORE_SPREAD = 0.5


@dataclass(frozen=True, eq=False)
class TrainingCase:
    """One sagittal series on the working grid with its class target.

    Attributes
    ----------
    name : str
        ``set/case/contrast``, e.g. ``vb2/case_04/T2`` or ``phantom/0007/STIR``.
    subject : str
        Subject key for by-subject splits (all contrasts of one phantom share it).
    image : numpy.ndarray
        ``(slice, row, col)`` float32, raw intensities (normalised per slice at sampling time).
    target : numpy.ndarray
        ``(slice, row, col)`` uint8 classes (see module docstring).
    slice_mm : float
        Slice pitch (mm): thin-slice cases may be averaged into thicker slices by the augmentation.
    pitch_mm : float
        In-plane pitch of the working grid.
    bottom_level : str
        The most caudal labelled level.
    """

    name: str
    subject: str
    image: np.ndarray
    target: np.ndarray
    slice_mm: float
    pitch_mm: float
    bottom_level: str = ""  # the most caudal labelled level ("L5": S1 lies just below it, unlabelled)

    @property
    def body_slices(self) -> np.ndarray:
        """Indices of slices holding body or S1 voxels."""
        return np.flatnonzero(np.isin(self.target, BONY).any(axis=(1, 2)))

    @property
    def fractured_slices(self) -> np.ndarray:
        """Indices of slices holding voxels of a fractured body (phantoms only)."""
        return np.flatnonzero((self.target == FRACTURED).any(axis=(1, 2)))


def fold_of(subject: str, n_folds: int = 5) -> int:
    """Stable fold number of a subject (sha256 of its key): the same split on every machine and run."""
    return int(hashlib.sha256(subject.encode()).hexdigest(), 16) % n_folds


def build_target(labels: np.ndarray, levels: dict[int, Level], pitch_mm: float) -> np.ndarray:
    """Class target (uint8) from a body label map on the working grid.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(slice, row, col)`` integer label map, rows head -> feet, columns anterior -> posterior.
    levels : dict
        Label value -> level. Labels whose level is S1 become class 3, others class 1.
    pitch_mm : float
        In-plane pitch, for the ignored zone's margins.
    """
    target = np.zeros(labels.shape, dtype=np.uint8)
    present = [v for v in sorted(levels, key=lambda v: levels[v].ordinal) if np.any(labels == v)]
    if not present:
        return target
    for v in present:
        target[labels == v] = S1 if levels[v] is Level.S1 else BODY
    for upper, lower in zip(present[:-1], present[1:], strict=True):
        if levels[lower].ordinal - levels[upper].ordinal != 1:
            continue  # a missing label between them: the hull would span a whole body
        _paint_disc(target, labels == upper, labels == lower)
    top, bottom = present[0], present[-1]
    _paint_ignore(target, labels == top, pitch_mm, above=True)
    if levels[bottom] is not Level.S1:
        _paint_ignore(target, labels == bottom, pitch_mm, above=False)
    return target


def _paint_disc(target: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> None:
    both = np.flatnonzero(upper.any(axis=(1, 2)) & lower.any(axis=(1, 2)))
    for s in both:
        pair = upper[s] | lower[s]
        rows = np.flatnonzero(pair.any(axis=1))
        cols = np.flatnonzero(pair.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        hull = convex_hull_image(pair[r0:r1, c0:c1])
        disc = hull & ~pair[r0:r1, c0:c1]
        # keep the part connected to both bodies' facing endplates (not the concave waist of one body)
        disc = ndi.binary_opening(disc, iterations=1)
        sub = target[s, r0:r1, c0:c1]
        sub[disc & (sub == BACKGROUND)] = DISC


def _paint_ignore(target: np.ndarray, body: np.ndarray, pitch_mm: float, *, above: bool) -> None:
    """Ignore the column beyond an end body (cranial or caudal), in a cone widening with distance."""
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    cols = np.flatnonzero(body.any(axis=(0, 1)))
    if rows.size == 0:
        return
    n_rows, n_cols = target.shape[1:]
    edge = rows[0] if above else rows[-1]
    # the end body's own extent: its rows beyond its centre row are still "near" (ignore any unlabelled voxel
    # next to it only beyond its edge)
    r_range = range(0, edge) if above else range(edge + 1, n_rows)
    margin = _IGNORE_MARGIN_MM / pitch_mm
    for r in r_range:
        d = abs(r - edge)
        spread = margin + _IGNORE_SPREAD * d
        c0 = int(max(0, cols[0] - spread))
        c1 = int(min(n_cols, cols[-1] + 1 + spread))
        band = target[:, r, c0:c1]
        band[band == BACKGROUND] = IGNORE


def case_from_volume(
    name: str,
    subject: str,
    image: Volume,
    labels: np.ndarray,
    levels: dict[int, Level],
    pitch_mm: float,
    fractured: frozenset[int] = frozenset(),
) -> TrainingCase:
    """Put a series and its body label map (same grid) on the working grid and build its target.

    ``fractured``: label values of fractured bodies, stored as class 4 (:data:`FRACTURED`).
    """
    grid = make_working_grid(image, pitch_mm)
    work_labels = grid.to_work(labels.astype(np.uint16), order=0)
    target = build_target(work_labels, levels, pitch_mm)
    if fractured:
        target[np.isin(work_labels, sorted(fractured)) & (target == BODY)] = FRACTURED
    present = [lv for v, lv in levels.items() if np.any(work_labels == v)]
    bottom = max(present, key=lambda lv: lv.ordinal).value if present else ""
    return TrainingCase(name, subject, grid.image.array, target, grid.slice_mm, pitch_mm, bottom)


def load_realdata_case(folder: Path, pitch_mm: float) -> TrainingCase:
    """A case folder of ``realdata`` (``image.nii.gz``, ``labels.nii.gz``, ``levels.json``)."""
    import SimpleITK as sitk

    img = Volume.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
    lab = Volume.from_sitk(sitk.ReadImage(str(folder / "labels.nii.gz"))).array
    if lab.shape != img.shape:  # a few label files carry an extra empty slice at the end
        if lab[img.shape[0] :].any() or lab.shape[1:] != img.shape[1:]:
            raise ValueError(f"{folder}: labels {lab.shape} do not match image {img.shape}")
        lab = lab[: img.shape[0]]
    levels = {int(k): Level.parse(v) for k, v in json.loads((folder / "levels.json").read_text()).items()}
    set_name = folder.parent.name
    name = f"{set_name}/{folder.name}"
    return case_from_volume(f"{name}/T2", name, img.with_array(img.array.astype(np.float32)), lab, levels, pitch_mm)


def realdata_folders(root: Path, sets: Iterable[str]) -> list[Path]:
    """Case folders of the given sets (``vb1``, ``vb2``, ``vb3``) under ``root``, sorted."""
    out: list[Path] = []
    for s in sets:
        d = root / s
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: real-data set not found (expected {root}/{s}/case_*/image.nii.gz)")
        out += sorted(p for p in d.iterdir() if (p / "image.nii.gz").is_file())
    return out


def phantom_cases(
    seed: int, pitch_mm: float, contrasts: tuple[str, ...] = ("T1", "T2", "STIR")
) -> Iterator[TrainingCase]:
    """Render one varied phantom (:func:`pipeline.tools.phantom.variety.random_spec`); one case per contrast."""
    from pipeline.tools.phantom import render_phantom
    from pipeline.tools.phantom.variety import random_spec

    ph = render_phantom(random_spec(seed))
    subject = f"phantom/{seed:04d}"
    lab = ph.labels.array
    fractured = frozenset(int(v["label"]) for v in ph.truth["vertebrae"] if v.get("fractured"))
    for role in contrasts:
        vol = ph.series_volume(role)
        yield case_from_volume(f"{subject}/{role}", subject, vol, lab, dict(ph.levels), pitch_mm, fractured)


def add_pseudo_s1(case: TrainingCase, body_labels: np.ndarray, s1_body: int) -> TrainingCase:
    """The case with body ``s1_body`` of a predicted label map painted as S1 where the target was ignored.

    The research masks of ``vb2`` / ``vb3`` end at L5: the S1 just below it is a real body the loss ignored. A
    first model's prediction of that body (:func:`pipeline.segment.train.pseudo.pseudo_s1_body`) teaches the
    second one what S1 looks like on these scans; only the ignored zone is painted, never a manual label.
    """
    target = case.target.copy()
    s1 = (body_labels == s1_body) & (target == IGNORE)
    if not s1.any():
        return case
    target[s1] = S1
    l5 = target == BODY
    # the disc between L5 and the new S1, as for the manual pairs
    lab, n = ndi.label(l5)
    if n:
        sizes = ndi.sum(l5, lab, index=np.arange(1, n + 1))
        rows = ndi.center_of_mass(l5, lab, index=np.arange(1, n + 1))
        lowest = 1 + int(np.argmax([r[1] if sz > 0.2 * max(sizes) else -1 for r, sz in zip(rows, sizes, strict=True)]))
        pair_disc = np.zeros_like(target)
        _paint_disc(pair_disc, lab == lowest, s1)
        target[(pair_disc == DISC) & (target == IGNORE)] = DISC
    return dataclasses.replace(case, target=target)
