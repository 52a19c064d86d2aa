"""``spine-assess phantom`` command line."""

import json

import pydicom
import pytest

from pipeline.cli import main


def test_phantom_command_writes_a_study_with_the_requested_fracture(tmp_path, capsys):
    out = tmp_path / "study"
    rc = main(
        [
            "-q",
            "phantom",
            str(out),
            "--seed",
            "3",
            "--matrix",
            "160",
            "--pixel-spacing",
            "2.0",
            "--slices",
            "5",
            "--fracture",
            "L1:wedge:30:edema=band:0.3",
            "--vendor",
            "philips",
            "--transfer-syntax",
            "rle",
        ]
    )
    assert rc == 0
    truth = json.loads((out / "truth.json").read_text())
    l1 = next(v for v in truth["vertebrae"] if v["level"] == "L1")
    assert l1["morphology"] == "wedge" and l1["height_loss_pct"] == pytest.approx(30.0, abs=1e-3)
    assert l1["edema"]["fraction"] == pytest.approx(0.3, abs=0.005)
    descriptions = {
        str(pydicom.dcmread(next(d.iterdir()), stop_before_pixels=True).SeriesDescription)
        for d in out.iterdir()
        if d.is_dir()
    }
    assert descriptions == {"T1W_TSE", "T2W_TSE", "STIR_LONGTR"}
    printed = capsys.readouterr().out
    assert "L1 (wedge 30 %, oedema)" in printed and "PHANTOM" not in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["phantom", "OUT", "--fracture", "L1:wodge:30"], "unknown kind 'wodge'"),
        (["phantom", "OUT", "--fracture", "L1:wedge:30:edema=band:2"], "0..0.8"),
        (["phantom"], "missing OUT folder"),
        (["phantom", "OUT", "--samples", "DIR"], "either OUT or --samples"),
        (["phantom", "OUT", "--matrix", "128", "--pixel-spacing", "1.0"], "field of view too small"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(tmp_path, capsys, args, message):
    args = [str(tmp_path / a) if a in ("OUT", "DIR") else a for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_level_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["phantom", "x", "--top-level", "Z2"])
    assert info.value.code == 2
    assert "unknown vertebral level" in capsys.readouterr().err


def test_help_explains_the_fracture_syntax(capsys):
    with pytest.raises(SystemExit):
        main(["phantom", "--help"])
    text = capsys.readouterr().out
    assert "LEVEL:KIND:LOSS" in text and "--samples" in text and "synthetic" in text
