"""Shared result types (pipeline/model.py) that carry behaviour: LoadedSeries and its frame of reference."""

from __future__ import annotations

import dataclasses

import numpy as np
from report_fixtures import FOR_UID, _series

from pipeline.model import LoadedSeries, Role, Substitute
from pipeline.volume import Volume


def _volume() -> Volume:
    return Volume(np.zeros((2, 3, 4), dtype=np.float32), (4.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))


def test_of_takes_uid_frame_and_substitute_from_the_record():
    rec = dataclasses.replace(_series("1.2.3.4", Role.STIR, "t2 spair"), substitute=Substitute.T2_FATSAT)
    vol = _volume()
    loaded = LoadedSeries.of(vol, rec)
    assert loaded.volume is vol and loaded.series_uid == "1.2.3.4"
    assert loaded.frame_of_reference == FOR_UID and loaded.substitute is Substitute.T2_FATSAT


def test_same_frame_is_unknown_unless_both_frames_are_known():
    vol = _volume()
    a, b, c = LoadedSeries(vol, None, "1.2"), LoadedSeries(vol, None, "1.2"), LoadedSeries(vol, None, "1.3")
    assert a.same_frame(b) is True and a.same_frame(c) is False
    assert LoadedSeries(vol).same_frame(a) is None and a.same_frame(LoadedSeries(vol)) is None
