"""The Dask path: the same tasks on a distributed.LocalCluster give the same reports as the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'spine-assess[dask]')")

from distributed import LocalCluster  # noqa: E402

from pipeline.batch import LocalExecutor, StudyTask, make_executor  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.report.outputs import OutputKind  # noqa: E402


def _comparable(report_path: Path) -> dict:
    report = json.loads(report_path.read_text())
    report.pop("timings_ms")
    report["pipeline"].pop("generated_at")
    return report


@pytest.mark.slow
def test_batch_on_a_local_dask_cluster_matches_the_local_executor(tmp_path, tiny_study):
    root = tmp_path / "root"
    tiny_study(61, root / "a")
    tiny_study(62, root / "b")
    (root / "b" / "001_broken").mkdir()
    (root / "b" / "001_broken" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 50)  # junk inside a study
    local_out = tmp_path / "local"
    with LocalExecutor(1) as ex:
        local = ex.submit(
            StudyTask(root / "a", local_out / "a", outputs=frozenset({OutputKind.JSON}), key="a")
        ).result()
    assert local.ok, local.error

    with LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None, worker_dashboard_address=None
    ) as cluster:
        out = tmp_path / "dask"
        code = main(
            ["batch", str(root), "--out", str(out), "--outputs", "json", "--dask-scheduler", cluster.scheduler_address]
        )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batch"]["workers"].startswith("Dask tcp://")
    assert [r["status"] for r in summary["studies"]] == ["ok", "ok"]
    assert _comparable(out / "a" / "report.json") == _comparable(local_out / "a" / "report.json")
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(d / "a" / "labels.nii.gz"))) for d in (out, local_out)]
    assert np.array_equal(*labels)
    job = json.loads((out / "a" / "job.json").read_text())
    assert job["study_dir"] == str((root / "a").resolve())


def test_an_unreachable_scheduler_is_a_configuration_error():
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        make_executor(dask_scheduler="tcp://127.0.0.1:9", dask_connect_timeout_s=1.0)
