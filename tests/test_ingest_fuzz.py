"""Fuzzing the DICOM reader with mutated bytes (hypothesis): only documented exceptions come out, and every
input is bounded in time (hypothesis deadline) and memory (tracemalloc peak per input, and an address-space
limit around the whole run so that a runaway allocation fails fast instead of swapping the machine).

Default: a few seconds. More: ``SPINE_ASSESS_FUZZ_EXAMPLES=5000 python -m pytest tests/test_ingest_fuzz.py``
(random seeds then; the default run is derandomized so CI is reproducible).
"""

from __future__ import annotations

import os
import resource
import tempfile
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.uid import JPEGLSLossless, RLELossless

from pipeline.errors import DicomReadError, InputError, SeriesError
from pipeline.ingest import discover, load_series, read_frames, read_header
from pipeline.ingest.config import GeometryConfig, IngestConfig, load_ingest_config
from tests.dicom_factory import SeriesSpec, write_enhanced, write_series

EXAMPLES = int(os.environ.get("SPINE_ASSESS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=float(os.environ.get("SPINE_ASSESS_FUZZ_DEADLINE_S", "10"))),
    derandomize="SPINE_ASSESS_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PEAK_BYTES = 64 * 1024 * 1024  # per input, Python + numpy allocations
_BASE = load_ingest_config()
CFG = IngestConfig(_BASE.discovery, GeometryConfig(max_megavoxels=4.0), _BASE.roles, _BASE.selection)

INTERESTING = [
    b"\xff\xff\xff\xff",
    b"\xf0\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x00",
    b"\x01\x00\x00\x00",
    b"\xfe\xff\x00\xe0",
    b"\xfe\xff\xdd\xe0",
    b"SQ\x00\x00",
    b"OB\x00\x00",
    b"UN\x00\x00",
    b"\xe0\x7f\x10\x00",
]


def _seeds() -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        out = [
            Path(get_testdata_file("MR_small.dcm")).read_bytes(),
            Path(get_testdata_file("MR_small_implicit.dcm")).read_bytes(),
        ]
        for i, ts in enumerate(("1.2.840.10008.1.2.1", RLELossless, JPEGLSLossless)):
            (p, *_) = write_series(root / str(i), SeriesSpec(n_slices=1, rows=8, cols=8, transfer_syntax=ts))
            out.append(p.read_bytes())
        out.append(write_enhanced(root / "enh.dcm", SeriesSpec(n_slices=3, rows=8, cols=8)).read_bytes())
        return out


SEEDS = _seeds()


def _good_series() -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        return [p.read_bytes() for p in write_series(Path(d), SeriesSpec(rows=8, cols=8))]


GOOD_SERIES = _good_series()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "word", "truncate", "insert", "delete", "duplicate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "word":
            word = draw(st.sampled_from(INTERESTING) | st.binary(min_size=4, max_size=4))
            data[pos : pos + 4] = word
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "duplicate":
            n = draw(st.integers(1, 256))
            data[pos:pos] = data[pos : pos + n]
    return bytes(data)


@contextmanager
def _bounded_memory() -> Iterator[None]:
    """Soft address-space limit of current use + 3 GiB while fuzzing (restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        yield
        return
    limit = vm + (3 << 30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def _peak_checked() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"reading one mutated file allocated {peak / 1e6:.0f} MB"


@pytest.fixture(scope="module", autouse=True)
def memory_limit() -> Iterator[None]:
    with _bounded_memory():
        yield


@FUZZ
@given(data=mutated())
def test_reader_raises_only_documented_errors(data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        path.write_bytes(data)
        with _peak_checked():
            try:
                header = read_header(path, defer_size_bytes=CFG.discovery.defer_size_bytes)
            except DicomReadError as exc:
                assert str(path) in str(exc)
                return
            assert header.rows > 0 and header.cols > 0 and header.n_frames >= 1
            try:
                frames = read_frames(path, cfg=CFG)
            except DicomReadError as exc:
                assert str(path) in str(exc)
                return
            assert frames.shape[1:] == (header.rows, header.cols)


@settings(FUZZ, max_examples=max(1, EXAMPLES // 4))  # each example walks and loads a whole series
@given(data=mutated(), slot=st.integers(0, 4))
def test_discovery_and_loading_never_crash(data: bytes, slot: int):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for k, blob in enumerate(GOOD_SERIES):
            # one slice of a good series replaced by the mutant
            (root / f"IM{k}").write_bytes(data if k == slot else blob)
        with _peak_checked():
            found = discover(root, cfg=CFG)
            for study in found.studies:
                for series in study.series:
                    try:
                        vol = load_series(series, cfg=CFG)
                    except (DicomReadError, SeriesError):
                        continue
                    assert vol.shape[0] >= CFG.geometry.min_slices


def test_documented_errors_share_one_root():
    assert issubclass(DicomReadError, InputError) and issubclass(SeriesError, InputError)
