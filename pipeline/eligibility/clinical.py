"""Clinical inputs for the eligibility rules: format, loading and validation.

The clinical file (``clinical.yaml``, ``clinical.yml`` or ``clinical.json`` beside the study, or given
with ``--clinical``) carries what imaging cannot show: aetiology, pain, neurology, infection, coagulation,
allergies, fitness for the procedure, prior imaging and the radiologist's reading of each level.
The format is documented with an example in ``docs/clinical_inputs.md``; its JSON Schema is published as
``configs/clinical.schema.json`` (generated from the models below by :func:`clinical_json_schema`, and a
test checks that the published file has not drifted).

Why pydantic v2 rather than a hand-written JSON Schema: the models below are at the same time the
validator, the typed frozen objects the engine reads (``clinical.pain.vas``) and the source the published
JSON Schema is generated from, so the three cannot drift apart; a JSON Schema alone would need a second,
hand-kept layer of typed objects. Validation is strict where a silent coercion would be dangerous:
unknown keys are errors (a typo such as ``alergies`` must not silently drop a contraindication),
booleans must be booleans (``"no"`` in quotes is refused, YAML ``no`` is a boolean), numbers must be
numbers, and ranges are enforced (VAS 0-10).

Every field is optional. A field that a rule needs and that is absent makes that rule *unknown*
(never silently false), and the report lists it as a question to answer.

Finding the file and the aetiology names are in :mod:`pipeline.eligibility.clinical_file`, which does not import
pydantic (a run imports this module only when there is a clinical file).

Errors raise :class:`~pipeline.errors.ConfigError` (the error hierarchy's class for invalid
configuration *and clinical-input* files; the CLI exits with status 2) naming the file and the field.
Messages never echo free-text values, which could carry identifiers.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    model_validator,
)

from pipeline.eligibility.clinical_file import Aetiology
from pipeline.errors import ConfigError
from pipeline.levels import Level

logger = logging.getLogger(__name__)


def _parse_level(value: Any) -> Any:
    if isinstance(value, Level):
        return value
    if isinstance(value, str):
        try:
            return Level.parse(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"a vertebral level must be written like L1 or T12, got {type(value).__name__}")


LevelName = Annotated[Level, BeforeValidator(_parse_level)]
Bool = StrictBool | None
Pct = Annotated[float, Field(ge=0, le=100, strict=True)] | None


def _levels_field(description: str) -> Any:
    return Field(default=None, description=description)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AetiologySection(_Section):
    """Cause of the fracture(s) and cancer status."""

    cause: Aetiology | None = Field(
        default=None,
        description="Cause of the vertebral fracture(s): osteoporosis, myeloma, metastasis, haemangioma, "
        "osteonecrosis (Kummel) or trauma.",
    )
    primary_tumour: Annotated[str, Field(max_length=80)] | None = Field(
        default=None, description="For metastasis: the primary tumour (e.g. breast, prostate, lung)."
    )
    known_malignancy: Bool = Field(default=None, description="Known cancer (any site), now or in the history.")
    malignancy_suspected: Bool = Field(
        default=None, description="Malignancy suspected at the fractured level(s) (imaging or clinical)."
    )


class PainSection(_Section):
    """Pain as examined: intensity, character, duration, response to treatment, where."""

    vas: Annotated[float, Field(ge=0, le=10, strict=True)] | None = Field(
        default=None, description="Pain intensity, visual analogue scale 0 (none) to 10 (worst)."
    )
    midline: Bool = Field(default=None, description="Axial (midline) back pain.")
    reproducible: Bool = Field(
        default=None,
        description="Pain reproduced by palpation/percussion over the fractured level's spinous process.",
    )
    radicular: Bool = Field(default=None, description="Radicular (radiating, dermatomal) pain.")
    off_midline: Bool = Field(default=None, description="Musculoskeletal, paraspinal or otherwise off-midline pain.")
    mechanical: Bool = Field(
        default=None, description="Positional / mechanical pain: worse on axial loading, sitting to standing."
    )
    duration_weeks: Annotated[float, Field(ge=0, le=5200, strict=True)] | None = Field(
        default=None, description="How long the current pain has lasted, in weeks."
    )
    refractory: Bool = Field(
        default=None, description="Pain not controlled by analgesics and/or bracing (conservative treatment)."
    )
    levels: tuple[LevelName, ...] | None = _levels_field(
        "Levels where the pain / point tenderness is localised on examination (e.g. [L1]). "
        "A fractured level not listed here is treated as asymptomatic."
    )


class NeurologySection(_Section):
    cord_compression_symptoms: Bool = Field(
        default=None,
        description="Symptoms or signs of spinal cord compression (or cauda equina compression).",
    )
    myelopathy: Bool = Field(default=None, description="Myelopathy on examination.")


class InfectionSection(_Section):
    local: Bool = Field(
        default=None, description="Local infection at the level or the access route (e.g. spondylodiscitis)."
    )
    systemic: Bool = Field(default=None, description="Systemic infection (e.g. sepsis, bacteraemia) not yet treated.")


class CoagulationSection(_Section):
    inr: Annotated[float, Field(gt=0, le=20, strict=True)] | None = Field(
        default=None, description="International normalised ratio."
    )
    platelets_10e9_per_l: Annotated[float, Field(ge=0, le=2000, strict=True)] | None = Field(
        default=None, description="Platelet count in 10^9/L (= 10^3/uL)."
    )
    correctable: Bool = Field(
        default=None,
        description="If coagulation is abnormal: can it be corrected before the procedure "
        "(stopping anticoagulants, plasma, platelets, vitamin K)?",
    )


class AllergiesSection(_Section):
    bone_cement: Bool = Field(default=None, description="Allergy to bone cement (polymethylmethacrylate).")
    contrast: Bool = Field(default=None, description="Allergy to radiopaque (opacification) contrast media.")


class BoneScanSection(_Section):
    performed: Bool = Field(default=None, description="A bone scan / SPECT was performed for this episode.")
    uptake_levels: tuple[LevelName, ...] | None = _levels_field(
        "Levels with increased uptake on the bone scan / SPECT; [] for a normal scan."
    )

    @model_validator(mode="after")
    def _consistent(self) -> BoneScanSection:
        if self.performed is True and self.uptake_levels is None:
            raise ValueError("performed is true: list uptake_levels ([] for a normal scan)")
        if self.performed is False and self.uptake_levels:
            raise ValueError("performed is false but uptake_levels are listed")
        return self


class PriorImagingSection(_Section):
    """Fracture age from history and earlier images (the guideline's alternative to STIR)."""

    acute_levels: tuple[LevelName, ...] | None = _levels_field(
        "Levels whose fracture is acute/subacute by history or review of prior images "
        "(new or progressed since earlier radiographs)."
    )
    chronic_levels: tuple[LevelName, ...] | None = _levels_field(
        "Levels whose fracture is known to be old/healed (unchanged on prior images)."
    )
    bone_scan: BoneScanSection | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> PriorImagingSection:
        both = set(self.acute_levels or ()) & set(self.chronic_levels or ())
        if both:
            names = ", ".join(sorted((lv.value for lv in both), key=lambda n: Level(n).ordinal))
            raise ValueError(f"level(s) {names} listed both as acute and as chronic")
        return self


class RadiologistFindings(_Section):
    """The radiologist's reading of one level (things this pipeline does not measure)."""

    posterior_wall_disruption: Bool = Field(
        default=None, description="Posterior vertebral body wall (cortex) disrupted (best seen on CT)."
    )
    retropulsion_canal_pct: Pct = Field(
        default=None, description="Spinal canal compromise by a retropulsed bony fragment, % (0 = none)."
    )
    epidural_tumor_canal_pct: Pct = Field(
        default=None, description="Spinal canal compromise by intraspinal/epidural tumour, % (0 = none)."
    )
    spinal_stenosis: Bool = Field(
        default=None,
        description="Significant spinal canal stenosis not related to cancer (e.g. degenerative).",
    )
    burst_fracture: Bool = Field(default=None, description="Burst fracture.")
    pedicle_involvement: Bool = Field(default=None, description="Lesion extends into the pedicle(s).")


class ClinicalInputs(_Section):
    """Everything the eligibility rules may read besides imaging. Every field is optional."""

    version: Literal[1] | None = Field(default=None, description="Format version of this file (1).")
    aetiology: AetiologySection = AetiologySection()
    pain: PainSection = PainSection()
    neurology: NeurologySection = NeurologySection()
    infection: InfectionSection = InfectionSection()
    coagulation: CoagulationSection = CoagulationSection()
    allergies: AllergiesSection = AllergiesSection()
    severe_cardiopulmonary_disease: Bool = Field(
        default=None,
        description="Severe cardiopulmonary disease (risk of sedation/prone position, cement embolism).",
    )
    can_lie_prone: Bool = Field(default=None, description="Able to lie prone for the duration of the procedure.")
    surgical_backup: Bool = Field(
        default=None, description="Spine surgical backup available to manage complications if needed."
    )
    prior_imaging: PriorImagingSection = PriorImagingSection()
    radiologist_findings: dict[LevelName, RadiologistFindings] = Field(
        default_factory=dict, description="Per level (e.g. L1:), the radiologist's findings."
    )

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file these inputs were read from (``None`` when built in code)."""
        return self._source


def clinical_json_schema() -> dict[str, Any]:
    """The JSON Schema of the clinical file, as published in ``configs/clinical.schema.json``."""
    schema = ClinicalInputs.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://spine-assess/schemas/clinical.schema.json"
    schema["title"] = "spine-assess clinical inputs"
    schema["description"] = (
        "Clinical inputs for the vertebral augmentation eligibility rules (clinical.yaml / clinical.json). "
        "Every field is optional; a missing field that a rule needs makes that rule 'unknown'. "
        "Unknown keys are errors. Documented in docs/clinical_inputs.md."
    )
    return schema


def write_clinical_schema(path: Path) -> None:
    """Regenerate the published schema file (``configs/clinical.schema.json``)."""
    Path(path).write_text(json.dumps(clinical_json_schema(), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def load_clinical(path: Path) -> ClinicalInputs:
    """Read and validate a clinical-input file (YAML or JSON, chosen by the file extension).

    Parameters
    ----------
    path : Path
        ``*.yaml``, ``*.yml`` or ``*.json``.

    Returns
    -------
    ClinicalInputs
        Frozen, validated inputs; ``.source`` is ``path``.

    Raises
    ------
    ConfigError
        File missing/unreadable, invalid YAML/JSON, unknown key, wrong type or out-of-range value; the
        message names the file and the field (``pain.vas``) and says how to fix it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: clinical file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the clinical file ({exc})") from None
    data: Any
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    else:
        raise ConfigError(f"{path}: clinical file must end in .yaml, .yml or .json")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level must be a mapping of sections (aetiology:, pain:, ...)")
    inputs = parse_clinical(data, where=str(path))
    inputs._source = path
    logger.debug("clinical inputs read from %s", path)
    return inputs


def parse_clinical(data: Mapping[str, Any], where: str = "clinical inputs") -> ClinicalInputs:
    """Validate an already-parsed mapping (see :func:`load_clinical`)."""
    try:
        return ClinicalInputs.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None


def _describe(exc: ValidationError, where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _known_fields(loc[:-1])
            typo = loc[-1]
            close = [k for k in known if k.startswith(typo) or typo.startswith(k)] or difflib.get_close_matches(
                typo, known, n=1
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown field {field!r}{hint}; known fields here: {', '.join(known)}")
        elif kind == "value_error":
            problems.append(f"{field}: {str(err['msg']).removeprefix('Value error, ')}")
        else:
            got = err.get("input")
            # echo numbers and booleans (a VAS of 11), never text: free text could carry identifiers
            numeric = isinstance(got, int | float | bool) and not kind.startswith("string")
            shown = repr(got) if numeric or got is None else type(got).__name__
            problems.append(f"{field}: {err['msg'].lower()} (got {shown})")
    return f"{where}: " + "; ".join(problems) + " - see docs/clinical_inputs.md"


def _known_fields(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (for "did you mean" hints)."""
    model: Any = ClinicalInputs
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if model is ClinicalInputs and part == "radiologist_findings":
            model = RadiologistFindings
            if parts:
                parts.pop(0)  # the level key
            else:
                return []
            continue
        fld = model.model_fields.get(part)
        if fld is None:
            return []
        model = _first_model(fld.annotation)
        if model is None:
            return []
    return sorted(model.model_fields)


def _first_model(tp: Any) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
