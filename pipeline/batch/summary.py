"""``DIR/summary.csv``, ``DIR/summary.json``, ``DIR/index.html``: one row per study, written atomically; the end
screen.

Row fields (the JSON keeps lists, the CSV joins them with spaces):

====================== =========================================================================
study                  the study's name in this batch = its output folder relative to DIR (stable
                       between runs); empty for a folder without a usable study
folder                 study folder relative to ROOT ("." = ROOT itself)
report                 ``<study>/report.json`` when the status is ok, else empty
study_uid              StudyInstanceUID (empty for a folder without a usable study)
status                 ok, failed, timeout, crashed, interrupted, or pending (not run: the batch stopped)
levels                 labelled vertebral bodies, cranial to caudal ("?" = level unknown)
fractures              bodies with Genant grade >= 1, CSV as ``L1:G2`` (``L1:G1?`` when the grade is uncertain)
oedema_levels          bodies with STIR oedema
candidate_levels       eligibility decision candidate / candidate with cautions
indeterminate_levels   eligibility cannot be decided without more (clinical) information
contraindicated_levels
decision               the eligibility summary sentence
runtime_s              wall time of the study (in the run that produced this row)
error                  one line, for the statuses other than ok
from_previous_run      true when --resume kept an earlier result
====================== =========================================================================
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_write, remove_stale_temporaries

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
INDEX_HTML = "index.html"  # every study's summary row, linking its report
SUMMARY_SCHEMA_VERSION = 1
PENDING = "pending"

CSV_COLUMNS = (
    "study",
    "folder",
    "report",
    "study_uid",
    "status",
    "levels",
    "fractures",
    "oedema_levels",
    "candidate_levels",
    "indeterminate_levels",
    "contraindicated_levels",
    "decision",
    "runtime_s",
    "error",
    "from_previous_run",
)


def make_row(
    *,
    study: str,
    folder: str,
    study_uid: str | None,
    status: str,
    summary: Mapping[str, Any] | None = None,
    runtime_s: float | None = None,
    error: str | None = None,
    from_previous_run: bool = False,
) -> dict[str, Any]:
    s = summary or {}
    return {
        "study": study,
        "folder": folder,
        "report": f"{study}/report.json" if status == "ok" and study else "",
        "study_uid": study_uid or s.get("study_uid") or "",
        "status": status,
        "levels": list(s.get("levels", [])),
        "fractures": [dict(f) for f in s.get("fractures", [])],
        "oedema_levels": list(s.get("edema_levels", [])),
        "candidate_levels": list(s.get("candidate_levels", [])),
        "indeterminate_levels": list(s.get("indeterminate_levels", [])),
        "contraindicated_levels": list(s.get("contraindicated_levels", [])),
        "decision": s.get("decision") or "",
        "runtime_s": None if runtime_s is None else round(float(runtime_s), 2),
        "error": error or "",
        "from_previous_run": from_previous_run,
    }


def _csv_cell(key: str, value: Any) -> str:
    if key == "fractures":
        return " ".join(
            f"{f['level']}:G{f.get('genant_grade')}" + ("?" if f.get("grade_state") == "uncertain" else "")
            for f in value
        )
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else ""
    return "" if value is None else str(value)


def write_summary(out_root: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    """Replace summary.csv and summary.json atomically (temp file, fsync, rename, fsync folder)."""
    out_root = Path(out_root)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_csv_cell(c, r.get(c)) for c in CSV_COLUMNS])
    doc = {"schema_version": SUMMARY_SCHEMA_VERSION, "batch": dict(meta), "studies": list(rows)}
    atomic_write(out_root / SUMMARY_CSV, buf.getvalue())
    atomic_write(out_root / SUMMARY_JSON, json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write(out_root / INDEX_HTML, index_html(out_root, rows, meta))


_INDEX_COLUMNS = (
    ("study", "Study"),
    ("status", "Status"),
    ("levels", "Levels"),
    ("fractures", "Fractures"),
    ("oedema_levels", "Oedema"),
    ("candidate_levels", "Candidates"),
    ("indeterminate_levels", "Indeterminate"),
    ("contraindicated_levels", "Contraindicated"),
    ("decision", "Decision"),
    ("runtime_s", "Time (s)"),
    ("error", "Error"),
)


def index_html(out_root: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """``DIR/index.html``: one table row per study (the summary row), the study linking its report.html
    (or report.json when no HTML was written). Self-contained; every value is escaped."""
    from html import escape
    from urllib.parse import quote

    body = []
    for r in rows:
        cells = []
        for key, _title in _INDEX_COLUMNS:
            text = escape(_csv_cell(key, r.get(key)))
            if key == "study":
                study = str(r.get("study") or "")
                target = next(
                    (
                        f"{study}/{n}"
                        for n in ("report.html", "report.json")
                        if study and (out_root / study / n).is_file()
                    ),
                    None,
                )
                text = (
                    f'<a href="{escape(quote(target))}">{text}</a>' if target else text or escape(str(r.get("folder")))
                )
            cells.append(f'<td class="{key}">{text}</td>')
        status = escape(str(r.get("status") or ""))
        body.append(f'<tr class="{status}">' + "".join(cells) + "</tr>")
    head = "".join(f"<th>{escape(t)}</th>" for _k, t in _INDEX_COLUMNS)
    c = Counter(str(r.get("status")) for r in rows)
    tally = ", ".join(f"{n} {escape(k)}" for k, n in sorted(c.items())) or "no studies"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>spine-assess batch</title><style>"
        "body{font:14px system-ui,sans-serif;margin:16px;color:#1b2a3a}table{border-collapse:collapse;width:100%}"
        "th,td{border-bottom:1px solid #ccd;padding:4px 6px;text-align:left;vertical-align:top}"
        "th{background:#1b2a3a;color:#fff;position:sticky;top:0}tr.failed td,tr.timeout td,tr.crashed td{color:#a61b1b}"
        "td.decision,td.error{max-width:32em}.wrap{overflow-x:auto}"
        "</style></head><body>"
        f"<h1>spine-assess batch</h1><p>{escape(str(meta.get('root', '')))} &rarr; {escape(str(meta.get('out', '')))}"
        f" &middot; {tally} &middot; updated {escape(str(meta.get('updated_at') or meta.get('started_at') or ''))}</p>"
        f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table></div><p>Research software: it supports a clinician's decision, it does not make it.</p>"
        "</body></html>\n"
    )


def remove_stale_summary_temporaries(out_root: Path) -> None:
    """Delete the temporaries a killed batch left beside its summary files."""
    remove_stale_temporaries(Path(out_root), (SUMMARY_CSV, SUMMARY_JSON, INDEX_HTML))


def counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    c = Counter(str(r["status"]) for r in rows)
    return dict(sorted(c.items()))


def format_end_screen(
    rows: Sequence[Mapping[str, Any]],
    *,
    root: Path,
    out_root: Path,
    elapsed_s: float,
    workers: str,
    n_skipped_files: int,
    interrupted: bool,
    max_listed: int = 12,
) -> str:
    """About one screen: counts, findings, the studies that did not succeed, where the files are."""
    c = counts(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] not in ("ok", PENDING)]
    kept = sum(1 for r in rows if r.get("from_previous_run"))
    lines = [
        f"batch {'INTERRUPTED' if interrupted else 'finished'}: {len(rows)} stud{'y' if len(rows) == 1 else 'ies'} "
        f"from {root} in {_duration(elapsed_s)} ({workers})",
        "  " + ", ".join(f"{k} {v}" for k, v in c.items()) + (f" (kept from previous runs: {kept})" if kept else ""),
    ]
    if ok:
        fx = sum(1 for r in ok if r["fractures"])
        ed = sum(1 for r in ok if r["oedema_levels"])
        cand = sum(1 for r in ok if r["candidate_levels"])
        ind = sum(1 for r in ok if r["indeterminate_levels"])
        lines.append(
            f"  of the {len(ok)} assessed: fractures (Genant >= 1) in {fx}, STIR oedema in {ed}, candidate levels in "
            f"{cand}, undecided levels (more information needed) in {ind}"
        )
    if n_skipped_files:
        lines.append(f"  {n_skipped_files} file(s) under the input folder were not images of a study (-v lists them)")
    if bad:
        lines.append("  not assessed:")
        width = min(40, max(len(r["study"] or r["folder"]) for r in bad) + 2)
        for r in bad[:max_listed]:
            name = r["study"] or r["folder"]
            lines.append(f"    {name:<{width}} {r['status']:<9} {_cut(r['error'], 90)}")
        if len(bad) > max_listed:
            lines.append(f"    ... and {len(bad) - max_listed} more (see summary.csv)")
    pending = c.get(PENDING, 0) + c.get("interrupted", 0)
    if pending:
        lines.append(
            f"  {pending} stud{'y' if pending == 1 else 'ies'} still to do: run the same command with --resume"
        )
    lines.append(f"  summary: {out_root / SUMMARY_CSV} and {out_root / SUMMARY_JSON}")
    return "\n".join(lines)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _duration(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
