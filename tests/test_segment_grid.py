"""The network's working grid (pipeline.segment.grid): canonical axes, fixed pitch, the way back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.segment.grid import make_working_grid
from pipeline.volume import Volume

# sagittal: slices left-right, rows head->feet (LPS -z), columns anterior->posterior (LPS +y)
CANONICAL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _volume(axes: np.ndarray, shape=(3, 120, 90), spacing=(4.0, 1.0, 1.0)) -> Volume:
    arr = np.zeros(shape, np.float32)
    arr[:, 10:30, 5:25] = 100.0  # a bright block near the first row / column of the canonical view
    return Volume(arr, spacing, (0.0, 0.0, 0.0), axes)


@pytest.mark.parametrize("kind", ["canonical", "flipped_rows", "transposed"])
def test_working_grid_is_canonical_at_the_pitch_and_maps_back(kind):
    vol = _volume(CANONICAL)
    if kind == "flipped_rows":
        axes = CANONICAL.copy()
        axes[1] = -axes[1]
        origin = np.asarray(vol.origin_lps) + (vol.shape[1] - 1) * CANONICAL[1]
        vol = Volume(vol.array[:, ::-1, :].copy(), vol.spacing_mm, tuple(origin), axes)
    elif kind == "transposed":
        vol = Volume(vol.array.transpose(0, 2, 1).copy(), (4.0, 1.0, 1.0), vol.origin_lps, CANONICAL[[0, 2, 1]])
    grid = make_working_grid(vol, 2.0)
    work = grid.image
    assert work.spacing_mm == (4.0, 2.0, 2.0)
    assert work.shape == (3, 60, 45)
    assert np.allclose(work.axes_lps, CANONICAL)
    # the block sits at the same place in patient space on both grids
    block = work.array > 50
    r, c = np.nonzero(block[1])
    assert 4 <= r.min() <= 6 and 13 <= r.max() <= 15 and 2 <= c.min() <= 3 and 11 <= c.max() <= 12
    back = grid.to_input(block.astype(np.float32), order=1) > 0.5
    assert back.shape == vol.shape
    truth = vol.array > 50
    assert (back & truth).sum() / truth.sum() > 0.9
    relabelled = grid.to_work(truth.astype(np.uint8), order=0) > 0
    assert (relabelled ^ block).sum() < 0.1 * block.sum()


def test_axial_series_is_refused():
    axial = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(InputError, match="needs a sagittal series"):
        make_working_grid(_volume(axial), 2.0)


def test_too_small_field_of_view_is_refused():
    with pytest.raises(InputError, match="too small"):
        make_working_grid(_volume(CANONICAL, shape=(3, 40, 40)), 2.0)


def test_to_input_of_a_window_equals_the_full_resampling_inside_it():
    vol = _volume(CANONICAL, shape=(2, 130, 110), spacing=(4.0, 0.8, 0.8))
    grid = make_working_grid(vol, 2.0)
    rng = np.random.default_rng(1)
    arr = rng.uniform(0, 1, grid.image.shape).astype(np.float32)
    window = (10, 30, 5, 25)
    full = grid.to_input(arr, order=1)
    part = grid.to_input(arr, order=1, window=window)
    # input rows / cols covered by the window: working 10..30 x 2.0 / 0.8
    inside = (slice(None), slice(25, 75), slice(13, 62))
    assert np.allclose(part[inside], full[inside], atol=1e-6)
    assert not part[:, :20, :].any() and not part[:, 80:, :].any()
