"""Batch output a person reads (issue 16 item 12): start line, ETA, one line per failure, index.html, no lock
file left, NIfTI studies named after their file."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.batch.ledger import LOCK_FILE, batch_lock
from pipeline.batch.plan import options_salt, plan_batch
from pipeline.batch.progress import Progress
from pipeline.batch.runner import BatchSettings, Mode, prepare_out_dir, run_batch
from pipeline.batch.summary import INDEX_HTML, make_row, write_summary
from pipeline.report.outputs import OutputKind
from pipeline.run import load_pipeline_config

REPO = Path(__file__).resolve().parents[1]


def test_batch_lock_file_is_removed_when_the_batch_ends(tmp_path):
    with batch_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()
    with batch_lock(tmp_path):  # and can be taken again
        pass


def test_each_progress_line_has_an_eta(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.batch"), Progress(3, stream=io.StringIO(), tty=False) as p:
        p.study_done("a", "ok", 1.0)
        p.study_done("b", "ok", 1.0)
        p.study_done("c", "ok", 1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert all("ETA " in line for line in lines[:2]) and "ETA" not in lines[2], lines


def test_index_html_links_every_study_with_its_summary_row(tmp_path):
    (tmp_path / "site1" / "s07").mkdir(parents=True)
    (tmp_path / "site1" / "s07" / "report.html").write_text("<html></html>")
    rows = [
        make_row(study="site1/s07", folder="site1/s07", study_uid="1.2", status="ok", summary={"levels": ["L1"]}),
        make_row(study="bad", folder="bad", study_uid="1.3", status="failed", error="no <sagittal> series"),
    ]
    write_summary(tmp_path, rows, {"root": "/in", "out": str(tmp_path)})
    page = (tmp_path / INDEX_HTML).read_text()
    assert '<a href="site1/s07/report.html">site1/s07</a>' in page
    assert "no &lt;sagittal&gt; series" in page and '<tr class="failed">' in page


def test_nifti_studies_are_named_after_their_files(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("case01", "case02"):
        img = sitk.GetImageFromArray(np.zeros((8, 16, 16), np.int16))
        sitk.WriteImage(img, str(root / f"{name}.nii.gz"))
    cfg = load_pipeline_config()
    plan = plan_batch(root, ingest=cfg.ingest, salt="t")
    assert sorted(s.key for s in plan.studies) == ["case01", "case02"]


def test_worker_leaves_failure_reports_to_the_parent():
    code = (
        "import logging, os; from pipeline.batch.worker import _setup; "
        "_setup({'parent_pid': os.getppid(), 'pdeathsig': False, 'log_level': logging.WARNING}); "
        "print(logging.getLogger('pipeline.batch.task').getEffectiveLevel())"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == str(logging.ERROR), out.stderr


@pytest.mark.slow
def test_batch_says_at_once_what_it_found_and_with_how_many_workers(tmp_path, tiny_study, caplog):
    root = tmp_path / "root"
    for seed, name in ((51, "a"), (52, "b")):
        tiny_study(seed, root / name)
    cfg = load_pipeline_config()
    settings = BatchSettings(frozenset({OutputKind.JSON}), None, cfg.config_dir, cfg.sha256, 300.0, None)
    salt = options_salt(version="t", config_sha256=cfg.sha256, outputs=settings.outputs, anchor=None)
    plan = plan_batch(root, ingest=cfg.ingest, salt=salt)
    out = tmp_path / "out"
    prepare_out_dir(out, Mode.NEW)
    sys.path.insert(0, str(REPO / "tests"))
    from batch_fakes import fake

    from pipeline.batch.local import LocalExecutor

    with caplog.at_level(logging.INFO, logger="pipeline.batch"):
        run_batch(plan, out, executor=LocalExecutor(1, fn=fake), settings=settings, workers_label="1 worker process")
    first = caplog.records[0].getMessage()
    assert first.startswith("2 studies found under") and first.endswith("(2 to run), 1 worker process"), first
    assert (out / INDEX_HTML).is_file()
