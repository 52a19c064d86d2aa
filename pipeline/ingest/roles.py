"""Role of a series (T1 / T2 / STIR / OTHER) from its names *and* its acquisition physics.

Two independent sources of evidence, each an ordered rule list in ``configs/ingest.yaml``
(first match wins within a list):

- **name rules**: regular expressions on SeriesDescription + ProtocolName + SequenceName
  (lower-cased, punctuation turned into spaces, so ``t2_tse_sag`` reads ``t2 tse sag``);
- **physics rules**: InversionRecovery / InversionTime, RepetitionTime, EchoTime, fat suppression
  (ScanOptions, SpectrallySelectedSuppression), ImageType (Dixon water, localizer), contrast agent.

How they combine (the decision is explained in the returned ``rule`` text):

- same role and substitute: the role, with confidence ``1 - (1 - c_name)(1 - c_physics)``;
- same role, different substitute flag, or a role pair listed under ``refinements`` (e.g. a name
  saying STIR where the headers only show a long TR/TE): the more specific answer, with its own
  confidence;
- a contradiction: the source with the higher confidence wins (physics on a tie) and the
  confidence is multiplied by ``disagreement_factor``;
- only one source: its role and confidence; neither: OTHER with ``unknown_confidence``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from pipeline.ingest.attributes import AcquisitionInfo
from pipeline.ingest.config import IngestConfig, NameRule, PhysicsRule, Range, RoleConfig
from pipeline.model import Role, Substitute

NO_RULE = "no rule matched"  # start of the rule text when neither names nor physics decided


class RoleDecision(NamedTuple):
    """Result of :func:`classify_role`; unpacks as ``role, rule, confidence, substitute``."""

    role: Role
    rule: str
    confidence: float
    substitute: Substitute | None


def normalise_name(text: str) -> str:
    """Lower-case; punctuation except ``+`` and ``*`` to spaces: ``'T2_TSE-SAG'`` -> ``'t2 tse sag'``."""
    return " ".join(re.sub(r"[^a-z0-9+*]+", " ", text.lower()).split())


def name_text(acq: AcquisitionInfo) -> str:
    """The normalised text the name rules are matched against."""
    parts = (normalise_name(p) for p in (acq.series_description, acq.protocol_name, acq.sequence_name))
    return " ".join(dict.fromkeys(p for p in parts if p))  # ProtocolName often repeats SeriesDescription


def is_inversion_recovery(acq: AcquisitionInfo) -> bool:
    """IR when stated (Enhanced MR InversionRecovery), when ScanningSequence has IR, or when TI > 0."""
    if acq.inversion_recovery is not None:
        return acq.inversion_recovery
    if "IR" in acq.scanning_sequence:
        return True
    return acq.inversion_time_ms is not None and acq.inversion_time_ms > 0


def is_fat_suppressed(acq: AcquisitionInfo, cfg: RoleConfig) -> bool:
    """Fat suppression visible in the header (ScanOptions, or Enhanced MR SpectrallySelectedSuppression)."""
    tokens = {t.upper() for t in cfg.fat_suppression_tokens}
    if any(opt in tokens for opt in acq.scan_options):
        return True
    return "FAT" in acq.fat_suppression


def physics_summary(acq: AcquisitionInfo, cfg: RoleConfig) -> str:
    """Short human-readable list of the acquisition parameters, e.g. ``TR 4000 ms, TE 90 ms, FS``."""
    parts = []
    for label, v in (("TR", acq.repetition_time_ms), ("TE", acq.echo_time_ms), ("TI", acq.inversion_time_ms)):
        if v is not None:
            parts.append(f"{label} {v:g} ms")
    if is_inversion_recovery(acq):
        parts.append("IR")
    if is_fat_suppressed(acq, cfg):
        parts.append("fat-suppressed")
    if acq.contrast_agent:
        parts.append("contrast")
    if acq.image_type:
        parts.append("ImageType " + "\\".join(acq.image_type))
    return ", ".join(parts) if parts else "no acquisition parameters"


def match_name_rule(acq: AcquisitionInfo, cfg: RoleConfig) -> tuple[NameRule, str] | None:
    """First name rule whose pattern is found in :func:`name_text`; returns it and the matched text."""
    text = name_text(acq)
    if not text:
        return None
    for rule in cfg.name_rules:
        if _compiled(rule.pattern).search(text):
            return rule, text
    return None


def match_physics_rule(acq: AcquisitionInfo, cfg: RoleConfig) -> PhysicsRule | None:
    """First physics rule all of whose conditions hold."""
    for rule in cfg.physics_rules:
        if _physics_matches(rule, acq, cfg):
            return rule
    return None


def classify_role(acq: AcquisitionInfo, *, cfg: IngestConfig) -> RoleDecision:
    """Decide the role of a series from its names and acquisition parameters.

    Parameters
    ----------
    acq : AcquisitionInfo
        Names and MR parameters of (one frame of) the series.
    cfg : IngestConfig
        Uses ``cfg.roles``.

    Returns
    -------
    RoleDecision
        ``(role, rule, confidence, substitute)``: ``rule`` says in words which rule(s) decided and, when
        name and physics disagree, that they do; ``confidence`` is in [0, 1]; ``substitute`` flags a
        fat-suppressed T2 or a Dixon water image standing in for a STIR.
    """
    rc = cfg.roles
    named = match_name_rule(acq, rc)
    phys = match_physics_rule(acq, rc)
    params = physics_summary(acq, rc)
    if named is None and phys is None:
        what = f"'{name_text(acq)}'" if name_text(acq) else "no series name"
        return RoleDecision(Role.OTHER, f"{NO_RULE} ({what}; {params})", rc.unknown_confidence, None)
    if phys is None:
        assert named is not None
        n_rule, text = named
        return RoleDecision(
            n_rule.role,
            f"name rule '{n_rule.name}' on '{text}' (physics undetermined: {params})",
            n_rule.confidence,
            n_rule.substitute,
        )
    p_desc = f"physics rule '{phys.name}' ({params})"
    if named is None:
        return RoleDecision(phys.role, f"{p_desc}; no name rule matched", phys.confidence, phys.substitute)
    n_rule, text = named
    n_desc = f"name rule '{n_rule.name}' on '{text}'"
    if n_rule.role == phys.role and n_rule.substitute == phys.substitute:
        conf = 1.0 - (1.0 - n_rule.confidence) * (1.0 - phys.confidence)
        return RoleDecision(phys.role, f"{n_desc} and {p_desc} agree", round(conf, 4), phys.substitute)
    if n_rule.role == phys.role:
        # Same role, different substitute flag: the more specific (flagged) answer, at its own confidence.
        pick = phys if phys.substitute is not None else n_rule
        return RoleDecision(
            pick.role,
            f"{n_desc} and {p_desc} agree on {pick.role.value}; "
            f"substitute flag from the {'physics' if pick is phys else 'name'}",
            pick.confidence,
            pick.substitute,
        )
    for specific, general in rc.refinements:
        for a, b in ((n_rule, phys), (phys, n_rule)):
            if a.role == specific and b.role == general:
                src = "name" if a is n_rule else "physics"
                return RoleDecision(
                    a.role,
                    f"{n_desc}; {p_desc}: consistent, {specific.value} from the {src} refines {general.value}",
                    a.confidence,
                    a.substitute,
                )
    winner = n_rule if n_rule.confidence > phys.confidence else phys
    src = "name" if winner is n_rule else "physics"
    conf = round(winner.confidence * rc.disagreement_factor, 4)
    return RoleDecision(
        winner.role,
        f"DISAGREEMENT: {n_desc} says {_label(n_rule.role, n_rule.substitute)} but {p_desc} says "
        f"{_label(phys.role, phys.substitute)}; the {src} wins (higher rule confidence), confidence lowered",
        conf,
        winner.substitute,
    )


# --------------------------------------------------------------------------- helpers
@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _label(role: Role, sub: Substitute | None) -> str:
    return role.value + (f" ({sub.value})" if sub else "")


def _in(value: float | None, rng: Range | None) -> bool:
    if rng is None:
        return True
    if value is None:
        return False
    lo, hi = rng
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _physics_matches(rule: PhysicsRule, acq: AcquisitionInfo, cfg: RoleConfig) -> bool:
    if rule.inversion_recovery is not None and is_inversion_recovery(acq) != rule.inversion_recovery:
        return False
    if rule.fat_suppressed is not None and is_fat_suppressed(acq, cfg) != rule.fat_suppressed:
        return False
    if rule.contrast_given is not None and bool(acq.contrast_agent) != rule.contrast_given:
        return False
    if rule.image_type_any and not set(rule.image_type_any) & set(acq.image_type):
        return False
    if rule.scanning_sequence_none and set(rule.scanning_sequence_none) & set(acq.scanning_sequence):
        return False
    return (
        _in(acq.inversion_time_ms, rule.ti_ms)
        and _in(acq.repetition_time_ms, rule.tr_ms)
        and _in(acq.echo_time_ms, rule.te_ms)
    )
