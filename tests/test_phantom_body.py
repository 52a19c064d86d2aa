"""Vertebral body geometry: the rendered shape reproduces the requested heights exactly.

Heights are measured here by scanning the implicit body (the ``inside`` test the renderer uses) along lines
parallel to the body axis, independently of the height formulas used for the truth.
"""

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.model import Morphology
from pipeline.tools.phantom.body import HEIGHT_FRACTIONS, BodyDims, BodyShape, solve_deformation

LUMBAR = BodyDims(
    depth_mm=34.0, width_mm=48.0, hp_rim_mm=25.8, ha_rim_mm=25.8, concavity_sup_mm=0.8, concavity_inf_mm=0.7
)
THORACIC = BodyDims(
    depth_mm=28.0, width_mm=38.0, hp_rim_mm=21.5, ha_rim_mm=20.0, concavity_sup_mm=0.5, concavity_inf_mm=0.6
)


def scanned_height(shape: BodyShape, f: float, w: float = 0.0, step: float = 0.002) -> float:
    """Extent of the body along v on the line at AP fraction f (outer cortex to outer cortex)."""
    u = shape.u_at(f)
    v = np.arange(-40.0, 40.0, step)
    inside, *_ = shape.classify(np.full_like(v, u), v, np.full_like(v, w))
    hits = v[inside]
    return float(hits.max() - hits.min() + step)


def scanned_loss(shape: BodyShape) -> float:
    ref = scanned_height(BodyShape(shape.dims), HEIGHT_FRACTIONS["posterior"])
    return 100.0 * (1.0 - min(scanned_height(shape, f) for f in HEIGHT_FRACTIONS.values()) / ref)


@pytest.mark.parametrize("dims", [LUMBAR, THORACIC], ids=["lumbar", "thoracic"])
@pytest.mark.parametrize(
    ("kind", "loss"),
    [
        (Morphology.WEDGE, 22.0),
        (Morphology.WEDGE, 35.0),
        (Morphology.BICONCAVE, 27.0),
        (Morphology.BICONCAVE, 45.0),
        (Morphology.CRUSH, 30.0),
        (Morphology.CRUSH, 72.0),
        (Morphology.CRUSH, 85.0),
    ],
)
def test_requested_height_loss_is_reproduced(dims, kind, loss):
    shape = BodyShape(dims, solve_deformation(dims, kind, loss, 0.0))
    assert shape.height_loss_pct() == pytest.approx(loss, abs=1e-6)  # the solved geometry (formula)
    assert scanned_loss(shape) == pytest.approx(loss, abs=0.05)  # measured on the implicit shape
    for name, f in HEIGHT_FRACTIONS.items():
        assert scanned_height(shape, f) == pytest.approx(shape.heights()[name], abs=0.01)


def test_fracture_types_lose_height_where_they_should():
    wedge = BodyShape(LUMBAR, solve_deformation(LUMBAR, Morphology.WEDGE, 35.0, 0.0)).heights()
    bicon = BodyShape(LUMBAR, solve_deformation(LUMBAR, Morphology.BICONCAVE, 35.0, 0.0)).heights()
    crush = BodyShape(LUMBAR, solve_deformation(LUMBAR, Morphology.CRUSH, 35.0, 0.0)).heights()
    normal = BodyShape(LUMBAR).heights()
    assert wedge["posterior"] == pytest.approx(normal["posterior"], abs=1e-9)  # posterior wall kept
    assert wedge["anterior"] < wedge["middle"] < wedge["posterior"]
    assert bicon["anterior"] == pytest.approx(normal["anterior"], abs=1e-9)  # rims kept
    assert bicon["posterior"] == pytest.approx(normal["posterior"], abs=1e-9)
    assert bicon["middle"] < 0.7 * normal["middle"]
    for name in normal:  # uniform loss: every height drops by the same amount
        assert normal[name] - crush[name] == pytest.approx(normal["posterior"] - crush["posterior"], abs=1e-9)


def test_normal_bodies_have_small_physiological_loss():
    assert 0.0 <= BodyShape(LUMBAR).height_loss_pct() < 10.0
    assert 0.0 <= BodyShape(THORACIC).height_loss_pct() < 12.0


def test_loss_within_physiological_variation_is_refused():
    wedged = BodyDims(depth_mm=28.0, width_mm=38.0, hp_rim_mm=21.5, ha_rim_mm=18.0)  # ~15 % by shape alone
    assert BodyShape(wedged).height_loss_pct() > 12.0
    with pytest.raises(ConfigError, match="physiological"):
        solve_deformation(wedged, Morphology.WEDGE, 12.0, 0.0, where="test")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [Morphology.WEDGE, Morphology.CRUSH])
@pytest.mark.parametrize("retro", [1.5, 4.0])
def test_retropulsion_bulges_the_posterior_wall_by_the_requested_amount(retro, kind):
    shape = BodyShape(LUMBAR, solve_deformation(LUMBAR, kind, 60.0 if kind is Morphology.CRUSH else 30.0, retro))

    def reach(w: float) -> float:
        u = np.arange(-shape.D / 2 - 10.0, 0.0, 0.005)
        out = 0.0
        for v in np.arange(-13.0, 13.0, 0.1):
            inside, *_ = shape.classify(u, np.full_like(u, v), np.full_like(u, w))
            if inside.any():
                out = max(out, -u[inside].min() - shape.D / 2)
        return out

    assert reach(0.0) == pytest.approx(retro, abs=0.02)  # the truth's bulge_mm (mid-sagittal)
    assert retro * 0.8 < reach(3.0) < retro  # fades laterally
    assert reach(0.4 * LUMBAR.width_mm) < 0.35  # gone at the lateral edge of the wall


def test_cortex_surrounds_the_marrow():
    shape = BodyShape(LUMBAR)
    v = np.arange(-15.0, 15.0, 0.01)
    inside, d_in, *_ = shape.classify(np.zeros_like(v), v, np.zeros_like(v))
    cortex = inside & (d_in < LUMBAR.cortex_mm)
    # along the mid line the cortex is the two endplates, each cortex_mm thick
    assert cortex.sum() * 0.01 == pytest.approx(2 * LUMBAR.cortex_mm, abs=0.05)
