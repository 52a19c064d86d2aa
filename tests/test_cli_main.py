"""``python -m pipeline.cli`` and ``python -m pipeline`` know every subcommand (issue 16 item 11); ``--help`` builds
no command's options and imports no stage library (issue 18)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import _COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["pipeline.cli", "pipeline"])
def test_module_entry_points_register_every_subcommand(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in _COMMANDS:
        assert name in proc.stdout, (name, proc.stdout)
    proc = subprocess.run(
        [sys.executable, "-m", module, "run", "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0 and "--anchor" in proc.stdout, proc.stderr


# What a command's start-up should not pay unless it needs it (issue 18 item 2).
HEAVY = ("SimpleITK", "highdicom", "pynetdicom", "dask", "distributed", "jinja2", "onnxruntime", "matplotlib",
         "pydicom", "scipy", "skimage", "pydantic")  # fmt: skip


def _heavy_modules_after(code: str) -> list[str]:
    code = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["batch", "--help"]])
def test_help_imports_no_stage_library(argv):
    code = f"from pipeline.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _heavy_modules_after(code) == []


def test_run_loads_no_writer_library_before_it_writes():
    """`run --outputs json` never needs highdicom (SEG/SR/SC), Jinja2 (HTML), the listener's or batch's libraries."""
    loaded = _heavy_modules_after("import pipeline.cli.run, pipeline.run")
    assert not set(loaded) & {"highdicom", "jinja2", "pynetdicom", "dask", "distributed", "matplotlib", "onnxruntime"}


def test_run_start_up_loads_pydantic_only_for_a_clinical_file():
    """The clinical file's validator (pydantic) is loaded by load_clinical, not by the imports or the configuration."""
    start_up = "import pipeline.cli.run, pipeline.run\npipeline.run.load_pipeline_config()"
    assert "pydantic" not in _heavy_modules_after(start_up)
    assert "pydantic" in _heavy_modules_after(f"{start_up}\nfrom pipeline.eligibility import load_clinical")


def _options(parser, command):
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(o for a in sub.choices[command]._actions for o in a.option_strings)


@pytest.mark.parametrize("command", list(_COMMANDS))
def test_a_named_command_gets_all_its_options(command):
    full = build_parser()
    assert _options(build_parser(command), command) == _options(full, command)
    assert _options(build_parser("another"), command) == ["--help", "-h"]


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`spine-assess rules | head`: the pipe is closed before the command writes; no traceback, status 141."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes its first line
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "rules"], stdout=write_end, stderr=subprocess.PIPE, timeout=120
    )
    os.close(write_end)
    assert proc.returncode == 141, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr and b"BrokenPipeError" not in proc.stderr
