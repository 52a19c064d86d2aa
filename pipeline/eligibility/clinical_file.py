"""Where a study's clinical file is, and the fixed vocabulary the rules share with it; no validator here.

Split from :mod:`pipeline.eligibility.clinical` (the pydantic models that validate the file) so that loading the
rules and running a study without a clinical file do not import pydantic (about 0.1 s of every start-up): the
registry of rule inputs needs only the aetiology names, and a run only looks for the file before validating it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError

CLINICAL_FILE_NAMES: tuple[str, ...] = ("clinical.yaml", "clinical.yml", "clinical.json")

Aetiology = Literal["osteoporosis", "myeloma", "metastasis", "haemangioma", "osteonecrosis", "trauma"]
AETIOLOGIES: tuple[str, ...] = Aetiology.__args__  # type: ignore[attr-defined]


def find_clinical_file(study_dir: Path) -> Path | None:
    """The clinical file beside a study: ``clinical.yaml``, ``clinical.yml`` or ``clinical.json``.

    Raises :class:`ConfigError` when more than one is present (which one is meant would be a guess).
    """
    study_dir = Path(study_dir)
    found = [study_dir / name for name in CLINICAL_FILE_NAMES if (study_dir / name).is_file()]
    if len(found) > 1:
        raise ConfigError(f"{study_dir}: several clinical files ({', '.join(p.name for p in found)}); keep exactly one")
    return found[0] if found else None
