"""Is it safe to write a study's outputs into a folder? The one set of rules every writing command follows.

``run_study`` replaces its output folder as a whole (atomic rename), so whatever the folder held is gone
afterwards. To never remove anything the program did not write:

- ``--out`` equal to, or inside, the input folder is refused (the outputs would also be read as input next
  time), and so is an input folder inside ``--out``;
- an absent or empty folder is used;
- a folder recognised as a previous spine-assess output (only files and folders a run writes, and a
  ``report.json`` made by spine-assess) of the **same study** is replaced atomically, without asking: running
  the same command again is safe;
- a previous output of **another study** is replaced only with ``--force``;
- any other non-empty folder (anything the program did not write, even one file beside a previous output) is
  refused, also with ``--force``: choose a new or empty folder.

Refusals raise :class:`OutputFolderError` (a :class:`~pipeline.errors.UsageError`: the CLI exits with status 2)
with the reason and the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pipeline.errors import UsageError

logger = logging.getLogger(__name__)

# Everything run_study may write into a study's output folder (see pipeline.run and pipeline.report.outputs).
RUN_OUTPUT_NAMES: frozenset[str] = frozenset(
    {"report.json", "report.html", "seg.dcm", "sr.dcm", "labels.nii.gz", "job.json", "overlays", "sc"}
)


class OutputFolderError(UsageError):
    """An output folder cannot be written without losing something the program did not write."""


class FolderState(StrEnum):
    ABSENT = "absent"
    EMPTY = "empty"
    OURS = "ours"  # a previous spine-assess output (see module docstring)
    FOREIGN = "foreign"  # holds something spine-assess did not write


@dataclass(frozen=True)
class FolderInfo:
    state: FolderState
    study_uid: str | None = None  # of a previous output (OURS)
    foreign: tuple[str, ...] = ()  # names of the entries spine-assess did not write (FOREIGN), sorted


def inspect_output_folder(path: Path, names: Collection[str] = RUN_OUTPUT_NAMES) -> FolderInfo:
    """Classify ``path`` as an output folder (see :class:`FolderState`); never modifies anything."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return FolderInfo(FolderState.ABSENT)
    if not path.is_dir() or path.is_symlink():
        return FolderInfo(FolderState.FOREIGN, foreign=(path.name,))
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return FolderInfo(FolderState.EMPTY)
    foreign = tuple(e for e in entries if e not in names)
    if foreign:
        return FolderInfo(FolderState.FOREIGN, foreign=foreign)
    if "report.json" not in names:  # a command whose outputs carry no report (e.g. ``stir``): names decide
        return FolderInfo(FolderState.OURS)
    report = path / "report.json"
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        ok = isinstance(doc, dict) and (doc.get("pipeline") or {}).get("name") == "spine-assess"
        uid = (doc.get("study") or {}).get("study_instance_uid") if ok else None
    except (OSError, ValueError, AttributeError):
        ok, uid = False, None
    if not ok:
        return FolderInfo(FolderState.FOREIGN, foreign=("report.json (not a spine-assess report)",))
    return FolderInfo(FolderState.OURS, study_uid=str(uid) if uid else None)


def check_not_overlapping(input_path: Path, out_dir: Path, *, option: str = "--out") -> None:
    """Refuse an output folder equal to / inside the input folder, or an input inside the output folder."""
    i, o = Path(input_path).resolve(), Path(out_dir).resolve()
    if o == i or i in o.parents:
        raise OutputFolderError(
            f"{option} {out_dir} is the input folder {input_path} or inside it; choose an output folder outside "
            "the input (the input's files must not be replaced, and outputs inside it would be read as input)"
        )
    if o in i.parents:
        raise OutputFolderError(
            f"the input {input_path} is inside the output folder {option} {out_dir}; choose an output folder "
            "that does not contain the input"
        )


def check_output_folder(
    out_dir: Path,
    *,
    study_uid: str | None = None,
    force: bool = False,
    option: str = "--out",
    names: Collection[str] = RUN_OUTPUT_NAMES,
) -> FolderInfo:
    """Raise :class:`OutputFolderError` unless ``out_dir`` may be (re)written; return what it holds.

    ``study_uid`` (when known) is compared with a previous output's: another study's output needs ``force``.
    """
    info = inspect_output_folder(out_dir, names)
    if info.state is FolderState.FOREIGN:
        if not Path(out_dir).is_dir():
            raise OutputFolderError(f"{option} {out_dir} exists and is not a folder; give a new or empty folder")
        shown = ", ".join(info.foreign[:5]) + (f" and {len(info.foreign) - 5} more" if len(info.foreign) > 5 else "")
        raise OutputFolderError(
            f"{option} {out_dir} is not empty and holds files spine-assess did not write ({shown}); nothing was "
            "written or removed. Choose a new or empty folder (a previous spine-assess output folder of this "
            "study is replaced)"
        )
    if info.state is FolderState.OURS and study_uid and info.study_uid and info.study_uid != study_uid and not force:
        raise OutputFolderError(
            f"{option} {out_dir} holds the spine-assess output of another study ({info.study_uid}); add --force "
            "to replace it, or choose a new or empty folder"
        )
    return info


__all__ = [
    "RUN_OUTPUT_NAMES",
    "FolderInfo",
    "FolderState",
    "OutputFolderError",
    "check_not_overlapping",
    "check_output_folder",
    "inspect_output_folder",
]
