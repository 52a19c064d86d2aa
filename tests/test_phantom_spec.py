"""Phantom specifications: validation, the command-line fracture syntax, JSON round trip."""

import pytest

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom import FractureSpec, PhantomSpec, parse_fracture
from pipeline.tools.phantom.findings import DEFAULT_EDEMA_FRACTION
from pipeline.tools.phantom.spec import spec_from_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "L1:wedge:35:edema=band:0.4",
            FractureSpec(Level.L1, Morphology.WEDGE, 35, True, EdemaPattern.BAND, 0.4),
        ),
        ("t12:crush:72:retro=3", FractureSpec(Level.T12, Morphology.CRUSH, 72, retropulsion_mm=3.0)),
        (
            "L3:biconcave:30%:edema=diffuse",
            FractureSpec(
                Level.L3,
                Morphology.BICONCAVE,
                30,
                True,
                EdemaPattern.DIFFUSE,
                DEFAULT_EDEMA_FRACTION[EdemaPattern.DIFFUSE],
            ),
        ),
        (
            "L2:normal:0:edema=diffuse:0.5",
            FractureSpec(Level.L2, Morphology.NORMAL, 0, True, EdemaPattern.DIFFUSE, 0.5),
        ),
        (
            "L4:wedge:25:edema=band:fraction=0.2:retro=1.5",
            FractureSpec(Level.L4, Morphology.WEDGE, 25, True, EdemaPattern.BAND, 0.2, 1.5),
        ),
    ],
)
def test_parse_fracture_accepts_documented_forms(text, expected):
    assert parse_fracture(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("L1:wedge", "at least LEVEL:KIND:LOSS"),
        ("X9:wedge:30", "unknown vertebral level"),
        ("L1:wodge:30", "unknown kind 'wodge'"),
        ("L1:wedge:abc", "not a number"),
        ("L1:wedge:5", "needs height_loss_pct >= 10"),
        ("L1:wedge:95", "0..85"),
        ("L1:wedge:30:edema=purple", "band, diffuse or none"),
        ("L1:wedge:30:edema=band:0.95", "0..0.8"),
        ("L1:wedge:30:colour=red", "unknown option"),
        ("L1:normal:0", "changes nothing"),
        ("C5:wedge:30", "thoracic, lumbar and S1"),
    ],
)
def test_parse_fracture_rejects_bad_input_with_the_syntax(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_fracture(text)
    assert "Expected LEVEL:KIND:LOSS" in str(info.value)


def test_edema_without_fraction_gets_the_pattern_default():
    fx = FractureSpec(Level.L1, Morphology.WEDGE, 30, edema=True)
    assert fx.edema_fraction == DEFAULT_EDEMA_FRACTION[EdemaPattern.BAND]
    assert fx.acute


def test_fraction_without_edema_is_rejected():
    with pytest.raises(ConfigError, match="edema=False"):
        FractureSpec(Level.L1, Morphology.WEDGE, 30, edema_fraction=0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractures": (FractureSpec(Level.T9, Morphology.WEDGE, 30),)}, "outside the labelled range"),
        (
            {
                "fractures": (
                    FractureSpec(Level.L1, Morphology.WEDGE, 30),
                    FractureSpec(Level.L1, Morphology.CRUSH, 30),
                )
            },
            "two fracture entries",
        ),
        ({"top_level": "L5"}, "between T1 and L4"),
        ({"top_level": "Q3"}, "unknown vertebral level"),
        ({"vendor": "hitachi"}, "not one of siemens, ge, philips, canon"),
        ({"n_slices": 1}, "n_slices"),
        ({"include_sacrum": False, "bottom_level": "T9"}, "bottom_level"),
        ({"rows": 100, "pixel_spacing_mm": 1.0}, None),
    ],
)
def test_phantom_spec_validation(kwargs, match):
    if match is None:  # valid spec; the field-of-view check happens when the anatomy is built
        PhantomSpec(**kwargs)
        return
    with pytest.raises(ConfigError, match=match):
        PhantomSpec(**kwargs)


def test_defaults_give_fake_but_present_identifiers():
    spec = PhantomSpec(seed=2)
    assert spec.patient_name == "PHANTOM^SEED2"
    assert spec.patient_id == "PH-0002"


def test_labelled_levels_end_with_s1_unless_the_sacrum_is_excluded():
    assert PhantomSpec().labelled_levels[0] is Level.T10
    assert PhantomSpec().labelled_levels[-1] is Level.S1
    no_sacrum = PhantomSpec(include_sacrum=False, bottom_level=Level.L3)
    assert no_sacrum.labelled_levels == (Level.T10, Level.T11, Level.T12, Level.L1, Level.L2, Level.L3)


def test_json_round_trip():
    spec = PhantomSpec(seed=5, vendor="ge", fractures=(parse_fracture("L1:wedge:35:edema=band:0.4:retro=2"),))
    assert spec_from_json(spec.to_json()) == spec
    assert spec.canonical() == spec_from_json(spec.to_json()).canonical()


def test_small_preset_is_coarse_and_overridable():
    spec = PhantomSpec.small(seed=4, n_slices=9)
    assert (spec.rows, spec.cols, spec.pixel_spacing_mm, spec.n_slices, spec.seed) == (192, 192, 1.7, 9, 4)
    assert spec.rows * spec.pixel_spacing_mm >= PhantomSpec().rows * PhantomSpec().pixel_spacing_mm - 1.0
