"""Typed results passed between stages (frozen dataclasses and coded values).

Each stage module owns the *functions*; this module owns the *data* they exchange, so that stages
never import each other. Chaining happens in :mod:`pipeline.run` only.

Conventions: lengths in mm (``_mm``), percentages 0-100 (``_pct``), ratios unitless (``ratio``),
positions in LPS patient coordinates (``_lps``), array indices ``(slice, row, col)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.levels import Level
from pipeline.volume import Volume

Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------- coded values
class Orientation(StrEnum):
    SAGITTAL = "SAGITTAL"
    AXIAL = "AXIAL"
    CORONAL = "CORONAL"
    OBLIQUE = "OBLIQUE"
    MIXED = "MIXED"  # instances of one series disagree (e.g. a 3-plane localizer)
    UNKNOWN = "UNKNOWN"  # no usable ImageOrientationPatient


class Role(StrEnum):
    T1 = "T1"
    T2 = "T2"
    STIR = "STIR"
    OTHER = "OTHER"


class Substitute(StrEnum):
    """A fluid-sensitive fat-suppressed series standing in for a true STIR (flagged, lower confidence)."""

    T2_FATSAT = "T2_FATSAT"  # SPAIR / CHESS / fat-sat T2
    DIXON_WATER = "DIXON_WATER"


class Morphology(StrEnum):
    NORMAL = "normal"
    WEDGE = "wedge"
    BICONCAVE = "biconcave"
    CRUSH = "crush"
    NOT_ASSESSABLE = "not_assessable"


class StirStatus(StrEnum):
    """How the STIR stage ended: oedema measured, no fluid-sensitive series to measure it on, or it could not be."""

    MEASURED = "measured"
    NOT_AVAILABLE = "not_available"
    FAILED = "failed"


class EdemaPattern(StrEnum):
    NONE = "none"
    BAND = "band"  # subchondral band under an endplate
    DIFFUSE = "diffuse"
    NOT_ASSESSABLE = "not_assessable"


# --------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class SeriesRecord:
    """One series as discovered from headers (pixel data not yet read)."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str | None
    modality: str
    description: str
    series_number: int | None
    orientation: Orientation
    role: Role
    role_rule: str  # which rule decided the role, in words
    role_confidence: float  # 0..1
    substitute: Substitute | None
    n_images: int  # frames for Enhanced MR, files for classic
    rows: int
    cols: int
    pixel_spacing_mm: tuple[float, float] | None  # (row pitch, col pitch)
    slice_thickness_mm: float | None
    transfer_syntaxes: tuple[str, ...]
    files: tuple[Path, ...]
    source: str = "dicom"  # "dicom" or "nifti"
    problems: tuple[str, ...] = ()  # reasons this series cannot be used (empty when usable)
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    inversion_time_ms: float | None = None
    manufacturer: str = ""
    # A series whose images differ in orientation or contrast (3-plane localizer, Dixon W/F/IP/OP in one
    # series) is split into stacks: ``stack`` names this one (e.g. "SAGITTAL", "WATER"), "" when not split.
    stack: str = ""
    # (index into ``files``, 1-based frame number) of the frames of multi-frame files that belong to this
    # record; empty means every frame of every file.
    frames: tuple[tuple[int, int], ...] = ()
    slice_normal_lps: tuple[float, float, float] | None = None  # unit normal of increasing slice index
    slice_spacing_mm: float | None = None  # pitch between slice positions (not SliceThickness)
    field_strength_t: float | None = None
    protocol_name: str = ""
    notes: tuple[str, ...] = ()  # remarks that do not prevent use (e.g. "split from a mixed series")
    # what was left out to make the series usable (e.g. a duplicate image at one slice position); the report
    # shows these as warnings when the series is used
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Unique within a study: the SeriesInstanceUID, plus the stack name for split series."""
        return f"{self.series_uid}#{self.stack}" if self.stack else self.series_uid

    @property
    def usable(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class StudyRecord:
    """One study found under a folder. ``patient_key`` is a salted hash, never the patient ID itself."""

    study_uid: str
    patient_key: str
    description: str
    study_date: str | None
    series: tuple[SeriesRecord, ...]
    root: Path
    skipped: tuple[SkippedFile, ...] = ()
    problems: tuple[str, ...] = ()  # reasons the study as a whole cannot be used (e.g. several patients)


@dataclass(frozen=True)
class SeriesDecision:
    series_uid: str
    used: bool
    used_as: str | None  # "anatomy", "stir", "t1" or None (a series used twice: "anatomy", reason says both)
    reason: str
    stack: str = ""  # SeriesRecord.stack of a split series


@dataclass(frozen=True)
class SeriesChoice:
    """Which series each later stage uses, and why every series was or was not used."""

    anatomy: SeriesRecord | None
    stir: SeriesRecord | None
    t1: SeriesRecord | None
    decisions: tuple[SeriesDecision, ...]
    warnings: tuple[str, ...] = ()

    def decision_for(self, series: SeriesRecord) -> SeriesDecision | None:
        """Why ``series`` was or was not used (a split series has one decision per stack); None: not considered."""
        return next(
            (d for d in reversed(self.decisions) if (d.series_uid, d.stack) == (series.series_uid, series.stack)),
            None,
        )


@dataclass(frozen=True)
class LoadedSeries:
    """A series' pixels with the header facts that later stages compare or record.

    ``frame_of_reference`` names the patient coordinate system of the pixels: two series with the same name share
    one (their scanner geometry can be trusted to align), None means unknown. For DICOM it is the
    FrameOfReferenceUID (:meth:`of`); image files (NIfTI, NRRD, MHA) carry none, so whoever reads them names it
    from what the user says (:func:`pipeline.run_stir.run_stir`: the file whose frame it is).
    """

    volume: Volume
    series_uid: str | None = None  # recorded in the results; None for an image file
    frame_of_reference: str | None = None
    substitute: Substitute | None = None  # a fat-sat T2 or Dixon water image standing in for a STIR

    @classmethod
    def of(cls, volume: Volume, record: SeriesRecord) -> LoadedSeries:
        """``volume`` as loaded from the DICOM (or NIfTI) series ``record``."""
        return cls(volume, record.series_uid, record.frame_of_reference_uid, record.substitute)

    def same_frame(self, other: LoadedSeries) -> bool | None:
        """True: one frame of reference; False: two; None: at least one is unknown."""
        if self.frame_of_reference is None or other.frame_of_reference is None:
            return None
        return self.frame_of_reference == other.frame_of_reference


# --------------------------------------------------------------------------- segmentation
@dataclass(frozen=True)
class VertebraSeg:
    label: int  # value in the label map (1..N, cranial -> caudal)
    level: Level | None
    level_confidence: float  # 0..1
    centroid_lps_mm: Vec3
    mid_slice: int  # slice index of the body's mid-sagittal section
    bbox: tuple[int, int, int, int, int, int]  # (s0, r0, c0, s1, r1, c1), stop exclusive
    quality: float  # 0..1, how much the segmentation of this body can be trusted
    volume_mm3: float = 0.0
    is_sacrum: bool = False  # S1 is kept in the label map as the anchor, flagged


@dataclass(frozen=True)
class SegmentationResult:
    labels: Volume  # uint16 on the anatomy series grid; 0 background
    vertebrae: tuple[VertebraSeg, ...]  # cranial -> caudal
    series_uid: str
    sacrum_found: bool
    labelling_method: str  # e.g. "sacrum anchor", "user anchor L5=3", "no anchor"
    warnings: tuple[str, ...] = ()
    column_axis_lps: tuple[Vec3, ...] = ()  # polyline along the anterior canal / body centres, for overlays
    model_sha256: str = ""  # sha256 of the segmentation network that produced the masks (provenance)


# --------------------------------------------------------------------------- morphometry
@dataclass(frozen=True)
class Heights:
    anterior_mm: float
    middle_mm: float
    posterior_mm: float


@dataclass(frozen=True)
class PosteriorWall:
    assessable: bool
    reason: str  # why not assessable, or how measured
    bulge_mm: float | None = None
    canal_compromise_pct: float | None = None
    expected_canal_mm: float | None = None


@dataclass(frozen=True)
class VertebraMorphometry:
    label: int
    level: Level | None
    assessable: bool
    reason: str  # when not assessable: why; else a short method note
    heights: Heights | None = None
    reference_height_mm: float | None = None
    reference_method: str = ""
    reference_labels: tuple[int, ...] = ()
    height_loss_pct: float | None = None
    genant_grade: int | None = None
    morphology: Morphology = Morphology.NOT_ASSESSABLE
    wedge_angle_deg: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # "ha_hp", "hm_hp", "hp_ref"
    landmarks_lps: dict[str, Vec3] = field(default_factory=dict)  # six points, names like "anterior_superior"
    posterior_wall: PosteriorWall = PosteriorWall(False, "not measured")
    slice_spread_pct: float | None = None  # spread of height loss over neighbouring slices (robustness)
    confidence: float | None = None  # 0..1 heuristic (segmentation quality, slice agreement, reference kind)
    measured_slice: int | None = None  # slice index of the mid-sagittal section measured
    ap_depth_mm: float | None = None  # AP depth of the body along its own axis
    used_as_reference: bool = False  # its Hp is used for its neighbours' reference heights (not crushed)
    low_confidence: bool = False  # graded on a mask whose plausibility checks raised doubts (``reliability_notes``)
    grade_uncertain: bool = False  # height loss within the measurement uncertainty of the fracture threshold
    reliability_notes: tuple[str, ...] = ()  # plausibility findings: why low confidence / not a reference body

    @property
    def grade_display(self) -> GradeDisplay:
        """How the grade is shown everywhere (:func:`grade_display`)."""
        return grade_display(
            assessable=self.assessable,
            genant_grade=self.genant_grade,
            low_confidence=self.low_confidence,
            grade_uncertain=self.grade_uncertain,
            height_loss_pct=self.height_loss_pct,
            reason=self.reason,
            reliability_notes=self.reliability_notes,
        )


class GradeState(StrEnum):
    """How far a vertebra's Genant grade can be relied on; every output shows it (see :func:`grade_display`)."""

    DEFINITE = "definite"
    UNCERTAIN = "uncertain"  # measured, but at the fracture threshold or on a doubtful mask: fracture status unknown
    NOT_ASSESSABLE = "not_assessable"  # no grade could be measured


@dataclass(frozen=True)
class GradeDisplay:
    """The displayed state of one vertebra's grade: the measured value plus how far it can be trusted, and why."""

    state: GradeState
    grade: int | None  # the measured Genant grade (None when not measured)
    note: str  # why uncertain / not assessable; "" when definite

    @property
    def fractured(self) -> bool | None:
        """Genant >= 1, or ``None`` (unknown) unless the grade is definite."""
        return self.grade >= 1 if self.state is GradeState.DEFINITE and self.grade is not None else None

    @property
    def short(self) -> str:
        """``"2"``, ``"0?"`` (uncertain), ``"n/a"`` (not assessable)."""
        if self.grade is None or self.state is GradeState.NOT_ASSESSABLE:
            return "n/a"
        return f"{self.grade}?" if self.state is GradeState.UNCERTAIN else str(self.grade)

    @property
    def text(self) -> str:
        """``"Genant 2"``, ``"Genant 0? uncertain"``, ``"not assessable"`` (the note says why)."""
        if self.grade is None or self.state is GradeState.NOT_ASSESSABLE:
            return "not assessable"
        return f"Genant {self.short}" + (" uncertain" if self.state is GradeState.UNCERTAIN else "")


def grade_display(
    *,
    assessable: bool,
    genant_grade: int | None,
    low_confidence: bool = False,
    grade_uncertain: bool = False,
    height_loss_pct: float | None = None,
    reason: str = "",
    reliability_notes: tuple[str, ...] | list[str] = (),
) -> GradeDisplay:
    """The one decision of how a vertebra's grade is shown (report.json, HTML, terminal, overlay, SR, rules).

    A grade measured on a low-confidence mask, or a height loss within the measurement uncertainty of the
    fracture threshold, is *uncertain*: the measured grade is kept but the fracture status is unknown. No grade
    is *not assessable*, with the reason.
    """
    if not assessable or genant_grade is None:
        why = reason if not assessable and reason else "no Genant grade could be measured"
        return GradeDisplay(GradeState.NOT_ASSESSABLE, None, why)
    if low_confidence:
        why = "; ".join(reliability_notes) or "plausibility checks failed"
        return GradeDisplay(
            GradeState.UNCERTAIN,
            genant_grade,
            f"measured on a low-confidence mask ({why}): fracture status unknown; check the images",
        )
    if grade_uncertain:
        loss = f"height loss {height_loss_pct:.1f} %" if height_loss_pct is not None else "the height loss"
        return GradeDisplay(
            GradeState.UNCERTAIN,
            genant_grade,
            f"{loss} is within the measurement uncertainty of the fracture threshold: fracture status unknown; "
            "grade it on the images",
        )
    return GradeDisplay(GradeState.DEFINITE, genant_grade, "")


# --------------------------------------------------------------------------- STIR
@dataclass(frozen=True)
class StirFinding:
    label: int
    ratio: float | None  # body median / marrow reference
    edema_fraction: float | None  # 0..1 share of eroded body above the oedema threshold
    edema: bool | None  # None = not assessable
    pattern: EdemaPattern
    confidence: float  # 0..1
    reason: str
    t1_agrees: bool | None = None
    t1_ratio: float | None = None  # T1 of the probed voxels / T1 of neighbouring normal marrow
    thirds: tuple[float, float, float] | None = None  # supra-threshold share in superior / middle / inferior third
    eroded_volume_mm3: float | None = None  # marrow volume actually sampled


@dataclass(frozen=True)
class StirAssessment:
    status: StirStatus
    reason: str
    series_uid: str | None
    substitute: Substitute | None
    registration: str  # "same frame of reference", "rigid MI", "none"
    registration_residual_mm: float | None
    reference_value: float | None
    fluid_value: float | None
    threshold_value: float | None
    findings: tuple[StirFinding, ...]
    warnings: tuple[str, ...] = ()
    stir_on_grid: Volume | None = None  # STIR resampled onto the anatomy grid, for overlays
    edema_map: Volume | None = None  # uint8 mask of supra-threshold voxels inside bodies
    registration_correction_mm: float | None = None  # mean body-centroid shift applied by registration
    registration_matrix_lps: tuple[tuple[float, ...], ...] | None = None  # 4x4, anatomy LPS mm -> STIR LPS mm
    reference_method: str = ""  # how normal marrow was found
    reference_labels: tuple[int, ...] = ()  # bodies forming the normal-marrow reference
    reference_plausible: bool | None = None  # False: prior used (all bodies abnormal?), low confidence
    reference_to_fluid_ratio: float | None = None  # normal marrow / canal fluid (flat-field units)
    threshold_to_fluid_ratio: float | None = None  # voxel oedema threshold / canal fluid
    fluid_profile_labels: tuple[int, ...] = ()  # levels whose canal fluid entered the flat field


# --------------------------------------------------------------------------- eligibility
Tri = bool | None  # three-valued logic: true, false, unknown (None)


class Kind(StrEnum):
    """What an eligibility rule decides."""

    INDICATION = "indication"
    ABSOLUTE = "absolute"  # absolute contraindication
    RELATIVE = "relative"  # relative contraindication (a caution)
    PLAN = "plan"  # session planning, technique, biopsy


class Scope(StrEnum):
    LEVEL = "level"  # differs from vertebra to vertebra
    PATIENT = "patient"  # one value for the patient


class Decision(StrEnum):
    """The eligibility decision of one level."""

    CANDIDATE = "candidate"
    CANDIDATE_WITH_CAUTIONS = "candidate_with_cautions"
    CONTRAINDICATED = "contraindicated"
    NOT_INDICATED = "not_indicated"
    INDETERMINATE = "indeterminate"

    @property
    def text(self) -> str:
        """``"candidate with cautions"``"""
        return self.value.replace("_", " ")

    @property
    def is_candidate(self) -> bool:
        """Candidate, with or without cautions: the level is to be treated."""
        return self in (Decision.CANDIDATE, Decision.CANDIDATE_WITH_CAUTIONS)


@dataclass(frozen=True)
class Source:
    """Where a rule comes from: ``seed`` file + ``section`` + ``quote``, or a ``policy`` note."""

    seed: str = ""
    section: str = ""
    quote: str = ""
    policy: str = ""

    def cite(self) -> str:
        if self.seed:
            return f'{self.seed}, {self.section}: "{self.quote}"'
        return f"local policy: {self.policy}"


@dataclass(frozen=True)
class Reference:
    """One seed document's bibliographic details, as far as its own text gives them (``not_stated`` says
    what it does not give). Rules cite it by ``seed``; ``short`` labels it beside a section."""

    seed: str
    short: str
    published_in: str
    authors: str = ""
    title: str = ""
    year: int | None = None
    not_stated: str = ""
    evidence: tuple[str, ...] = ()

    @property
    def citation(self) -> str:
        """``"Parmar VK, Resnick DK. Kyphoplasty and Vertebroplasty. In: Pain, pp 895-898. ..."``"""
        text = ". ".join(p.rstrip(".") for p in (self.authors, self.title, self.published_in) if p)
        return f"{text} ({self.not_stated})." if self.not_stated else f"{text}."


@dataclass(frozen=True)
class RuleInfo:
    """A rule as the report shows it beside the trace: what it says and where it comes from."""

    id: str
    kind: Kind
    scope: Scope
    text: str
    note: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class RuleOutcome:
    """One rule evaluated at one level (``level`` None for a patient rule)."""

    rule: str
    kind: Kind
    level: str | None
    result: Tri
    inputs: Mapping[str, Any]  # input name -> JSON-able value (None = missing)
    missing: tuple[str, ...]  # inputs that would decide an unknown result
    sentence: str
    assumed: str = ""  # when_missing assumption applied (its reason), else ""
    because: tuple[str, ...] = ()  # the facts that decided a known result, in words


@dataclass(frozen=True)
class LevelDecision:
    """The decision for one vertebral body, with the rules behind it."""

    label: int
    level: Level | None
    name: str  # "L1", or "vertebra #3" when the level is unknown
    decision: Decision
    possible: tuple[Decision, ...]  # more than one only when indeterminate
    indications_met: tuple[str, ...]
    indications_not_met: tuple[str, ...]
    absolute: tuple[str, ...]  # absolute contraindications that hold
    relative: tuple[str, ...]  # relative contraindications (cautions) that hold
    unknown: tuple[str, ...]  # rules (any kind) left unknown
    deciding_inputs: tuple[str, ...]  # inputs that would decide an indeterminate level
    kyphoplasty_preferred: Tri
    reasons: tuple[str, ...]  # plain-language sentences
    trace: tuple[RuleOutcome, ...]  # level-scope rules at this level
    notes: tuple[str, ...] = ()  # imaging caveats (why facts are unknown)

    def trace_of(self, rule_id: str) -> RuleOutcome:
        """This level's outcome of a level-scope rule."""
        for o in self.trace:
            if o.rule == rule_id:
                return o
        raise KeyError(rule_id)


@dataclass(frozen=True)
class Question:
    """An input whose answer would change or complete the assessment."""

    input: str
    asked_of: str  # "clinician", "radiologist" or "imaging review"
    text: str
    field: str  # where to write the answer in the clinical file ("" for imaging)
    levels: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class SessionPlan:
    max_levels_per_session: int
    priority: tuple[str, ...]
    sessions: tuple[tuple[str, ...], ...]  # level names, by priority
    pending: tuple[str, ...]  # indeterminate levels that could still become candidates
    kyphoplasty_preferred: tuple[str, ...]
    either_technique: tuple[str, ...]
    technique_undetermined: tuple[str, ...]
    biopsy: Tri
    biopsy_sentence: str
    technique_note: str


@dataclass(frozen=True)
class EligibilityResult:
    """Per-level decisions, the patient's plan, the full rule trace and the open questions."""

    levels: tuple[LevelDecision, ...]
    excluded: tuple[tuple[str, str], ...]  # (level name, reason) not evaluated
    patient_trace: tuple[RuleOutcome, ...]
    plan: SessionPlan
    questions: tuple[Question, ...]
    summary: str
    clinical_provided: bool
    clinical_file: str | None
    rules_file: str | None
    rules_sha256: str
    rules_version: int
    disclaimer: str
    catalogue: tuple[RuleInfo, ...] = ()  # every rule
    references: tuple[Reference, ...] = ()  # full citation of every seed document the rules cite
    sentences: tuple[str, ...] = ()  # the result in plain language (summary, levels, plan, questions, disclaimer)

    def level(self, name: str) -> LevelDecision:
        """The decision for ``"L1"`` (or ``"vertebra #3"``)."""
        for d in self.levels:
            if d.name == name:
                return d
        raise KeyError(name)

    def decision_of(self, label: int) -> Decision | None:
        """The decision for the body with segmentation label ``label`` (None: not evaluated)."""
        return next((d.decision for d in self.levels if d.label == label), None)
