"""Height-loss morphometry on hand-drawn bodies whose answers are known.

Bodies are polygons drawn into small sagittal label volumes (area-coverage rasterisation, 8x8 sub-samples per
pixel) in their own frame (u anterior, v superior, mm) and then tilted into the image plane.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import polygon2mask

from pipeline.config import load_yaml
from pipeline.errors import ConfigError, InputError
from pipeline.levels import Level
from pipeline.model import Morphology, SegmentationResult, VertebraSeg
from pipeline.morphometry import MorphometryConfig, load_morphometry_config, measure_vertebrae
from pipeline.volume import Volume

CFG = MorphometryConfig()

# Sagittal axes: slice -> patient left, rows -> feet, cols -> posterior (the usual scanner layout) ...
AXES_STD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# ... and the opposite layout (rows -> head, cols -> anterior), which must give the same answers.
AXES_FLIP = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


# --------------------------------------------------------------------------- drawing helpers
def rectangle(depth: float, height: float) -> np.ndarray:
    d, h = depth / 2, height / 2
    return np.array([[-d, -h], [d, -h], [d, h], [-d, h]])


def trapezoid(depth: float, h_post: float, h_ant: float) -> np.ndarray:
    """Posterior wall h_post tall, anterior wall h_ant tall, endplates symmetric about v = 0."""
    d = depth / 2
    return np.array([[-d, -h_post / 2], [d, -h_ant / 2], [d, h_ant / 2], [-d, h_post / 2]])


def biconcave(depth: float, height: float, dip: float, n: int = 60) -> np.ndarray:
    """Both endplates sag by ``dip`` at mid-depth (parabolic): v_top(u) = h/2 - dip * (1 - (2u/depth)^2)."""
    u = np.linspace(-depth / 2, depth / 2, n)
    top = height / 2 - dip * (1.0 - (2.0 * u / depth) ** 2)
    return np.vstack([np.column_stack([u, -top]), np.column_stack([u[::-1], top[::-1]])])


def bulging(depth: float, height: float, bulge: float, half_span: float) -> np.ndarray:
    """Rectangle whose posterior wall bulges by ``bulge`` mm (triangular, over +-half_span mm of height)."""
    d, h = depth / 2, height / 2
    return np.array([[-d, -h], [d, -h], [d, h], [-d, h], [-d, half_span], [-d - bulge, 0.0], [-d, -half_span]])


class Scene:
    """A small sagittal volume into which bodies are drawn."""

    def __init__(self, shape=(7, 120, 100), spacing=(4.0, 0.8, 0.8), axes=AXES_STD, background=150.0):
        self.spacing = spacing
        self.axes = np.asarray(axes, dtype=float)
        self.labels = np.zeros(shape, np.uint16)
        self.t2 = np.full(shape, background, np.float32)
        self.segs: list[VertebraSeg] = []
        sup = np.array([self.axes[1] @ [0, 0, 1], self.axes[2] @ [0, 0, 1]])
        ant = np.array([self.axes[1] @ [0, -1, 0], self.axes[2] @ [0, -1, 0]])
        self.sup, self.ant = sup, ant

    def to_plane(self, uv: np.ndarray, centre_mm: tuple[float, float], tilt_deg: float) -> np.ndarray:
        """Body (u, v) mm -> (row_mm, col_mm); positive tilt turns the body's anterior side towards the head."""
        t = math.radians(tilt_deg)
        u_dir = math.cos(t) * self.ant + math.sin(t) * self.sup
        v_dir = -math.sin(t) * self.ant + math.cos(t) * self.sup
        return np.asarray(centre_mm) + uv[:, :1] * u_dir + uv[:, 1:] * v_dir

    def fill(self, poly_rc_mm: np.ndarray, slices, value: float | None = None, label: int | None = None):
        sr, sc = self.spacing[1:]
        f = 8
        _, n_r, n_c = self.labels.shape
        idx = poly_rc_mm / [sr, sc]
        mask = polygon2mask((n_r * f, n_c * f), (idx + 0.5) * f - 0.5)
        cover = mask.reshape(n_r, f, n_c, f).mean(axis=(1, 3)) > 0.5
        for s in slices:
            if label is not None:
                self.labels[s][cover] = label
            if value is not None:
                self.t2[s][cover] = value
        return cover

    def add_body(self, uv, centre_mm, tilt_deg=0.0, level=None, slices=None, is_sacrum=False, value=100.0):
        lab = len(self.segs) + 1
        slices = range(1, self.labels.shape[0] - 1) if slices is None else slices
        self.fill(self.to_plane(np.asarray(uv, float), centre_mm, tilt_deg), slices, value=value, label=lab)
        mid = self.labels.shape[0] // 2
        self.segs.append(
            VertebraSeg(lab, level, 1.0, (0.0, 0.0, 0.0), mid, (0, 0, 0, 1, 1, 1), 1.0, is_sacrum=is_sacrum)
        )
        return lab

    def volume(self, array=None) -> Volume:
        return Volume(self.labels if array is None else array, self.spacing, (10.0, -20.0, 30.0), self.axes)

    def seg(self) -> SegmentationResult:
        return SegmentationResult(self.volume(), tuple(self.segs), "1.2.3", False, "drawn")

    def measure(self, cfg=CFG, canal=False):
        t2 = self.volume(self.t2)
        return measure_vertebrae(t2, self.seg(), cfg=cfg, canal_image=t2 if canal else None)


def centre(scene: Scene) -> tuple[float, float]:
    """Near the middle of the plane, off the pixel lattice (no edge falls exactly between two pixels)."""
    _, n_r, n_c = scene.labels.shape
    return (n_r * scene.spacing[1] / 2 + 0.137, n_c * scene.spacing[2] / 2 + 0.071)


def angle_tol(spacing) -> float:
    """One pixel of height difference between chords 80 % of a 36 mm depth apart."""
    return math.degrees(math.atan2(max(spacing[1:]), 0.8 * 36.0))


SPACINGS = [(4.0, 0.6, 0.6), (3.5, 0.5, 0.9), (4.0, 1.0, 0.7)]
TILTS = [0.0, 17.0, -28.0]


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("tilt", TILTS)
def test_rectangle_heights_are_its_height(spacing, tilt):
    sc = Scene(shape=(5, int(80 / spacing[1]), int(80 / spacing[2])), spacing=spacing)
    sc.add_body(rectangle(36.0, 26.0), centre(sc), tilt, level=Level.L2)
    (m,) = sc.measure()
    assert m.assessable, m.reason
    tol = 0.7 * max(spacing[1:])  # label edges are quantised to +-0.5 pixel each
    assert m.heights.anterior_mm == pytest.approx(26.0, abs=tol)
    assert m.heights.middle_mm == pytest.approx(26.0, abs=tol)
    assert m.heights.posterior_mm == pytest.approx(26.0, abs=tol)
    assert m.ap_depth_mm == pytest.approx(36.0, abs=tol)
    assert abs(m.wedge_angle_deg) < angle_tol(spacing)
    assert m.height_loss_pct < 3.0 and m.genant_grade == 0 and m.morphology is Morphology.NORMAL
    assert "own posterior height" in m.reference_method and m.reference_labels == ()
    assert f"tilted {tilt:+.0f}" in m.reason.replace(".0 deg", " deg") or abs(_tilt(m.reason) - tilt) < 1.0


def _tilt(reason: str) -> float:
    return float(reason.split("tilted ")[1].split(" deg")[0])


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("tilt", TILTS)
def test_trapezoid_gives_heights_and_wedge_angle(spacing, tilt):
    sc = Scene(shape=(5, int(80 / spacing[1]), int(80 / spacing[2])), spacing=spacing)
    sc.add_body(trapezoid(36.0, 26.0, 16.0), centre(sc), tilt, level=Level.T12)
    (m,) = sc.measure()
    assert m.assessable, m.reason
    tol = 0.7 * max(spacing[1:])  # label edges are quantised to +-0.5 pixel each
    # Height varies linearly from 26 (posterior wall) to 16 (anterior wall); chords at 10 / 50 / 90 % of depth.
    assert m.heights.posterior_mm == pytest.approx(25.0, abs=tol)
    assert m.heights.middle_mm == pytest.approx(21.0, abs=tol)
    assert m.heights.anterior_mm == pytest.approx(17.0, abs=tol)
    assert m.wedge_angle_deg == pytest.approx(math.degrees(2 * math.atan(5.0 / 36.0)), abs=angle_tol(spacing))
    assert abs(_tilt(m.reason) - tilt) < 1.0
    assert m.morphology is Morphology.WEDGE
    assert m.ratios["ha_hp"] == pytest.approx(17.0 / 25.0, abs=0.02)
    assert m.height_loss_pct == pytest.approx(32.0, abs=2.0) and m.genant_grade == 2


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("tilt", [0.0, 22.0])
def test_biconcave_body(spacing, tilt):
    sc = Scene(shape=(5, int(80 / spacing[1]), int(80 / spacing[2])), spacing=spacing)
    sc.add_body(biconcave(36.0, 26.0, 4.0), centre(sc), tilt, level=Level.L1)
    (m,) = sc.measure()
    assert m.assessable, m.reason
    tol = 0.7 * max(spacing[1:])  # label edges are quantised to +-0.5 pixel each
    # The endplates sag by 4 mm * (1 - 0.8^2) = 1.44 mm at the 10 % chords and by 4 mm at mid-depth.
    assert m.heights.middle_mm == pytest.approx(18.0, abs=tol)
    assert m.heights.anterior_mm == pytest.approx(26.0 - 2 * 1.44, abs=tol)
    assert m.heights.posterior_mm == pytest.approx(26.0 - 2 * 1.44, abs=tol)
    assert abs(m.wedge_angle_deg) < angle_tol(spacing)
    assert m.morphology is Morphology.BICONCAVE
    assert m.height_loss_pct == pytest.approx(100 * (1 - 18.0 / 23.12), abs=2.0) and m.genant_grade == 1


def column(scene: Scene, heights, tilts, levels, disc=8.0, depth=36.0, shapes=None, **kw):
    """Bodies stacked head -> feet along a straight column through the volume centre."""
    c = np.asarray(centre(scene))
    total = sum(heights) + disc * (len(heights) - 1)
    top = c + scene.sup * total / 2
    pos = 0.0
    for i, (h, t, lv) in enumerate(zip(heights, tilts, levels, strict=True)):
        ctr = top - scene.sup * (pos + h / 2)
        shape = shapes[i] if shapes and shapes[i] is not None else rectangle(depth, h)
        scene.add_body(shape, tuple(ctr), t, level=lv, **kw)
        pos += h + disc
    return scene


LEVELS5 = (Level.T12, Level.L1, Level.L2, Level.L3, Level.L4)


@pytest.mark.parametrize("spacing", [(4.0, 0.7, 0.7), (3.0, 0.6, 1.0)])
def test_crushed_body_between_normal_neighbours(spacing):
    sc = Scene(shape=(5, int(200 / spacing[1]), int(90 / spacing[2])), spacing=spacing)
    # Lordotic-like tilts; the middle body has lost 40 % of the 26 mm its neighbours predict.
    column(sc, [24.0, 25.0, 15.6, 27.0, 28.0], [-12.0, -6.0, 0.0, 6.0, 12.0], LEVELS5)
    res = sc.measure()
    assert all(m.assessable for m in res), [m.reason for m in res]
    crushed = res[2]
    assert crushed.reference_labels == (2, 4)
    assert "interpolated" in crushed.reference_method and "L1" in crushed.reference_method
    assert crushed.reference_height_mm == pytest.approx(26.0, abs=0.5)
    assert crushed.height_loss_pct == pytest.approx(40.0, abs=2.5)
    assert crushed.genant_grade >= 2 and crushed.morphology is Morphology.CRUSH
    assert not crushed.used_as_reference
    for m in (res[0], res[1], res[3], res[4]):
        assert m.genant_grade == 0 and m.morphology is Morphology.NORMAL and m.used_as_reference
        assert 3 not in m.reference_labels
    # The top body has normal bodies on one side only: extrapolated with their level trend (25, 27, 28 mm).
    assert "extrapolated" in res[0].reference_method
    assert res[0].reference_height_mm == pytest.approx(24.0, abs=0.8)


def test_wedge_is_graded_against_its_neighbours_and_its_intact_hp_stays_a_reference():
    sc = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    shapes = [None, None, trapezoid(36.0, 26.0, 13.0), None, None]
    column(sc, [26.0, 26.0, 26.0, 26.0, 26.0], [0.0] * 5, LEVELS5, shapes=shapes)
    res = sc.measure()
    w = res[2]
    assert w.morphology is Morphology.WEDGE
    # Ha at 90 % of the depth: 13 + 0.1 * 13 = 14.3 mm against the neighbours' 26 mm.
    assert w.height_loss_pct == pytest.approx(100 * (1 - 14.3 / 26.0), abs=2.5) and w.genant_grade == 3
    assert w.reference_labels == (2, 4)
    # Its posterior wall is intact (Hp 24.7 mm at 10 % inside it, of the 26 mm predicted): a reference.
    assert w.used_as_reference and 3 in res[1].reference_labels and 3 in res[3].reference_labels


def posterior_wedge(depth: float, height: float, h_ant: float) -> np.ndarray:
    """Full height over the posterior half, the superior endplate falling to ``h_ant`` at the anterior wall."""
    d, h = depth / 2, height / 2
    return np.array([[-d, -h], [d, -h], [d, h_ant - h], [0.0, h], [-d, h]])


def test_crush_next_to_a_wedge_uses_the_wedges_intact_posterior_height():
    # T12 22 mm | L1 wedge (Hp 26, Ha 15.6) | L2 crushed to 15.6 | L3 26 mm | L4 22 mm. The nearest intact
    # posterior walls (L1, L3) predict 26 mm for L2 (40 % loss); skipping the wedge would predict 22-24 mm.
    sc = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    shapes = [None, posterior_wedge(36.0, 26.0, 13.0), None, None, None]
    column(sc, [22.0, 26.0, 15.6, 26.0, 22.0], [0.0] * 5, LEVELS5, shapes=shapes)
    res = sc.measure()
    assert res[1].morphology is Morphology.WEDGE and res[1].used_as_reference
    c = res[2]
    assert c.reference_labels == (2, 4) and "interpolated" in c.reference_method
    assert c.reference_height_mm == pytest.approx(26.0, abs=0.6)
    assert c.height_loss_pct == pytest.approx(40.0, abs=2.5) and c.morphology is Morphology.CRUSH
    assert not c.used_as_reference


def test_end_body_of_normal_shape_is_not_graded_against_an_extrapolation():
    # L5 physiologically lower posteriorly than L4: the one-sided prediction (L4's height) does not show a crush
    # (Hp >= crush_ratio_max of it), so the body's own Hp is the reference; a real crush at the end still shows.
    sc = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    levels = (Level.L1, Level.L2, Level.L3, Level.L4, Level.L5)
    column(sc, [26.0, 26.5, 27.0, 27.0, 24.0], [0.0] * 5, levels)
    end = sc.measure()[4]
    assert end.height_loss_pct < 2.0 and end.genant_grade == 0 and end.morphology is Morphology.NORMAL
    assert end.reference_method.startswith("own posterior height (normal shape") and end.reference_labels
    assert "one side only" in end.reason
    sc2 = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    column(sc2, [26.0, 26.5, 27.0, 27.0, 18.9], [0.0] * 5, levels)
    res = sc2.measure()
    crushed = res[4]
    assert "extrapolated" in crushed.reference_method
    # Growth is not extrapolated: the reference is L4's Hp (27 mm drawn, read to within a pixel).
    assert crushed.reference_height_mm == pytest.approx(res[3].heights.posterior_mm, abs=0.05)
    assert crushed.height_loss_pct == pytest.approx(30.0, abs=3.5) and crushed.morphology is Morphology.CRUSH


def test_intact_posterior_wall_taller_than_neighbours_is_the_reference():
    # A biconcave body (endplates sagging 5 mm): Hp = Ha = 26 - 2 * 0.36 * 5 = 22.4 mm, Hm = 16 mm.
    shapes = [None, None, biconcave(36.0, 26.0, 5.0), None, None]
    sc = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    column(sc, [24.0, 24.0, 26.0, 24.0, 24.0], [0.0] * 5, LEVELS5, shapes=shapes)
    m = sc.measure()[2]
    # Neighbours predict 24 mm, taller than its Hp: the prediction is the reference.
    assert m.reference_height_mm == pytest.approx(24.0, abs=0.5) and "interpolated" in m.reference_method
    assert m.height_loss_pct == pytest.approx(100 * (1 - 16.0 / 24.0), abs=2.5)
    sc2 = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    column(sc2, [20.0, 20.0, 26.0, 20.0, 20.0], [0.0] * 5, LEVELS5, shapes=shapes)
    m2 = sc2.measure()[2]
    # Neighbours predict 20 mm but the intact posterior wall is 22.4 mm: the body was at least that tall.
    assert m2.reference_height_mm == pytest.approx(22.4, abs=0.5)
    assert m2.reference_method.startswith("own posterior height, taller than the 2")
    assert m2.reference_labels == (2, 4)
    assert m2.ratios["hp_ref"] == pytest.approx(22.4 / 20.0, abs=0.04)  # the crush ratio uses the prediction
    assert m2.morphology is Morphology.BICONCAVE
    assert m2.height_loss_pct == pytest.approx(100 * (1 - 16.0 / 22.4), abs=2.5)


# --------------------------------------------------------------------------- not assessable
def test_sacrum_is_not_assessable():
    sc = Scene(shape=(5, 150, 100))
    column(sc, [26.0, 30.0], [0.0, 0.0], (Level.L5, Level.S1))
    sc.segs[1] = replace(sc.segs[1], is_sacrum=True)
    l5, s1 = sc.measure()
    assert l5.assessable
    assert not s1.assessable and s1.reason == "sacrum: not a morphometry target"
    assert s1.genant_grade is None and s1.height_loss_pct is None and s1.morphology is Morphology.NOT_ASSESSABLE
    assert not s1.posterior_wall.assessable


def test_body_cut_by_the_field_of_view_is_not_assessable():
    sc = Scene(shape=(5, 100, 100), spacing=(4.0, 0.8, 0.8))
    c = centre(sc)
    sc.add_body(rectangle(36.0, 26.0), (c[0] - 30.0, c[1]), 0.0, level=Level.T11)  # runs off the top row
    (m,) = sc.measure()
    assert not m.assessable and "field of view" in m.reason and "first row" in m.reason
    assert m.genant_grade is None and m.heights is None


def test_body_on_the_last_slice_is_not_assessable():
    sc = Scene(shape=(5, 100, 100))
    sc.add_body(rectangle(36.0, 26.0), centre(sc), 0.0, level=Level.L1, slices=[3, 4])
    sc.segs[0] = replace(sc.segs[0], mid_slice=4)
    sc.labels[3][sc.labels[3] > 0] = 0
    sc.labels[3][40:50, 40:50] = 1  # a small off-centre part on the neighbouring slice
    (m,) = sc.measure()
    assert not m.assessable and "last slice" in m.reason


def test_slices_that_disagree_make_the_body_not_assessable():
    sc = Scene(shape=(5, 100, 100))
    c = centre(sc)
    sc.add_body(rectangle(36.0, 26.0), c, 0.0, level=Level.L1, slices=[2])
    sc.fill(sc.to_plane(rectangle(36.0, 18.5), c, 0.0), [1, 3], label=1)  # 71 % of the area, 29 % lower
    (m,) = sc.measure()
    assert not m.assessable and "slices disagree" in m.reason


def test_missing_label_and_non_sagittal_image():
    sc = Scene(shape=(5, 100, 100))
    sc.add_body(rectangle(36.0, 26.0), centre(sc), 0.0, level=Level.L1)
    sc.segs.append(VertebraSeg(7, Level.L2, 1.0, (0.0, 0.0, 0.0), 2, (0, 0, 0, 1, 1, 1), 1.0))
    res = sc.measure()
    assert res[0].assessable and not res[1].assessable and "not present" in res[1].reason

    axial = Scene(shape=(5, 100, 100), axes=[[0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0]])
    axial.add_body(rectangle(36.0, 26.0), centre(axial), 0.0, level=Level.L1)
    (m,) = axial.measure()
    assert not m.assessable and "not sagittal" in m.reason


def test_label_map_on_another_grid_is_rejected():
    sc = Scene(shape=(5, 100, 100))
    sc.add_body(rectangle(36.0, 26.0), centre(sc), 0.0, level=Level.L1)
    other = Volume(np.zeros((5, 90, 100), np.float32), sc.spacing, (10.0, -20.0, 30.0), sc.axes)
    with pytest.raises(InputError, match="does not match the image grid"):
        measure_vertebrae(other, sc.seg(), cfg=CFG)


# --------------------------------------------------------------------------- orientation and landmarks
def test_flipped_axes_give_the_same_heights_and_landmarks_in_patient_space():
    results = []
    for axes in (AXES_STD, AXES_FLIP):
        sc = Scene(shape=(5, 100, 100), spacing=(4.0, 0.7, 0.7), axes=axes)
        sc.add_body(trapezoid(36.0, 26.0, 18.0), centre(sc), 10.0, level=Level.L1)
        (m,) = sc.measure()
        results.append(m)
    a, b = results
    for name in ("anterior_mm", "middle_mm", "posterior_mm"):
        assert getattr(a.heights, name) == pytest.approx(getattr(b.heights, name), abs=0.7 * 0.7)  # quantisation
    assert a.wedge_angle_deg == pytest.approx(b.wedge_angle_deg, abs=0.5) and a.wedge_angle_deg > 5
    for m in results:
        lm = {k: np.asarray(v) for k, v in m.landmarks_lps.items()}
        assert set(lm) >= {f"{p}_{e}" for p in ("anterior", "middle", "posterior") for e in ("superior", "inferior")}
        # Anterior is -y (LPS), superior is +z; heights are the landmark distances.
        assert lm["anterior_superior"][1] < lm["posterior_superior"][1]
        assert lm["anterior_superior"][2] > lm["anterior_inferior"][2]
        assert np.linalg.norm(lm["anterior_superior"] - lm["anterior_inferior"]) == pytest.approx(
            m.heights.anterior_mm, abs=0.05
        )


# --------------------------------------------------------------------------- posterior wall and canal
def canal_scene(
    bulge_mm: float, spacing=(4.0, 0.6, 0.6), tilt=0.0, cord=False, marrow=100.0, behind=40.0, cord_value=95.0
) -> Scene:
    """Three bodies (``marrow``); a 15 mm canal behind them (bright CSF 400, optionally a cord of ``cord_value``
    inside), ligament/bone of ``behind`` behind that."""
    sc = Scene(shape=(5, int(150 / spacing[1]), int(110 / spacing[2])), spacing=spacing, background=150.0)
    c = np.asarray(centre(sc))
    # Canal: a band from the posterior wall line (u = -18) back to u = -33, and dark tissue further back.
    sc.fill(
        sc.to_plane(np.array([[-33.0, -75], [-18.0, -75], [-18.0, 75], [-33.0, 75]]), c, tilt), range(5), value=400.0
    )
    sc.fill(
        sc.to_plane(np.array([[-60.0, -75], [-33.0, -75], [-33.0, 75], [-60.0, 75]]), c, tilt), range(5), value=behind
    )
    if cord:
        sc.fill(
            sc.to_plane(np.array([[-29.0, -75], [-22.0, -75], [-22.0, 75], [-29.0, 75]]), c, tilt),
            range(5),
            value=cord_value,
        )
    shapes = [None, bulging(36.0, 26.0, bulge_mm, 10.0) if bulge_mm > 0 else None, None]
    for i, dv in enumerate((34.0, 0.0, -34.0)):
        uv = rectangle(36.0, 26.0) if shapes[i] is None else shapes[i]
        sc.add_body(uv + [0.0, dv], tuple(c), tilt, level=(Level.L1, Level.L2, Level.L3)[i], value=marrow)
    return sc


@pytest.mark.parametrize(("spacing", "tilt", "cord"), [((4.0, 0.6, 0.6), 0.0, False), ((3.0, 0.5, 0.8), 12.0, True)])
def test_posterior_wall_bulge_and_canal_compromise(spacing, tilt, cord):
    res = canal_scene(4.0, spacing, tilt, cord).measure(canal=True)
    pw = res[1].posterior_wall
    assert pw.assessable, pw.reason
    assert pw.bulge_mm == pytest.approx(4.0, abs=0.4)
    assert pw.expected_canal_mm == pytest.approx(15.0, abs=0.6)
    assert pw.canal_compromise_pct == pytest.approx(100 * 4.0 / 15.0, abs=3.0)
    assert "L1, L3" in pw.reason
    assert "posterior_wall_apex" in res[1].landmarks_lps
    # The straight walls of the neighbours do not bulge.
    assert res[0].posterior_wall.bulge_mm == pytest.approx(0.0, abs=0.5 * max(spacing[1:]))


@pytest.mark.parametrize(
    ("marrow", "behind", "cord_value"),
    [
        (300.0, 160.0, 200.0),  # T2: bright marrow; ligament and lamina not much darker than the cord
        (40.0, 70.0, 150.0),  # STIR: suppressed marrow darker than the ligament behind the canal
    ],
)
def test_canal_ends_at_the_ligament_on_t2_and_stir_contrast(marrow, behind, cord_value):
    res = canal_scene(4.0, (3.0, 0.5, 0.8), 12.0, True, marrow, behind, cord_value).measure(canal=True)
    pw = res[1].posterior_wall
    assert pw.assessable, pw.reason
    assert pw.expected_canal_mm == pytest.approx(15.0, abs=0.6)
    assert pw.canal_compromise_pct == pytest.approx(100 * 4.0 / 15.0, abs=3.0)


def test_without_a_fluid_image_canal_compromise_is_not_assessable_never_zero():
    res = canal_scene(4.0).measure(canal=False)
    pw = res[1].posterior_wall
    assert not pw.assessable and pw.canal_compromise_pct is None and "no T2" in pw.reason
    assert pw.bulge_mm == pytest.approx(4.0, abs=0.4)


def test_canal_image_without_csf_is_not_assessable():
    sc = canal_scene(4.0)
    sc.t2[:] = 150.0
    res = sc.measure(canal=True)
    pw = res[1].posterior_wall
    assert not pw.assessable and pw.canal_compromise_pct is None and "no CSF signal" in pw.reason


# --------------------------------------------------------------------------- configuration
def test_repository_config_loads_and_cites_every_clinical_threshold(repo_root: Path):
    cfg = load_morphometry_config(repo_root / "configs" / "morphometry.yaml")
    assert (cfg.genant_mild_pct, cfg.genant_moderate_pct, cfg.genant_severe_pct) == (20.0, 25.0, 40.0)
    sources = load_yaml(repo_root / "configs" / "morphometry.yaml")["morphometry"]["sources"]
    assert "Genant" in sources["genant_mild_pct"] and "Eastell" in sources["wedge_ratio_max"]


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"genant_mild_pct": 30.0}, r"morphometry: Genant cut-offs must increase"),
        ({"wedge_ratio_max": 1.5}, r"morphometry: wedge_ratio_max: must be in \[0.0, 1.0\], got 1.5"),
        ({"height_inset": 0.1}, r"morphometry: unknown field 'height_inset'"),
        ({"max_reference_gap_levels": 2.5}, r"max_reference_gap_levels: must be an integer"),
        ({"spread_low_confidence_pct": 30.0}, r"spread_low_confidence_pct must not exceed"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, repo_root: Path, section, match):
    data = load_yaml(repo_root / "configs" / "morphometry.yaml")
    data["morphometry"].update(section)
    import yaml

    p = tmp_path / "morphometry.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match):
        load_morphometry_config(p)


def test_clinical_threshold_without_source_is_rejected(tmp_path: Path):
    p = tmp_path / "m.yaml"
    p.write_text("morphometry:\n  genant_mild_pct: 20\n  sources: {}\n")
    with pytest.raises(ConfigError, match=r"m.yaml: morphometry: clinical threshold 'genant_mild_pct' has no source"):
        load_morphometry_config(p)


# --------------------------------------------------------------------------- rendered phantoms (truth labels)
def _phantom_seg(ph) -> SegmentationResult:
    """The phantom's truth label map as a segmentation (mid slice = centroid slice)."""
    from scipy import ndimage

    arr = np.asarray(ph.labels.array)
    segs = []
    for lab, level in sorted(ph.levels.items()):
        com = ndimage.center_of_mass(arr == lab)
        segs.append(
            VertebraSeg(
                lab,
                level,
                1.0,
                (0.0, 0.0, 0.0),
                int(round(com[0])),
                (0, 0, 0, 1, 1, 1),
                1.0,
                is_sacrum=level is Level.S1,
            )
        )
    return SegmentationResult(ph.labels, tuple(segs), "phantom", True, "truth")


def _truth(ph) -> dict[Level, dict]:
    return {Level(v["level"]): v for v in ph.truth["vertebrae"]}


@pytest.mark.slow
def test_small_phantom_fractures_match_truth():
    from pipeline.tools.phantom import FractureSpec, PhantomSpec, render_phantom

    ph = render_phantom(
        PhantomSpec.small(
            seed=5,
            fractures=(
                FractureSpec(Level.L1, Morphology.WEDGE, 33.0),
                FractureSpec(Level.L3, Morphology.CRUSH, 55.0),
            ),
        )
    )
    res = {m.level: m for m in measure_vertebrae(ph.t2, _phantom_seg(ph), cfg=CFG, canal_image=ph.t2)}
    truth = _truth(ph)
    assert not res[Level.S1].assessable and "sacrum" in res[Level.S1].reason
    for level in (Level.L1, Level.L3):  # 1.7 mm pixels: a few points of quantisation
        m, t = res[level], truth[level]
        assert m.height_loss_pct == pytest.approx(t["height_loss_pct"], abs=4.0)
        assert m.genant_grade == t["genant_grade"] and m.morphology.value == t["morphology"]
    assert res[Level.L3].reference_labels and "interpolated" in res[Level.L3].reference_method
    normal = [m for lv, m in res.items() if truth[lv]["morphology"] == "normal" and lv is not Level.S1]
    assert normal and all(m.genant_grade == 0 and m.morphology is Morphology.NORMAL for m in normal)


@pytest.mark.slow
def test_clinical_grid_phantom_heights_bulge_and_canal():
    from phantom_cases import fracture_phantom

    ph = fracture_phantom()  # 0.85 mm pixels: T12 wedge 35 %, L2 biconcave 30 %, L4 crush 60 % + 3 mm retropulsion
    res = {m.level: m for m in measure_vertebrae(ph.t2, _phantom_seg(ph), cfg=CFG, canal_image=ph.t2)}
    truth = _truth(ph)
    for level in (Level.T12, Level.L2, Level.L4):
        m, t = res[level], truth[level]
        # a few points: the band-averaged middle chord reads a pointed central depression slightly high
        assert m.height_loss_pct == pytest.approx(t["height_loss_pct"], abs=4.5), level
        assert m.genant_grade == t["genant_grade"] and m.morphology.value == t["morphology"], level
        for key in ("anterior", "middle", "posterior"):
            assert getattr(m.heights, f"{key}_mm") == pytest.approx(t["heights_mm"][key], abs=1.0), (level, key)
    pw, tw = res[Level.L4].posterior_wall, truth[Level.L4]["posterior_wall"]
    assert pw.assessable, pw.reason
    assert pw.bulge_mm == pytest.approx(tw["bulge_mm"], abs=1.2)
    assert pw.expected_canal_mm == pytest.approx(tw["expected_canal_mm"], abs=1.5)
    assert res[Level.L1].posterior_wall.bulge_mm < 1.0


# --------------------------------------------------------------------------- plausibility of the masks
@pytest.mark.slow
def test_body_spanning_a_disc_is_not_assessable_and_no_reference():
    # A 60 mm "body" (two bodies merged across their disc) between 26 mm bodies 8 mm apart: its centre lies
    # 13 + 8 + 30 = 51 mm from its neighbours' centres, less than its height.
    sc = Scene(shape=(5, 300, 120), spacing=(4.0, 0.8, 0.8))
    column(sc, [26.0, 26.0, 60.0, 26.0, 26.0], [0.0] * 5, LEVELS5)
    res = sc.measure()
    merged = res[2]
    assert not merged.assessable and "spans a disc" in merged.reason and "ratio 1.18" in merged.reason
    assert merged.genant_grade is None and merged.morphology is Morphology.NOT_ASSESSABLE
    for m in (res[1], res[3]):
        assert m.assessable and 3 not in m.reference_labels and m.genant_grade == 0


@pytest.mark.slow
def test_over_tall_neighbour_is_no_reference():
    # L3 34 mm: 36 mm on average from its neighbours' centres (ratio 0.94 > 0.9, but room for a disc). The
    # crushed L2 (18 mm) is graded against T12-L1 and L4 (26 mm: 30.8 % loss), not against L3 (30 mm: 40 %).
    sc = Scene(shape=(5, 300, 120), spacing=(4.0, 0.8, 0.8))
    column(sc, [26.0, 26.0, 18.0, 34.0, 26.0], [0.0] * 5, LEVELS5)
    res = sc.measure()
    tall, crushed = res[3], res[2]
    assert tall.assessable and not tall.used_as_reference and tall.low_confidence
    assert any("not used as a reference" in n for n in tall.reliability_notes) and "centre spacing" in tall.reason
    assert crushed.reference_labels == (2, 5)
    assert crushed.height_loss_pct == pytest.approx(100 * (1 - 18.0 / 26.0), abs=2.5) and crushed.genant_grade == 2


def test_low_segmentation_quality_gives_low_confidence_and_no_reference():
    sc = Scene(shape=(5, 260, 120), spacing=(4.0, 0.8, 0.8))
    column(sc, [26.0] * 5, [0.0] * 5, LEVELS5)
    sc.segs[1] = replace(sc.segs[1], quality=0.3)
    res = sc.measure()
    low = res[1]
    assert low.assessable and low.genant_grade == 0 and low.low_confidence
    assert not low.used_as_reference and "segmentation quality 0.30" in low.reason
    assert low.confidence is not None and low.confidence <= 0.15 + 1e-9
    assert not res[0].low_confidence and res[0].reliability_notes == () and res[0].used_as_reference


def test_body_touching_the_image_edge_on_another_slice_is_not_assessable():
    sc = Scene(shape=(5, 100, 100), spacing=(4.0, 0.8, 0.8))
    lab = sc.add_body(rectangle(36.0, 26.0), centre(sc), 0.0, level=Level.L1)
    rows = np.flatnonzero((sc.labels[1] == lab).any(axis=1))
    sc.labels[1, rows, -1] = lab  # the mask runs out of the last column on slice 1 only
    (m,) = sc.measure()
    assert not m.assessable and "field of view" in m.reason and "last column" in m.reason


def test_body_tilted_across_a_straight_column_is_not_assessable():
    # Both endplates 30 deg from square to the column its neighbours define: not a body seen along its axis.
    sc = Scene(shape=(5, 280, 140), spacing=(4.0, 0.8, 0.8))
    column(sc, [26.0] * 5, [0.0, 0.0, 30.0, 0.0, 0.0], LEVELS5, disc=12.0)
    res = sc.measure()
    assert not res[2].assessable and "endplates are tilted" in res[2].reason
    assert all(m.assessable and m.genant_grade == 0 for m in (res[0], res[1], res[3], res[4]))
