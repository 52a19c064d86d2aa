"""Tissue classes and their signal on each simulated sequence: the one place for intensity tables.

Signal values are relative (the brightest tissue of a sequence is about 1.0); the renderer multiplies them
by the sequence's scale (stored DICOM units), a smooth bias field, and adds Rician noise. They follow the
appearance of tissues at 1.5 T on clinical spine protocols:

============== =============================================== ==========================================
sequence       bright                                          dark
============== =============================================== ==========================================
T1 TSE/FSE     fat, fatty marrow, haemangioma                  CSF, cortex, ligaments, flowing blood, oedema
T2 TSE/FSE     CSF, urine, bowel fluid, healthy disc nucleus,  cortex, annulus, ligaments, muscle, flow voids
               fat (fairly bright on fast spin echo)           (marrow intermediate; oedema mildly bright)
STIR           fluid, CSF, oedema, disc nucleus                fat and normal (fatty) marrow, cortex, muscle
GRE localizer  flowing blood (inflow), fat                     cortex, air
============== =============================================== ==========================================

Oedematous marrow (acute fracture, infiltration) replaces fat with water: T1 drops well below normal
marrow, STIR rises far above it (ratio > 3), T2 rises mildly.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue class codes painted into the sub-sampled tissue map (uint8)."""

    AIR = 0
    FAT = 1  # subcutaneous / retroperitoneal / foraminal fat
    MUSCLE = 2
    MARROW = 3  # adult (fatty) red/yellow marrow
    MARROW_FAT = 4  # focal fat islands in marrow
    CORTEX = 5  # cortical bone and endplates
    EDEMA = 6  # oedematous marrow
    SCLEROSIS = 7  # condensed trabeculae under a healed (chronic) fracture
    BASIVERTEBRAL_VEIN = 8
    HEMANGIOMA = 9
    NUCLEUS = 10  # healthy disc nucleus pulposus
    ANNULUS = 11
    NUCLEUS_DEGENERATED = 12
    CSF = 13
    CORD = 14
    NERVE_ROOT = 15
    EPIDURAL_FAT = 16
    LIGAMENT = 17
    FACET_FLUID = 18
    ARTERY = 19  # fast flow: void on spin echo, bright on GRE
    VEIN = 20  # slow flow (IVC)
    BOWEL_WALL = 21
    BOWEL_FLUID = 22
    BOWEL_FECES = 23
    GAS = 24
    MESENTERY = 25  # intra-abdominal fat with vessels
    LIVER = 26
    KIDNEY = 27
    URINE = 28
    LUNG = 29
    MYOCARDIUM = 30
    SKIN = 31
    DISC_REMNANT = 32  # vestigial sacral disc
    SPLEEN = 33
    BLOOD_POOL = 34  # heart chambers (flow void on spin echo)
    NUCLEUS_DESICCATED = 35  # dehydrated nucleus of a degenerated disc: as dark as the annulus
    MODIC_1 = 36  # endplate marrow, fibrovascular (Modic type 1): oedema-like, but not fracture oedema
    MODIC_2 = 37  # endplate marrow, fatty (Modic type 2)


#: Sequence names used as keys, in the column order of :data:`CONTRAST`.
SEQUENCES = ("T1", "T2", "STIR", "LOC")

#: Relative signal per tissue: (T1, T2, STIR, GRE localizer).
CONTRAST: dict[Tissue, tuple[float, float, float, float]] = {
    Tissue.AIR: (0.0, 0.0, 0.0, 0.0),
    Tissue.FAT: (1.00, 0.78, 0.05, 0.85),
    Tissue.MUSCLE: (0.30, 0.19, 0.17, 0.35),
    Tissue.MARROW: (0.70, 0.40, 0.10, 0.50),
    Tissue.MARROW_FAT: (0.88, 0.55, 0.06, 0.65),
    Tissue.CORTEX: (0.05, 0.04, 0.03, 0.05),
    Tissue.EDEMA: (0.27, 0.58, 0.72, 0.40),
    Tissue.SCLEROSIS: (0.16, 0.14, 0.08, 0.15),
    Tissue.BASIVERTEBRAL_VEIN: (0.30, 0.72, 0.60, 0.55),
    Tissue.HEMANGIOMA: (0.95, 0.82, 0.35, 0.75),
    Tissue.NUCLEUS: (0.30, 0.78, 0.66, 0.45),
    Tissue.ANNULUS: (0.24, 0.17, 0.18, 0.30),
    Tissue.NUCLEUS_DEGENERATED: (0.27, 0.30, 0.26, 0.33),
    Tissue.CSF: (0.10, 1.00, 0.95, 0.60),
    Tissue.CORD: (0.42, 0.38, 0.32, 0.45),
    Tissue.NERVE_ROOT: (0.38, 0.32, 0.26, 0.40),
    Tissue.EPIDURAL_FAT: (0.95, 0.72, 0.05, 0.80),
    Tissue.LIGAMENT: (0.10, 0.07, 0.08, 0.12),
    Tissue.FACET_FLUID: (0.20, 0.70, 0.70, 0.50),
    Tissue.ARTERY: (0.04, 0.03, 0.04, 0.95),
    Tissue.VEIN: (0.22, 0.30, 0.28, 0.85),
    Tissue.BOWEL_WALL: (0.34, 0.30, 0.30, 0.40),
    Tissue.BOWEL_FLUID: (0.14, 0.90, 0.85, 0.50),
    Tissue.BOWEL_FECES: (0.45, 0.40, 0.28, 0.45),
    Tissue.GAS: (0.0, 0.0, 0.0, 0.0),
    Tissue.MESENTERY: (0.78, 0.52, 0.09, 0.65),
    Tissue.LIVER: (0.55, 0.21, 0.19, 0.45),
    Tissue.KIDNEY: (0.40, 0.55, 0.50, 0.45),
    Tissue.URINE: (0.08, 1.00, 0.95, 0.55),
    Tissue.LUNG: (0.02, 0.02, 0.02, 0.03),
    Tissue.MYOCARDIUM: (0.40, 0.27, 0.24, 0.40),
    Tissue.SKIN: (0.45, 0.35, 0.25, 0.45),
    Tissue.DISC_REMNANT: (0.28, 0.45, 0.40, 0.35),
    Tissue.SPLEEN: (0.45, 0.45, 0.40, 0.45),
    Tissue.BLOOD_POOL: (0.05, 0.05, 0.06, 0.90),
    Tissue.NUCLEUS_DESICCATED: (0.25, 0.16, 0.15, 0.30),
    Tissue.MODIC_1: (0.30, 0.60, 0.62, 0.42),
    Tissue.MODIC_2: (0.93, 0.62, 0.05, 0.68),
}

#: Stored-value scale per sequence (signal 1.0 -> this many DICOM units) and the relative noise factor
#: (multiplies :attr:`PhantomSpec.noise_pct`; STIR has the lowest SNR of the three).
SEQUENCE_SCALE: dict[str, float] = {"T1": 720.0, "T2": 650.0, "STIR": 520.0, "LOC": 450.0}
SEQUENCE_NOISE_FACTOR: dict[str, float] = {"T1": 1.0, "T2": 1.0, "STIR": 1.6, "LOC": 1.5}


def contrast_lut(sequence: str) -> np.ndarray:
    """Look-up table ``lut[tissue_code] -> relative signal`` (float32, length 256) for one sequence."""
    col = SEQUENCES.index(sequence)
    lut = np.zeros(256, dtype=np.float32)
    for tissue, values in CONTRAST.items():
        lut[int(tissue)] = values[col]
    return lut


BONE_TISSUES = frozenset(
    {
        Tissue.MARROW,
        Tissue.MARROW_FAT,
        Tissue.CORTEX,
        Tissue.EDEMA,
        Tissue.SCLEROSIS,
        Tissue.BASIVERTEBRAL_VEIN,
        Tissue.HEMANGIOMA,
        Tissue.MODIC_1,
        Tissue.MODIC_2,
    }
)
