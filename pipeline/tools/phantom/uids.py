"""Deterministic DICOM UIDs: the same spec always yields the same study/series/instance UIDs."""

from __future__ import annotations

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from pipeline.tools.phantom.spec import GENERATOR_VERSION, PhantomSpec

#: Series roles written by the generator, in acquisition order.
SERIES_ROLES = ("LOCALIZER", "T2", "T1", "STIR", "AXIAL_T2")


def make_uid(spec: PhantomSpec, *parts: object) -> str:
    """UID derived from the spec (canonical text), the generator version and ``parts``."""
    sources = ["spine-assess-phantom", GENERATOR_VERSION, spec.canonical(), *(str(p) for p in parts)]
    return generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=sources)


def study_uids(spec: PhantomSpec) -> dict[str, object]:
    """Study, frame-of-reference and per-role series UIDs."""
    return {
        "study_instance_uid": make_uid(spec, "study"),
        "frame_of_reference_uid": make_uid(spec, "frame-of-reference"),
        "series_instance_uids": {role: make_uid(spec, "series", role) for role in SERIES_ROLES},
    }
