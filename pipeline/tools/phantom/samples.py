"""The committed sample studies (``sample_dicom/``): one registry used by the CLI, the tests and the docs.

Regenerate them exactly with::

    spine-assess phantom --samples sample_dicom/

Each study folder holds one sub-folder per series (``IM0001.dcm`` ...), ``truth.json`` and the sample's
``clinical.yaml`` (kept in ``pipeline/tools/phantom/sample_clinical/<name>.yaml``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology
from pipeline.tools.phantom.dicom_writer import write_study
from pipeline.tools.phantom.findings import FractureSpec
from pipeline.tools.phantom.render import render_phantom
from pipeline.tools.phantom.spec import PhantomSpec, Vendor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleStudy:
    name: str  # folder name under sample_dicom/
    spec: PhantomSpec
    transfer_syntax: str
    summary: str


SAMPLE_STUDIES: tuple[SampleStudy, ...] = (
    SampleStudy(
        "01_normal",
        PhantomSpec(
            seed=101,
            vendor=Vendor.SIEMENS,
            include_axial_t2=True,
            include_localizer=True,
            patient_name="PHANTOM^NORMAL",
            patient_id="PH-0001",
            patient_sex="F",
            patient_age_years=54,
        ),
        "jpeg-ls",
        "no fracture; Siemens naming; with a 3-plane localizer and an oblique axial T2 stack",
    ),
    SampleStudy(
        "02_acute_osteoporotic_wedge",
        PhantomSpec(
            seed=202,
            vendor=Vendor.GE,
            top_level=Level.T11,
            rows=320,
            cols=320,
            pixel_spacing_mm=0.9375,
            fractures=(
                FractureSpec(
                    Level.L1,
                    Morphology.WEDGE,
                    35.0,
                    edema=True,
                    edema_pattern=EdemaPattern.BAND,
                    edema_fraction=0.35,
                ),
            ),
            patient_name="PHANTOM^ACUTE_WEDGE",
            patient_id="PH-0002",
            patient_sex="F",
            patient_age_years=78,
        ),
        "rle",
        "acute osteoporotic L1 wedge fracture, 35 % anterior height loss, oedema band under the superior endplate; GE",
    ),
    SampleStudy(
        "03_chronic_severe_collapse",
        PhantomSpec(
            seed=303,
            vendor=Vendor.PHILIPS,
            n_slices=13,
            pixel_spacing_mm=0.9,
            rows=352,
            cols=352,
            fractures=(FractureSpec(Level.T12, Morphology.CRUSH, 72.0, retropulsion_mm=3.5),),
            patient_name="PHANTOM^CHRONIC_COLLAPSE",
            patient_id="PH-0003",
            patient_sex="M",
            patient_age_years=81,
        ),
        "jpeg2000",
        "chronic T12 collapse, 72 % height loss (> 2/3), no oedema, 3.5 mm retropulsion; Philips 3 T naming",
    ),
    SampleStudy(
        "04_myeloma_four_acute_levels",
        PhantomSpec(
            seed=404,
            vendor=Vendor.CANON,
            slice_thickness_mm=3.5,
            slice_gap_mm=0.5,
            n_slices=17,
            fractures=(
                FractureSpec(
                    Level.T11,
                    Morphology.BICONCAVE,
                    28.0,
                    edema=True,
                    edema_pattern=EdemaPattern.DIFFUSE,
                    edema_fraction=0.55,
                ),
                FractureSpec(
                    Level.L1,
                    Morphology.WEDGE,
                    30.0,
                    edema=True,
                    edema_pattern=EdemaPattern.BAND,
                    edema_fraction=0.30,
                ),
                FractureSpec(
                    Level.L3,
                    Morphology.BICONCAVE,
                    36.0,
                    edema=True,
                    edema_pattern=EdemaPattern.DIFFUSE,
                    edema_fraction=0.65,
                ),
                FractureSpec(
                    Level.L4,
                    Morphology.CRUSH,
                    24.0,
                    edema=True,
                    edema_pattern=EdemaPattern.BAND,
                    edema_fraction=0.35,
                ),
            ),
            patient_name="PHANTOM^MYELOMA",
            patient_id="PH-0004",
            patient_sex="M",
            patient_age_years=64,
        ),
        "jpeg-ls",
        "multiple myeloma-like: four acute fractures (T11 biconcave, L1 wedge, L3 biconcave, L4 crush), "
        "diffuse and band oedema; Canon naming; 3.5 mm slices",
    ),
)


@dataclass(frozen=True)
class SampleReport:
    name: str
    render_s: float
    write_s: float
    files: int
    bytes: int
    transfer_syntax: str


def sample_clinical_text(name: str) -> str:
    """The ``clinical.yaml`` of the sample study ``name`` (the text committed in ``sample_dicom/<name>/``)."""
    return (
        resources.files("pipeline.tools.phantom")
        .joinpath("sample_clinical", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )


def write_samples(out_dir: Path, *, overwrite: bool = True) -> list[SampleReport]:
    """Render and write every sample study into ``out_dir/<name>/``; returns per-study timing and size."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = []
    for sample in SAMPLE_STUDIES:
        t0 = time.perf_counter()
        phantom = render_phantom(sample.spec)
        t1 = time.perf_counter()
        folder = write_study(
            phantom, out_dir / sample.name, transfer_syntax=sample.transfer_syntax, overwrite=overwrite
        )
        clinical = folder / "clinical.yaml"
        if overwrite or not clinical.exists():
            clinical.write_text(sample_clinical_text(sample.name), encoding="utf-8")
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        n_files = sum(1 for f in folder.rglob("*.dcm"))
        logger.info(
            "%s: rendered in %.1f s, written in %.1f s, %d files, %.1f MB",
            sample.name,
            t1 - t0,
            t2 - t1,
            n_files,
            size / 1e6,
        )
        report.append(SampleReport(sample.name, t1 - t0, t2 - t1, n_files, size, sample.transfer_syntax))
    return report
