"""The committed sample studies in sample_dicom/ and their registry."""

import json
from pathlib import Path

import pydicom
import pytest

from pipeline.tools.phantom import SAMPLE_STUDIES, render_phantom
from pipeline.tools.phantom.anatomy import build_anatomy
from tests.dicom_validation import dciodvfy

NAMES = [
    "01_normal",
    "02_acute_osteoporotic_wedge",
    "03_chronic_severe_collapse",
    "04_myeloma_four_acute_levels",
]


def test_registry_names_and_variety():
    assert [s.name for s in SAMPLE_STUDIES] == NAMES
    assert len({s.spec.vendor for s in SAMPLE_STUDIES}) == 4
    assert len({s.transfer_syntax for s in SAMPLE_STUDIES}) >= 3
    normal, wedge, collapse, myeloma = (s.spec for s in SAMPLE_STUDIES)
    assert not normal.fractures and normal.include_axial_t2 and normal.include_localizer
    (fx,) = wedge.fractures
    assert fx.kind.value == "wedge" and fx.edema and fx.edema_pattern.value == "band"
    (fx,) = collapse.fractures
    assert fx.height_loss_pct > 200 / 3 and not fx.edema and fx.retropulsion_mm > 0
    assert len(myeloma.fractures) == 4 and all(f.edema for f in myeloma.fractures)
    assert {f.kind.value for f in myeloma.fractures} >= {"biconcave", "wedge"}
    assert {f.edema_pattern.value for f in myeloma.fractures} == {"band", "diffuse"}


@pytest.mark.parametrize("sample", SAMPLE_STUDIES, ids=NAMES)
def test_sample_specs_fit_their_field_of_view(sample):
    build_anatomy(sample.spec)  # raises ConfigError when the column does not fit


def _committed(repo_root: Path) -> Path:
    root = repo_root / "sample_dicom"
    if not root.is_dir():
        pytest.skip("sample_dicom/ not present in this checkout")
    return root


def test_committed_samples_are_complete_and_small(repo_root):
    root = _committed(repo_root)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 25e6
    for sample in SAMPLE_STUDIES:
        folder = root / sample.name
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["generator"]["seed"] == sample.spec.seed
        for info in truth["study"]["series"]:
            series_dirs = [
                d
                for d in folder.iterdir()
                if d.is_dir() and d.name.endswith(info["series_description"].replace(" ", "_"))
            ]
            assert len(series_dirs) == 1, info["series_description"]
            assert len(list(series_dirs[0].glob("IM*.dcm"))) == info["n_images"]


def test_every_committed_series_passes_dciodvfy(repo_root):
    root = _committed(repo_root)
    for series in sorted(d for d in root.glob("*/*") if d.is_dir()):
        errors, warnings = dciodvfy(sorted(series.glob("*.dcm"))[0])
        assert not errors, f"{series}: {errors}"
        assert all("<M>" in w or "<IR>" in w for w in warnings), f"{series}: {warnings}"


def _assert_close(a, b, where="truth"):
    """Equal structure and strings; numbers equal within float noise (CPUs may differ in the last bits)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=max(1e-3, 1e-4 * abs(b))), where
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLE_STUDIES, ids=NAMES)
def test_committed_samples_match_the_generator(repo_root, sample):
    """Regenerating gives the committed truth and pixels (bit-identical on the machine that made them;
    other CPUs' maths libraries may round differently, so a handful of voxels may differ)."""
    folder = _committed(repo_root) / sample.name
    ph = render_phantom(sample.spec)
    _assert_close(ph.truth, json.loads((folder / "truth.json").read_text()))
    t2 = next(s for s in ph.truth["study"]["series"] if s["role"] == "T2")
    series = next(
        d for d in folder.iterdir() if d.is_dir() and d.name.endswith(t2["series_description"].replace(" ", "_"))
    )
    mid = ph.t2.shape[0] // 2
    ds = pydicom.dcmread(series / f"IM{mid + 1:04d}.dcm")
    assert ds.SOPInstanceUID and ds.SeriesInstanceUID == t2["series_instance_uid"]
    assert (ds.pixel_array == ph.t2.array[mid]).mean() > 0.999
