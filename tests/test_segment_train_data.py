"""Training data of the segmentation network without torch: targets (label mapping), splits, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.levels import Level
from pipeline.segment.grid import normalise_slices
from pipeline.segment.train.augment import AugmentConfig, sample_patch, sample_weighted_patch
from pipeline.segment.train.data import (
    BACKGROUND,
    BODY,
    DISC,
    FRACTURED,
    IGNORE,
    S1,
    TrainingCase,
    build_target,
    case_from_volume,
    fold_of,
)
from pipeline.volume import Volume

PITCH = 2.0


def _column(n_bodies: int = 3, sacrum: bool = True) -> tuple[np.ndarray, dict[int, Level]]:
    """Box bodies 10 px tall, 4 px discs, on 5 slices of 80 x 60 pixels (rows head -> feet)."""
    lab = np.zeros((5, 80, 60), np.uint16)
    levels: dict[int, Level] = {}
    names = [Level.L3, Level.L4, Level.L5, Level.S1] if sacrum else [Level.L2, Level.L3, Level.L4]
    for i in range(n_bodies):
        r0 = 12 + 14 * i
        lab[1:4, r0 : r0 + 10, 20:36] = i + 1
        levels[i + 1] = names[i]
    return lab, levels


def test_target_maps_bodies_s1_and_derives_the_discs_between_consecutive_bodies():
    lab, levels = _column(4, sacrum=True)
    tgt = build_target(lab, levels, PITCH)
    assert (tgt[lab == 1] == BODY).all() and (tgt[lab == 4] == S1).all()
    # the 4-row gap between two bodies, within their columns, is disc on the slices both occupy
    assert (tgt[2, 22:26, 22:34] == DISC).all()
    assert (tgt[0, 22:26, 22:34] != DISC).all()  # no body on slice 0: no disc either
    # anterior to the column at the level of a disc: background
    assert tgt[2, 24, 2] == BACKGROUND


def test_target_ignores_the_unlabelled_column_beyond_the_end_bodies():
    lab, levels = _column(3, sacrum=False)  # L2..L4: bodies above L2 and below L4 exist but are unlabelled
    tgt = build_target(lab, levels, PITCH)
    assert tgt[2, 5, 28] == IGNORE  # above the top body, in line with the column
    assert tgt[2, 60, 28] == IGNORE  # below the bottom body
    assert tgt[2, 5, 0] in (IGNORE, BACKGROUND)
    # with S1 labelled, below it is real background (nothing below S1 is labelled on purpose)
    lab_s, levels_s = _column(4, sacrum=True)
    tgt_s = build_target(lab_s, levels_s, PITCH)
    assert tgt_s[2, 75, 28] == BACKGROUND
    assert tgt_s[2, 5, 28] == IGNORE


def test_no_disc_between_bodies_that_are_not_consecutive_levels():
    lab, levels = _column(3, sacrum=False)
    levels = {1: Level.L1, 2: Level.L3, 3: Level.L4}  # L2 missing from the labels
    tgt = build_target(lab, levels, PITCH)
    assert not (tgt[2, 22:26, 22:34] == DISC).any()
    assert (tgt[2, 36:40, 22:34] == DISC).all()


def test_case_from_volume_puts_the_series_on_the_canonical_grid():
    lab, levels = _column(4)
    img = (lab > 0).astype(np.float32) * 100 + 10
    # rows stored feet -> head and 1 mm pixels: the working grid turns them head -> feet at 2 mm
    axes = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    vol = Volume(img[:, ::-1, :].copy(), (4.0, 1.0, 1.0), (0.0, 0.0, 0.0), axes)
    case = case_from_volume("x/y/T2", "x/y", vol, lab[:, ::-1, :].copy(), levels, PITCH)
    assert case.image.shape == (5, 40, 30)
    assert case.slice_mm == 4.0 and case.pitch_mm == PITCH
    rows_s1 = np.flatnonzero((case.target == S1).any(axis=(0, 2)))
    rows_body = np.flatnonzero((case.target == BODY).any(axis=(0, 2)))
    assert rows_s1.min() > rows_body.max()  # S1 is the most caudal (highest row) after canonicalisation


def test_folds_are_stable_and_by_subject():
    assert fold_of("vb2/case_04") == fold_of("vb2/case_04")
    folds = {fold_of(f"phantom/{i:04d}") for i in range(100)}
    assert folds == {0, 1, 2, 3, 4}


@pytest.fixture
def case() -> TrainingCase:
    lab, levels = _column(4)
    rng = np.random.default_rng(0)
    img = np.where(lab > 0, 80.0, 30.0) + rng.normal(0, 2, lab.shape)
    return TrainingCase("t/c/T2", "t/c", img.astype(np.float32), build_target(lab, levels, PITCH), 1.0, PITCH)


def test_sample_patch_shapes_ranges_and_label_values(case):
    cfg = AugmentConfig(patch=64)
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        x, y = sample_patch(case, rng, cfg)
        assert x.shape == (64, 64) and y.shape == (64, 64)
        assert x.dtype == np.float32 and y.dtype == np.uint8
        assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.5
        seen |= set(np.unique(y).tolist())
    assert seen <= {BACKGROUND, BODY, DISC, S1, IGNORE}
    assert {BODY, S1, DISC} <= seen


def test_augmentation_is_seeded(case):
    cfg = AugmentConfig(patch=64)
    a = [sample_patch(case, np.random.default_rng(7), cfg) for _ in range(2)]
    assert np.array_equal(a[0][0], a[1][0]) and np.array_equal(a[0][1], a[1][1])


def test_geometry_keeps_image_and_target_aligned(case):
    """Without intensity changes, the bright body voxels of the patch are the body-labelled ones."""
    cfg = AugmentConfig(
        patch=64,
        tissue_gain_prob=0,
        warp_prob=0,
        invert_prob=0,
        gamma=(1.0, 1.0),
        bias_prob=0,
        noise_prob=0,
        blur_prob=0,
    )
    rng = np.random.default_rng(11)
    for _ in range(10):
        x, y = sample_patch(case, rng, cfg)
        body = np.isin(y, (BODY, S1))
        if body.sum() < 30:
            continue
        inner = body & ~np.isin(np.pad(y, 1, mode="edge")[:-2, 1:-1], (BACKGROUND, DISC))
        assert x[inner].mean() > 1.4 * x[(y == BACKGROUND) & (x > 0)].mean()


def test_normalise_slices_is_scale_free():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (3, 20, 20)).astype(np.float32)
    assert np.allclose(normalise_slices(a), normalise_slices(a * 37.0), atol=1e-5)
    assert normalise_slices(a).max() <= 1.5


def test_case_from_volume_marks_the_fractured_bodies():
    lab, levels = _column(4)
    vol = Volume(
        np.where(lab > 0, 80.0, 30.0).astype(np.float32), (4.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3)[[0, 2, 1]]
    )
    case = case_from_volume("p/1/T2", "p/1", vol, lab, levels, PITCH, fractured=frozenset({2}))
    assert (case.target == FRACTURED).any() and (case.target == BODY).any()
    assert set(case.fractured_slices.tolist()) == {1, 2, 3}
    assert not (case_from_volume("p/1/T2", "p/1", vol, lab, levels, PITCH).target == FRACTURED).any()


def test_fractured_bodies_are_trained_as_bodies_drawn_more_often_and_weighted_around(case):
    target = case.target.copy()
    target[case.target == BODY] = np.where(_column(4)[0][case.target == BODY] == 2, FRACTURED, BODY)
    fx_case = TrainingCase(case.name, case.subject, case.image, target, case.slice_mm, case.pitch_mm)
    cfg = AugmentConfig(patch=64, fracture_prob=1.0, fracture_weight=3.0, fracture_margin_px=2)
    rng = np.random.default_rng(5)
    for _ in range(20):
        x, y, w = sample_weighted_patch(fx_case, rng, cfg)
        assert FRACTURED not in np.unique(y)  # the network's classes only
        assert w.shape == y.shape and set(np.unique(w).tolist()) <= {1.0, 3.0}
        heavy = w == 3.0
        assert heavy.any()  # every patch is centred on the fractured body
        assert (y[heavy] == BODY).sum() < heavy.sum()  # the margin reaches the disc / background around it
    # a case without fractures: unit weights, and the same draws as sample_patch
    x, y, w = sample_weighted_patch(case, np.random.default_rng(9), cfg)
    x2, y2 = sample_patch(case, np.random.default_rng(9), cfg)
    assert (w == 1.0).all() and np.array_equal(x, x2) and np.array_equal(y, y2)
