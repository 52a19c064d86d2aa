"""The inputs a rule may read: one registry, shared by rule validation, evaluation and the report.

Each input has a dotted name (``imaging.height_loss_pct``, ``clinical.pain.vas``,
``radiologist.burst_fracture``), a type that decides which operators may use it, the range a threshold
on it must lie in, whether it is per level or per patient, where it comes from (imaging measurement,
clinical file, radiologist's reading) and, for the report, a plain label and the question that supplies it.
A getter returns the value or ``None`` (= unknown). This is data access only: no rule logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from pipeline.eligibility.clinical_file import AETIOLOGIES
from pipeline.eligibility.facts import LevelFacts
from pipeline.levels import Level
from pipeline.model import Morphology, Scope

if TYPE_CHECKING:  # the validator (pydantic) is imported only when a clinical file is read
    from pipeline.eligibility.clinical import ClinicalInputs, RadiologistFindings


class InputType(StrEnum):
    NUMBER = "number"
    BOOL = "bool"
    CHOICE = "choice"
    LEVEL = "level"


class Origin(StrEnum):
    IMAGING = "imaging"  # measured by this pipeline
    CLINICAL = "clinical"  # clinical file, answered by the referring clinician
    RADIOLOGIST = "radiologist"  # clinical file, radiologist_findings: the radiologist's reading


@dataclass(frozen=True)
class Bounds:
    """Allowed interval of a threshold, e.g. ``(0, 100]``."""

    lo: float
    hi: float
    lo_closed: bool = True
    hi_closed: bool = True

    def contains(self, v: float) -> bool:
        above = v >= self.lo if self.lo_closed else v > self.lo
        below = v <= self.hi if self.hi_closed else v < self.hi
        return above and below

    def __str__(self) -> str:
        lo = f"{'[' if self.lo_closed else '('}{self.lo:g}"
        hi = f"{self.hi:g}{']' if self.hi_closed else ')'}"
        return f"{lo}, {hi}"


Getter = Callable[[LevelFacts | None, "ClinicalInputs | None"], Any]


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: InputType
    scope: Scope
    origin: Origin
    label: str  # plain words for sentences: "height loss"
    question: str  # what would supply it; "{level}" is replaced by the level name
    get: Getter
    unit: str = ""
    bounds: Bounds | None = None  # NUMBER only
    choices: tuple[str, ...] = ()  # CHOICE only
    field: str = ""  # where it goes in the clinical file

    def value(self, facts: LevelFacts | None, clinical: ClinicalInputs | None) -> Any:
        """The value (``None`` = unknown) for one level (``facts``) and the clinical inputs."""
        if self.scope is Scope.LEVEL and facts is None:
            raise ValueError(f"input {self.name!r} is per level and needs the level's facts")
        if self.origin is not Origin.IMAGING and clinical is None:
            return None
        return self.get(facts, clinical)


# --------------------------------------------------------------------------- getters
def _img(attr: str) -> Getter:
    def get(f: LevelFacts | None, c: ClinicalInputs | None) -> Any:
        assert f is not None
        value = getattr(f, attr)
        return value.value if isinstance(value, Enum) and not isinstance(value, Level) else value

    return get


def _cl(path: str) -> Getter:
    parts = path.split(".")

    def get(f: LevelFacts | None, c: ClinicalInputs | None) -> Any:
        obj: Any = c
        for p in parts:
            obj = getattr(obj, p)
            if obj is None:
                return None
        return obj

    return get


def _level_in(path: str, when_listed_elsewhere: str | None = None) -> Getter:
    """True if the level is in the list at ``path``; unknown if the list (or the level) is unknown."""
    list_get = _cl(path)
    other_get = _cl(when_listed_elsewhere) if when_listed_elsewhere else None

    def get(f: LevelFacts | None, c: ClinicalInputs | None) -> Any:
        assert f is not None
        if f.level is None:
            return None
        listed = list_get(f, c)
        if other_get is not None:
            # two complementary lists (acute / chronic): in one -> True, in the other -> False, else unknown
            other = other_get(f, c)
            if listed is not None and f.level in listed:
                return True
            if other is not None and f.level in other:
                return False
            return None
        if listed is None:
            return None
        return f.level in listed

    return get


def _bone_scan(f: LevelFacts | None, c: ClinicalInputs | None) -> Any:
    assert f is not None and c is not None
    scan = c.prior_imaging.bone_scan
    if f.level is None or scan is None or scan.performed is not True or scan.uptake_levels is None:
        return None
    return f.level in scan.uptake_levels


def _rad(attr: str) -> Getter:
    def get(f: LevelFacts | None, c: ClinicalInputs | None) -> Any:
        assert f is not None and c is not None
        if f.level is None:
            return None
        found: RadiologistFindings | None = c.radiologist_findings.get(f.level)
        return None if found is None else getattr(found, attr)

    return get


PCT_OPEN = Bounds(0, 100, lo_closed=False)
PCT = Bounds(0, 100)
_MORPH = tuple(m.value for m in Morphology if m is not Morphology.NOT_ASSESSABLE)

_L, _P = Scope.LEVEL, Scope.PATIENT
_I, _C, _R = Origin.IMAGING, Origin.CLINICAL, Origin.RADIOLOGIST
_N, _B, _CH = InputType.NUMBER, InputType.BOOL, InputType.CHOICE


def _spec(
    name: str,
    type_: InputType,
    scope: Scope,
    origin: Origin,
    label: str,
    question: str,
    get: Getter | None = None,
    **kw: Any,
) -> InputSpec:
    if get is None:
        get = _cl(name.removeprefix("clinical."))
    field = kw.pop("field", name.removeprefix("clinical.") if origin is Origin.CLINICAL else "")
    return InputSpec(name, type_, scope, origin, label, question, get, field=field, **kw)


_SPECS: tuple[InputSpec, ...] = (
    # ---- imaging, per level (measured by this pipeline)
    _spec(
        "imaging.level",
        InputType.LEVEL,
        _L,
        _I,
        "vertebral level",
        "Which level is {level}? Check the level labelling (e.g. with --anchor).",
        _img("level"),
    ),
    _spec(
        "imaging.genant_grade",
        _N,
        _L,
        _I,
        "Genant grade",
        "No definite Genant grade at {level} (the level's note says why: uncertain at the fracture threshold or "
        "on a low-confidence mask, or not assessable); grade it on the images.",
        _img("genant_grade"),
        bounds=Bounds(0, 3),
    ),
    _spec(
        "imaging.height_loss_pct",
        _N,
        _L,
        _I,
        "height loss",
        "Height loss at {level} could not be measured; review the segmentation or measure it manually.",
        _img("height_loss_pct"),
        unit="%",
        bounds=PCT_OPEN,
    ),
    _spec(
        "imaging.morphology",
        _CH,
        _L,
        _I,
        "fracture shape",
        "Shape of {level} could not be assessed.",
        _img("morphology"),
        choices=_MORPH,
    ),
    _spec(
        "imaging.posterior_wall_bulge_mm",
        _N,
        _L,
        _I,
        "posterior wall bulge into the canal",
        "Posterior wall of {level} could not be measured; the radiologist's estimate "
        "(radiologist_findings: retropulsion_canal_pct) can stand in.",
        _img("posterior_wall_bulge_mm"),
        unit="mm",
        bounds=Bounds(0, 30, lo_closed=False),
    ),
    _spec(
        "imaging.canal_compromise_pct",
        _N,
        _L,
        _I,
        "canal compromise (measured)",
        "Canal compromise at {level} could not be measured; the radiologist's estimate "
        "(radiologist_findings: retropulsion_canal_pct) can stand in.",
        _img("canal_compromise_pct"),
        unit="%",
        bounds=PCT,
    ),
    _spec(
        "imaging.stir_edema",
        _B,
        _L,
        _I,
        "marrow oedema on STIR",
        "No STIR oedema result at {level}; a bone scan/SPECT (prior_imaging.bone_scan) or the fracture's age "
        "from prior images (prior_imaging.acute_levels / chronic_levels) can decide acuity.",
        _img("stir_edema"),
    ),
    _spec(
        "imaging.stir_edema_fraction",
        _N,
        _L,
        _I,
        "share of the body with oedema",
        "No STIR oedema result at {level}.",
        _img("stir_edema_fraction"),
        bounds=Bounds(0, 1),
    ),
    # ---- clinical, per patient
    _spec(
        "clinical.aetiology.cause",
        _CH,
        _P,
        _C,
        "cause of the fracture",
        "What caused the fracture(s): osteoporosis, myeloma, metastasis, haemangioma, osteonecrosis or trauma?",
        choices=AETIOLOGIES,
    ),
    _spec(
        "clinical.aetiology.known_malignancy",
        _B,
        _P,
        _C,
        "known malignancy",
        "Does the patient have a known cancer (now or in the history)?",
    ),
    _spec(
        "clinical.aetiology.malignancy_suspected",
        _B,
        _P,
        _C,
        "malignancy suspected",
        "Is malignancy suspected at the fractured level(s)?",
    ),
    _spec(
        "clinical.pain.vas",
        _N,
        _P,
        _C,
        "pain score (VAS)",
        "Pain intensity on a 0-10 visual analogue scale?",
        bounds=Bounds(0, 10),
    ),
    _spec("clinical.pain.midline", _B, _P, _C, "midline (axial) pain", "Is the pain midline (axial)?"),
    _spec(
        "clinical.pain.reproducible",
        _B,
        _P,
        _C,
        "pain reproducible on palpation",
        "Is the pain reproduced by palpation/percussion over the fractured level's spinous process?",
    ),
    _spec("clinical.pain.radicular", _B, _P, _C, "radicular pain", "Is there radicular (radiating) pain?"),
    _spec(
        "clinical.pain.off_midline",
        _B,
        _P,
        _C,
        "off-midline or musculoskeletal pain",
        "Is there musculoskeletal, paraspinal or otherwise off-midline pain?",
    ),
    _spec(
        "clinical.pain.mechanical",
        _B,
        _P,
        _C,
        "mechanical (positional) pain",
        "Is the pain mechanical / positional (worse on axial loading)?",
    ),
    _spec(
        "clinical.pain.duration_weeks",
        _N,
        _P,
        _C,
        "pain duration",
        "How many weeks has the pain lasted?",
        unit="weeks",
        bounds=Bounds(0, 5200),
    ),
    _spec(
        "clinical.pain.refractory",
        _B,
        _P,
        _C,
        "pain not controlled by analgesics/bracing",
        "Is the pain not controlled by analgesics and/or bracing?",
    ),
    _spec(
        "clinical.neurology.cord_compression_symptoms",
        _B,
        _P,
        _C,
        "symptoms of cord compression",
        "Are there symptoms or signs of spinal cord compression?",
    ),
    _spec("clinical.neurology.myelopathy", _B, _P, _C, "myelopathy", "Is there myelopathy on examination?"),
    _spec(
        "clinical.infection.local",
        _B,
        _P,
        _C,
        "local infection",
        "Is there a local infection (level or access route)?",
    ),
    _spec("clinical.infection.systemic", _B, _P, _C, "systemic infection", "Is there a systemic infection?"),
    _spec("clinical.coagulation.inr", _N, _P, _C, "INR", "INR?", bounds=Bounds(0, 20, lo_closed=False)),
    _spec(
        "clinical.coagulation.platelets_10e9_per_l",
        _N,
        _P,
        _C,
        "platelet count",
        "Platelet count (10^9/L)?",
        unit="10^9/L",
        bounds=Bounds(0, 2000),
    ),
    _spec(
        "clinical.coagulation.correctable",
        _B,
        _P,
        _C,
        "coagulopathy correctable",
        "Can the abnormal coagulation be corrected before the procedure?",
    ),
    _spec(
        "clinical.allergies.bone_cement",
        _B,
        _P,
        _C,
        "allergy to bone cement",
        "Is the patient allergic to bone cement (PMMA)?",
    ),
    _spec(
        "clinical.allergies.contrast",
        _B,
        _P,
        _C,
        "allergy to contrast media",
        "Is the patient allergic to radiopaque contrast media?",
    ),
    _spec(
        "clinical.severe_cardiopulmonary_disease",
        _B,
        _P,
        _C,
        "severe cardiopulmonary disease",
        "Does the patient have severe cardiopulmonary disease?",
    ),
    _spec(
        "clinical.can_lie_prone",
        _B,
        _P,
        _C,
        "able to lie prone",
        "Can the patient lie prone for the duration of the procedure?",
    ),
    _spec(
        "clinical.surgical_backup",
        _B,
        _P,
        _C,
        "spine surgical backup",
        "Is spine surgical backup available to manage complications?",
    ),
    # ---- clinical, per level
    _spec(
        "clinical.pain.at_level",
        _B,
        _L,
        _C,
        "pain localised to the level",
        "Is the pain / point tenderness at {level}? (list painful levels in pain.levels)",
        _level_in("pain.levels"),
        field="pain.levels",
    ),
    _spec(
        "clinical.prior_imaging.acute_by_history",
        _B,
        _L,
        _C,
        "acute/subacute by history or prior images",
        "Is the fracture at {level} new on prior images / acute by history? "
        "(prior_imaging.acute_levels or chronic_levels)",
        _level_in("prior_imaging.acute_levels", "prior_imaging.chronic_levels"),
        field="prior_imaging.acute_levels",
    ),
    _spec(
        "clinical.prior_imaging.bone_scan_uptake",
        _B,
        _L,
        _C,
        "increased uptake on bone scan/SPECT",
        "Bone scan/SPECT: increased uptake at {level}? (prior_imaging.bone_scan)",
        _bone_scan,
        field="prior_imaging.bone_scan",
    ),
    # ---- radiologist's reading, per level
    _spec(
        "radiologist.posterior_wall_disruption",
        _B,
        _L,
        _R,
        "posterior wall disruption (radiologist)",
        "Posterior wall disrupted at {level}? (CT shows the cortex best)",
        _rad("posterior_wall_disruption"),
        field="radiologist_findings.{level}.posterior_wall_disruption",
    ),
    _spec(
        "radiologist.retropulsion_canal_pct",
        _N,
        _L,
        _R,
        "canal compromise by retropulsed fragment (radiologist)",
        "Canal compromise by a retropulsed fragment at {level}, % (0 if none)?",
        _rad("retropulsion_canal_pct"),
        unit="%",
        bounds=PCT,
        field="radiologist_findings.{level}.retropulsion_canal_pct",
    ),
    _spec(
        "radiologist.epidural_tumor_canal_pct",
        _N,
        _L,
        _R,
        "canal compromise by epidural tumour (radiologist)",
        "Canal compromise by intraspinal/epidural tumour at {level}, % (0 if none)?",
        _rad("epidural_tumor_canal_pct"),
        unit="%",
        bounds=PCT,
        field="radiologist_findings.{level}.epidural_tumor_canal_pct",
    ),
    _spec(
        "radiologist.spinal_stenosis",
        _B,
        _L,
        _R,
        "significant non-cancer spinal stenosis (radiologist)",
        "Significant non-cancer-related spinal stenosis at {level}?",
        _rad("spinal_stenosis"),
        field="radiologist_findings.{level}.spinal_stenosis",
    ),
    _spec(
        "radiologist.burst_fracture",
        _B,
        _L,
        _R,
        "burst fracture (radiologist)",
        "Burst fracture at {level}?",
        _rad("burst_fracture"),
        field="radiologist_findings.{level}.burst_fracture",
    ),
    _spec(
        "radiologist.pedicle_involvement",
        _B,
        _L,
        _R,
        "lesion extending into the pedicle (radiologist)",
        "Lesion extending into the pedicle(s) at {level}?",
        _rad("pedicle_involvement"),
        field="radiologist_findings.{level}.pedicle_involvement",
    ),
)

INPUTS: dict[str, InputSpec] = {s.name: s for s in _SPECS}


def check_choice(spec: InputSpec, value: Any) -> str | None:
    """Why ``value`` cannot be a member of ``spec``'s set, or ``None`` when it can."""
    if spec.type is InputType.LEVEL:
        if not isinstance(value, str):
            return f"{value!r} is not a vertebral level"
        try:
            Level.parse(value)
        except ValueError as exc:
            return str(exc)
        return None
    if spec.type is InputType.CHOICE:
        if value not in spec.choices:
            return f"{value!r} is not one of {', '.join(spec.choices)}"
        return None
    return f"input {spec.name!r} is a {spec.type.value}, not a set of choices"
