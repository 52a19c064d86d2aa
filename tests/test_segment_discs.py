"""Disc-space partition (pipeline/segment/discs.py): regularisation of a collapsed body between two discs.

Tiny 1-D columns whose rows are written out by hand (1 mm per row, T2-like intensities: marrow 0.44, endplate
0.15, disc nucleus 0.85, oedema 0.85), with the partition the semi-Markov programme gives for them.
"""

from __future__ import annotations

import numpy as np

from pipeline.segment import load_segmentation_config
from pipeline.segment.discs import ColumnProfile, Segment, regularise

CFG = load_segmentation_config()
VALUE = {"m": 0.44, "e": 0.15, "n": 0.85}


def _profile(rows: str, segments: list[tuple[str, int, int]]) -> ColumnProfile:
    """Profile of a column described row by row (``m`` marrow, ``e`` endplate / cortex, ``n`` nucleus-bright)."""
    band = np.array([VALUE[c] for c in rows])
    marrow = (band == VALUE["m"]).astype(float)
    T = band.size
    d_mm = np.arange(-30.0, 81.0)
    return ColumnProfile(
        straight=np.tile(band[:, None], (1, d_mm.size)),
        d_mm=d_mm,
        wall_d_mm=np.zeros(T),
        marrow_level=VALUE["m"],
        marrow_sigma=0.02,
        local_level=np.full(T, VALUE["m"]),
        fraction=marrow,
        segments=tuple(Segment(k, a, b) for k, a, b in segments),
        cost=0.0,
        raw_fraction=marrow,
        step_mm=1.0,
        band_profile=band,
    )


BODY = "e" + "m" * 14 + "e"  # 16 rows
DISC = "n" * 6


def test_collapsed_body_between_two_discs_gets_the_slot_not_the_disc():
    # rows: disc 0-6, body 6-22, disc 22-28, body 28-44, disc 44-50, collapsed body 50-55, disc 55-61, body 61-77 ...
    rows = DISC + BODY + DISC + BODY + DISC + "emmme" + DISC + BODY + DISC + BODY + DISC
    assert len(rows) == 105
    # what the duration priors gave: one long disc over the collapsed body, a "body" on the next disc
    dp = [
        ("disc", 0, 6),
        ("body", 6, 22),
        ("disc", 22, 28),
        ("body", 28, 44),
        ("disc", 44, 55),
        ("body", 55, 60),
        ("disc", 60, 62),
        ("body", 62, 77),
        ("disc", 77, 83),
        ("body", 83, 99),
        ("disc", 99, 105),
    ]
    segs = regularise(_profile(rows, dp), CFG)
    bodies = [(s.t0, s.t1) for s in segs if s.kind == "body"]
    assert bodies == [(6, 22), (28, 44), (50, 55), (62, 77), (83, 99)]
    assert [s.kind for s in segs] == ["disc", "body"] * 5 + ["disc"]


def test_oedema_band_under_an_endplate_is_not_taken_for_a_disc():
    # the band (as bright as a nucleus, 6 rows) lies under the endplate of a body whose lower part is marrow:
    # the long "disc" [22, 35) is disc + endplate + band, with no body-thick gap between bright runs
    banded = "e" + "n" * 6 + "m" * 8 + "e"
    rows = DISC + BODY + DISC + banded + DISC + BODY + DISC + BODY + DISC
    dp = [
        ("disc", 0, 6),
        ("body", 6, 22),
        ("disc", 22, 35),
        ("body", 35, 44),
        ("disc", 44, 50),
        ("body", 50, 66),
        ("disc", 66, 72),
        ("body", 72, 88),
        ("disc", 88, 94),
    ]
    assert len(rows) == 94
    segs = regularise(_profile(rows, dp), CFG)
    assert [(s.kind, s.t0, s.t1) for s in segs] == dp


def test_no_nucleus_contrast_changes_nothing():
    # discs as dark as endplates on this contrast and no bright nucleus: the rule has no cue and stays out
    rows = DISC + BODY + DISC + BODY + DISC + "emmme" + DISC + BODY + DISC + BODY + DISC
    dp = [("disc", 0, 6), ("body", 6, 22), ("disc", 22, 28), ("body", 28, 44), ("disc", 44, 55)]
    dp += [("body", 55, 60), ("disc", 60, 62), ("body", 62, 77), ("disc", 77, 83), ("body", 83, 99), ("disc", 99, 105)]
    prof = _profile(rows, dp)
    flat = np.where(prof.band_profile == VALUE["n"], VALUE["m"] + 0.02, prof.band_profile)
    prof = ColumnProfile(**{**prof.__dict__, "band_profile": flat})
    segs = regularise(prof, CFG)
    assert [(s.kind, s.t0, s.t1) for s in segs] == dp
