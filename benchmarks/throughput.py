"""Throughput (issues 9 and 18): start-up, per-study and per-stage CPU time against a bare DICOM decode of the same
files measured in the same run, studies/hour with 1 and 2 workers, peak memory per worker, the speed-up and
(optionally) a Dask run.

    python benchmarks/throughput.py                      # sample_dicom/ x 5 copies = 20 studies, 1 and 2 workers
    python benchmarks/throughput.py --no-batch           # sections 1-3 only (bare read, stages, start-up)
    python benchmarks/throughput.py --copies 2 --dask    # 8 studies, plus a Dask LocalCluster run (parity check)
    python benchmarks/throughput.py --workers 1,2,4 --keep --workdir /tmp/tp

Input: the sample studies (``sample_dicom/``, 3 sagittal series each, compressed with JPEG-LS, RLE or JPEG 2000)
copied ``--copies`` times; every copy but the first gets new Study/Series/SOP Instance and Frame of Reference
UIDs, so the batch sees distinct studies (the pixels are unchanged, so every copy has the same results).
Sections:

1. Bare read: ``pydicom.dcmread`` + decoding of every file of every study, in this process (the floor that any
   DICOM pipeline pays).
2. One thread, in this process: each sample study through ``pipeline.run.run_study`` (warm, ``--repeat``
   rounds, median): CPU time per study and per stage, measured by wrapping the stage functions that
   ``pipeline/run.py`` chains (and, inside ``outputs``, each writer) with a process-time clock; the ratio of each
   study's CPU to its bare read. CPU time, not wall, is the figure to compare with the goals (issue 18: a study
   <= 1.5 s CPU, ~30x the bare decode) when the machine is shared.
3. Start-up, each command a fresh process (``python -m pipeline``, as the console script runs it), best of
   ``--repeat`` + 1: CPU of ``spine-assess --help`` and ``spine-assess run --help``, and the start-up that
   ``spine-assess run`` pays on every study: in one fresh process, the interpreter, the imports, the
   configuration and the first run of a sample study minus a second run of it (the network's session,
   highdicom's tables, templates), both runs under the same load.
4. ``spine-assess batch`` with ``-j N`` for each ``--workers`` value (a fresh output folder each, run as a
   subprocess like a user would): wall time, studies/hour, median study time, peak resident memory per worker
   (from ``ledger.jsonl``), CPU seconds of the batch (the command and its workers, start-up included), and the
   speed-up over the first ``--workers`` value. The batch wall time includes start-up (imports, planning,
   the workers' imports).
5. ``--dask``: the same batch on a ``distributed.LocalCluster`` (2 worker processes, 1 thread each) through
   ``--dask-scheduler``; its reports are compared with the local run's.

Every batch's reports are compared with the first batch's (``report.json`` without ``timings_ms`` and
``pipeline.generated_at``): they must be identical. The load average is printed with each section: on a
shared machine, wall times and the speed-up depend on what else runs. Nothing is asserted.
"""

from __future__ import annotations

import os

# One thread per process for the in-process section (the batch workers set the same themselves).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from pydicom.uid import JPEGLSLossless, JPEGLSNearLossless, generate_uid  # noqa: E402

SAMPLES = REPO / "sample_dicom"
STAGES = ("ingest", "load", "segment", "morphometry", "stir", "eligibility", "outputs", "total")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
GOAL_S, GOAL_RSS_MB, GOAL_SPEEDUP = 1.5, 600.0, 1.8
# issue 18: CPU ms per stage (segment: the segmentation issue's own budget), start-up CPU s
GOAL_STAGE_MS = {"segment": 1000.0, "morphometry": 200.0, "stir": 300.0, "outputs": 300.0, "total": 1500.0}
GOAL_HELP_S, GOAL_RUN_STARTUP_S = 0.5, 1.0


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.1f} {b:.1f} {c:.1f} on {os.cpu_count()} cores"


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- input
def dicom_files(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() == ".dcm":
            yield p


def make_input(root: Path, copies: int) -> list[tuple[str, Path]]:
    """``copies`` copies of every sample study under ``root``; copy 0 keeps its UIDs. Returns (sample, folder)."""
    studies: list[tuple[str, Path]] = []
    samples = sorted(p for p in SAMPLES.iterdir() if p.is_dir())
    for k in range(copies):
        for src in samples:
            dst = root / f"copy{k:02d}" / src.name
            studies.append((src.name, dst))
            if k == 0:
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("truth.json"))
                continue
            for f in dicom_files(src):
                ds = pydicom.dcmread(f)
                for kw in UID_KEYWORDS:
                    if kw in ds:
                        setattr(ds, kw, generate_uid(entropy_srcs=[str(ds.data_element(kw).value), f"copy {k}"]))
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                out = dst / f.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(out, enforce_file_format=True)
            for other in ("clinical.yaml",):
                if (src / other).is_file():
                    shutil.copy2(src / other, dst / other)
    return studies


# --------------------------------------------------------------------------- 1. bare read
def bare_read(folder: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, files) to read and decode every DICOM file of ``folder`` with pydicom (CharLS for JPEG-LS,
    the fastest decoder installed, as the pipeline uses)."""
    w0, c0, n = time.perf_counter(), time.process_time(), 0
    for f in dicom_files(folder):
        ds = pydicom.dcmread(f)
        ts = ds.file_meta.TransferSyntaxUID
        plugin = "pyjpegls" if ts in (JPEGLSLossless, JPEGLSNearLossless) else ""
        ds.pixel_array_options(decoding_plugin=plugin)
        _ = ds.pixel_array
        n += 1
    return time.perf_counter() - w0, time.process_time() - c0, n


# --------------------------------------------------------------------------- 2. in process
#: stage -> the functions ``pipeline.run.run_study`` calls for it (names in ``pipeline.run``); "outputs" holds the
#: writing of report.json (StudyReport.to_json, inside write_outputs) with the other outputs.
STAGE_FUNCTIONS = {
    "ingest": ("discover_study", "choose_series"),
    "load": ("_load_choice",),
    "segment": ("_segment",),
    "morphometry": ("measure_vertebrae",),
    "stir": ("_assess_stir",),
    "eligibility": ("imaging_facts", "evaluate"),
    "outputs": ("_write_image", "read_source_datasets", "write_outputs"),
}
#: the writers inside ``outputs`` -> their modules (``pipeline.report.write_outputs`` imports each when it first
#: needs it, so they are timed where they live; save_dicom writes every DICOM object)
WRITERS = {
    "render_overlays": "pipeline.report.overlay",
    "build_seg": "pipeline.report.dicom_seg",
    "build_sr": "pipeline.report.dicom_sr",
    "build_sc": "pipeline.report.dicom_sc",
    "save_dicom": "pipeline.report.dicom_common",
    "render_html": "pipeline.report.html",
    "validate_report": "pipeline.report.json_report",
    "write_json": "pipeline.report.json_report",
}
CPU_STAGES = (*STAGE_FUNCTIONS, "other", "total")
#: the parts of ``outputs`` outside ``write_outputs`` (the label map, reading the source headers)
OUTPUT_PARTS = tuple(n for n in STAGE_FUNCTIONS["outputs"] if n != "write_outputs")


class CpuClock:
    """Process-time per stage: wraps the named module functions once; ``ms`` is cleared by the caller per study.
    A name that no longer exists is reported as missing rather than silently measured as zero."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.missing: list[str] = []

    def wrap(self, module: Any, name: str, *keys: str) -> None:
        fn = getattr(module, name, None)
        if fn is None:
            self.missing.append(f"{module.__name__}.{name}")
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                for key in keys:
                    self.ms[key] = self.ms.get(key, 0.0) + (time.process_time() - c0) * 1000.0

        setattr(module, name, timed)


def in_process(
    studies: list[tuple[str, Path]], repeat: int, out: Path
) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """Per study: lists (one per round) of CPU ms per stage and writer, ``total`` = the whole run_study."""
    import SimpleITK as sitk

    import pipeline.run as run_module
    from pipeline.run import load_pipeline_config, run_study

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    clock = CpuClock()
    for stage, names in STAGE_FUNCTIONS.items():
        for name in names:
            clock.wrap(run_module, name, stage, f"part:{name}")
    for name, module in WRITERS.items():
        clock.wrap(importlib.import_module(module), name, f"writer:{name}")
    config = load_pipeline_config()
    run_study(studies[0][1], out / "warm-up", config=config)  # imports, caches
    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for name, folder in studies:
            clock.ms.clear()
            c0 = time.process_time()
            result = run_study(folder, out / name, config=config)
            total = (time.process_time() - c0) * 1000.0
            t = rows.setdefault(name, {})
            t.setdefault("total", []).append(total)
            t.setdefault("wall", []).append(result.runtime_s * 1000.0)
            t.setdefault("other", []).append(total - sum(clock.ms.get(s, 0.0) for s in STAGE_FUNCTIONS))
            for key in (*STAGE_FUNCTIONS, *(f"writer:{w}" for w in WRITERS), *(f"part:{p}" for p in OUTPUT_PARTS)):
                t.setdefault(key, []).append(clock.ms.get(key, 0.0))
            # write_outputs' own work (copying the report, the folder, the file list), outside its writers
            rest = clock.ms.get("part:write_outputs", 0.0) - sum(clock.ms.get(f"writer:{w}", 0.0) for w in WRITERS)
            t.setdefault("writer:rest", []).append(rest)
    return rows, clock.missing


def print_in_process(ip: dict[str, dict[str, list[float]]], bare: dict[str, tuple[float, float, int]]) -> list[float]:
    print("   CPU ms per stage (process time; 'other' = run_study outside the stages: output folder, fsync)")
    head = "".join(f"{s[:11]:>12}" for s in CPU_STAGES)
    print(f"   {'study':<30}{head}{'x bare':>8}")
    for name, t in ip.items():
        cells = "".join(f"{median(t[s]):12.0f}" for s in CPU_STAGES)
        print(f"   {name:<30}{cells}{median(t['total']) / (bare[name][1] * 1000.0):8.1f}")
    med = {s: median([median(t[s]) for t in ip.values()]) for s in CPU_STAGES}
    print(f"   {'median':<30}" + "".join(f"{med[s]:12.0f}" for s in CPU_STAGES))
    goals = "".join(f"{GOAL_STAGE_MS[s]:12.0f}" if s in GOAL_STAGE_MS else f"{'':12}" for s in CPU_STAGES)
    print(f"   {'goal (issue 18)':<30}{goals}")
    print("   inside 'outputs', CPU ms (median of the samples) per part, then per writer of write_outputs")
    print("   (build_* make the DICOM objects, save_dicom writes them all; 'rest': write_outputs outside its writers):")

    def cell(key: str) -> str:
        return f"{key.split(':')[1]} {median([median(t[key]) for t in ip.values()]):.0f}"

    print("   " + "  ".join(cell(f"part:{p}") for p in OUTPUT_PARTS))
    print("   " + "  ".join(cell(f"writer:{w}") for w in (*WRITERS, "rest")))
    return [median(t["total"]) / 1000.0 for t in ip.values()]


# --------------------------------------------------------------------------- 3. start-up
def command_cpu(args: list[str], repeat: int) -> tuple[float, float, int]:
    """(best CPU s, best wall s, exit status) of ``python -m pipeline ARGS`` in a fresh process, ``repeat`` times."""
    cpu, wall, code = [], [], 0
    for _ in range(repeat):
        c0, w0 = children_cpu_s(), time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, check=False)
        wall.append(time.perf_counter() - w0)
        cpu.append(children_cpu_s() - c0)
        code = proc.returncode
    return min(cpu), min(wall), code


_STARTUP_CODE = """
import json, sys, time
t = {"python": time.process_time()}  # the interpreter's own start-up
import pipeline.cli, pipeline.run
t["imports"] = time.process_time() - t["python"]
c = time.process_time()
config = pipeline.run.load_pipeline_config()
t["config"] = time.process_time() - c
for k in ("first", "second"):
    c = time.process_time()
    pipeline.run.run_study(sys.argv[1], sys.argv[2] + "/" + k, config=config,
                           options=pipeline.run.RunOptions(force=True))
    t[k] = time.process_time() - c
print(json.dumps(t))
"""


def start_up(sample: tuple[str, Path], repeat: int, out: Path) -> None:
    for label, args, goal in (
        ("spine-assess --help", ["--help"], GOAL_HELP_S),
        ("spine-assess run --help", ["run", "--help"], GOAL_HELP_S),
    ):
        cpu, wall, code = command_cpu(args, repeat)
        print(f"   {label:<34} CPU {cpu:5.2f} s  wall {wall:5.2f} s  (exit {code}; goal <= {goal:g} s CPU: "
              f"{'met' if cpu <= goal else 'NOT met'})")  # fmt: skip
    # What 'spine-assess run' pays on every study beyond a warm run, measured inside one fresh process (both runs
    # under the same load): interpreter, imports, configuration, and the first run's extra over the second
    # (the network's session, highdicom's tables, templates).
    name, folder = sample
    best: dict[str, float] | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, "-c", _STARTUP_CODE, str(folder), str(out)], cwd=REPO, capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"   run start-up: failed ({proc.stderr.strip().splitlines()[-1:]})")
            return
        t = json.loads(proc.stdout.strip().splitlines()[-1])
        t["total"] = t["python"] + t["imports"] + t["config"] + t["first"] - t["second"]
        best = t if best is None or t["total"] < best["total"] else best
    assert best is not None
    extra = best["first"] - best["second"]
    print(
        f"   spine-assess run start-up ({name}): {best['total']:.2f} s CPU = interpreter {best['python']:.2f}"
        f" + imports {best['imports']:.2f} + configuration {best['config']:.2f} + first run's extra {extra:.2f}"
        f" (first {best['first']:.2f}, second {best['second']:.2f}); goal <= {GOAL_RUN_STARTUP_S:g} s: "
        f"{'met' if best['total'] <= GOAL_RUN_STARTUP_S else 'NOT met'}"
    )


# --------------------------------------------------------------------------- 4./5. batches
def run_batch_cli(root: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline", "-q", "batch", str(root), "--out", str(out), "--force", *extra]
    c0, w0 = children_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - w0, children_cpu_s() - c0
    rows = json.loads((out / "summary.json").read_text())["studies"] if (out / "summary.json").is_file() else []
    rss: dict[str, float] = {}
    ledger = out / "ledger.jsonl"
    for line in ledger.read_text().splitlines() if ledger.is_file() else []:
        rec = json.loads(line)
        if rec.get("event") == "study" and rec.get("worker_peak_rss_mb") is not None:
            rss[rec["worker"]] = max(rss.get(rec["worker"], 0.0), float(rec["worker_peak_rss_mb"]))
    return {
        "exit": proc.returncode,
        "stderr": proc.stderr.strip().splitlines()[-3:],
        "wall_s": wall,
        "cpu_s": cpu,
        "rows": rows,
        "rss_mb": rss,
    }


def report_content(path: Path) -> dict[str, Any]:
    r = json.loads(path.read_text())
    r.pop("timings_ms", None)
    r.get("pipeline", {}).pop("generated_at", None)
    return r


def differences(out_a: Path, out_b: Path, rows: list[dict[str, Any]]) -> list[str]:
    bad = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        a, b = out_a / row["report"], out_b / row["report"]
        if not b.is_file() or report_content(a) != report_content(b):
            bad.append(row["study"])
    return bad


def print_batch(label: str, res: dict[str, Any], n: int, base_rate: float | None, cpu_note: str = "") -> float:
    ok = sum(1 for r in res["rows"] if r.get("status") == "ok")
    times = [float(r["runtime_s"]) for r in res["rows"] if r.get("status") == "ok" and r.get("runtime_s") is not None]
    rate = ok / res["wall_s"] * 3600.0 if res["wall_s"] > 0 else 0.0
    rss = res["rss_mb"]
    speed = f"  speed-up x{rate / base_rate:.2f}" if base_rate else ""
    print(
        f"{label:<22} {ok}/{n} ok (exit {res['exit']})  wall {res['wall_s']:6.1f} s  {rate:6.0f} studies/h"
        f"  study median {median(times):5.2f} s (max {max(times, default=float('nan')):.2f})"
        f"  CPU {res['cpu_s']:6.1f} s ({res['cpu_s'] / max(n, 1):.2f} s/study{cpu_note}){speed}"
    )
    if rss:
        print(f"{'':<22} peak RSS per worker: " + ", ".join(f"{v:.0f} MB" for v in sorted(rss.values())))
    if res["exit"] not in (0, 1):
        print(f"{'':<22} stderr: {' | '.join(res['stderr'])}")
    return rate


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=5, help="copies of the 4 sample studies (default 5: 20 studies)")
    ap.add_argument("--workers", default="1,2", help="comma-separated -j values to run (default 1,2)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the in-process section (median; default 2)")
    ap.add_argument("--no-batch", action="store_true", help="sections 1-3 only (bare read, stages, start-up)")
    ap.add_argument("--dask", action="store_true", help="also run the batch on a Dask LocalCluster (2 workers)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to put inputs and outputs (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    if not SAMPLES.is_dir():
        print(f"notice: {SAMPLES} not found; nothing to measure")
        return 0
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.no_batch:
        args.copies = 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="spine-throughput-"))
    if work.exists() and args.workdir:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, workers, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, workers: list[int], work: Path) -> int:
    from pipeline import __version__

    print(f"spine-assess {__version__} throughput benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"python {platform.python_version()}, {platform.machine()}, {load()}")
    inp = work / "input"
    t0 = time.perf_counter()
    studies = make_input(inp, args.copies)
    n = len(studies)
    samples = [(name, folder) for name, folder in studies if folder.parent.name == "copy00"]
    print(f"input: {n} studies ({len(samples)} samples x {args.copies} copies) in {time.perf_counter() - t0:.0f} s")

    print(f"\n1. bare read (pydicom read + decode of every file, this process)   [{load()}]")
    bare: dict[str, tuple[float, float, int]] = {}
    for name, folder in samples:
        bare_read(folder)  # page cache
        bare[name] = min((bare_read(folder) for _ in range(3)), key=lambda t: t[1])
        print(f"   {name:<32} {bare[name][2]:3d} files  wall {bare[name][0]:.2f} s  CPU {bare[name][1]:.2f} s")

    print(f"\n2. one thread, in this process: run_study per sample study, median of {args.repeat}   [{load()}]")
    ip, missing = in_process(samples, args.repeat, work / "inprocess")
    if missing:
        print(f"   notice: not measured (renamed?): {', '.join(missing)}")
    cpus = print_in_process(ip, bare)
    print(
        f"   per study on one core: CPU median {median(cpus):.2f} s (max {max(cpus):.2f}); "
        f"goal <= {GOAL_S:g} s: {'met' if max(cpus) <= GOAL_S else 'NOT met'}   [{load()}]"
    )

    print(f"\n3. start-up (fresh processes, best of {args.repeat + 1})   [{load()}]")
    start_up(samples[0], args.repeat + 1, work / "startup")

    if args.no_batch:
        median_bare = median([b[1] for b in bare.values()])
        print(f"\nsummary\n   pipeline CPU / bare read CPU, median over the samples: x{median(cpus) / median_bare:.1f}")
        return 0

    print(f"\n4. spine-assess batch, {n} studies, default outputs (json, html, seg, sr)")
    results: dict[str, dict[str, Any]] = {}
    base_rate: float | None = None
    first_out: Path | None = None
    for j in workers:
        out = work / f"out-j{j}"
        print(f"   [{load()}]")
        res = run_batch_cli(inp, out, ["-j", str(j)])
        rate = print_batch(f"   -j {j}", res, n, base_rate)
        base_rate = base_rate or rate
        results[f"-j {j}"] = res
        if first_out is None:
            first_out = out
        elif res["rows"]:
            bad = differences(first_out, out, res["rows"])
            print(f"{'':<22} reports vs -j {workers[0]}: {'identical' if not bad else f'DIFFER: {bad[:5]}'}")

    if args.dask:
        print(f"\n5. Dask LocalCluster (2 worker processes, 1 thread each)   [{load()}]")
        try:
            from distributed import LocalCluster
        except ImportError:
            print("   notice: distributed is not installed (pip install 'spine-assess[dask]'); skipped")
        else:
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                out = work / "out-dask"
                res = run_batch_cli(inp, out, ["--dask-scheduler", cluster.scheduler_address])
            print_batch("   dask 2x1", res, n, base_rate, ", this command only")
            if first_out is not None and res["rows"]:
                bad = differences(first_out, out, res["rows"])
                print(f"{'':<22} reports vs -j {workers[0]}: {'identical' if not bad else f'DIFFER: {bad[:5]}'}")

    print("\nsummary")
    all_rss = [v for r in results.values() for v in r["rss_mb"].values()]
    if all_rss:
        print(f"   peak RSS per worker: max {max(all_rss):.0f} MB; goal < {GOAL_RSS_MB:.0f} MB: "
              f"{'met' if max(all_rss) < GOAL_RSS_MB else 'NOT met'}")  # fmt: skip
    if len(workers) >= 2 and 1 in workers and 2 in workers:
        r1 = results["-j 1"]
        r2 = results["-j 2"]
        speed = (r1["wall_s"] / r2["wall_s"]) if r2["wall_s"] else float("nan")
        print(f"   2 workers vs 1: x{speed:.2f} (goal >= {GOAL_SPEEDUP:g}; needs 2 idle cores)   [{load()}]")
    median_bare = median([b[1] for b in bare.values()])
    print(f"   pipeline CPU / bare read CPU, median over the samples: x{median(cpus) / median_bare:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
