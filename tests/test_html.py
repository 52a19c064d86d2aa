"""HTML report: self-contained, escaped, no patient identity by default, renders in headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from pipeline.levels import Level
from pipeline.model import Heights, Morphology, SegmentationResult, VertebraMorphometry, VertebraSeg
from pipeline.report.html import render_html
from pipeline.report.json_report import validate_report
from pipeline.report.overlay import render_overlays
from pipeline.report.study_report import StudyReport, VertebraReport
from pipeline.volume import Volume
from tests.report_fixtures import PATIENT_ID, PATIENT_NAME, make_case
from tests.test_study_report import _study

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("html"))


@pytest.fixture(scope="module")
def page(case):
    overlays = render_overlays(case.anatomy, case.report)
    return render_html(case.report, overlays)


def _esc(text: str) -> str:
    return str(escape(text))  # as Jinja2 autoescape writes it


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


def test_page_is_self_contained_with_valid_inline_pngs(page):
    tags = _tags(page)
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) == 3
    for a in imgs:
        src = a["src"] or ""
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.verify()
        assert a.get("alt")
    # nothing is fetched: no external src/href, no stylesheet links, no scripts, no CSS url()
    for t, a in tags:
        for attr in ("src", "href"):
            v = a.get(attr) or ""
            assert not re.match(r"^(https?:|//|file:)", v), (t, attr, v)
        assert t not in ("script", "link", "iframe")
    assert "url(" not in page and "@import" not in page


def test_no_patient_identity_unless_the_report_carries_it(case, page):
    assert PATIENT_NAME not in page and PATIENT_NAME.replace("^", " ") not in page and PATIENT_ID not in page
    report = dataclasses.replace(case.report, patient={"name": "Doe^Jane", "id": "MRN-77"})
    validate_report(report.to_json())
    shown = render_html(report, {})
    assert "Doe^Jane" in shown and "MRN-77" in shown


def test_text_from_inputs_is_escaped(case):
    r = case.report
    l4 = r.eligibility.levels[1]
    levels = (r.eligibility.levels[0], dataclasses.replace(l4, reasons=(*l4.reasons, "<script>alert(1)</script>")))
    series = (dataclasses.replace(r.study.series[0], description="SAG <b>T2</b>"), *r.study.series[1:])
    report = dataclasses.replace(
        r,
        eligibility=dataclasses.replace(r.eligibility, levels=(*levels, *r.eligibility.levels[2:])),
        study=dataclasses.replace(r.study, series=series),
    )
    html = render_html(report, {})
    assert "<script>" not in html and "<b>T2</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "SAG &lt;b&gt;T2&lt;/b&gt;" in html


def test_not_assessable_is_shown_with_its_reason(page):
    assert "inferior endplate cut by the field of view" in page  # L5 morphometry
    assert "body cut by the field of view" in page  # L5 STIR
    assert "CSF column not visible at this level" in page  # L3 posterior wall
    # the L5 row never shows a height or a grade 0
    l5 = page[page.index('<td class="level">L5') :]
    l5 = l5[: l5.index("</tr>")]
    assert "not assessable" in l5 and "0.0" not in l5


def test_page_shows_decisions_trace_sources_and_disclaimer(case, page):
    elig = case.report.eligibility
    quote = next(c for c in elig.catalogue if c.id == "indication.painful_acute_vcf").sources[0].quote
    for text in (
        '<span class="decision candidate">candidate</span>',
        "indication.painful_acute_vcf",
        "JNCCN 2010, Table 1, Indications",
        _esc(quote),
        _esc(elig.levels[1].reasons[0]),
        _esc(elig.plan.biopsy_sentence),
        _esc(elig.disclaimer),
        "supports a clinician&#39;s decision",
        "41.7 %",
        "7.0 / 12.0 / 12.0",
        "2.35",
        "42 %",
        "only sagittal T2 covering the lumbar spine",
        "L5 inferior endplate at the edge of the field of view",
        "abab" * 16,
    ):
        assert text in page, text


def test_sources_link_to_their_full_citation_listed_once(case, page):
    refs = case.report.eligibility.references
    assert {r.short for r in refs} >= {"JNCCN 2010", "JNCCN 2012", "Cancer pain summary", "Parmar & Resnick 2019"}
    for r in refs:
        assert page.count(_esc(r.citation)) == 1, r.seed
        anchor = "ref-" + r.seed[:3]
        assert f'<li id="{anchor}">' in page and f'href="#{anchor}"' in page
    assert "Parmar VK, Resnick DK. Kyphoplasty and Vertebroplasty. In: Pain, pp 895-898." in page
    assert "001 Table 1" not in page  # never a bare number


def test_imaging_only_page_lists_the_questions(tmp_path):
    case = make_case(tmp_path, clinical=None)
    html = render_html(case.report, {})
    questions = case.report.eligibility.questions
    assert questions and "For the clinician:" in html
    for q in questions:
        assert _esc(q.text) in html
    assert "indeterminate" in html and "Not evaluable (missing inputs):" in html
    assert "imaging only: no clinical inputs were given" in html


def test_page_renders_without_stages(case):
    html = render_html(StudyReport(case.report.study, case.report.choice), {})
    assert "Segmentation did not run" in html and "were not evaluated" in html


_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const d = document.createElement('div'); d.id = 'img-probe'; d.style.display = 'none';
  d.textContent = `images ${ok}/${imgs.length} widths ${imgs.map(i => i.naturalWidth).join(',')}`;
  document.body.appendChild(d);
});</script>"""


@pytest.fixture(scope="module")
def rendered(page, tmp_path_factory):
    """One headless Chromium run: the DOM after load (with an image probe) and a 1280x2400 screenshot."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("chromium")
    path = tmp / "report.html"
    path.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    shot = tmp / "shot.png"
    cmd = [
        CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
        "--run-all-compositor-stages-before-draw", "--window-size=1280,2400", f"--screenshot={shot}",
        "--dump-dom", path.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    return proc, shot


@pytest.mark.slow
def test_chromium_loads_every_image(rendered):
    proc, _shot = rendered
    m = re.search(r'<div id="img-probe"[^>]*>images (\d+)/(\d+) widths ([\d,]+)</div>', proc.stdout)
    assert m, proc.stderr[-2000:]
    assert m.group(1) == m.group(2) == "3"
    assert all(int(w) > 300 for w in m.group(3).split(","))


@pytest.mark.slow
def test_chromium_screenshot_is_a_real_page(rendered):
    proc, shot = rendered
    assert shot.exists(), f"chromium wrote no screenshot: {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (2400, 1280)
    assert img.std() > 20  # not a blank page
    # the dark header band (#1b2a3a) is at the top and the white page body below it
    assert np.allclose(img[20, 100], (27, 42, 58), atol=12)
    assert (img[400:2400, 60:1220] > 245).all(axis=2).mean() > 0.4


def _body(level: Level | None = Level.L1, level_confidence: float = 0.9) -> VertebraSeg:
    return VertebraSeg(1, level, level_confidence, (0.0, 0.0, 0.0), 0, (0, 0, 0, 1, 1, 1), 0.9)


def test_low_confidence_grade_is_marked_with_its_reason():
    from pipeline.report.html import _morph_cells

    morph = VertebraMorphometry(
        1, Level.L1, True, "six-point", Heights(12.0, 18.0, 20.0), height_loss_pct=35.0, genant_grade=2,
        morphology=Morphology.WEDGE, low_confidence=True, reliability_notes=("Hp too tall for spacing",),
    )  # fmt: skip
    grade = _morph_cells(VertebraReport(_body(), morph))[3]
    assert grade.text == "2? uncertain" and "low-confidence mask (Hp too tall for spacing)" in grade.note
    sure = dataclasses.replace(morph, low_confidence=False)
    assert _morph_cells(VertebraReport(_body(), sure))[3].text == "2"


def test_level_confidence_is_explained_where_it_is_shown():
    """Issue 16 item 8: the number under each level name says what it is, and a low one says what to do."""
    from pipeline.report.html import LEVEL_CONFIDENCE_NOTE, _level_cell, render_html

    assert _level_cell(VertebraReport(_body())).note == "level confidence 0.90"
    low = _level_cell(VertebraReport(_body(level_confidence=0.5)))
    assert low.note == "level confidence 0.50 - check the level"
    assert _level_cell(VertebraReport(_body(level=None, level_confidence=0.0))).note == ""
    labels = Volume(np.zeros((1, 1, 1), np.uint16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    seg = SegmentationResult(labels, (_body(level_confidence=0.7),), "1.2.3.1", False, "no anchor")
    html = render_html(StudyReport(_study(), segmentation=seg), {})
    assert "level confidence 0.70" in html and "how sure the program is of the level" in html
    assert "how sure the program is of the level" in LEVEL_CONFIDENCE_NOTE


# --------------------------------------------------------------------------- layout (issue 16 item 5)
def test_every_table_sits_in_a_scroll_box_and_print_css_is_a4(page):
    """Structure that keeps wide tables from being cut off: each table in its own horizontal scroll box (so the
    page itself never scrolls sideways), which print turns off on an A4 page."""
    opened = [m.start() for m in re.finditer(r"<table\b", page)]
    assert len(opened) >= 4
    for pos in opened:
        before = page[:pos].rstrip()
        assert re.search(r'<div class="table-wrap"[^>]*>$', before), page[pos - 120 : pos + 40]
    assert '<table class="vertebrae">' in page
    css = page[page.index("<style>") : page.index("</style>")]
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", css)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    print_css = css[css.index("@media print") :]
    assert re.search(r"@page \{[^}]*size: A4", print_css)
    assert re.search(r"\.table-wrap \{[^}]*overflow: visible", print_css)


_LAYOUT_PROBE = """<script>window.addEventListener('load', () => {
  const t = document.querySelector('table.vertebrae')
    || [...document.querySelectorAll('table')].find(x => x.textContent.includes('Segmentation quality'));
  const r = t.getBoundingClientRect(), box = t.parentElement.getBoundingClientRect();
  const th = [...t.querySelectorAll('th')].pop().getBoundingClientRect();
  const d = document.createElement('div'); d.id = 'layout-probe'; d.style.display = 'none';
  d.textContent = `page ${document.documentElement.scrollWidth} view ${innerWidth} table ${Math.ceil(r.right)} `
    + `box ${Math.floor(box.right)} decision ${Math.ceil(th.right)}`;
  document.body.appendChild(d);
});</script>"""

# A4 minus the 10 mm side margins of the print style, in CSS pixels (96 per inch)
A4_CONTENT_PX = round((210 - 2 * 10) / 25.4 * 96)


def _layout(page: str, width: int, tmp: Path, *, as_print: bool = False) -> dict[str, int]:
    html = page.replace("</body>", _LAYOUT_PROBE + "</body>")
    if as_print:  # the print rules applied on screen at the A4 content width: how the table is laid out on paper
        html = html.replace("@media print {", "@media all {")
    path = tmp / f"layout_{width}_{as_print}.html"
    path.write_text(html, encoding="utf-8")
    cmd = [
        CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
        f"--window-size={width},1600", "--dump-dom", path.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<div id="layout-probe"[^>]*>([^<]+)</div>', proc.stdout)
    assert m, proc.stderr[-2000:]
    words = m.group(1).split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}


@pytest.mark.slow
@pytest.mark.parametrize("width", [1024, 1440])
def test_vertebra_table_fits_the_window_with_its_decision_column(page, width, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    got = _layout(page, width, tmp_path)
    assert got["view"] == width
    assert got["page"] <= width, got  # nothing pushes the page sideways
    assert got["table"] <= got["box"] <= width, got  # the table fits its box: no column is hidden
    assert got["decision"] <= width, got


@pytest.mark.slow
def test_vertebra_table_fits_an_a4_page_in_print(page, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    got = _layout(page, A4_CONTENT_PX, tmp_path, as_print=True)
    assert got["table"] <= got["box"] <= A4_CONTENT_PX, got
    pdf = tmp_path / "report.pdf"
    src = tmp_path / "report.html"
    src.write_text(page, encoding="utf-8")
    cmd = [
        CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}", src.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    data = pdf.read_bytes() if pdf.exists() else b""
    assert data.startswith(b"%PDF"), proc.stderr[-2000:]
    boxes = {tuple(round(float(x)) for x in m.split()) for m in re.findall(rb"/MediaBox \[([^\]]+)\]", data)}
    assert boxes == {(0, 0, 595, 842)}, boxes  # every page A4 portrait (points)
