"""What ``spine-assess queue`` shows and does: status of studies and of the outbox, retries, purges.

These work on the spool's state database, whether or not a listener is running on it (SQLite WAL: the
listener picks changes up at its next scheduler pass). Studies are named by StudyInstanceUID only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError
from pipeline.listener.spool import STATE_DB, Spool, clean_uid
from pipeline.listener.state import OutboxStatus, StateDB, StudyRow, StudyStatus, now_s


def open_state(spool_dir: Path) -> tuple[Spool, StateDB]:
    """Open an existing spool and its database (refuses to create one where there is none)."""
    spool_dir = Path(spool_dir).expanduser().resolve()
    if not (spool_dir / STATE_DB).is_file():
        raise ConfigError(
            f"{spool_dir}: no listener state here ({STATE_DB} missing); give the spool folder of the listener "
            "with --spool or --config"
        )
    spool = Spool(spool_dir)
    return spool, StateDB(spool.db_path)


def export_status(counts: dict[str, int] | None) -> str:
    """One word for a study's exports: ``-`` (none), ``pending``, ``delivered``, ``dead`` or ``partial``."""
    if not counts:
        return "-"
    total = sum(counts.values())
    delivered = counts.get(OutboxStatus.DELIVERED, 0)
    if counts.get(OutboxStatus.DEAD):
        return f"dead {counts[OutboxStatus.DEAD]}/{total}"
    if delivered == total:
        return f"delivered {total}/{total}"
    return f"pending {total - delivered}/{total}"


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def list_studies(state: StateDB, status: StudyStatus | None = None) -> list[dict[str, Any]]:
    """One mapping per study: uid, status, instances, attempts, last arrival, export status, last error."""
    exports = state.export_counts()
    return [
        {
            "study_uid": s.study_uid,
            "status": str(s.status),
            "instances": s.n_instances,
            "quarantined": s.n_quarantined,
            "attempts": s.attempts,
            "runs": s.runs,
            "last_arrival": _when(s.last_arrival),
            "export": export_status(exports.get(s.study_uid)),
            "last_error": s.last_error,
        }
        for s in state.list_studies(status)
    ]


def format_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no studies"
    head = (
        f"{'STUDY INSTANCE UID':<64}  {'STATUS':<10} {'INST':>5} {'TRY':>3} {'LAST ARRIVAL':<19}  {'EXPORT':<15} ERROR"
    )
    lines = [head]
    for r in rows:
        err = (r["last_error"] or "").replace("\n", " ")
        lines.append(
            f"{r['study_uid']:<64}  {r['status']:<10} {r['instances']:>5} {r['attempts']:>3} {r['last_arrival']:<19}  "
            f"{r['export']:<15} {err[:80]}"
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines.append("")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(lines)


def study_detail(state: StateDB, spool: Spool, study_uid: str) -> dict[str, Any]:
    """Everything known about one study: its row, where its files are, its exports and quarantined files."""
    uid = _uid(study_uid)
    row = state.get_study(uid)
    if row is None:
        raise InputError(f"study {uid} is not in the listener's state (see 'spine-assess queue list')")
    d = _row_dict(row)
    d["spool_folder"] = str(spool.study_dir(uid))
    d["results_folder"] = str(spool.results_dir(uid))
    d["exports"] = [
        {
            "destination": o.destination,
            "file": Path(o.path).name if o.kind != "sc" else "/".join(Path(o.path).parts[-2:]),
            "kind": o.kind,
            "run": o.run,
            "status": str(o.status),
            "attempts": o.attempts,
            "next_attempt": _when(o.next_attempt_at) if o.status is OutboxStatus.PENDING else "-",
            "delivered": _when(o.delivered),
            "last_error": o.last_error,
        }
        for o in state.outbox_for(uid)
    ]
    d["quarantined"] = [{"sop_instance_uid": s, "path": p, "reason": r} for s, p, r in state.quarantined(uid)]
    return d


def _row_dict(row: StudyRow) -> dict[str, Any]:
    d = asdict(row)
    d["status"] = str(row.status)
    d["runtime_s"] = round(row.runtime_s, 1) if row.runtime_s is not None else None
    for k in (
        "first_arrival",
        "last_arrival",
        "stable_since",
        "next_attempt_at",
        "run_started",
        "run_finished",
        "updated",
    ):
        d[k] = _when(d[k])
    return d


def format_detail(d: dict[str, Any]) -> str:
    lines = [f"study {d['study_uid']}"]
    for k in (
        "status",
        "n_instances",
        "n_quarantined",
        "attempts",
        "runs",
        "first_arrival",
        "last_arrival",
        "next_attempt_at",
        "run_started",
        "run_finished",
        "runtime_s",
        "last_error",
        "spool_folder",
        "results_folder",
    ):
        lines.append(f"  {k:<15} {d[k] if d[k] is not None else '-'}")
    if d["exports"]:
        lines.append("  exports:")
        for e in d["exports"]:
            extra = e["delivered"] if e["status"] == "delivered" else (e["last_error"] or "")
            lines.append(
                f"    {e['destination']:<12} {e['file']:<22} run {e['run']:<3} {e['status']:<10} "
                f"try {e['attempts']:<3} {extra}"
            )
    for q in d["quarantined"]:
        lines.append(f"  quarantined {q['sop_instance_uid']}: {q['reason']} ({q['path']})")
    return "\n".join(lines)


def retry(state: StateDB, study_uid: str | None, *, dead: bool, rerun: bool) -> str:
    """Operator retry; returns what was done, in one line."""
    now = now_s()
    if dead:
        n_s, n_e = state.retry_dead(now)
        return f"queued again: {n_s} dead stud{'y' if n_s == 1 else 'ies'}, {n_e} dead export(s)"
    if study_uid is None:
        raise ConfigError("give a Study Instance UID, or --dead for every dead letter")
    uid = _uid(study_uid)
    row = state.get_study(uid)
    if row is None:
        raise InputError(f"study {uid} is not in the listener's state (see 'spine-assess queue list')")
    if rerun:
        if not state.rerun_study(uid, now):
            raise InputError(f"study {uid} is {row.status}, not done: --rerun is for finished studies")
        return f"study {uid}: queued to run again; its results will replace the previous ones"
    queued, n_e = state.retry_study(uid, now)
    if not queued and not n_e:
        raise InputError(
            f"study {uid} is {row.status} with no dead export: nothing to retry (--rerun processes a done study again)"
        )
    return f"study {uid}: " + ", ".join(
        x for x in ("queued again" if queued else "", f"{n_e} export(s) queued again" if n_e else "") if x
    )


def purge(
    state: StateDB, spool: Spool, study_uid: str | None, *, done_older_than_days: float | None, force: bool
) -> list[str]:
    """Delete studies (spool files, results, state rows); returns the purged UIDs.

    One study by UID (a study still receiving / queued / running needs ``force``), or every DONE study whose
    exports are all delivered and whose last run finished more than ``done_older_than_days`` ago.
    """
    if study_uid is not None:
        uid = _uid(study_uid)
        row = state.get_study(uid)
        if row is None:
            raise InputError(f"study {uid} is not in the listener's state")
        if row.status in (StudyStatus.RECEIVING, StudyStatus.QUEUED, StudyStatus.RUNNING) and not force:
            raise InputError(f"study {uid} is {row.status}; stop the listener or add --force to purge it anyway")
        targets = [uid]
    elif done_older_than_days is not None:
        cutoff = now_s() - done_older_than_days * 86400.0
        exports = state.export_counts()
        targets = [
            s.study_uid
            for s in state.list_studies(StudyStatus.DONE)
            if (s.run_finished or 0) < cutoff and all(k == OutboxStatus.DELIVERED for k in exports.get(s.study_uid, {}))
        ]
    else:
        raise ConfigError("give a Study Instance UID or --done --older-than-days N")
    for uid in targets:  # files first: an interrupted purge leaves rows whose files are gone, never files to re-run
        spool.remove_study(uid)
        state.delete_study(uid)
    return targets


def _uid(text: str) -> str:
    try:
        return clean_uid(text, "Study Instance UID")
    except InputError as exc:
        raise ConfigError(str(exc)) from None
