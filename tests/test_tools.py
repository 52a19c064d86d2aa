"""pipeline/tools/ stands beside the pipeline: no stage imports a tool, and a tool imports no stage (issue 17)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
# Who may use a tool: the tools themselves, the command line and the training of the segmentation network.
TOOL_USERS = ("tools/", "cli/", "segment/train/", "__main__.py")
# What a tool may import from the pipeline: its version and shared types, never a stage.
SHARED = ("pipeline.__version__", "pipeline.errors", "pipeline.levels", "pipeline.model", "pipeline.volume")


def _imports(path: Path, *, strings: bool = True) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, function-local ones included, and with ``strings`` of every
    string that is a dotted name in this package (``importlib.import_module("pipeline....")``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif (
            strings
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"pipeline(\.\w+)+", node.value)
        ):
            found.append((node.lineno, node.value))
    return found


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _is_tool(module: str) -> bool:
    return module == "pipeline.tools" or module.startswith("pipeline.tools.")


def test_no_stage_imports_a_tool():
    users = [p for p in _modules(PIPELINE) if p.relative_to(PIPELINE).as_posix().startswith(TOOL_USERS)]
    stages = [p for p in _modules(PIPELINE) if p not in users]
    assert {"ingest", "segment", "morphometry", "stir", "eligibility", "report", "batch", "listener"} <= {
        p.relative_to(PIPELINE).parts[0] for p in stages
    }
    offending = [
        f"{p.relative_to(PIPELINE.parent)}:{line}: {module}"
        for p in stages
        for line, module in _imports(p)
        if _is_tool(module)
    ]
    assert not offending, "a stage imports a tool (pipeline/tools/ stands beside the pipeline):\n" + "\n".join(
        offending
    )


@pytest.mark.parametrize(
    "user", ["cli/phantom.py", "segment/train/__main__.py", "segment/train/data.py"], ids=lambda p: p.split("/")[0]
)
def test_the_check_sees_the_tools_users_imports(user):
    # the users that may import a tool do, function-local imports included: the check above reads what they read
    assert any(_is_tool(module) for _, module in _imports(PIPELINE / user))


def test_a_tool_imports_only_the_pipelines_shared_types():
    offending = [
        f"{p.relative_to(PIPELINE.parent)}:{line}: {module}"
        for p in _modules(PIPELINE / "tools")
        for line, module in _imports(p, strings=False)
        if module.startswith("pipeline.") and not _is_tool(module) and not module.startswith(SHARED)
    ]
    assert not offending, "a tool imports a stage:\n" + "\n".join(offending)
