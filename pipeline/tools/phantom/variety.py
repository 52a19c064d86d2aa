"""Random but reproducible phantom specifications for training data: one seed -> one varied study.

:func:`random_spec` combines what broke the classical segmenter on clinical scans: fields of view from the
mid-thoracic spine down to the pelvis, thin to thick slices, coarse to fine pixels, fractures of every kind
and grade with or without oedema (up to vertebra plana), desiccated discs, Modic changes, Schmorl nodes,
spondylolisthesis, scoliosis, lordosis, noise, bias field and vendor. The draws come from the seed alone,
so ``random_spec(s)`` is the same spec on every machine; render it with
:func:`pipeline.tools.phantom.render_phantom`.

The sampling budget (slices x rows x cols x sub-samples, :data:`SAMPLE_BUDGET`) is capped so that one
study renders in a few seconds on one core.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom.findings import DEFAULT_EDEMA_FRACTION, FractureSpec, ModicSpec, SchmorlSpec, SlipSpec
from pipeline.tools.phantom.spec import PhantomSpec, Vendor

#: Candidate most-cranial labelled bodies.
TOP_LEVELS = (Level.T8, Level.T9, Level.T10, Level.T11, Level.T12, Level.L1)
#: Largest number of sub-samples (slices x rows x cols x supersample^2 x slice_subsamples) per study.
SAMPLE_BUDGET = 60e6
#: Fracture kinds and their height-loss ranges (%): a crush can go down to vertebra plana (85 %).
_LOSS_RANGE = {Morphology.WEDGE: (15.0, 70.0), Morphology.BICONCAVE: (15.0, 60.0), Morphology.CRUSH: (15.0, 85.0)}
#: Probability that the disc below a level is desiccated.
_DESICCATION_P = {"L5": 0.5, "L4": 0.5, "L3": 0.35, "L2": 0.25, "L1": 0.2, "T12": 0.15}
_MM_PER_LEVEL = 29.0  # rough body + disc pitch, for the sampling-budget estimate only


def random_spec(seed: int, **overrides: Any) -> PhantomSpec:
    """A varied, valid training phantom spec drawn from ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative; the same seed always gives the same spec (and the spec's own ``seed`` is ``seed``).
    **overrides
        Any :class:`PhantomSpec` field, applied after the random draws (e.g. ``fractures=()``).

    Returns
    -------
    PhantomSpec
        Wide or narrow field of view (``fov_below_s1_mm`` derives the rows when the sacrum is included),
        1-5 mm slices, 0.6-1.5 mm pixels, 0-3 fractures, desiccated discs, sometimes a spondylolisthesis.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"random_spec: seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A21E7]))
    top = TOP_LEVELS[int(rng.integers(len(TOP_LEVELS)))]
    include_sacrum = bool(rng.uniform() < 0.85)
    lumbar = [lv for lv in Level if lv.region == "lumbar" and lv.ordinal > top.ordinal + 1]
    bottom = lumbar[int(rng.integers(len(lumbar)))] if not include_sacrum else Level.L4
    last = Level.S1 if include_sacrum else bottom
    labelled = [lv for lv in Level if top.ordinal <= lv.ordinal <= last.ordinal]

    thickness = float(np.round(rng.uniform(1.0, 5.0), 1))
    gap = float(np.round(rng.uniform(0.0, 0.2) * thickness, 2))
    spacing = float(np.round(rng.uniform(0.6, 1.5), 3))
    fov_w = rng.uniform(220.0, 380.0)
    cols = int(np.clip(round(fov_w / spacing), 64, 1024))
    wide = include_sacrum and rng.uniform() < 0.6
    fov_below = float(np.round(rng.uniform(60.0, 160.0) if wide else rng.uniform(10.0, 50.0), 1))
    supersample = 2 if spacing >= 0.9 else 1
    slice_sub = 1 if thickness <= 1.5 else (2 if thickness <= 3.0 else 3)
    coverage = rng.uniform(45.0, 90.0)  # left-right extent of the sagittal slab, mm
    n_slices = int(np.clip(round(coverage / (thickness + gap)), 3, 64))
    # keep the render fast: estimate the rows and trim the slab if the sampling budget is exceeded
    n_levels = len(labelled) + (0 if include_sacrum else 1)
    rows_est = (n_levels * _MM_PER_LEVEL + (fov_below if include_sacrum else 0.0) + 25.0) / spacing
    per_slice = rows_est * cols * supersample**2 * slice_sub
    n_slices = int(max(3, min(n_slices, SAMPLE_BUDGET // per_slice)))

    fractures = _random_fractures(rng, labelled)
    desiccated = tuple(
        lv
        for lv in Level
        if lv.value in _DESICCATION_P and lv.ordinal >= top.ordinal - 1
        if rng.uniform() < _DESICCATION_P[lv.value]
    )
    slips: tuple[SlipSpec, ...] = ()
    if rng.uniform() < 0.25:
        level = (Level.L4, Level.L5, Level.L3)[int(rng.choice(3, p=[0.5, 0.35, 0.15]))]
        if level in labelled and level.offset(1) in labelled:
            slips = (SlipSpec(level, float(np.round(rng.uniform(3.0, 14.0), 1))),)
    # drawn after the features of the first version, so those stay the same for a given seed
    scoliosis_mm, apex = 0.0, Level.L1
    room = n_slices * (thickness + gap) / 2.0 - 15.0  # keep the curve inside the sagittal slab
    if rng.uniform() < 0.25 and room >= 5.0:
        apices = [lv for lv in labelled if Level.T8.ordinal <= lv.ordinal <= Level.L3.ordinal]
        apex = apices[int(rng.integers(len(apices)))]
        scoliosis_mm = float(np.round(rng.choice([-1.0, 1.0]) * min(rng.uniform(5.0, 25.0), room), 1))
    nodes = _random_schmorl(rng, labelled) if rng.uniform() < 0.3 else ()
    modic: tuple[ModicSpec, ...] = ()
    if rng.uniform() < 0.3:
        candidates = [lv for lv in Level if lv.value in _DESICCATION_P and lv.ordinal >= top.ordinal]
        preferred = [lv for lv in candidates if lv in desiccated] or candidates
        k = min(len(preferred), 1 + int(rng.uniform() < 0.3))
        picks = rng.choice(len(preferred), size=k, replace=False)
        modic = tuple(
            ModicSpec(preferred[int(i)], 1 if rng.uniform() < 0.4 else 2, float(np.round(rng.uniform(3.0, 10.0), 1)))
            for i in sorted(picks)
        )

    base: dict[str, Any] = dict(
        seed=seed,
        top_level=top,
        include_sacrum=include_sacrum,
        bottom_level=bottom,
        fractures=fractures,
        n_slices=n_slices,
        slice_thickness_mm=thickness,
        slice_gap_mm=gap,
        pixel_spacing_mm=spacing,
        rows=int(np.clip(round(rows_est), 64, 1024)),
        cols=cols,
        supersample=supersample,
        slice_subsamples=slice_sub,
        noise_pct=float(np.round(rng.uniform(1.0, 6.0), 2)),
        bias_pct=float(np.round(rng.uniform(5.0, 50.0), 1)),
        lordosis_scale=float(np.round(rng.uniform(0.5, 1.5), 2)),
        vendor=list(Vendor)[int(rng.integers(len(Vendor)))],
        patient_sex=("F", "M")[int(rng.integers(2))],
        patient_age_years=int(rng.integers(35, 92)),
        desiccated_discs=desiccated,
        slips=slips,
        fov_below_s1_mm=fov_below if include_sacrum else 0.0,
        pelvic_anatomy=bool(wide),
        scoliosis_mm=scoliosis_mm,
        scoliosis_apex=apex,
        schmorl_nodes=nodes,
        modic=modic,
    )
    base.update(overrides)
    return PhantomSpec(**base)


def _random_fractures(rng: np.random.Generator, labelled: list[Level]) -> tuple[FractureSpec, ...]:
    """0-3 fractures on distinct labelled levels (S1 rarely), each wedge / biconcave / crush."""
    n = int(rng.choice(4, p=[0.3, 0.35, 0.2, 0.15]))
    weights = np.array([0.15 if lv is Level.S1 else 1.0 for lv in labelled])
    n = min(n, len(labelled))
    levels = rng.choice(len(labelled), size=n, replace=False, p=weights / weights.sum())
    kinds = (Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH)
    out = []
    for i in sorted(int(v) for v in levels):
        kind = kinds[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        lo, hi = _LOSS_RANGE[kind]
        loss = float(np.round(rng.uniform(lo, hi), 1))
        edema = bool(rng.uniform() < 0.5)
        pattern = EdemaPattern.BAND if rng.uniform() < 0.65 else EdemaPattern.DIFFUSE
        fraction = float(np.round(rng.uniform(0.15, 0.6), 2)) if edema and rng.uniform() < 0.5 else 0.0
        # a collapsed body has less marrow (its cortex is a larger share): keep the fraction reachable
        cap = 0.45 if loss < 50 else (0.3 if loss < 70 else 0.18)
        if edema and (fraction > cap or (fraction == 0.0 and DEFAULT_EDEMA_FRACTION[pattern] > cap)):
            fraction = cap
        retro = float(np.round(rng.uniform(0.5, 4.0), 1)) if loss > 40 and rng.uniform() < 0.4 else 0.0
        out.append(
            FractureSpec(
                labelled[i],
                kind,
                loss,
                edema=edema,
                edema_pattern=pattern,
                edema_fraction=fraction,
                retropulsion_mm=retro,
            )
        )
    return tuple(out)


def _random_schmorl(rng: np.random.Generator, labelled: list[Level]) -> tuple[SchmorlSpec, ...]:
    """1-2 small Schmorl nodes, placed centrally-anterior or -posterior, clear of the height lines."""
    out: dict[tuple[Level, str], SchmorlSpec] = {}
    for _ in range(1 + int(rng.uniform() < 0.4)):
        level = labelled[int(rng.integers(len(labelled)))]
        endplate = "superior" if level is Level.S1 or rng.uniform() < 0.6 else "inferior"
        out[(level, endplate)] = SchmorlSpec(
            level,
            endplate,
            radius_mm=float(np.round(rng.uniform(2.0, 3.5), 2)),
            depth_mm=float(np.round(rng.uniform(2.0, 6.0), 2)),
            ap_fraction=float(np.round((0.3 if rng.uniform() < 0.5 else 0.7) + rng.uniform(-0.03, 0.03), 3)),
            lateral_mm=float(np.round(rng.uniform(-5.0, 5.0), 2)),
        )
    return tuple(out.values())
