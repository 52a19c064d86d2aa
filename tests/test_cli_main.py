"""``python -m pipeline.cli`` and ``python -m pipeline`` know every subcommand (issue 16 item 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import _HELP_ORDER

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["pipeline.cli", "pipeline"])
def test_module_entry_points_register_every_subcommand(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in _HELP_ORDER:
        assert name in proc.stdout, (name, proc.stdout)
    proc = subprocess.run(
        [sys.executable, "-m", module, "run", "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0 and "--anchor" in proc.stdout, proc.stderr
