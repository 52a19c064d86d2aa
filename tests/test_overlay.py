"""Overlay PNGs of a study: the same pictures for any storage orientation, grade colours, decision markers, STIR map."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.model import Decision
from pipeline.report.overlay import (
    EDEMA_COLOUR,
    GRADE_COLOURS,
    LANDMARK_COLOUR,
    SACRUM_COLOUR,
    render_overlays,
    sagittal_legend,
)
from pipeline.report.overlay_draw import PANEL_W, TITLE_H, PlaneView, decision_marker
from pipeline.volume import Volume
from tests.report_fixtures import make_case


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("ov_a")), make_case(tmp_path_factory.mktemp("ov_b"), flipped=True)


def _rgb(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"))


def _has_colour(img: np.ndarray, colour, tol: int = 2) -> np.ndarray:
    return (np.abs(img.astype(int) - np.asarray(colour)) <= tol).all(axis=2)


def test_overlays_are_identical_for_two_storage_orientations_of_the_same_anatomy(cases):
    a, b = cases
    oa = render_overlays(a.anatomy, a.report)
    ob = render_overlays(b.anatomy, b.report)
    assert set(oa) == set(ob) == {"sagittal.png", "stir.png", "planes.png"}
    for name in oa:
        np.testing.assert_array_equal(_rgb(oa[name]), _rgb(ob[name]))


def test_sagittal_overlay_draws_grades_landmarks_and_anterior_wedge(cases):
    a, _ = cases
    img = _rgb(render_overlays(a.anatomy, a.report)["sagittal.png"])
    view = PlaneView.for_volume(a.anatomy, around=a.segmentation.labels.array > 0)
    w, h = view.size
    image = img[TITLE_H : TITLE_H + h, PANEL_W : PANEL_W + w]
    assert _has_colour(image, GRADE_COLOURS[0]).sum() > 50  # L3 outline, grade 0
    assert _has_colour(image, GRADE_COLOURS[2]).sum() > 50  # L4 outline, grade 2
    assert _has_colour(image, LANDMARK_COLOUR).sum() > 50
    # the L4 wedge (anterior-superior notch, display columns 10-13 of rows 22-26) is on the left of the body
    l4 = next(v for v in a.report.vertebrae if v.name == "L4")
    lm = l4.morphometry.landmarks_lps
    xa, ya = view.index_to_xy(a.anatomy.lps_to_index(lm["anterior_superior"]))[0]
    xp, yp = view.index_to_xy(a.anatomy.lps_to_index(lm["posterior_superior"]))[0]
    assert xa < xp and ya > yp  # anterior point left of and lower than the posterior one
    assert _has_colour(image[int(ya) - 4 : int(ya) + 5, int(xa) - 4 : int(xa) + 5], LANDMARK_COLOUR).any()
    # the notch itself is background grey, the body next to it is brighter
    (nx, ny), (bx, by) = view.index_to_xy(np.array([[2, 23, 11], [2, 30, 20]]))  # display (row, col)
    notch, body = image[int(ny), int(nx)], image[int(by), int(bx)]
    assert notch.mean() < body.mean()


def _find(img: np.ndarray, glyph: Image.Image) -> list[tuple[int, int]]:
    """Top-left corners where every opaque pixel of the RGBA ``glyph`` is in ``img`` exactly."""
    g = np.asarray(glyph)
    ys, xs = np.nonzero(g[..., 3] == 255)
    colours = g[ys, xs, :3]
    gh, gw = g.shape[:2]
    cy, cx = np.mgrid[: img.shape[0] - gh + 1, : img.shape[1] - gw + 1].reshape(2, -1)
    for y, x, colour in zip(ys, xs, colours, strict=True):  # candidates thin out quickly, pixel by pixel
        keep = (img[cy + y, cx + x] == colour).all(axis=1)
        cy, cx = cy[keep], cx[keep]
    return [(int(y), int(x)) for y, x in zip(cy, cx, strict=True)]


def test_colour_means_the_grade_only_and_the_decision_is_a_marker(cases):
    a, _ = cases
    img = _rgb(render_overlays(a.anatomy, a.report)["sagittal.png"])
    h = PlaneView.for_volume(a.anatomy, around=a.segmentation.labels.array > 0).size[1]
    # the panel stripes (x 6-10) take the outline's grade colour: L3 grade 0, L4 grade 2, L5 not assessable, S1
    stripe = {tuple(int(c) for c in px) for px in img[TITLE_H : TITLE_H + h, 8]} - {(24, 28, 33)}
    assert stripe == {GRADE_COLOURS[0], GRADE_COLOURS[2], GRADE_COLOURS[None], SACRUM_COLOUR}
    # each decision is a marker beside its body and in the panel: L4 candidate, L3 and L5 not indicated
    for level, decision in (("L4", Decision.CANDIDATE), ("L3", Decision.NOT_INDICATED)):
        where = _find(img, decision_marker(decision))
        on_image = [(y, x) for y, x in where if x >= PANEL_W and y < TITLE_H + h]
        in_panel = [(y, x) for y, x in where if x < PANEL_W and y < TITLE_H + h]
        assert on_image and in_panel, (level, decision)
    assert len(_find(img, decision_marker(Decision.NOT_INDICATED))) == 2 * 2 + 1  # L3, L5 twice; legend once
    assert not _find(img, decision_marker(Decision.INDETERMINATE))  # not in this report, not in the legend


def test_sagittal_legend_explains_grade_colours_and_decision_markers_apart():
    (grade_head, grades), (decision_head, markers) = sagittal_legend([Decision.NOT_INDICATED, Decision.CANDIDATE])
    assert "Genant grade" in grade_head and "decision" in decision_head
    assert [k for k, _ in grades if k in GRADE_COLOURS.values()] == [GRADE_COLOURS[g] for g in (0, 1, 2, 3, None)]
    assert markers == [(Decision.CANDIDATE, "candidate"), (Decision.NOT_INDICATED, "not indicated")]
    assert len(sagittal_legend([])) == 1


def test_stir_overlay_colours_the_oedema_of_l4_only(cases):
    a, _ = cases
    img = _rgb(render_overlays(a.anatomy, a.report)["stir.png"])
    view = PlaneView.for_volume(a.anatomy, around=a.segmentation.labels.array > 0)
    w, h = view.size
    image = img[TITLE_H : TITLE_H + h, PANEL_W : PANEL_W + w].astype(int)
    red = (image[..., 0] > 200) & (image[..., 1] < 150) & (image[..., 2] < 150)
    rows = np.nonzero(red.any(axis=1))[0] / view.px_v + view.v0
    assert red.sum() > 100
    assert rows.min() >= 26 and rows.max() <= 31  # the band under L4's superior endplate (display rows 27-29)
    assert EDEMA_COLOUR[0] > 200


def test_no_stir_overlay_without_resampled_stir(cases):
    a, _ = cases
    without = {"sagittal.png", "planes.png"}
    assert set(render_overlays(a.anatomy, dataclasses.replace(a.report, stir=None))) == without
    no_grid = dataclasses.replace(a.stir, stir_on_grid=None, edema_map=None)
    assert set(render_overlays(a.anatomy, dataclasses.replace(a.report, stir=no_grid))) == without


def test_overlay_survives_a_report_without_measurements(cases):
    a, _ = cases
    bare = dataclasses.replace(a.report, morphometry=None, eligibility=None, stir=None)
    out = render_overlays(a.anatomy, bare)
    assert _rgb(out["sagittal.png"]).shape[0] > 300


def test_overlay_refuses_labels_on_another_grid(cases):
    a, _ = cases
    other = a.anatomy.with_array(a.anatomy.array)
    moved = Volume(other.array, other.spacing_mm, (1.0, 2.0, 3.0), other.axes_lps)
    with pytest.raises(PipelineError, match="anatomy grid"):
        render_overlays(moved, a.report)
