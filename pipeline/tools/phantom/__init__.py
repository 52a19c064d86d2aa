"""Synthetic sagittal spine MRI phantoms with exact ground truth.

``render_phantom(PhantomSpec(...))`` builds an analytic thoracolumbar spine (T10..sacrum by default) with
soft tissue, renders T1, T2 and STIR sagittal series with partial volume, bias field and Rician noise,
plus a vertebral-body label map and ``truth`` (heights, height loss, Genant grade, morphology, oedema,
retropulsion; see :mod:`pipeline.tools.phantom.truth` for the definitions). ``write_study`` writes it as a DICOM
study folder with ``truth.json``; ``write_samples`` regenerates the committed ``sample_dicom/`` studies.

Quick start (a fast, coarse phantom for unit tests: ``PhantomSpec.small(...)``)::

    from pipeline.tools.phantom import FractureSpec, PhantomSpec, render_phantom
    ph = render_phantom(PhantomSpec(seed=2, fractures=(parse_fracture("L1:wedge:35:edema=band:0.4"),)))
    ph.t2, ph.stir, ph.labels        # Volumes on one sagittal grid; ph.levels maps label -> Level
    ph.truth["vertebrae"]            # exactly what truth.json holds

Modules: ``spec`` (what to make), ``findings`` (what is abnormal at a level: fractures, slips, Modic changes,
Schmorl nodes), ``body`` (body shape, fractures), ``column`` (stacking, placed bodies and discs), ``anomalies``
(slips, scoliosis, Modic changes, Schmorl nodes built into the column), ``posterior``, ``canal``, ``soft`` (soft
tissue and organs), ``anatomy`` (assembly, field of view), ``tissues`` (signal tables), ``render`` (partial volume,
bias, noise), ``truth`` (definitions and truth.json), ``vendors``, ``dicom_writer``, ``uids``, ``samples``,
``verify`` (measuring a phantom back, for tests and benchmarks), ``variety`` (``random_spec(seed)``: a varied
training study per seed).

Opt-in clinical anatomy (defaults off, classic output unchanged): desiccated discs, spondylolisthesis
(``SlipSpec``), a field of view down to the pelvis (``fov_below_s1_mm``) with the unlabelled sacrum S2-S5,
coccyx and pelvic anatomy; see :class:`PhantomSpec`.
"""

from pipeline.tools.phantom.dicom_writer import TRANSFER_SYNTAXES, write_study
from pipeline.tools.phantom.findings import FractureSpec, SlipSpec, parse_fracture
from pipeline.tools.phantom.render import Phantom, PlaneImage, render_phantom
from pipeline.tools.phantom.samples import SAMPLE_STUDIES, write_samples
from pipeline.tools.phantom.spec import PhantomSpec, Vendor
from pipeline.tools.phantom.variety import random_spec

__all__ = [
    "FractureSpec",
    "PhantomSpec",
    "Phantom",
    "PlaneImage",
    "TRANSFER_SYNTAXES",
    "Vendor",
    "parse_fracture",
    "render_phantom",
    "SAMPLE_STUDIES",
    "SlipSpec",
    "random_spec",
    "write_samples",
    "write_study",
]
