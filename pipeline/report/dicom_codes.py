"""Every coded concept the DICOM outputs (SEG, SR, SC) use, in one place.

Standard codes come from ``pydicom.sr.codedict.codes`` (generated from DICOM PS3.16), so their values and
meanings are the standard's own and nothing here is typed by hand:

================================  =====  ========================================  ===================
Use                               Sch.   Code (meaning)                            Where in PS3.16
================================  =====  ========================================  ===================
SEG property category             SCT    91723000 Anatomical Structure             CID 7150
SEG property type, one per level  SCT    C1..C7, T1..T12, L1..L5 vertebra codes,   CID 7151 / 7602
                                         e.g. 66794005 "L1 vertebra"
SEG property type for S1          SCT    54735007 Sacrum                           CID 7151
SEG property type, level unknown  SCT    51282000 Vertebra                         CID 7151
SEG anatomic region               SCT    122496007 Lumbar spine, 122495006         CID 7151
                                         Thoracic spine, 122494005 Cervical
                                         spine, 1217254007 Sacro-coccygeal spine
SEG/SR algorithm family           DCM    123110 Artificial Intelligence            CID 7162
SR procedure reported             LN     25056-3 MRI unspecified body region       CID 100
SR finding type                   SCT    51282000 Vertebra                         CID 7151
SR volume of the body             SCT    118565006 Volume, unit mm3 (UCUM)         CID 7469
SR yes / no answers               SCT    373066001 Yes / 373067005 No              CID 230
Units                             UCUM   mm, mm3, %, deg, {ratio}                  CID 7181 / UCUM
================================  =====  ========================================  ===================

The SNOMED CT vertebra codes are those DICOM lists in CID 7602 "Spinal Vertebra" (pydicom codedict
``codes.SCT.L1Vertebra`` ...). The same codes are used by TotalSegmentator's DICOM-SEG export. A
segment is a vertebral *body*; SNOMED's body-of-vertebra concepts are not in PS3.16, so the segment is coded
with the whole-vertebra concept and labelled "L1 vertebral body" (label and tracking id say "body").
The vertebral bodies are segmented by a trained convolutional network (``pipeline/segment/models``), so the CID
7162 family is "Artificial Intelligence"; the anatomy constraints around it do not change that.

No standard code exists for the spine-specific measurements, so they use the private coding scheme
``99SPINEASSESS`` (PS3.16 section 8.2: designators starting with "99" are private), declared in the SR's
Coding Scheme Identification Sequence. Values are at most 16 characters (SH):

==================  ==================================================  ==========  ========================
Code value          Meaning                                  Unit        Report field
==================  ==================================================  ==========  ========================
VB-HA               Anterior vertebral body height                      mm          heights_mm.anterior
VB-HM               Middle vertebral body height                        mm          heights_mm.middle
VB-HP               Posterior vertebral body height                     mm          heights_mm.posterior
VB-HREF             Expected (reference) vertebral body height          mm          reference_height_mm
VB-HLOSS            Vertebral body height loss                          %           height_loss_pct
VB-WEDGE-ANGLE      Vertebral body wedge angle                          deg         wedge_angle_deg
PW-BULGE            Posterior wall bulge into the spinal canal          mm          ...posterior_wall.bulge_mm
CANAL-COMPROMISE    Spinal canal compromise by the posterior wall       %           ...canal_compromise_pct
STIR-RATIO          STIR signal ratio, body to normal marrow            {ratio}     stir.ratio
STIR-EDEMA-FRAC     Share of the body with STIR oedema signal           %           stir.edema_fraction*100
GENANT              Genant semi-quantitative grade                      (coded)     genant_grade
GENANT-0..3         Genant grade 0 / 1 / 2 / 3                          value       0..3
VB-SHAPE            Vertebral body morphology                           (coded)     morphology
SHAPE-NORMAL ...    normal / wedge / biconcave / crush                  value
VCF                 Vertebral fracture present (Genant grade >= 1)      (coded)     genant_grade >= 1
MARROW-EDEMA        Bone marrow oedema on STIR                          (coded)     stir.edema
EDEMA-PATTERN       Marrow oedema pattern                               (coded)     stir.pattern
PATTERN-BAND ...    band / diffuse / none                               value
VA-ELIGIBILITY      Vertebral augmentation eligibility of the level     (coded)     eligibility per level
VA-CANDIDATE ...    candidate / with cautions / contraindicated /       value
                    not indicated / indeterminate
==================  ==================================================  ==========  ========================

Genant grade is a *qualitative evaluation* with coded values, not a numeric measurement: it is an
ordinal category (0 normal, 1 mild, 2 moderate, 3 severe) on which arithmetic means nothing, and a coded
value lets a receiver show "Genant grade 2" instead of "2 {grade}".
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.levels import Level

PRIVATE_SCHEME = "99SPINEASSESS"
PRIVATE_SCHEME_NAME = "spine-assess vertebral morphometry and eligibility concepts"
PRIVATE_SCHEME_ORGANIZATION = "spine-assess open-source project"


def _p(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


# ----------------------------------------------------------------------------- standard codes
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
VERTEBRA = codes.SCT.Vertebra
SACRUM = codes.SCT.Sacrum
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence
PROCEDURE_REPORTED = codes.LN.MRIUnspecifiedBodyRegion
VOLUME = codes.SCT.Volume
YES = codes.SCT.Yes
NO = codes.SCT.No
INDETERMINATE = codes.SCT.Indeterminate  # a finding that cannot be decided (e.g. fracture at the threshold)
DEVICE = codes.DCM.Device

MM = codes.UCUM.Millimeter
MM3 = codes.UCUM.CubicMillimeter
PERCENT = codes.UCUM.Percent
DEGREE = codes.UCUM.Degree
RATIO = codes.UCUM.Ratio

_REGION = {"C": codes.SCT.CervicalSpine, "T": codes.SCT.ThoracicSpine, "L": codes.SCT.LumbarSpine}


def level_code(level: Level | None, *, is_sacrum: bool = False) -> Code:
    """SNOMED CT code of a vertebra (CID 7602), ``Sacrum`` for S1, ``Vertebra`` when the level is unknown."""
    if level is None:
        return SACRUM if is_sacrum else VERTEBRA
    if level is Level.S1 or is_sacrum:
        return SACRUM
    return getattr(codes.SCT, f"{level.value}Vertebra")


def region_code(level: Level | None, *, is_sacrum: bool = False) -> Code | None:
    """Spine region of a level (cervical / thoracic / lumbar / sacro-coccygeal), None when unknown."""
    if is_sacrum or level is Level.S1:
        return codes.SCT.SacroCoccygealSpine
    if level is None:
        return None
    return _REGION[level.value[0]]


# ----------------------------------------------------------------------------- private codes: measurements
HEIGHT_ANTERIOR = _p("VB-HA", "Anterior vertebral body height")
HEIGHT_MIDDLE = _p("VB-HM", "Middle vertebral body height")
HEIGHT_POSTERIOR = _p("VB-HP", "Posterior vertebral body height")
HEIGHT_REFERENCE = _p("VB-HREF", "Expected vertebral body height")
HEIGHT_LOSS = _p("VB-HLOSS", "Vertebral body height loss")
WEDGE_ANGLE = _p("VB-WEDGE-ANGLE", "Vertebral body wedge angle")
POSTERIOR_WALL_BULGE = _p("PW-BULGE", "Posterior wall bulge into the spinal canal")
CANAL_COMPROMISE = _p("CANAL-COMPROMISE", "Spinal canal compromise by the posterior wall")
STIR_RATIO = _p("STIR-RATIO", "STIR signal ratio of body to normal marrow")
STIR_EDEMA_FRACTION = _p("STIR-EDEMA-FRAC", "Share of vertebral body with STIR oedema signal")

# ----------------------------------------------------------------------------- private codes: evaluations
GENANT = _p("GENANT", "Genant semi-quantitative grade")
GENANT_GRADES = {
    0: _p("GENANT-0", "Genant grade 0 (normal)"),
    1: _p("GENANT-1", "Genant grade 1 (mild)"),
    2: _p("GENANT-2", "Genant grade 2 (moderate)"),
    3: _p("GENANT-3", "Genant grade 3 (severe)"),
}
SHAPE = _p("VB-SHAPE", "Vertebral body morphology")
SHAPES = {
    "normal": _p("SHAPE-NORMAL", "Normal shape"),
    "wedge": _p("SHAPE-WEDGE", "Wedge deformity"),
    "biconcave": _p("SHAPE-BICONCAVE", "Biconcave deformity"),
    "crush": _p("SHAPE-CRUSH", "Crush deformity"),
}
FRACTURE = _p("VCF", "Vertebral fracture present (Genant grade 1 or more)")
MARROW_EDEMA = _p("MARROW-EDEMA", "Bone marrow oedema on STIR")
EDEMA_PATTERN = _p("EDEMA-PATTERN", "Marrow oedema pattern")
EDEMA_PATTERNS = {
    "none": _p("PATTERN-NONE", "No oedema"),
    "band": _p("PATTERN-BAND", "Band under the endplate"),
    "diffuse": _p("PATTERN-DIFFUSE", "Diffuse"),
}
ELIGIBILITY = _p("VA-ELIGIBILITY", "Vertebral augmentation eligibility of the level")
ELIGIBILITY_DECISIONS = {
    "candidate": _p("VA-CANDIDATE", "Candidate"),
    "candidate_with_cautions": _p("VA-CAND-CAUTION", "Candidate with cautions"),
    "contraindicated": _p("VA-CONTRAIND", "Contraindicated"),
    "not_indicated": _p("VA-NOT-INDICATED", "Not indicated"),
    "indeterminate": _p("VA-INDETERMINATE", "Indeterminate"),
}

PRIVATE_CODES: tuple[Code, ...] = (
    HEIGHT_ANTERIOR,
    HEIGHT_MIDDLE,
    HEIGHT_POSTERIOR,
    HEIGHT_REFERENCE,
    HEIGHT_LOSS,
    WEDGE_ANGLE,
    POSTERIOR_WALL_BULGE,
    CANAL_COMPROMISE,
    STIR_RATIO,
    STIR_EDEMA_FRACTION,
    GENANT,
    *GENANT_GRADES.values(),
    SHAPE,
    *SHAPES.values(),
    FRACTURE,
    MARROW_EDEMA,
    EDEMA_PATTERN,
    *EDEMA_PATTERNS.values(),
    ELIGIBILITY,
    *ELIGIBILITY_DECISIONS.values(),
)
