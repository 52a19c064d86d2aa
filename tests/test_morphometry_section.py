"""The array helpers of ``pipeline.morphometry.section`` give exactly what the code they replaced gave (issue 18:
the speed-ups must not change a result, so equality here is to the bit, not approximate)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.morphometry.section import _fit_line, _median, _outer_crossings


def _crossings_one_line(poly: np.ndarray, a0: float, axis: int) -> np.ndarray:
    """The per-line loop body that _outer_crossings replaced (kept here as the reference)."""
    a = poly[:, axis] - a0
    b = poly[:, 1 - axis]
    a = np.where(a == 0.0, 1e-12, a)
    a0_, a1_ = a[:-1], a[1:]
    hit = (a0_ * a1_) < 0
    if not np.any(hit):
        return np.empty(0)
    t = a0_[hit] / (a0_[hit] - a1_[hit])
    return b[:-1][hit] + t * (b[1:][hit] - b[:-1][hit])


def _staircase() -> np.ndarray:
    """A closed pixel-staircase outline (0.5 mm steps: vertices fall exactly on many of the lines below) with a
    notch, so that some lines cross it four times."""
    rng = np.random.default_rng(3)
    t = np.linspace(0.0, 2 * np.pi, 160, endpoint=False)
    r = 14.0 + 2.0 * (np.abs(np.sin(t)) > 0.97) + rng.normal(0.0, 0.4, t.size)
    poly = np.round(np.column_stack([1.3 * r * np.cos(t), r * np.sin(t)]) * 2.0) / 2.0
    return np.vstack([poly, poly[:1]])


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize(
    "values",
    [np.linspace(-12.0, 12.0, 25), np.arange(-20.0, 20.5, 0.5), np.array([0.5]), np.array([30.0, -30.0, 3.0])],
    ids=["25 lines", "on vertices, some outside", "one line", "unsorted"],
)
def test_outer_crossings_equal_the_per_line_loop(values, axis):
    poly = _staircase()
    low, high, count = _outer_crossings(poly, values, axis)
    for k, c0 in enumerate(values):
        ref = _crossings_one_line(poly, float(c0), axis)
        assert count[k] == ref.size
        if ref.size:
            assert low[k] == ref.min() and high[k] == ref.max()
        else:
            assert low[k] == np.inf and high[k] == -np.inf


@pytest.mark.parametrize("n", [5, 6, 25])
def test_fit_line_is_polyfit_to_the_bit(n):
    rng = np.random.default_rng(n)
    x = np.sort(rng.uniform(-15.0, 15.0, n))
    y = 0.3 * x + 2.0 + rng.normal(0.0, 0.2, n)
    slope, intercept = np.polyfit(x, y, 1)
    assert _fit_line(x, y) == (slope, intercept)


@pytest.mark.parametrize("n", [1, 2, 7, 24])
def test_median_is_numpy_median_to_the_bit(n):
    x = np.random.default_rng(n).normal(0.0, 10.0, n)
    assert _median(x) == float(np.median(x))
