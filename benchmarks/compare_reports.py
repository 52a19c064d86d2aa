"""Compare the report.json files of two runs, ignoring what differs between any two runs of the same code.

A speed-up must not change a result (issue 18): run the sample studies before and after it and compare::

    for s in sample_dicom/*/; do spine-assess -q run "$s" --out /tmp/before/$(basename "$s"); done
    ... (the change) ...
    for s in sample_dicom/*/; do spine-assess -q run "$s" --out /tmp/after/$(basename "$s"); done
    python benchmarks/compare_reports.py /tmp/before /tmp/after

Every ``report.json`` under BEFORE is compared with the one at the same relative path under AFTER; the run-specific
fields (``timings_ms``, ``pipeline.generated_at``, ``outputs.*`` file digests if any) are dropped first. Prints one
line per report and, for a difference, the first differing paths with both values. Exit status 0 when every
report is identical, 1 otherwise (2 when BEFORE holds no report).

``--rtol R`` also counts two numbers as equal when they differ by at most R relative (reported separately, never
silently): the STIR registration's ``registration_correction_mm`` differs in the 11th digit between two runs of
the same code (ITK's multi-threaded metric sums), so two runs of main itself are equal only with ``--rtol 1e-9``.

``--files`` also compares the other outputs, for a change to a writer's internals: every DICOM file (``seg.dcm``,
``sr.dcm``, ``sc/*.dcm``) element by element, tag, VR and value, down every sequence, ignoring the values of
date/time elements (DA, TM, DT: the creation time); every overlay PNG by its decoded pixels (a different
compression level gives other bytes, the same image).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: (path of keys) removed before comparing: they change on every run of the same code.
RUN_SPECIFIC: tuple[tuple[str, ...], ...] = (("timings_ms",), ("pipeline", "generated_at"))


def content(path: Path) -> Any:
    report = json.loads(path.read_text(encoding="utf-8"))
    for keys in RUN_SPECIFIC:
        node = report
        for k in keys[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return report


def differences(a: Any, b: Any, where: str = "", rtol: float = 0.0) -> list[str]:
    """Paths (``vertebrae[3].height_loss_pct``) where ``a`` and ``b`` differ by more than ``rtol``, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: {'missing' if k not in a else 'present'} before, "
                           f"{'missing' if k not in b else 'present'} after")  # fmt: skip
            else:
                out += differences(a[k], b[k], f"{where}.{k}", rtol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]", rtol)]
    if isinstance(a, float) and isinstance(b, float) and abs(a - b) <= rtol * max(abs(a), abs(b)):
        return []
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} -> {b!r}"]


def dicom_differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two pydicom datasets differ (tag, VR or value, recursively); date/time values are ignored."""
    out = []
    for tag in sorted(set(a.keys()) | set(b.keys())):
        if tag not in a or tag not in b:
            out.append(f"{where}{tag}: {'missing' if tag not in a else 'present'} before, "
                       f"{'missing' if tag not in b else 'present'} after")  # fmt: skip
            continue
        ea, eb = a[tag], b[tag]
        name = f"{where}{ea.keyword or tag}"
        if ea.VR != eb.VR:
            out.append(f"{name}: VR {ea.VR} -> {eb.VR}")
        elif ea.VR == "SQ":
            if len(ea.value) != len(eb.value):
                out.append(f"{name}: {len(ea.value)} items before, {len(eb.value)} after")
            else:
                for i, (x, y) in enumerate(zip(ea.value, eb.value, strict=True)):
                    out += dicom_differences(x, y, f"{name}[{i}].")
        elif ea.VR not in ("DA", "TM", "DT") and ea.value != eb.value:
            out.append(f"{name}: {str(ea.value)[:60]!r} -> {str(eb.value)[:60]!r}")
    return out


def compare_files(before: Path, after: Path, show: int) -> int:
    """Compare the DICOM and overlay PNG files of two runs; prints one line per file; returns the number differing."""
    import numpy as np
    import pydicom
    from PIL import Image

    files = sorted(p for p in before.rglob("*") if p.suffix in (".dcm", ".png") and p.is_file())
    bad = 0
    for fa in files:
        rel = fa.relative_to(before)
        fb = after / rel
        if not fb.is_file():
            print(f"{rel}: MISSING after")
            bad += 1
            continue
        if fa.suffix == ".dcm":
            da, db = pydicom.dcmread(fa), pydicom.dcmread(fb)
            diff = dicom_differences(da.file_meta, db.file_meta, "meta.") + dicom_differences(da, db)
        else:
            pa, pb = np.asarray(Image.open(fa)), np.asarray(Image.open(fb))
            diff = [] if np.array_equal(pa, pb) else [f"pixels differ ({pa.shape} -> {pb.shape})"]
        print(f"{rel}: {'identical' if not diff else f'DIFFERS ({len(diff)} values)'}")
        for d in diff[:show]:
            print(f"    {d}")
        bad += bool(diff)
    print(f"{len(files) - bad}/{len(files)} DICOM/PNG files identical (ignoring DA/TM/DT values; PNG: pixels)")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers (default 0: exact)")
    ap.add_argument("--files", action="store_true", help="also compare DICOM files and overlay PNGs (see above)")
    ap.add_argument("--show", type=int, default=10, help="differing paths to print per report (default 10)")
    args = ap.parse_args(argv)
    reports = sorted(args.before.rglob("report.json"))
    if not reports:
        print(f"no report.json under {args.before}")
        return 2
    bad = 0
    for ra in reports:
        rel = ra.relative_to(args.before)
        rb = args.after / rel
        if not rb.is_file():
            print(f"{rel}: MISSING after")
            bad += 1
            continue
        a, b = content(ra), content(rb)
        diff = differences(a, b, rtol=args.rtol)
        exact = len(differences(a, b))
        same = "identical" if not exact else f"equal within rtol {args.rtol:g} ({exact} values not exactly)"
        print(f"{rel}: {same if not diff else f'DIFFERS ({len(diff)} values)'}")
        for d in diff[: args.show]:
            print(f"    {d.lstrip('.')}")
        bad += bool(diff)
    ignored = ", ".join(".".join(k) for k in RUN_SPECIFIC)
    tol = f", numbers within rtol {args.rtol:g}" if args.rtol else ""
    print(f"{len(reports) - bad}/{len(reports)} reports identical (ignoring {ignored}{tol})")
    if args.files:
        bad += compare_files(args.before, args.after, args.show)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
