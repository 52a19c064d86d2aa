"""STIR oedema stage on synthetic spines with known oedema (tests/stir_synth.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from stir_synth import make_spine

from pipeline.errors import ConfigError, InputError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, LoadedSeries, Substitute
from pipeline.stir import NOT_AVAILABLE_REASON, StirConfig, assess_stir, load_stir_config
from pipeline.stir.labelmap import segmentation_from_label_map
from pipeline.stir.measure import classify_pattern
from pipeline.stir.overlay import overlay_rgb
from pipeline.stir.sampling import erode_mm
from pipeline.volume import Volume

UID_A, UID_B = "1.2.826.0.1.1", "1.2.826.0.1.2"


@pytest.fixture(scope="module")
def cfg() -> StirConfig:
    """Shipped config, with the same-frame motion check off (tested separately) and a lighter registration."""
    base = load_stir_config()
    reg = dataclasses.replace(
        base.registration,
        check_same_frame_alignment=False,
        pyramid_inplane_mm=(4.0, 0.0),
        iterations_per_level=60,
        metric_samples=8000,
    )
    return dataclasses.replace(base, registration=reg)


def _run(spine, cfg, *, stir=None, stir_frame=UID_A, substitute=None, t1=None, deformity=None):
    """Anatomy, STIR and T1 in frame UID_A unless ``stir_frame`` says otherwise."""
    stir = LoadedSeries(spine.stir if stir is None else stir, None, stir_frame, substitute)
    t1 = LoadedSeries(t1, frame_of_reference=UID_A) if t1 is not None else None
    anatomy = LoadedSeries(spine.t2, frame_of_reference=UID_A)
    return assess_stir(anatomy, spine.segmentation, stir, cfg=cfg, t1=t1, deformity=deformity)


def _by_label(a):
    return {f.label: f for f in a.findings}


# --------------------------------------------------------------------------- not available / inputs
def test_no_stir_is_not_available_with_null_edema(cfg):
    sp = make_spine(n_bodies=3)
    a = assess_stir(LoadedSeries(sp.t2), sp.segmentation, None, cfg=cfg)
    assert a.status == "not_available"
    assert a.reason == NOT_AVAILABLE_REASON and "bone scan" in a.reason
    assert [f.edema for f in a.findings] == [None, None, None]
    assert all(f.pattern is EdemaPattern.NOT_ASSESSABLE and f.confidence == 0.0 for f in a.findings)
    assert a.stir_on_grid is None and a.edema_map is None


def test_segmentation_on_another_grid_is_refused(cfg):
    sp = make_spine(n_bodies=3)
    other = Volume(sp.t2.array[:, :-2], sp.t2.spacing_mm, sp.t2.origin_lps, sp.t2.axes_lps)
    with pytest.raises(InputError, match="not on the anatomy grid"):
        assess_stir(LoadedSeries(other), sp.segmentation, LoadedSeries(sp.stir), cfg=cfg)


# --------------------------------------------------------------------------- detection
def test_band_and_diffuse_oedema_fraction_and_pattern(cfg):
    sp = make_spine({2: (0.4, "band"), 4: (0.6, "diffuse")}, seed=1)
    a = _run(sp, cfg)
    f = _by_label(a)
    assert a.status == "measured"
    assert [f[k].edema for k in range(1, 7)] == [False, True, False, True, False, False]
    assert f[2].edema_fraction == pytest.approx(sp.truth[2], abs=0.08)
    assert f[4].edema_fraction == pytest.approx(sp.truth[4], abs=0.08)
    assert f[2].pattern is EdemaPattern.BAND and f[2].thirds[0] > 0.9 and f[2].thirds[2] < 0.05
    assert f[4].pattern is EdemaPattern.DIFFUSE
    assert f[1].pattern is EdemaPattern.NONE and f[1].edema_fraction < 0.02
    assert f[4].ratio > 1.5 and 0.9 < f[1].ratio < 1.1
    assert set(a.reference_labels) == {1, 3, 5, 6}
    # fluid units: reference marrow / CSF of the synthetic tissues (100 / 450) within blur and noise
    assert a.reference_to_fluid_ratio == pytest.approx(100 / 450, abs=0.04)
    assert all(x.confidence > 0.9 for x in a.findings)


def test_edema_map_marks_only_oedematous_bodies(cfg):
    sp = make_spine({2: (0.4, "band")}, seed=2, n_bodies=4)
    a = _run(sp, cfg)
    em = a.edema_map
    assert em is not None and em.array.dtype == np.uint8 and em.same_grid(sp.t2)
    lab = sp.labels.array
    assert set(np.unique(lab[em.array > 0])) == {2}
    n_marrow2 = _by_label(a)[2].eroded_volume_mm3 / sp.t2.voxel_volume_mm3
    assert em.array.sum() == pytest.approx(_by_label(a)[2].edema_fraction * n_marrow2, rel=1e-6)
    rgb = overlay_rgb(a, sp.t2.shape[0] // 2, sp.labels)
    assert rgb.shape == sp.t2.shape[1:] + (3,) and rgb.dtype == np.uint8
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 120)
    assert red.sum() > 50


def test_four_abnormal_bodies_keep_the_reference_right(cfg):
    edema = {2: (1.0, "diffuse"), 3: (0.3, "band"), 5: (0.7, "diffuse"), 7: (0.5, "band")}
    sp = make_spine(edema, n_bodies=8, seed=3)
    a = _run(sp, cfg)
    f = _by_label(a)
    assert [f[k].edema for k in range(1, 9)] == [k in edema for k in range(1, 9)]
    assert set(a.reference_labels) == {1, 4, 6, 8}
    assert a.reference_plausible
    for k in edema:
        assert f[k].edema_fraction == pytest.approx(sp.truth[k], abs=0.1)


@pytest.mark.parametrize("seed", [4, 5])
def test_no_oedema_no_false_positive_even_with_bias_field(cfg, seed):
    sp = make_spine(n_bodies=7, seed=seed, bias_pct=30.0, noise_sd=10.0)
    a = _run(sp, cfg)
    assert all(f.edema is False for f in a.findings), [(f.label, f.edema_fraction) for f in a.findings]
    assert max(f.edema_fraction for f in a.findings) < 0.05


def test_bias_field_changes_no_decision(cfg):
    edema = {2: (0.25, "band"), 5: (0.5, "diffuse")}
    plain = _run(make_spine(edema, n_bodies=7, seed=6), cfg)
    biased = _run(make_spine(edema, n_bodies=7, seed=6, bias_pct=30.0), cfg)
    assert [f.edema for f in plain.findings] == [f.edema for f in biased.findings] == [k in edema for k in range(1, 8)]


def test_all_bodies_abnormal_falls_back_to_prior_with_low_confidence(cfg):
    sp = make_spine({k: (1.0, "diffuse") for k in range(1, 6)}, n_bodies=5, seed=7)
    a = _run(sp, cfg)
    assert not a.reference_plausible and a.reference_labels == ()
    assert "prior" in a.reference_method
    assert all(f.edema is True for f in a.findings)
    assert all(f.confidence <= cfg.confidence.prior_reference_factor for f in a.findings)
    assert any("all bodies may be abnormal" in w for w in a.warnings)


# --------------------------------------------------------------------------- reference bookkeeping
def test_sacrum_reported_but_not_in_reference_and_deformity_excluded(cfg):
    sp = make_spine({6: (0.5, "band")}, n_bodies=6, seed=8, first_level=Level.L1)  # label 6 = S1
    assert sp.segmentation.vertebrae[-1].is_sacrum
    a = _run(sp, cfg, deformity={3: True})
    f = _by_label(a)
    assert f[6].edema is True and "sacrum" in f[6].reason
    assert set(a.reference_labels) == {1, 2, 4, 5}
    assert f[3].edema is False  # excluded from the reference, still assessed


def test_body_too_small_after_erosion_is_not_assessable(cfg):
    sp = make_spine(n_bodies=4, seed=9)
    lab = sp.labels.array.copy()
    s, r, c = np.nonzero(lab == 4)
    lab[lab == 4] = 0
    lab[s.min() + 5 : s.min() + 7, r.min() + 5 : r.min() + 8, c.min() + 5 : c.min() + 8] = 4  # a sliver
    seg = segmentation_from_label_map(sp.labels.with_array(lab))
    a = assess_stir(LoadedSeries(sp.t2, None, UID_A), seg, LoadedSeries(sp.stir, None, UID_A), cfg=cfg)
    f = _by_label(a)
    assert f[4].edema is None and f[4].ratio is None and "too small" in f[4].reason
    assert f[4].pattern is EdemaPattern.NOT_ASSESSABLE
    assert all(f[k].edema is False for k in (1, 2, 3))


def test_body_cut_by_the_image_edge_is_not_assessable(cfg):
    sp = make_spine({3: (0.5, "band")}, n_bodies=5, seed=17)
    r0 = int(np.nonzero(sp.labels.array == 1)[1].min()) + 8  # crop through the top body

    def crop(v: Volume) -> Volume:
        return Volume(v.array[:, r0:], v.spacing_mm, tuple(v.index_to_lps((0, r0, 0))), v.axes_lps)

    labels = crop(sp.labels)
    seg = segmentation_from_label_map(labels)
    a = assess_stir(LoadedSeries(crop(sp.t2)), seg, LoadedSeries(crop(sp.stir)), cfg=cfg)
    f = _by_label(a)
    assert f[1].edema is None and "edge of the image" in f[1].reason
    assert [f[k].edema for k in range(2, 6)] == [False, True, False, False]


def test_mask_missing_the_oedematous_band_is_flagged_not_trusted(cfg):
    # a segmenter working on T2 may take a bright subchondral band for disc and leave it out of the body:
    # the STIR stage then sees no oedema, but must not report that with full confidence
    sp = make_spine({3: (0.45, "band")}, n_bodies=6, seed=18)
    lab = sp.labels.array.copy()
    rows = np.nonzero(lab == 3)[1]
    cut = rows.min() + int(0.5 * (rows.max() - rows.min()))
    body3 = lab == 3
    body3[:, cut:, :] = False
    lab[body3] = 0
    seg = segmentation_from_label_map(sp.labels.with_array(lab))
    a = assess_stir(LoadedSeries(sp.t2), seg, LoadedSeries(sp.stir), cfg=cfg)
    f = _by_label(a)
    assert f[3].edema is False  # the band is outside the mask: not measurable here
    assert f[3].confidence <= cfg.confidence.short_body_factor
    assert "left out part of it" in f[3].reason
    assert all(f[k].confidence > 0.9 for k in (1, 2, 4, 5))


# --------------------------------------------------------------------------- confidence
def test_substitute_is_flagged_and_lowers_confidence(cfg):
    sp = make_spine({3: (0.5, "band")}, n_bodies=5, seed=10)
    stir = _run(sp, cfg)
    water = _run(sp, cfg, substitute=Substitute.DIXON_WATER)
    assert water.substitute is Substitute.DIXON_WATER and any("Dixon water" in w for w in water.warnings)
    assert [f.edema for f in water.findings] == [f.edema for f in stir.findings]
    for s, w in zip(stir.findings, water.findings, strict=True):
        assert w.confidence == pytest.approx(s.confidence * cfg.confidence.substitute_factor)


def test_t1_corroboration_and_disagreement(cfg):
    edema = {2: (0.5, "band"), 4: (0.8, "diffuse")}
    sp = make_spine(edema, n_bodies=5, seed=11)
    agree = _run(sp, cfg, t1=sp.t1)
    f = _by_label(agree)
    assert f[2].t1_agrees is True and f[4].t1_agrees is True and f[2].t1_ratio < 0.7
    assert f[1].t1_agrees is True  # no oedema, no T1 darkening
    flat_t1 = make_spine(edema, n_bodies=5, seed=11, t1_edema_dark=False).t1
    dis = _run(sp, cfg, t1=flat_t1)
    g = _by_label(dis)
    assert g[2].t1_agrees is False and g[4].t1_agrees is False
    assert g[2].edema is True and g[4].edema is True  # never flipped
    assert g[2].confidence == pytest.approx(f[2].confidence * cfg.confidence.t1_disagreement_factor)
    assert "T1 does not corroborate" in g[2].reason
    assert _run(sp, cfg).findings[1].t1_agrees is None


# --------------------------------------------------------------------------- grids and registration
def test_stir_only_study_uses_the_anatomy_itself(cfg):
    sp = make_spine({2: (0.5, "band")}, n_bodies=4, seed=12)
    seg = sp.segmentation
    stir = LoadedSeries(sp.stir)
    a = assess_stir(stir, seg, stir, cfg=load_stir_config())
    assert a.registration == "same grid (no resampling)" and a.stir_on_grid is sp.stir
    assert [f.edema for f in a.findings] == [False, True, False, False]


def _moved(v: Volume, rot_deg: float, shift_lps) -> tuple[Volume, np.ndarray]:
    """Same voxels, geometry rotated about the slice normal through the centre and shifted: returns the
    moved volume and the true 4x4 map anatomy LPS -> moved-volume LPS."""
    a = np.deg2rad(rot_deg)
    n = v.axes_lps[0]
    k = np.array([[0, -n[2], n[1]], [n[2], 0, -n[0]], [-n[1], n[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    centre = v.index_to_lps((np.array(v.shape) - 1) / 2)
    t = np.asarray(shift_lps, dtype=float)
    origin = rot @ (np.asarray(v.origin_lps) - centre) + centre + t
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, centre + t - rot @ centre
    return Volume(v.array, v.spacing_mm, tuple(origin), v.axes_lps @ rot.T), m


def _centroid_error(a, seg, truth) -> float:
    pts = np.array([np.r_[v.centroid_lps_mm, 1.0] for v in seg.vertebrae])
    return float(np.max(np.linalg.norm((pts @ np.array(a.registration_matrix_lps).T - pts @ truth.T)[:, :3], axis=1)))


@pytest.mark.slow
def test_different_frame_of_reference_is_registered(cfg):
    sp = make_spine({2: (0.5, "band"), 4: (0.6, "diffuse")}, n_bodies=5, seed=13)
    moved, truth = _moved(sp.stir, 3.0, (0.0, 3.0, -4.0))
    a = _run(sp, cfg, stir=moved, stir_frame=UID_B)
    assert a.status == "measured" and a.registration == "rigid MI (different frames of reference)"
    assert _centroid_error(a, sp.segmentation, truth) < 0.5
    assert a.registration_residual_mm is not None and a.registration_residual_mm < cfg.registration.max_residual_mm
    pts = np.array([np.r_[v.centroid_lps_mm, 1.0] for v in sp.segmentation.vertebrae])
    true_correction = np.mean(np.linalg.norm((pts @ truth.T - pts)[:, :3], axis=1))
    assert a.registration_correction_mm == pytest.approx(true_correction, abs=0.5)
    assert [f.edema for f in a.findings] == [False, True, False, True, False]
    assert all(f.confidence <= cfg.confidence.registered_factor for f in a.findings)


@pytest.mark.slow
def test_same_frame_motion_check_finds_patient_motion(cfg):
    sp = make_spine({3: (0.5, "band")}, n_bodies=4, seed=14)
    moved, truth = _moved(sp.stir, 0.0, (0.0, 2.5, 2.0))
    on = dataclasses.replace(cfg, registration=dataclasses.replace(cfg.registration, check_same_frame_alignment=True))
    a = _run(sp, on, stir=moved)
    assert a.registration.startswith("rigid MI (patient motion")
    assert _centroid_error(a, sp.segmentation, truth) < 0.5
    assert any("patient motion" in w for w in a.warnings)
    b = _run(sp, on)  # aligned: checked, kept
    assert b.registration.startswith("same frame of reference (resampled; alignment checked")


def test_registration_failure_is_reported(cfg):
    sp = make_spine({2: (0.5, "band")}, n_bodies=4, seed=15)
    rng = np.random.default_rng(0)
    noise = sp.stir.with_array(rng.normal(100, 30, sp.stir.shape).astype(np.float32))
    a = _run(sp, cfg, stir=noise, stir_frame=UID_B)
    assert a.status == "failed" and a.reason.startswith("STIR not usable:")
    assert "mutual information" in a.reason or "not reproducible" in a.reason
    assert all(f.edema is None for f in a.findings)
    far = Volume(sp.stir.array, sp.stir.spacing_mm, (0.0, 0.0, 5000.0), sp.stir.axes_lps)  # no overlap at all
    b = _run(sp, cfg, stir=far, stir_frame=UID_B)
    assert b.status == "failed" and "could not be registered" in b.reason


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(("spacing", "expected"), [((1.0, 1.0, 1.0), (4, 4, 4)), ((4.0, 1.0, 1.0), (8, 4, 4))])
def test_erosion_is_in_mm_and_anisotropy_aware(spacing, expected):
    # 10 voxels per side; the boundary lies half a voxel beyond the last voxel, so with a 2.5 mm
    # erosion 1 mm voxels need n - 0.5 > 2.5 (3 removed per side), 4 mm slices 4 n - 2 > 2.5 (1 removed)
    mask = np.zeros((14, 14, 14), dtype=bool)
    mask[2:12, 2:12, 2:12] = True
    out = erode_mm(mask, spacing, (2.5, 2.5, 2.5))
    idx = np.argwhere(out)
    assert tuple(int(x) for x in idx.max(axis=0) - idx.min(axis=0) + 1) == expected


@pytest.mark.parametrize("spacing", [(4.0, 0.9, 0.9), (1.0, 1.0, 1.0)])
def test_erosion_on_the_masks_box_equals_erosion_on_the_whole_crop(spacing):
    # erode_mm runs the distance transform on the mask's bounding box (issue 18): the same voxels as on the
    # whole, much larger crop (the reference below is the previous implementation)
    from scipy import ndimage

    rng = np.random.default_rng(4)
    mask = ndimage.gaussian_filter(rng.normal(size=(16, 60, 60)), 3.0) > 0.02
    mask[:, :10] = mask[:, 50:] = False  # an irregular blob of several parts, well inside the crop row-wise
    sp = np.asarray(spacing)
    scale = sp / (np.array([2.0, 2.5, 3.0]) + 0.5 * sp)
    dist = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=scale)[1:-1, 1:-1, 1:-1]
    assert np.array_equal(erode_mm(mask, spacing, (2.0, 2.5, 3.0)), mask & (dist > 1.0 + 1e-6))


@pytest.mark.parametrize(
    ("thirds", "expected"),
    [
        ((1.0, 0.3, 0.0), EdemaPattern.BAND),  # under the superior endplate
        ((0.0, 0.2, 0.9), EdemaPattern.BAND),  # under the inferior endplate
        ((0.9, 0.1, 0.8), EdemaPattern.BAND),  # under both (biconcave)
        ((0.9, 0.9, 0.8), EdemaPattern.DIFFUSE),
        ((0.41, 0.45, 0.13), EdemaPattern.DIFFUSE),  # patchy: the middle is the most involved
        ((0.5, 0.4, 0.3), EdemaPattern.DIFFUSE),  # far third still more than half as involved
    ],
)
def test_pattern_from_thirds(thirds, expected):
    assert classify_pattern(thirds, 0.5) is expected


# --------------------------------------------------------------------------- config
def test_shipped_config_loads_and_cites_sources(repo_root: Path):
    cfg = load_stir_config(repo_root / "configs" / "stir.yaml")
    assert cfg.decision.edema_fraction_min == 0.10 and cfg.measurement.erosion_mm == 2.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d["decision"].update(edema_fraction_min=1.5),
            r"stir: decision: edema_fraction_min: must be in",
        ),
        (
            lambda d: d["decision"]["sources"].pop("threshold_k_sd"),
            r"clinical threshold 'threshold_k_sd' has no source",
        ),
        (lambda d: d["measurement"].update(erosion=2), r"stir: measurement: unknown field 'erosion'"),
        (lambda d: d["measurement"].update(canal_gap_mm=[10.0, 5.0]), r"canal_gap_mm must be \[near, far\]"),
        (
            lambda d: d["registration"].update(pyramid_inplane_mm=[]),
            r"pyramid_inplane_mm must list at least one",
        ),
        (lambda d: d["reference"].update(prior_marrow_to_fluid=0.9), r"prior_marrow_to_fluid must be below"),
    ],
)
def test_config_errors_name_the_field(tmp_path, repo_root, edit, match):
    import yaml

    data = yaml.safe_load((repo_root / "configs" / "stir.yaml").read_text())
    edit(data["stir"])
    p = tmp_path / "stir.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match):
        load_stir_config(p)


def test_config_without_section(tmp_path):
    p = tmp_path / "stir.yaml"
    p.write_text("other: {}\n")
    with pytest.raises(ConfigError, match=r"no 'stir' section"):
        load_stir_config(p)


# --------------------------------------------------------------------------- command line
def test_cli_stir_writes_json_map_and_overlay(tmp_path, capsys):
    import json

    import SimpleITK as sitk

    from pipeline.cli import main

    sp = make_spine({2: (0.5, "band")}, n_bodies=4, seed=16, first_level=Level.L2)
    for name, vol in (("t2", sp.t2), ("stir", sp.stir), ("labels", sp.labels)):
        sitk.WriteImage(vol.to_sitk(), str(tmp_path / f"{name}.nii.gz"))
    (tmp_path / "levels.json").write_text(json.dumps({"1": "L2", "2": "L3", "3": "L4", "4": "L5"}))
    out = tmp_path / "out"
    args = [
        "stir",
        "--anatomy",
        str(tmp_path / "t2.nii.gz"),
        "--labels",
        str(tmp_path / "labels.nii.gz"),
        "--levels",
        str(tmp_path / "levels.json"),
        "--stir",
        str(tmp_path / "stir.nii.gz"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads((out / "stir.json").read_text())
    assert report["status"] == "measured"
    assert [v["edema"] for v in report["vertebrae"]] == [False, True, False, False]
    assert report["vertebrae"][1]["level"] == "L3" and report["vertebrae"][1]["pattern"] == "band"
    assert (out / "stir_overlay.png").stat().st_size > 0
    em = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "edema_map.nii.gz")))
    assert em.max() == 1 and em.sum() > 0
    assert "L3: OEDEMA" in capsys.readouterr().out
    bad = [
        "stir",
        "--anatomy",
        str(tmp_path / "missing.nii.gz"),
        "--labels",
        str(tmp_path / "labels.nii.gz"),
        "--out",
        str(out),
    ]
    assert main(bad) == 1
    assert "cannot read image" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end on the phantom
@pytest.mark.slow
def test_phantom_band_and_diffuse_end_to_end():
    phantom = pytest.importorskip("pipeline.tools.phantom")
    from pipeline.model import Morphology

    spec = phantom.PhantomSpec(
        seed=21,
        supersample=1,
        slice_subsamples=2,
        fractures=(
            phantom.FractureSpec(
                level=Level.L1,
                kind=Morphology.WEDGE,
                height_loss_pct=35,
                edema=True,
                edema_pattern=EdemaPattern.BAND,
                edema_fraction=0.3,
            ),
            phantom.FractureSpec(
                level=Level.T11,
                kind=Morphology.NORMAL,
                height_loss_pct=0,
                edema=True,
                edema_pattern=EdemaPattern.DIFFUSE,
                edema_fraction=0.5,
            ),
            phantom.FractureSpec(level=Level.L3, kind=Morphology.CRUSH, height_loss_pct=30),  # chronic: no oedema
        ),
    )
    ph = phantom.render_phantom(spec)
    truth = {int(v["label"]): v for v in ph.truth["vertebrae"]}
    seg = segmentation_from_label_map(ph.labels, ph.levels)
    uid = ph.truth["study"]["frame_of_reference_uid"]
    a = assess_stir(
        LoadedSeries(ph.t2, frame_of_reference=uid),
        seg,
        LoadedSeries(ph.stir, frame_of_reference=uid),
        cfg=load_stir_config(),
        t1=LoadedSeries(ph.t1, frame_of_reference=uid),
        deformity={k: v["height_loss_pct"] >= 20 for k, v in truth.items()},
    )
    assert a.status == "measured"
    f = _by_label(a)
    by_level = {ph.levels[k]: k for k in ph.levels}
    for k, v in truth.items():
        assert f[k].edema is bool(v["edema"]["present"]), (v["level"], f[k].reason)
    band, diffuse, chronic = by_level[Level.L1], by_level[Level.T11], by_level[Level.L3]
    assert f[band].pattern is EdemaPattern.BAND and f[diffuse].pattern is EdemaPattern.DIFFUSE
    assert f[band].t1_agrees is True and f[diffuse].t1_agrees is True and f[chronic].t1_agrees is True
    assert f[band].confidence > 0.8 and f[diffuse].confidence > 0.8
    assert band not in a.reference_labels and diffuse not in a.reference_labels and chronic not in a.reference_labels
    # the oedema map lies on the true oedema: most mapped voxels are truly oedematous (partial volume aside)
    mapped = a.edema_map.array > 0
    true_edema = np.isin(ph.edema.array, [band, diffuse])
    assert mapped.sum() > 0 and (mapped & true_edema).sum() / mapped.sum() > 0.6
