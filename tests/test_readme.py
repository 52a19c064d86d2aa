"""The README's quick start says what a fresh machine needs, and its batch command behaves as it says
(issue 16 item 9). ``.ci/run`` runs the quick-start block itself literally (venv, install, batch, tests)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.tools.phantom import PhantomSpec, render_phantom, write_study

REPO = Path(__file__).resolve().parents[1]


def _quick_start() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "README: no bash block under '## Quick start'"
    return m.group(1)


def test_quick_start_makes_a_virtual_environment_first():
    block = _quick_start()
    venv = block.index("python3 -m venv .venv && . .venv/bin/activate")
    assert venv < block.index("pip install -e .")
    assert "spine-assess batch sample_dicom --out out" in block


def test_ci_runs_the_quick_start_block():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "## Quick start" in ci and 'bash -euo pipefail -c "$quickstart"' in ci


FULL_RUN = 'python3 -m pytest -m "slow or not slow"'


def test_the_default_run_leaves_out_slow_tests_and_ci_runs_them_all():
    """A bare ``pytest`` is the fast run; the quick start (which CI runs) and the README name the whole run."""
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in addopts["addopts"]
    assert _quick_start().rstrip().endswith(FULL_RUN)
    development = (REPO / "README.md").read_text(encoding="utf-8").split("## Development", 1)[1]
    assert FULL_RUN in development and "\npython3 -m pytest  " in development


@pytest.mark.slow
def test_second_batch_run_exits_2_and_the_readme_says_what_to_add(tmp_path, capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "`--resume`" in after and "`--force`" in after and "exit status 2" in after
    root = tmp_path / "studies"
    shutil.copytree(write_study(render_phantom(PhantomSpec.small(seed=2)), tmp_path / "s"), root / "s")
    out = tmp_path / "out"
    assert main(["-q", "batch", str(root), "--out", str(out), "--outputs", "json"]) == 0
    capsys.readouterr()
    assert main(["-q", "batch", str(root), "--out", str(out), "--outputs", "json"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--force" in err
    assert main(["-q", "batch", str(root), "--out", str(out), "--outputs", "json", "--resume"]) == 0
