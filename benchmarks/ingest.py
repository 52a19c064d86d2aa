"""Ingest throughput: files/s for header scanning (``discover``) and for full volume loading (``load_series``),
each as a ratio to a bare ``pydicom.dcmread`` loop over the same files, in the same run.

    python benchmarks/ingest.py                       # 3000 files: 100 sagittal series x 30 slices, 256 x 256
    python benchmarks/ingest.py --files 10000 --rows 128 --private-kb 48 --transfer-syntax rle

Files are generated in a temporary folder (``--workdir`` to choose, ``--keep`` to keep them) with a vendor-like
private blob per file (Siemens CSA headers are tens of kB), then read once to warm the page cache. Each
pass is repeated (``--repeat`` rounds, passes interleaved) and the median is reported, as wall time and as CPU
time of this process (the machine may be shared). Baselines:

- header scan vs ``pydicom.dcmread(f, stop_before_pixels=True)`` (and vs a full ``dcmread(f)``),
- volume loading vs ``pydicom.dcmread(f).pixel_array``.

When ``/work/shared/realdata`` (or ``--realdata``) exists, the NIfTI research cases are also timed
(``discover_study`` + ``load_series`` vs a bare ``SimpleITK.ReadImage``); otherwise a notice is printed.
Figures are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid  # noqa: E402

from pipeline.ingest import discover, discover_study, load_ingest_config, load_series  # noqa: E402
from tests.dicom_factory import SeriesSpec, write_series  # noqa: E402

SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpegls": JPEGLSLossless}


def measure(passes: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, CPU s) of each pass; the passes are interleaved round by round so that a load change
    on a shared machine hits them all alike."""
    walls: dict[str, list[float]] = {k: [] for k in passes}
    cpus: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(repeat):
        for name, fn in passes.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in passes}


def generate(root: Path, n_files: int, slices: int, rows: int, private_kb: int, ts: str) -> list[Path]:
    blob_a = b"\x01" * (private_kb * 1024 // 3)
    blob_b = b"\x02" * (private_kb * 1024 - len(blob_a))

    def private(ds: pydicom.Dataset, k: int) -> None:
        ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds.add_new(0x00291010, "OB", blob_a)
        ds.add_new(0x00291020, "OB", blob_b)

    study, frame = generate_uid(), generate_uid()
    paths: list[Path] = []
    n_series = max(1, n_files // slices)
    for i in range(n_series):
        spec = SeriesSpec(
            study_uid=study,
            frame_of_reference_uid=frame,
            series_number=i + 1,
            n_slices=slices,
            rows=rows,
            cols=rows,
            pixel_spacing=(0.7, 0.7),
            description="t2_tse_sag" if i % 2 else "t1_tse_sag",
            tr=4000.0 if i % 2 else 550.0,
            te=100.0 if i % 2 else 10.0,
            transfer_syntax=ts,
            file_names="none",
            seed=i,
        )
        paths += write_series(root / f"s{i:04d}", spec, mutate=private)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--slices", type=int, default=30, help="slices per series")
    ap.add_argument("--rows", type=int, default=256, help="rows = columns of each slice")
    ap.add_argument("--private-kb", type=int, default=24, help="vendor private header bytes per file (kB)")
    ap.add_argument("--transfer-syntax", choices=sorted(SYNTAXES), default="explicit")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; the median of each pass is reported")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")  # ../shared beside the repo
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="spine-assess-bench-ingest-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        files = generate(work, args.files, args.slices, args.rows, args.private_kb, SYNTAXES[args.transfer_syntax])
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        print(
            f"generated {len(files)} files ({size_mb:.0f} MB, {args.rows}x{args.rows}, {args.slices} slices/series, "
            f"{args.private_kb} kB private header, {args.transfer_syntax}) in {time.perf_counter() - t0:.1f} s "
            f"under {work}"
        )
        for p in files:  # warm the page cache so every pass reads from memory
            p.read_bytes()
        cfg = load_ingest_config()
        n = len(files)

        def bare_headers() -> None:
            for p in files:
                pydicom.dcmread(p, stop_before_pixels=True)

        def bare_full() -> None:
            for p in files:
                pydicom.dcmread(p)

        def bare_decode() -> None:
            for p in files:
                pydicom.dcmread(p).pixel_array  # noqa: B018 - decoding is the point

        found = discover(work, cfg=cfg)
        series = [s for st in found.studies for s in st.series]
        assert sum(s.n_images for s in series) == n and not found.skipped, "generated data not fully found"

        def scan() -> None:
            discover(work, cfg=cfg)

        def load() -> None:
            for s in series:
                load_series(s, cfg=cfg)

        passes = {
            "bare dcmread(stop_before_pixels)": bare_headers,
            "bare dcmread (full)": bare_full,
            "ingest discover (header scan)": scan,
            "bare dcmread + pixel_array": bare_decode,
            "ingest load_series (all series)": load,
        }
        results = measure(passes, args.repeat)
        rows = [(name, n / wall, n / cpu) for name, (wall, cpu) in results.items()]
        print(f"\n{'pass':<36} {'files/s (wall)':>15} {'files/s (CPU)':>14}")
        for name, fw, fc in rows:
            print(f"{name:<36} {fw:>15.0f} {fc:>14.0f}")

        def ratio(a: str, b: str) -> str:
            return f"{results[b][0] / results[a][0]:.2f} (wall), {results[b][1] / results[a][1]:.2f} (CPU)"

        print("\nratios (ingest files/s / bare files/s; 1.0 = as fast as the bare loop):")
        for label, ours, bare in (
            (
                "header scan  vs dcmread(stop_before_pixels)",
                "ingest discover (header scan)",
                "bare dcmread(stop_before_pixels)",
            ),
            ("header scan  vs dcmread (full)", "ingest discover (header scan)", "bare dcmread (full)"),
            ("volume load  vs dcmread + pixel_array", "ingest load_series (all series)", "bare dcmread + pixel_array"),
        ):
            print(f"  {label:<44} {ratio(ours, bare)}")
        scan_wall = results["ingest discover (header scan)"][0]
        print(f"  -> header scan of 10,000 such files: ~{10000 * scan_wall / n:.1f} s")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    real_cases = sorted(args.realdata.glob("vb*/case_*/image.nii.gz")) if args.realdata.is_dir() else []
    if not real_cases:
        print(f"\nreal data: {args.realdata} not found; NIfTI timing skipped")
        return 0

    def bare_nifti() -> None:
        for p in real_cases:
            sitk.ReadImage(str(p))

    def ingest_nifti() -> None:
        for p in real_cases:
            load_series(discover_study(p.parent, cfg=cfg).series[0], cfg=cfg)

    nifti = measure({"bare": bare_nifti, "ingest": ingest_nifti}, 1)
    bw, iw = nifti["bare"][0], nifti["ingest"][0]
    print(
        f"\nreal data: {len(real_cases)} NIfTI cases: ingest discover+load {len(real_cases) / iw:.1f} cases/s, "
        f"bare SimpleITK.ReadImage {len(real_cases) / bw:.1f} cases/s, ratio {bw / iw:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
