"""Task functions for the batch tests, importable by the worker processes (they receive ``sys.path``).

Each behaves according to the task's ``key`` so that one executor can be given a mix of studies:
``sleep`` (runs until killed), ``kill`` (the worker process kills itself with SIGKILL, as the OOM killer
would), ``memory`` (grows to ~400 MB and waits), ``raise`` (a bug that escapes the task function),
``threads`` (reports the worker's thread settings); anything else returns ok at once. ``real_or_fake``
runs the real pipeline except for keys ending in ``slow`` / ``doomed``.
"""

from __future__ import annotations

import os
import signal
import time

from pipeline.batch import Status, StudyTask, TaskOutcome, run_task


def fake(task: StudyTask) -> TaskOutcome:
    key = task.key
    if key.startswith("sleep"):
        time.sleep(120)
    elif key.startswith("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif key.startswith("memory"):
        ballast = bytearray(400 * 2**20)
        for i in range(0, len(ballast), 4096):  # touch every page so it is resident
            ballast[i] = 1
        time.sleep(120)
    elif key.startswith("raise"):
        raise RuntimeError("a bug that escaped the task function")
    elif key.startswith("threads"):
        import SimpleITK as sitk

        info = {
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "itk": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
            "pid": os.getpid(),
        }
        return TaskOutcome(task, Status.OK, None, 0.0, info)
    return TaskOutcome(task, Status.OK, None, 0.0, {"pid": os.getpid()})


def real_or_fake(task: StudyTask) -> TaskOutcome:
    if task.key.endswith("slow"):
        time.sleep(120)
    if task.key.endswith("doomed"):
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def transient(task: StudyTask) -> TaskOutcome:
    """Through the real ``run_task`` (so its error classification is what is tested), with ``run_study`` replaced
    according to the key: ``enospc*`` raises ENOSPC on the first attempt and succeeds after, ``input*`` is refused
    for its data every time, ``bug*`` raises a KeyError every time. Attempts are counted in ``<out_dir>.attempts``.
    """
    import errno
    from pathlib import Path

    import pipeline.run
    from pipeline.errors import StudyError
    from pipeline.model import StudyRecord
    from pipeline.report.study_report import StudyReport

    counter = Path(f"{task.out_dir}.attempts")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))

    def run_study(study_dir, out_dir, *, config, options):  # noqa: ANN001, ANN202
        if task.key.startswith("enospc") and n == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))
        if task.key.startswith("input"):
            raise StudyError(f"{study_dir}: no usable sagittal series")
        if task.key.startswith("bug"):
            raise KeyError("an unexpected key")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report = StudyReport(StudyRecord(str(task.study_uid), "", "", None, (), out))
        return pipeline.run.RunResult(str(task.study_uid), out, report, 0.0)

    real = pipeline.run.run_study
    pipeline.run.run_study = run_study
    try:
        return run_task(task)
    finally:
        pipeline.run.run_study = real
