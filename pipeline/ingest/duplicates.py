"""Two images of one series at the same slice position: which one to keep.

A PACS that re-sends a corrected slice, a scanner that repeats one slice, or an export that holds the same
image under two SOP Instance UIDs leaves a series with a duplicate slice position; :func:`assess_stack`
refuses such a stack, so before this step one stray image made the whole series unusable (the study then
fell back to another series, or failed). Resolved here, before the stack is checked:

- **identical** duplicates (same pixel data, byte for byte) are dropped: one copy is kept;
- **conflicting** duplicates (different pixels) keep the **later acquisition** (AcquisitionDateTime /
  AcquisitionTime / ContentTime); when the times do not tell them apart, the image **most consistent with
  the rest of the series** (smallest mean absolute difference to its neighbouring slices) is kept.

Each drop becomes a warning (in the series record, then in ``report.json``). Only a few stray images are
resolved: when more than a third of the positions hold several images the series is two interleaved
acquisitions (several echoes or a repeated sequence in one series) and is left to :func:`assess_stack`,
which reports it. Multi-frame files are never split.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.ingest.attributes import InstanceHeader
from pipeline.ingest.geometry import SliceRef, direction_cosines
from pipeline.ingest.headers import _quiet
from pipeline.ingest.pixels import _dataset_with_pixels, _decode

logger = logging.getLogger(__name__)

MAX_DUPLICATED_FRACTION = 1.0 / 3.0


@dataclass(frozen=True)
class DuplicateResolution:
    """The images to keep (in the order given), the files dropped and one warning per dropped image."""

    kept: tuple[tuple[InstanceHeader, SliceRef], ...]
    dropped: tuple[InstanceHeader, ...]
    warnings: tuple[str, ...]


def resolve_duplicate_positions(
    members: Sequence[tuple[InstanceHeader, SliceRef]], *, duplicate_position_mm: float, where: str
) -> DuplicateResolution:
    """Drop all but one image at each duplicated slice position (see the module docstring).

    Parameters
    ----------
    members : sequence of (InstanceHeader, SliceRef)
        The images of one stack, any order.
    duplicate_position_mm : float
        Two slices closer than this along the normal are at the same position (``geometry`` config).
    where : str
        Names the series in warnings.
    """
    unchanged = DuplicateResolution(tuple(members), (), ())
    if len(members) < 2 or any(h.n_frames > 1 for h, _ in members):
        return unchanged
    if any(r.geometry.position_lps is None or r.geometry.orientation is None for _, r in members):
        return unchanged  # assess_stack names the slice without geometry
    try:
        row, col = direction_cosines(members[0][1].geometry.orientation)  # type: ignore[arg-type]
    except InputError:
        return unchanged
    normal = np.cross(row, col)
    along = [float(np.asarray(r.geometry.position_lps) @ normal) for _, r in members]
    order = sorted(range(len(members)), key=lambda i: along[i])
    clusters: list[list[int]] = [[order[0]]]
    for i in order[1:]:
        if along[i] - along[clusters[-1][-1]] <= duplicate_position_mm:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    duplicated = [c for c in clusters if len(c) > 1]
    if not duplicated or len(duplicated) > MAX_DUPLICATED_FRACTION * len(clusters):
        return unchanged
    drop: set[int] = set()
    warnings: list[str] = []
    for c_index, cluster in enumerate(clusters):
        if len(cluster) < 2:
            continue
        keep, why = _choose(members, cluster, clusters, c_index)
        for i in cluster:
            if i == keep:
                continue
            drop.add(i)
            text = (
                f"{where}: {members[i][0].path} is at the same slice position ({along[i]:.2f} mm) as "
                f"{members[keep][0].path}; {why}: the first was dropped"
            )
            logger.warning("%s", text)
            warnings.append(text)
    kept = tuple(m for i, m in enumerate(members) if i not in drop)
    return DuplicateResolution(kept, tuple(members[i][0] for i in sorted(drop)), tuple(warnings))


def _choose(
    members: Sequence[tuple[InstanceHeader, SliceRef]],
    cluster: list[int],
    clusters: list[list[int]],
    c_index: int,
) -> tuple[int, str]:
    """Index of the image to keep in ``cluster`` and why."""
    digests = {i: _pixel_digest(members[i][0]) for i in cluster}
    if None not in digests.values() and len(set(digests.values())) == 1:
        return min(cluster, key=lambda i: str(members[i][0].path)), "identical pixel data (a copy)"
    times = {i: members[i][0].acquired for i in cluster}
    if all(times.values()) and len(set(times.values())) == len(cluster):
        latest = max(cluster, key=lambda i: times[i])
        return latest, "different images; the later acquisition is kept"
    neighbours = [clusters[j][0] for j in (c_index - 1, c_index + 1) if 0 <= j < len(clusters)]
    scores = {i: _distance_to(members, i, neighbours) for i in cluster}
    if all(v is not None for v in scores.values()) and len(set(scores.values())) > 1:
        best = min(cluster, key=lambda i: scores[i])  # type: ignore[arg-type,return-value]
        return best, "different images acquired at the same time; the one consistent with its neighbours is kept"
    last = max(cluster, key=lambda i: (members[i][0].instance_number or 0, str(members[i][0].path)))
    return last, "different images that cannot be told apart; the one with the higher InstanceNumber is kept"


def _pixel_digest(header: InstanceHeader) -> str | None:
    try:
        with _quiet():
            ds = _dataset_with_pixels(header)
            value = ds[header.pixel.keyword].value if header.pixel else None
    except Exception:  # noqa: BLE001 - unreadable: not identical to anything; load_series reports it
        return None
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else None


def _pixels(header: InstanceHeader) -> np.ndarray | None:
    try:
        (arr,) = _decode(header, [None])
    except InputError:
        return None
    return arr.astype(np.float32)


def _distance_to(members: Sequence[tuple[InstanceHeader, SliceRef]], i: int, neighbours: Sequence[int]) -> float | None:
    mine = _pixels(members[i][0])
    if mine is None or not neighbours:
        return None
    out = []
    for j in neighbours:
        other = _pixels(members[j][0])
        if other is None or other.shape != mine.shape:
            return None
        out.append(float(np.mean(np.abs(mine - other))))
    return float(np.mean(out))
