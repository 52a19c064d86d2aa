"""Tiny synthetic MR DICOM series for tests (reusable by every stage's tests).

Writes valid-enough MR Image Storage (classic, one file per slice) and Enhanced MR Image Storage
(one multi-frame file) series with chosen orientation, geometry, names, TR/TE/TI, vendor and transfer
syntax. Pixel values follow a known formula so tests can check slice order and rescaling:

    stored[k, r, c] = 1000 * (k + 1) + r * cols + c      (k = slice index along the normal)

Example::

    spec = SeriesSpec(description="t2_tse_sag", n_slices=6)
    paths = write_series(tmp_path / "study", spec)
    expected = spec.expected_array()          # float32 (n, rows, cols) after rescale, sorted along normal
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    generate_uid,
)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
GRAYSCALE_PR = "1.2.840.10008.5.1.4.1.1.11.1"

# ImageOrientationPatient (row direction, column direction) per plane, LPS.
IOP = {
    "SAGITTAL": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),  # columns run anterior->posterior, rows head->feet
    "CORONAL": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    "AXIAL": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
}


def rotated_iop(plane: str, angle_deg: float, axis: Sequence[float] = (0.0, 0.0, 1.0)) -> tuple[float, ...]:
    """IOP of ``plane`` rotated by ``angle_deg`` about ``axis`` (LPS), for oblique tests."""
    a = np.radians(angle_deg)
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx
    iop = np.asarray(IOP[plane], float)
    return tuple(float(v) for v in np.concatenate([rot @ iop[:3], rot @ iop[3:]]))


@dataclass
class SeriesSpec:
    """What to write; defaults make a small sagittal T2 TSE series (Siemens-style names)."""

    description: str = "t2_tse_sag"
    protocol_name: str | None = None
    sequence_name: str = "*tse2d1_15"
    orientation: str | tuple[float, ...] = "SAGITTAL"
    n_slices: int = 5
    rows: int = 12
    cols: int = 10
    pixel_spacing: tuple[float, float] = (0.8, 0.7)
    slice_spacing: float = 4.0
    slice_thickness: float = 3.5
    origin: tuple[float, float, float] = (-8.0, -40.0, 60.0)
    tr: float | None = 4000.0
    te: float | None = 100.0
    ti: float | None = None
    scanning_sequence: str = "SE"
    sequence_variant: str = "SK\\SP"
    scan_options: str = ""
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    manufacturer: str = "SIEMENS"
    field_strength: float = 1.5
    transfer_syntax: str = ExplicitVRLittleEndian
    rescale: tuple[float, float] | None = None  # (slope, intercept); None = no rescale attributes
    series_number: int = 1
    modality: str = "MR"
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    patient_id: str = "PAT-0001"
    patient_name: str = "Test^Patient"
    study_date: str = "20240102"
    bits_allocated: int = 16
    instance_order: str = "shuffled"  # InstanceNumber vs position: "shuffled", "reversed", "same"
    file_names: str = "numbered"  # "numbered" (IM0001...), "none" (random hex, no extension), "dcm"
    seed: int = 0

    @property
    def iop(self) -> tuple[float, ...]:
        return IOP[self.orientation] if isinstance(self.orientation, str) else tuple(self.orientation)

    @property
    def normal(self) -> np.ndarray:
        iop = np.asarray(self.iop, float)
        n = np.cross(iop[:3], iop[3:])
        return n / np.linalg.norm(n)

    def position(self, k: int) -> tuple[float, float, float]:
        p = np.asarray(self.origin, float) + k * self.slice_spacing * self.normal
        return (float(p[0]), float(p[1]), float(p[2]))

    def stored(self, k: int) -> np.ndarray:
        base = 1000 * (k + 1) if self.bits_allocated == 16 else 10 * (k + 1)
        r, c = np.mgrid[0 : self.rows, 0 : self.cols]
        arr = base + (r * self.cols + c) % (200 if self.bits_allocated == 8 else 1 << 15)
        return arr.astype(np.uint16 if self.bits_allocated == 16 else np.uint8)

    def expected_array(self) -> np.ndarray:
        """Float32 (n, rows, cols): what load_series must return, slices sorted along the normal."""
        slope, intercept = self.rescale or (1.0, 0.0)
        return np.stack([self.stored(k).astype(np.float32) * slope + intercept for k in range(self.n_slices)])

    def expected_axes(self) -> np.ndarray:
        iop = np.asarray(self.iop, float)
        return np.vstack([self.normal, iop[3:], iop[:3]])


# --------------------------------------------------------------------------- writers
def base_dataset(spec: SeriesSpec, sop_class: str, sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = UID(spec.transfer_syntax)
    ds.file_meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = spec.frame_of_reference_uid
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC123"
    ds.StudyDescription = "MR LUMBAR SPINE"
    ds.Modality = spec.modality
    ds.Manufacturer = spec.manufacturer
    ds.MagneticFieldStrength = spec.field_strength
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.description
    ds.ProtocolName = spec.protocol_name if spec.protocol_name is not None else spec.description
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "LSPINE"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = spec.bits_allocated
    ds.BitsStored = spec.bits_allocated
    ds.HighBit = spec.bits_allocated - 1
    ds.PixelRepresentation = 0
    return ds


def _mr_params(ds: Dataset, spec: SeriesSpec) -> None:
    ds.ScanningSequence = spec.scanning_sequence
    ds.SequenceVariant = spec.sequence_variant
    ds.ScanOptions = spec.scan_options
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = spec.sequence_name
    if spec.tr is not None:
        ds.RepetitionTime = spec.tr
    if spec.te is not None:
        ds.EchoTime = spec.te
    if spec.ti is not None:
        ds.InversionTime = spec.ti
    ds.EchoTrainLength = 15
    ds.ImageType = list(spec.image_type)


def _file_name(spec: SeriesSpec, k: int, rng: random.Random) -> str:
    if spec.file_names == "none":
        return f"{rng.getrandbits(32):08X}"
    if spec.file_names == "dcm":
        return f"slice_{k:03d}.dcm"
    return f"IM{k + 1:04d}"


def _instance_numbers(spec: SeriesSpec, rng: random.Random) -> list[int]:
    nums = list(range(1, spec.n_slices + 1))
    if spec.instance_order == "reversed":
        nums.reverse()
    elif spec.instance_order == "shuffled":
        rng.shuffle(nums)
    return nums


def write_series(
    folder: Path,
    spec: SeriesSpec,
    *,
    mutate: Callable[[Dataset, int], None] | None = None,
) -> list[Path]:
    """Write a classic MR series, one file per slice; ``mutate(ds, k)`` may edit slice ``k`` before writing.

    Returns the paths in slice order (along the normal).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    numbers = _instance_numbers(spec, rng)
    paths = []
    for k in range(spec.n_slices):
        ds = base_dataset(spec, MR_IMAGE_STORAGE, generate_uid())
        _mr_params(ds, spec)
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = list(spec.position(k))
        ds.ImageOrientationPatient = list(spec.iop)
        ds.PixelSpacing = list(spec.pixel_spacing)
        ds.SliceThickness = spec.slice_thickness
        ds.SpacingBetweenSlices = spec.slice_spacing
        ds.SliceLocation = float(np.dot(spec.position(k), spec.normal))
        if spec.rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = spec.rescale
            ds.RescaleType = "US"
        _set_pixels(ds, spec.stored(k), spec)
        if mutate is not None:
            mutate(ds, k)
        path = folder / _file_name(spec, k, rng)
        _save(ds, path, spec.transfer_syntax)
        paths.append(path)
    return paths


def write_enhanced(
    path: Path,
    spec: SeriesSpec,
    *,
    frame_order: Sequence[int] | None = None,
    mutate: Callable[[Dataset], None] | None = None,
) -> Path:
    """Write an Enhanced MR Image Storage file holding the whole series as frames.

    ``frame_order[j]`` is the slice index (along the normal) stored as frame ``j + 1``; default reversed,
    so that a reader sorting by frame number would get it wrong.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = list(frame_order) if frame_order is not None else list(range(spec.n_slices))[::-1]
    ds = base_dataset(spec, ENHANCED_MR_IMAGE_STORAGE, generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.PulseSequenceName = spec.sequence_name or spec.description
    ds.AcquisitionContrast = "T2"
    ds.InstanceNumber = 1
    ds.ContentDate = spec.study_date
    ds.ContentTime = "101500"
    ds.AcquisitionDateTime = spec.study_date + "101500"
    ds.NumberOfFrames = len(order)
    ds.SpectrallySelectedSuppression = "FAT" if "FS" in spec.scan_options.split("\\") else "NONE"
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = list(spec.pixel_spacing)
    pm.SliceThickness = spec.slice_thickness
    pm.SpacingBetweenSlices = spec.slice_spacing
    shared.PixelMeasuresSequence = DicomSequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = list(spec.iop)
    shared.PlaneOrientationSequence = DicomSequence([po])
    timing = Dataset()
    if spec.tr is not None:
        timing.RepetitionTime = spec.tr
    timing.EchoTrainLength = 15
    shared.MRTimingAndRelatedParametersSequence = DicomSequence([timing])
    echo = Dataset()
    if spec.te is not None:
        echo.EffectiveEchoTime = spec.te
    shared.MREchoSequence = DicomSequence([echo])
    mod = Dataset()
    mod.InversionRecovery = "YES" if spec.ti is not None else "NO"
    if spec.ti is not None:
        mod.InversionTimes = [spec.ti]
    shared.MRModifierSequence = DicomSequence([mod])
    ftype = Dataset()
    ftype.FrameType = list(spec.image_type[:2]) + ["M", "NONE"]
    shared.MRImageFrameTypeSequence = DicomSequence([ftype])
    if spec.rescale is not None:
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = spec.rescale
        pvt.RescaleType = "US"
        shared.PixelValueTransformationSequence = DicomSequence([pvt])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for j, k in enumerate(order):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = list(spec.position(k))
        item.PlanePositionSequence = DicomSequence([pp])
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        fc.StackID = "1"
        fc.DimensionIndexValues = [1, k + 1]
        item.FrameContentSequence = DicomSequence([fc])
        per_frame.append(item)
        del j
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    frames = np.stack([spec.stored(k) for k in order])
    _set_pixels(ds, frames, spec)
    if mutate is not None:
        mutate(ds)
    _save(ds, path, spec.transfer_syntax)
    return path


def _set_pixels(ds: Dataset, arr: np.ndarray, spec: SeriesSpec) -> None:
    ts = UID(spec.transfer_syntax)
    if not ts.is_compressed or ts in (JPEGLosslessSV1,):
        data = arr.astype(arr.dtype.newbyteorder(">" if ts == ExplicitVRBigEndian else "<")).tobytes()
        ds.PixelData = data
        ds["PixelData"].VR = "OW" if spec.bits_allocated > 8 else "OB"
        return
    if ts == JPEGBaseline8Bit:
        ds.PixelData = pydicom.encaps.encapsulate([_jpeg_baseline(f) for f in np.atleast_3d(arr.T).T])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        return
    lossy = {"j2k_psnr": [80.0]} if ts == JPEG2000 else {}
    ds.compress(ts, arr, generate_instance_uid=False, **lossy)


def _jpeg_baseline(frame: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame.astype(np.uint8), mode="L").save(buf, format="JPEG", quality=100)
    return buf.getvalue()


def _save(ds: Dataset, path: Path, ts: str) -> None:
    uid = UID(ts)
    if uid == JPEGLosslessSV1:
        tmp = path.with_name(path.name + ".raw")
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(tmp, enforce_file_format=True)
        dcmcjpeg = shutil.which("dcmcjpeg")
        if dcmcjpeg is None:
            raise RuntimeError("dcmcjpeg (DCMTK) is needed to write JPEG lossless test files")
        subprocess.run([dcmcjpeg, "+e1", str(tmp), str(path)], check=True, capture_output=True)
        tmp.unlink()
        return
    ds.save_as(
        path,
        implicit_vr=uid == ImplicitVRLittleEndian,
        little_endian=uid != ExplicitVRBigEndian,
        enforce_file_format=True,
    )


# --------------------------------------------------------------------------- other objects and bad files
def write_sr(path: Path, spec: SeriesSpec | None = None) -> Path:
    """A Basic Text SR (no pixel data) in the same study as ``spec``."""
    spec = spec or SeriesSpec()
    ds = base_dataset(replace(spec, series_uid=generate_uid()), BASIC_TEXT_SR, generate_uid())
    for k in (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        delattr(ds, k)
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_presentation_state(path: Path, spec: SeriesSpec | None = None) -> Path:
    """A Grayscale Softcopy Presentation State (no pixel data)."""
    spec = spec or SeriesSpec()
    ds = base_dataset(replace(spec, series_uid=generate_uid()), GRAYSCALE_PR, generate_uid())
    for k in (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        delattr(ds, k)
    ds.Modality = "PR"
    ds.ContentLabel = "PS"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_deeply_nested(path: Path, depth: int, spec: SeriesSpec | None = None) -> Path:
    """A one-slice MR file carrying a private sequence nested ``depth`` levels deep (explicit VR LE,
    undefined lengths). Built as bytes: pydicom's writer itself slows down sharply beyond ~200 levels."""
    spec = replace(spec or SeriesSpec(), n_slices=1, series_uid=generate_uid())

    def placeholder(ds: Dataset, k: int) -> None:
        ds.add_new(0x00091012, "SQ", DicomSequence([Dataset()]))

    tmp = path.with_name(path.name + ".tmp")
    (written,) = write_series(tmp, spec, mutate=placeholder)
    data = written.read_bytes()
    shutil.rmtree(tmp)
    sq = b"\x09\x00\x12\x10SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_end = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    seq_end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    start = data.index(sq[:8])  # pydicom wrote the placeholder with a defined length
    stop = start + 12 + struct.unpack("<L", data[start + 8 : start + 12])[0]
    deep = (sq + item) * depth + (item_end + seq_end) * depth
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:start] + deep + data[stop:])
    return path


def truncate(path: Path, keep_fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def set_attributes(**attrs: Any) -> Callable[[Dataset, int], None]:
    """A ``mutate`` for :func:`write_series`: set (value None: delete) attributes on every slice."""

    def mutate(ds: Dataset, k: int) -> None:
        for key, value in attrs.items():
            if value is None:
                if key in ds:
                    delattr(ds, key)
            else:
                setattr(ds, key, value)

    return mutate


def corrupt_compressed_pixels(path: Path, seed: int = 0) -> Path:
    """Overwrite every fragment of an encapsulated (compressed) file's pixel data with random bytes of the same
    length: the file stays valid DICOM (headers, fragment lengths) but its frames cannot be decoded."""
    from pydicom.encaps import encapsulate, generate_fragments

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.is_encapsulated, f"{path}: pixel data is not compressed"
    rng = random.Random(seed)
    fragments = [bytes(rng.getrandbits(8) for _ in range(len(f))) for f in generate_fragments(ds.PixelData)]
    ds.PixelData = encapsulate(fragments)
    ds.save_as(path, enforce_file_format=True)
    return path


def slices_by_position(folder: Path) -> list[Path]:
    """The DICOM files of one series folder, sorted by position along the slice normal."""

    def along(p: Path) -> float:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        return float(np.dot(np.asarray(ds.ImagePositionPatient, float), np.cross(iop[:3], iop[3:])))

    return sorted((p for p in Path(folder).iterdir() if p.is_file()), key=along)


def reuid_study(folder: Path, seed: int) -> Path:
    """Give every DICOM file under ``folder`` new Study / Series / SOP Instance UIDs (deterministic from ``seed``,
    FrameOfReferenceUID kept), so copies of one study are distinct studies. Pixel data is not touched."""
    from pydicom.uid import generate_uid

    mapping: dict[str, str] = {}

    def new(old: str) -> str:
        return mapping.setdefault(old, generate_uid(entropy_srcs=[str(seed), old]))

    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.suffix in (".yaml", ".json", ".txt"):
            continue
        ds = pydicom.dcmread(p)
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            setattr(ds, kw, new(str(getattr(ds, kw))))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(p, enforce_file_format=True)
    return folder


def add_duplicate(
    source: Path,
    dest: Path,
    *,
    pixel_offset: int = 0,
    acquisition_time: str | None = None,
    mutate: Callable[[Dataset], None] | None = None,
) -> Path:
    """A second instance (new SOP Instance UID) at the same slice position as ``source`` (uncompressed): its
    pixels plus ``pixel_offset`` (0: identical pixel data), and AcquisitionTime if given."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if pixel_offset:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.PixelData = (ds.pixel_array.astype(np.int64) + pixel_offset).astype(ds.pixel_array.dtype).tobytes()
    if acquisition_time is not None:
        ds.AcquisitionTime = acquisition_time
    if mutate is not None:
        mutate(ds)
    ds.save_as(dest, enforce_file_format=True)
    return dest
