"""Role classification from vendor names and MR physics (rules in configs/ingest.yaml)."""

import pytest

from pipeline.ingest.attributes import AcquisitionInfo
from pipeline.ingest.config import load_ingest_config
from pipeline.ingest.roles import classify_role, normalise_name
from pipeline.model import Role, Substitute

CFG = load_ingest_config()
T2_FS, DIXON = Substitute.T2_FATSAT, Substitute.DIXON_WATER


@pytest.mark.parametrize(
    ("name", "role", "sub"),
    [
        # Siemens
        ("t2_tse_sag", Role.T2, None),
        ("t1_tse_sag_320", Role.T1, None),
        ("t2_tirm_sag", Role.STIR, None),
        ("t2_stir_sag", Role.STIR, None),
        ("t2_tse_fs_sag", Role.STIR, T2_FS),
        ("t2_tse_dixon_sag_W", Role.STIR, DIXON),
        ("t2_tse_dixon_sag_F", Role.OTHER, None),
        ("t2_tse_dixon_sag_opp", Role.OTHER, None),
        ("t1_tirm_sag", Role.T1, None),
        ("t2_me2d_sag", Role.OTHER, None),
        ("localizer", Role.OTHER, None),
        ("ep2d_diff_sag", Role.OTHER, None),
        # GE
        ("Sag T2 FRFSE", Role.T2, None),
        ("Sag T1 FSE", Role.T1, None),
        ("SAG STIR", Role.STIR, None),
        ("Sag FSE-IR", Role.STIR, None),
        ("Sag T2 FS", Role.STIR, T2_FS),
        ("WATER: Sag T2 FLEX", Role.STIR, DIXON),
        ("FAT: Sag T2 FLEX", Role.OTHER, None),
        ("Sag T1 FLAIR", Role.T1, None),
        ("3-pl loc", Role.OTHER, None),
        # Philips
        ("T2W_TSE", Role.T2, None),
        ("sT2W_TSE", Role.T2, None),
        ("T1W_TSE", Role.T1, None),
        ("STIR_LONGTR", Role.STIR, None),
        ("T2W_SPAIR", Role.STIR, T2_FS),
        ("sT2W_TSE_SPAIR", Role.STIR, T2_FS),
        ("mDIXON W", Role.STIR, DIXON),
        ("Survey", Role.OTHER, None),
        # Canon
        ("T2W_FSE", Role.T2, None),
        ("T1W_SE", Role.T1, None),
        ("STIR", Role.STIR, None),
        ("T2 FatSat", Role.STIR, T2_FS),
        # other
        ("T1 +C", Role.OTHER, None),
        ("t1_tse_fs_sag_post", Role.OTHER, None),
        ("T2 FLAIR", Role.OTHER, None),
        ("PD_TSE", Role.OTHER, None),
        ("image", Role.OTHER, None),
        ("sub-01_T2w", Role.T2, None),
    ],
)
def test_vendor_names(name, role, sub):
    got_role, rule, conf, got_sub = classify_role(AcquisitionInfo(series_description=name), cfg=CFG)
    assert (got_role, got_sub) == (role, sub), rule
    assert 0.0 <= conf <= 1.0


def test_normalise_name():
    assert normalise_name("  T2W_TSE-SAG.v2 ") == "t2w tse sag v2"
    assert normalise_name("*tir2d1_15") == "*tir2d1 15"


@pytest.mark.parametrize(
    ("params", "role", "sub"),
    [
        (
            {
                "inversion_time_ms": 150.0,
                "scanning_sequence": ("SE", "IR"),
                "repetition_time_ms": 4000.0,
                "echo_time_ms": 40.0,
            },
            Role.STIR,
            None,
        ),  # 1.5 T STIR
        (
            {
                "inversion_time_ms": 230.0,
                "repetition_time_ms": 5000.0,
                "echo_time_ms": 50.0,
                "field_strength_t": 3.0,
            },
            Role.STIR,
            None,
        ),  # 3 T, IR inferred from TI
        (
            {"inversion_time_ms": 2500.0, "repetition_time_ms": 9000.0, "echo_time_ms": 100.0},
            Role.OTHER,
            None,
        ),
        ({"inversion_time_ms": 860.0, "repetition_time_ms": 2000.0, "echo_time_ms": 10.0}, Role.T1, None),
        (
            {
                "inversion_recovery": False,
                "inversion_time_ms": 0.0,
                "repetition_time_ms": 3500.0,
                "echo_time_ms": 100.0,
            },
            Role.T2,
            None,
        ),
        ({"repetition_time_ms": 600.0, "echo_time_ms": 12.0}, Role.T1, None),
        ({"repetition_time_ms": 3000.0, "echo_time_ms": 30.0}, Role.OTHER, None),  # PD
        ({"repetition_time_ms": 3800.0, "echo_time_ms": 80.0, "scan_options": ("FS",)}, Role.STIR, T2_FS),
        ({"repetition_time_ms": 3800.0, "echo_time_ms": 80.0, "fat_suppression": "FAT"}, Role.STIR, T2_FS),
        ({"repetition_time_ms": 550.0, "echo_time_ms": 10.0, "scan_options": ("FS",)}, Role.OTHER, None),
        (
            {
                "repetition_time_ms": 3800.0,
                "echo_time_ms": 80.0,
                "image_type": ("DERIVED", "PRIMARY", "DIXON", "WATER"),
            },
            Role.STIR,
            DIXON,
        ),
        (
            {
                "repetition_time_ms": 3800.0,
                "echo_time_ms": 80.0,
                "image_type": ("ORIGINAL", "PRIMARY", "W", "W"),
            },
            Role.STIR,
            DIXON,
        ),
        ({"repetition_time_ms": 500.0, "echo_time_ms": 15.0, "scanning_sequence": ("GR",)}, Role.OTHER, None),
        ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, Role.OTHER, None),
        ({"repetition_time_ms": 600.0, "echo_time_ms": 12.0, "contrast_agent": "GADOVIST"}, Role.OTHER, None),
    ],
)
def test_physics_without_names(params, role, sub):
    got = classify_role(AcquisitionInfo(**params), cfg=CFG)
    assert (got.role, got.substitute) == (role, sub), got.rule
    assert "no name rule matched" in got.rule or got.role is Role.OTHER


def test_agreement_raises_confidence_above_either_source():
    name_only = classify_role(AcquisitionInfo(series_description="t2_tse_sag"), cfg=CFG)
    phys_only = classify_role(AcquisitionInfo(repetition_time_ms=4000.0, echo_time_ms=100.0), cfg=CFG)
    both = classify_role(
        AcquisitionInfo(series_description="t2_tse_sag", repetition_time_ms=4000.0, echo_time_ms=100.0),
        cfg=CFG,
    )
    assert name_only.role is phys_only.role is both.role is Role.T2
    assert both.confidence > max(name_only.confidence, phys_only.confidence)
    assert "agree" in both.rule


def test_disagreement_is_reported_and_lowers_confidence():
    # Named "T2" but acquired as inversion recovery with TI 150 ms: physics (IR) is the stronger rule.
    acq = AcquisitionInfo(
        series_description="Sag T2",
        repetition_time_ms=4000.0,
        echo_time_ms=40.0,
        inversion_time_ms=150.0,
        scanning_sequence=("SE", "IR"),
    )
    got = classify_role(acq, cfg=CFG)
    assert got.role is Role.STIR  # STIR refines T2: not a contradiction
    assert "refines" in got.rule
    # Named STIR but a short-TR short-TE acquisition: a real contradiction.
    acq = AcquisitionInfo(
        series_description="SAG STIR", repetition_time_ms=500.0, echo_time_ms=10.0, inversion_recovery=False
    )
    got = classify_role(acq, cfg=CFG)
    assert got.rule.startswith("DISAGREEMENT")
    assert got.role is Role.STIR  # name rule 0.85 beats TR/TE rule 0.75 ...
    assert got.confidence == pytest.approx(0.85 * CFG.roles.disagreement_factor)  # ... with lowered confidence
    # Named T1 but a FLAIR inversion (physics rule 0.85 vs name 0.85: physics wins ties).
    acq = AcquisitionInfo(
        series_description="T1 sag", inversion_time_ms=2500.0, repetition_time_ms=9000.0, echo_time_ms=90.0
    )
    got = classify_role(acq, cfg=CFG)
    assert got.role is Role.OTHER and "the physics wins" in got.rule


def test_fat_sat_name_refines_plain_t2_physics():
    # Philips SPAIR is usually invisible in ScanOptions: name says fat-sat, physics only long TR/TE.
    acq = AcquisitionInfo(series_description="T2W_SPAIR", repetition_time_ms=3500.0, echo_time_ms=70.0)
    got = classify_role(acq, cfg=CFG)
    assert (got.role, got.substitute) == (Role.STIR, T2_FS)
    assert "refines T2" in got.rule


def test_enhanced_mr_pulse_sequence_name_counts_as_name():
    got = classify_role(AcquisitionInfo(sequence_name="*tir2d1_15"), cfg=CFG)
    assert got.role is Role.STIR
