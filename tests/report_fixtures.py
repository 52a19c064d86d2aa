"""Hand-made inputs for the report tests: a tiny sagittal MR series written with pydicom, its volume,
a segmentation with known bodies, morphometry with known heights and landmarks, a STIR assessment
and the report built from them.

Geometry (default orientation): 5 sagittal slices of 64 rows x 48 columns, pixel spacing 1.0 mm (rows)
x 0.8 mm (columns), 4 mm slices. ImageOrientationPatient row direction +P, column direction -S, so in
the stored image anterior is on the left and the head at the top. ``flipped=True`` stores the same
anatomy with the row direction -P (anterior to the right) and the column direction +S (feet at the top),
so that the overlay has to flip both axes back.

Bodies (label, level, rows, cols on the central slices): 1 L3 rows 6-17; 2 L4 rows 22-33 (anterior
wedge: the front 4 columns lose their top 5 rows); 3 L5 rows 38-49; 4 S1 rows 54-63 (sacrum).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from pipeline.levels import Level
from pipeline.model import (
    EdemaPattern,
    EligibilityResult,
    Heights,
    Morphology,
    Orientation,
    PosteriorWall,
    Role,
    SegmentationResult,
    SeriesChoice,
    SeriesDecision,
    SeriesRecord,
    StirAssessment,
    StirFinding,
    StudyRecord,
    VertebraMorphometry,
    VertebraSeg,
)
from pipeline.report.study_report import OutputFiles, StudyReport
from pipeline.volume import Volume

N_SLICES, N_ROWS, N_COLS = 5, 64, 48
ROW_MM, COL_MM, SLICE_MM = 1.0, 0.8, 4.0
STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1001.1"
STIR_SERIES_UID = "1.2.826.0.1.3680043.8.498.1001.2"
FOR_UID = "1.2.826.0.1.3680043.8.498.1001.9"
PATIENT_NAME = "Canary^Patient"
PATIENT_ID = "PID-CANARY-0042"

# (label, level, row0, row1 (exclusive), is_sacrum) in display orientation (row 0 = head, col 0 = anterior)
BODIES = (
    (1, Level.L3, 6, 18, False),
    (2, Level.L4, 22, 34, False),
    (3, Level.L5, 38, 50, False),
    (4, Level.S1, 54, 64, True),
)
COL0, COL1 = 10, 34  # body columns (anterior -> posterior), exclusive stop
WEDGE_COLS, WEDGE_ROWS = 4, 5  # L4: the anterior 4 columns lose their top 5 rows


@dataclass(frozen=True)
class Case:
    files: tuple[Path, ...]
    datasets: tuple[Dataset, ...]  # headers in volume slice order
    anatomy: Volume
    segmentation: SegmentationResult
    stir: StirAssessment
    morphometry: tuple[VertebraMorphometry, ...]
    report: StudyReport
    display_labels: np.ndarray  # (slice, row, col) labels in display orientation (row 0 head, col 0 anterior)


def _display_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t2, labels, stir, edema) in display orientation."""
    labels = np.zeros((N_SLICES, N_ROWS, N_COLS), np.uint16)
    for label, _lvl, r0, r1, _sac in BODIES:
        labels[1:4, r0:r1, COL0:COL1] = label
    labels[1:4, 22 : 22 + WEDGE_ROWS, COL0 : COL0 + WEDGE_COLS] = 0
    t2 = np.full(labels.shape, 120, np.uint16)
    t2[labels > 0] = 420
    t2[:, :, 38:42] = 900  # CSF column posterior to the bodies
    stir = np.full(labels.shape, 80, np.uint16)
    stir[labels > 0] = 150
    edema = np.zeros(labels.shape, np.uint8)
    edema[1:4, 22 + WEDGE_ROWS : 30, COL0:COL1] = 1  # L4: band under the superior endplate
    edema &= (labels == 2).astype(np.uint8)
    stir[edema > 0] = 700
    return t2, labels, stir, edema


def _geometry(flipped: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row direction, column direction, slice normal) in LPS."""
    if flipped:
        row_dir, col_dir = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    else:
        row_dir, col_dir = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def write_series(out_dir: Path, *, flipped: bool = False) -> tuple[list[Path], Volume, Volume, Volume, Volume]:
    """Write the sagittal T2 series; return (files in slice order, t2, labels, stir, edema) as Volumes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t2, labels, stir, edema = _display_arrays()
    if flipped:  # stored image: anterior right, feet top
        t2, labels, stir, edema = (a[:, ::-1, ::-1].copy() for a in (t2, labels, stir, edema))
    row_dir, col_dir, normal = _geometry(flipped)
    # Top-left voxel of the stored image in display terms: head/anterior (or feet/posterior when flipped).
    top_left = np.array([-8.0, -20.0, 30.0])
    if flipped:
        top_left = (
            top_left
            + (N_COLS - 1) * COL_MM * np.array([0.0, 1.0, 0.0])
            + (N_ROWS - 1) * ROW_MM * np.array([0.0, 0.0, -1.0])
        )
    files = []
    for s in range(N_SLICES):
        ipp = top_left + s * SLICE_MM * normal
        ds = Dataset()
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = f"{SERIES_UID}.{s + 1}"
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = SERIES_UID
        ds.FrameOfReferenceUID = FOR_UID
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = "19400101"
        ds.PatientSex = "F"
        ds.StudyDate = "20260101"
        ds.StudyTime = "101010"
        ds.SeriesDate = "20260101"
        ds.SeriesTime = "101500"
        ds.ContentDate = "20260101"
        ds.ContentTime = "101500"
        ds.AccessionNumber = "ACC-CANARY"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.StudyDescription = "MR LUMBAR SPINE"
        ds.SeriesDescription = "SAG T2 TSE"
        ds.Modality = "MR"
        ds.Manufacturer = "TestVendor"
        ds.SeriesNumber = 3
        ds.InstanceNumber = s + 1
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "LSPINE"
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 3000.0
        ds.EchoTime = 100.0
        ds.EchoTrainLength = 16
        ds.MagneticFieldStrength = 1.5
        ds.ImagedNucleus = "1H"
        ds.SliceThickness = SLICE_MM
        ds.SpacingBetweenSlices = SLICE_MM
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [ROW_MM, COL_MM]
        ds.SliceLocation = round(float(ipp @ normal), 4)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = N_ROWS, N_COLS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(t2[s]).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out_dir / f"IM{s + 1:04d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    axes = np.stack([normal, col_dir, row_dir])
    origin = tuple(float(v) for v in top_left)
    spacing = (SLICE_MM, ROW_MM, COL_MM)
    vols = [Volume(a, spacing, origin, axes) for a in (t2, labels, stir, edema)]
    return files, *vols


# Clinical inputs (docs/clinical_inputs.md) that decide every rule at L4: painful acute fracture there.
CLINICAL = {
    "version": 1,
    "aetiology": {"cause": "osteoporosis", "known_malignancy": False, "malignancy_suspected": False},
    "pain": {
        "vas": 7,
        "midline": True,
        "reproducible": True,
        "radicular": False,
        "off_midline": False,
        "mechanical": True,
        "duration_weeks": 8,
        "refractory": True,
        "levels": ["L4"],
    },
    "neurology": {"cord_compression_symptoms": False, "myelopathy": False},
    "infection": {"local": False, "systemic": False},
    "coagulation": {"inr": 1.0, "platelets_10e9_per_l": 240},
    "allergies": {"bone_cement": False, "contrast": False},
    "severe_cardiopulmonary_disease": False,
    "can_lie_prone": True,
    "surgical_backup": True,
    "prior_imaging": {"acute_levels": ["L4"]},
    "radiologist_findings": {
        "L4": {
            "posterior_wall_disruption": False,
            "retropulsion_canal_pct": 0,
            "epidural_tumor_canal_pct": 0,
            "spinal_stenosis": False,
            "burst_fracture": False,
            "pedicle_involvement": False,
        }
    },
}


def eligibility_of(morphometry, stir, clinical: dict | None) -> EligibilityResult:
    """The rules stage's result for these measurements (the real engine and configs/eligibility.yaml)."""
    from pipeline.eligibility import evaluate, imaging_facts, load_rules, parse_clinical

    parsed = parse_clinical(clinical) if clinical is not None else None
    return evaluate(imaging_facts(morphometry, stir), parsed, load_rules())


def _landmarks(vol: Volume, display_rc: dict[str, tuple[float, float]], flipped: bool) -> dict[str, tuple]:
    out = {}
    for name, (r, c) in display_rc.items():
        if flipped:
            r, c = N_ROWS - 1 - r, N_COLS - 1 - c
        out[name] = tuple(float(v) for v in vol.index_to_lps((2.0, r, c)))
    return out


def make_case(tmp_dir: Path, *, flipped: bool = False, clinical: dict | None = CLINICAL) -> Case:
    """The hand-made study; eligibility comes from the real rules with ``clinical`` (None: imaging only)."""
    files, t2, labels, stir_vol, edema = write_series(tmp_dir / "t2", flipped=flipped)
    datasets = tuple(pydicom.dcmread(p, stop_before_pixels=True) for p in files)
    verts = []
    for label, level, _r0, _r1, sac in BODIES:
        mask = labels.array == label
        idx = np.argwhere(mask).mean(axis=0)
        pos = np.argwhere(mask)
        s0, rr0, c0 = pos.min(axis=0)
        s1, rr1, c1 = pos.max(axis=0) + 1
        verts.append(
            VertebraSeg(
                label,
                level,
                0.9,
                tuple(float(v) for v in labels.index_to_lps(idx)),
                2,
                (int(s0), int(rr0), int(c0), int(s1), int(rr1), int(c1)),
                0.85,
                float(mask.sum() * labels.voxel_volume_mm3),
                is_sacrum=sac,
            )
        )
    seg = SegmentationResult(labels, tuple(verts), SERIES_UID, True, "sacrum anchor")
    morph = []
    for label, level, r0, r1, sac in BODIES:
        if sac:
            continue
        top_a = r0 + (WEDGE_ROWS if label == 2 else 0)
        rc = {
            "anterior_superior": (top_a, COL0 + 0.5),
            "anterior_inferior": (r1 - 1, COL0 + 0.5),
            "middle_superior": (r0, (COL0 + COL1) / 2),
            "middle_inferior": (r1 - 1, (COL0 + COL1) / 2),
            "posterior_superior": (r0, COL1 - 1.5),
            "posterior_inferior": (r1 - 1, COL1 - 1.5),
        }
        ha = (r1 - top_a) * ROW_MM
        hp = (r1 - r0) * ROW_MM
        if label == 3:  # L5: not assessable, to exercise the "not assessable" rendering
            morph.append(VertebraMorphometry(label, level, False, "inferior endplate cut by the field of view"))
            continue
        loss = round(100.0 * (1 - ha / hp), 1)
        morph.append(
            VertebraMorphometry(
                label,
                level,
                True,
                "six-point on the mid-sagittal slice",
                Heights(ha, hp, hp),
                hp,
                "neighbours",
                (1, 3) if label == 2 else (2,),
                loss,
                2 if label == 2 else 0,
                Morphology.WEDGE if label == 2 else Morphology.NORMAL,
                13.4 if label == 2 else 0.0,
                {"ha_hp": round(ha / hp, 3)},
                _landmarks(labels, rc, flipped),
                PosteriorWall(True, "CSF column on T2", 0.4, 4.5, 14.0)
                if label == 2
                else PosteriorWall(False, "CSF column not visible at this level"),
            )
        )
    stir = StirAssessment(
        "measured",
        "",
        STIR_SERIES_UID,
        None,
        "same frame of reference",
        0.0,
        150.0,
        900.0,
        300.0,
        (
            StirFinding(1, 1.0, 0.0, False, EdemaPattern.NONE, 0.9, "normal marrow signal"),
            StirFinding(2, 2.35, 0.42, True, EdemaPattern.BAND, 0.85, "band under the superior endplate"),
            StirFinding(3, None, None, None, EdemaPattern.NOT_ASSESSABLE, 0.0, "body cut by the field of view"),
        ),
        stir_on_grid=stir_vol,
        edema_map=edema,
    )
    study = StudyRecord(
        STUDY_UID,
        "9f2c1e",
        "MR LUMBAR SPINE",
        "20260101",
        (_series(SERIES_UID, Role.T2, "SAG T2 TSE"), _series(STIR_SERIES_UID, Role.STIR, "SAG STIR")),
        tmp_dir,
    )
    choice = SeriesChoice(
        study.series[0],
        study.series[1],
        None,
        (
            SeriesDecision(SERIES_UID, True, "anatomy", "only sagittal T2 covering the lumbar spine"),
            SeriesDecision(STIR_SERIES_UID, True, "stir", "true STIR (inversion time 150 ms)"),
        ),
    )
    report = StudyReport(
        study=study,
        choice=choice,
        segmentation=seg,
        morphometry=tuple(morph),
        stir=stir,
        eligibility=eligibility_of(morph, stir, clinical),
        outputs=OutputFiles(labels="labels.nii.gz"),
        warnings=("L5 inferior endplate at the edge of the field of view",),
        timings_ms={"ingest": 120.0, "segment": 900.0, "report": 50.0},
        config_sha256="ab" * 32,
    )
    disp = labels.array if not flipped else labels.array[:, ::-1, ::-1]
    return Case(tuple(files), datasets, t2, seg, stir, tuple(morph), report, np.ascontiguousarray(disp))


def _series(uid: str, role: Role, desc: str) -> SeriesRecord:
    return SeriesRecord(
        study_uid=STUDY_UID,
        series_uid=uid,
        frame_of_reference_uid=FOR_UID,
        modality="MR",
        description=desc,
        series_number=3 if role is Role.T2 else 5,
        orientation=Orientation.SAGITTAL,
        role=role,
        role_rule="description",
        role_confidence=0.95,
        substitute=None,
        n_images=N_SLICES,
        rows=N_ROWS,
        cols=N_COLS,
        pixel_spacing_mm=(ROW_MM, COL_MM),
        slice_thickness_mm=SLICE_MM,
        transfer_syntaxes=(ExplicitVRLittleEndian,),
        files=(),
    )
