"""Phantoms shared by the phantom tests, rendered once per test session (cached)."""

from __future__ import annotations

from functools import cache

from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom import FractureSpec, Phantom, PhantomSpec, render_phantom

#: Three fracture types, both oedema patterns, one chronic fracture with retropulsion.
FRACTURES = (
    FractureSpec(Level.T12, Morphology.WEDGE, 35.0, edema=True, edema_pattern=EdemaPattern.BAND, edema_fraction=0.3),
    FractureSpec(
        Level.L2,
        Morphology.BICONCAVE,
        30.0,
        edema=True,
        edema_pattern=EdemaPattern.DIFFUSE,
        edema_fraction=0.5,
    ),
    FractureSpec(Level.L4, Morphology.CRUSH, 60.0, retropulsion_mm=3.0),
)


def tiny_spec(**kw: object) -> PhantomSpec:
    """A coarse, fast phantom (2 mm pixels, 7 slices) for plumbing tests."""
    base = dict(seed=7, rows=160, cols=160, pixel_spacing_mm=2.0, n_slices=7, axial_n_slices=4, axial_matrix=64)
    base.update(kw)
    return PhantomSpec(**base)  # type: ignore[arg-type]


@cache
def tiny_phantom() -> Phantom:
    return render_phantom(tiny_spec(fractures=(FRACTURES[0],), include_axial_t2=True, include_localizer=True))


@cache
def fracture_phantom() -> Phantom:
    """Default clinical grid (15 x 384 x 384, 0.85 mm) with the three fractures."""
    return render_phantom(PhantomSpec(seed=11, fractures=FRACTURES))
