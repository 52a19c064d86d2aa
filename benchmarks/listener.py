"""PACS listener figures over loopback: C-STORE throughput and latency, and time from last image to SR delivered.

    python benchmarks/listener.py                          # 240 instances, 1 and 4 associations, 2 studies e2e
    python benchmarks/listener.py --instances 600 --e2e-studies 3 --spool /var/tmp/bench

1. Receiving (the SCP, spool and state database only, no processing): the images of
   ``sample_dicom/02_acute_osteoporotic_wedge`` are sent again and again with fresh SOP Instance UIDs, by one
   association and by 4 concurrent associations (pynetdicom SCUs in threads of this process). Reported:
   instances/s and MB/s over the whole send, and the median / p99 C-STORE response time (request sent ->
   status received, measured by the sender: it includes the fsync of the file and of the database commit).
2. End to end (needs :mod:`pipeline.batch`): a full listener (``stable_seconds`` 2 s, one worker process) with
   a Storage SCP as destination; each study is a small phantom sent by one association. Reported: time from
   the last C-STORE response to the SR arriving at the destination, minus ``stable_seconds`` (= scheduling +
   processing + export), per study.

Everything runs on this machine: the sender competes with the receiver for the CPU, so the figures are a lower
bound of what a dedicated server does. The machine load is printed. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE, AllStoragePresentationContexts, evt  # noqa: E402

from pipeline.listener.config import parse_listener_config  # noqa: E402
from pipeline.listener.scp import Receiver, start_server  # noqa: E402
from pipeline.listener.spool import Spool  # noqa: E402
from pipeline.listener.state import StateDB  # noqa: E402

SAMPLE = REPO / "sample_dicom" / "02_acute_osteoporotic_wedge"
AET = "BENCHSCU"


def _config(spool: Path, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "network": {"port": 0, "bind_address": "127.0.0.1", "max_associations": 16},
        "access": {"allowed_callers": [{"ae_title": AET}]},
        "storage": {"spool_dir": str(spool), "min_free_mb": 1},
    }
    data.update(extra)
    return parse_listener_config(data, "benchmark")


def _templates() -> list[Dataset]:
    files = sorted(SAMPLE.rglob("*.dcm"))
    if not files:
        raise SystemExit(f"no sample study in {SAMPLE}")
    return [dcmread(f) for f in files]


def _sender(port: int, datasets: list[Dataset], times_s: list[float], errors: list[str]) -> None:
    ae = AE(ae_title=AET)
    for sop, ts in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}:
        ae.add_requested_context(sop, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEAI")
    if not assoc.is_established:
        errors.append("association refused")
        return
    try:
        for ds in datasets:
            t0 = time.perf_counter()
            st = assoc.send_c_store(ds)
            times_s.append(time.perf_counter() - t0)
            if not st or st.Status != 0:
                errors.append(f"status {getattr(st, 'Status', None)}")
    finally:
        assoc.release()


def _fresh(templates: list[Dataset], n: int) -> list[Dataset]:
    """``n`` instances cycling over the templates, each a new SOP instance of a new study every len(templates)."""
    out = []
    study = ""
    series: dict[str, str] = {}
    for i in range(n):
        t = templates[i % len(templates)]
        if i % len(templates) == 0:
            study, series = generate_uid(), {}
        ds = copy.deepcopy(t)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series.setdefault(str(t.SeriesInstanceUID), generate_uid())
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = copy.deepcopy(t.file_meta)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out.append(ds)
    return out


def bench_receive(workdir: Path, n: int, associations: int, templates: list[Dataset]) -> dict[str, float]:
    spool_dir = workdir / f"recv-{associations}"
    cfg = _config(spool_dir)
    spool = Spool(cfg.spool_dir)
    state = StateDB(spool.db_path)
    server = start_server(cfg, Receiver(cfg, spool, state))
    port = int(server.server_address[1])
    datasets = _fresh(templates, n)
    nbytes = sum(len(d.PixelData) for d in datasets)
    chunks = [datasets[k::associations] for k in range(associations)]
    times: list[list[float]] = [[] for _ in chunks]
    errors: list[str] = []
    threads = [threading.Thread(target=_sender, args=(port, c, t, errors)) for c, t in zip(chunks, times, strict=True)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.shutdown()
    stored = sum(1 for _ in spool.scan())
    state.close()
    shutil.rmtree(spool_dir, ignore_errors=True)
    lat = sorted(x for t in times for x in t)
    return {
        "instances": n,
        "stored": stored,
        "errors": len(errors),
        "wall_s": wall,
        "per_s": n / wall,
        "mb_s": nbytes / wall / 1e6,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


class _ResultPeer:
    def __init__(self) -> None:
        self.sr_at: dict[str, float] = {}
        ae = AE(ae_title="RESULTS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on)])
        self.port = int(self.server.server_address[1])

    def _on(self, event: Any) -> int:
        ds = event.dataset
        if ds.Modality == "SR":
            self.sr_at[str(ds.StudyInstanceUID)] = time.perf_counter()
        return 0


def bench_end_to_end(workdir: Path, studies: int) -> list[float] | str:
    try:
        import pipeline.batch  # noqa: F401
    except ImportError:
        return "pipeline.batch is not installed in this tree: end-to-end timing skipped"
    from pipeline.listener import Listener
    from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

    peer = _ResultPeer()
    stable = 2.0
    cfg = _config(
        workdir / "e2e",
        trigger={"stable_seconds": stable, "poll_seconds": 0.2},
        processing={"outputs": ["json", "seg", "sr"], "workers": 1},
        export={"destinations": [{"name": "pacs", "ae_title": "RESULTS", "host": "127.0.0.1", "port": peer.port}]},
    )
    out: list[float] = []
    listener = Listener(cfg).start()
    try:
        for k in range(studies):
            folder = write_study(render_phantom(PhantomSpec.small(seed=100 + k)), workdir / f"study{k}")
            datasets = [dcmread(f) for f in sorted(folder.rglob("*.dcm"))]
            uid = str(datasets[0].StudyInstanceUID)
            times: list[float] = []
            errors: list[str] = []
            _sender(listener.port, datasets, times, errors)
            last = time.perf_counter()
            deadline = last + 600
            while uid not in peer.sr_at and time.perf_counter() < deadline:
                time.sleep(0.05)
            if uid not in peer.sr_at:
                return f"study {k}: SR not delivered within 600 s"
            out.append(peer.sr_at[uid] - last - stable)
    finally:
        listener.stop()
        peer.server.shutdown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=240, help="instances per receive run (default 240)")
    ap.add_argument("--e2e-studies", type=int, default=2, help="studies for the end-to-end timing (default 2)")
    ap.add_argument("--spool", type=Path, default=None, help="work folder (default: a temporary folder)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="listener-bench-", dir=args.spool))
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    print(f"work folder: {workdir} (file system free: {shutil.disk_usage(workdir).free / 1e9:.1f} GB)")
    try:
        templates = _templates()
        size_kb = statistics.mean(len(t.PixelData) for t in templates) / 1024
        print(f"instances: {len(templates)} templates from {SAMPLE.name}, pixel data {size_kb:.0f} kB each on average")
        for assocs in (1, 4):
            r = bench_receive(workdir, args.instances, assocs, templates)
            print(
                f"receive, {assocs} association{'s' if assocs > 1 else ''}: {r['instances']} instances in "
                f"{r['wall_s']:.1f} s = {r['per_s']:.0f} instances/s ({r['mb_s']:.1f} MB/s); C-STORE response "
                f"median {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; stored {r['stored']}, errors {r['errors']}"
            )
        e2e = bench_end_to_end(workdir, args.e2e_studies)
        if isinstance(e2e, str):
            print(f"end to end: {e2e}")
        else:
            print(
                "end to end (last instance -> SR at the destination, minus stable_seconds): "
                + ", ".join(f"{x:.1f} s" for x in e2e)
                + f" (median {statistics.median(e2e):.1f} s; small phantom studies, 1 worker)"
            )
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
