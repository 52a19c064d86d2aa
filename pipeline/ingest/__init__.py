"""Ingest stage: study folders (PACS exports, CDs, scanner consoles, NIfTI research data) -> typed records
of studies and series, the series choice for the later stages, and float32 volumes with their geometry.

Typical use (what :mod:`pipeline.run` does)::

    cfg = load_ingest_config()                  # configs/ingest.yaml, validated
    study = discover_study(folder, cfg=cfg)     # headers only; StudyError if 0 or >1 studies / patients
    choice = choose_series(study, cfg=cfg)      # anatomy / stir / t1 + a decision for every series
    anatomy = load_series(choice.anatomy, cfg=cfg)   # Volume, float32, LPS, (slice, row, col)

Modules: :mod:`.config` (settings), :mod:`.headers` (reading one file's header, defensively),
:mod:`.attributes` (what the parsed header says), :mod:`.geometry` (orientation, stack checks), :mod:`.roles`
(T1/T2/STIR/OTHER), :mod:`.discovery` (walking and grouping), :mod:`.nifti`, :mod:`.pixels` (decoding; the module
docstring explains why python-gdcm is not needed), :mod:`.selection`, :mod:`.summary` (tables for
``spine-assess inspect``).

Nothing found on disk crashes this stage: files that are not usable images are skipped with a logged
reason (:class:`~pipeline.model.SkippedFile`), series that cannot become a volume carry ``problems``,
and the functions raise only :class:`~pipeline.errors.InputError` subclasses (``DicomReadError``,
``SeriesError``, ``StudyError``) or :class:`~pipeline.errors.ConfigError`.
"""

from pipeline.ingest.attributes import AcquisitionInfo, InstanceHeader
from pipeline.ingest.config import IngestConfig, default_ingest_config, load_ingest_config
from pipeline.ingest.discovery import Discovery, discover, discover_studies, discover_study
from pipeline.ingest.geometry import classify_orientation
from pipeline.ingest.headers import read_header
from pipeline.ingest.pixels import (
    SliceSource,
    UsableSeries,
    decode_problem,
    load_series,
    load_usable_series,
    read_frames,
    read_source_datasets,
    slice_sources,
)
from pipeline.ingest.roles import RoleDecision, classify_role
from pipeline.ingest.selection import choose_series

__all__ = [
    "AcquisitionInfo",
    "Discovery",
    "IngestConfig",
    "InstanceHeader",
    "RoleDecision",
    "SliceSource",
    "UsableSeries",
    "choose_series",
    "classify_orientation",
    "classify_role",
    "default_ingest_config",
    "decode_problem",
    "discover",
    "discover_studies",
    "discover_study",
    "load_ingest_config",
    "load_series",
    "load_usable_series",
    "read_frames",
    "read_header",
    "read_source_datasets",
    "slice_sources",
]
