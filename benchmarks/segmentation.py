"""Benchmark: vertebral body segmentation, level labelling and the morphometry that follows, by subject.

Runs :func:`pipeline.segment.segment_vertebrae` with the committed network, or with a validation model
(``--model-dir``), on

- every case of ``../shared/realdata``: ``vb1`` (clinical T2, wide field of view, T10-S1 labelled; the external
  test set), ``vb2`` (T2, T11-L5), ``vb3`` (Dixon water, L1-L5), at the published grid and resampled to 4 mm slices
  (``*_4mm``: mean of 4 adjacent 1-mm slices; the truth on the 4-mm grid is the label covering most of them);
- phantoms from :func:`pipeline.tools.phantom.variety.random_spec` (seeds below 1000, never used for training), each of
  T2, T1 and STIR as the anatomy series, with fractures up to vertebra plana;
- one 15-slice 512 x 512 series (a vb2 case resampled) for the runtime target (``runtime``).

Validation is by subject: the model card lists the subjects the model was trained on, and every summary line
counts only cases the model did not see (a second line, marked "seen in training", shows the rest and is not a
validation figure). It prints per case and per set: detection recall (a body is found when Dice > 0.5 with a
truth body) and the lowest per-exam recall, precision within the labelled span, mean Dice of the found bodies,
centroid error, level names right / wrong / unnamed, S1 named in each exam where S1 is labelled, healthy bodies
graded Genant >= 1 by the pipeline's morphometry (vb2, vb3 and the phantoms' unfractured bodies), the height-loss
error on fractured phantom bodies and whether each crushed body came out as one body, and CPU seconds per series.

Overlays (mid-sagittal, truth green, prediction red, level names) and contact sheets go to ``--out``.

Usage::

    nice python benchmarks/segmentation.py [--out /tmp/segbench] [--model-dir DIR]
        [--sets vb1,vb2,vb3,vb1_4mm,vb2_4mm,vb3_4mm,phantom,runtime] [--cases case_02,case_05] [--realdata PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.levels import Level  # noqa: E402
from pipeline.model import Role, SegmentationResult  # noqa: E402
from pipeline.morphometry import MorphometryConfig, load_morphometry_config, measure_vertebrae  # noqa: E402
from pipeline.segment import SegmentationConfig, load_segmentation_config, segment_vertebrae  # noqa: E402
from pipeline.segment.network import MODEL_DIR, ModelCard, load_card  # noqa: E402
from pipeline.volume import Volume  # noqa: E402

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
# ../shared/realdata beside the repository (CI layout); a git worktree one level deeper also works
DEFAULT_REALDATA = next(
    (p for p in (REPO.parent / "shared" / "realdata", REPO.parent.parent / "shared" / "realdata") if p.is_dir()),
    REPO.parent / "shared" / "realdata",
)


@dataclass
class CaseResult:
    set_name: str
    case: str
    n_truth: int
    n_pred_span: int
    found: int
    matched_in_span: int
    dice: list[float] = field(default_factory=list)
    level_ok: int = 0
    level_known: int = 0
    level_wrong: int = 0  # named, but not the truth's level (unnamed bodies are neither right nor wrong)
    # per found body: predicted / true volume, share of the predicted voxels on sagittal slices where the true
    # body is absent (lateral over-reach), Dice with the prediction clipped to the true body's slices
    volume_ratio: list[float] = field(default_factory=list)
    off_slice_share: list[float] = field(default_factory=list)
    dice_in_span: list[float] = field(default_factory=list)
    width_ratio: list[float] = field(default_factory=list)  # predicted / true left-right extent (sagittal slices)
    level_unnamed: int = 0
    centroid_err_mm: list[float] = field(default_factory=list)
    s1_labelled: bool = False
    s1_named: bool = False  # the truth S1 body was found and named S1
    healthy_graded: int = 0  # found healthy bodies measured (Genant grade given)
    false_fractures: int = 0  # ... of which graded Genant >= 1
    fx_loss_err_pp: list[float] = field(default_factory=list)  # fractured bodies: measured - true height loss
    # ... the same bodies measured on their true masks (the morphometry's own share of the error)
    fx_loss_err_truth_pp: list[float] = field(default_factory=list)
    crushed: int = 0  # truth bodies with >= 40 % height loss
    crushed_one_body: int = 0  # ... found as exactly one predicted body (no split, no merge)
    seen: bool = False  # the model was trained on this subject
    cpu_s: float = 0.0
    error: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def recall(self) -> float:
        return self.found / self.n_truth if self.n_truth else float("nan")

    @property
    def precision(self) -> float:
        return self.matched_in_span / self.n_pred_span if self.n_pred_span else float("nan")


def load_case(folder: Path) -> tuple[Volume, np.ndarray, dict[int, Level]]:
    img = Volume.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
    lab = Volume.from_sitk(sitk.ReadImage(str(folder / "labels.nii.gz"))).array
    # a few label files carry one extra, empty slice at the end: crop to the image grid
    if lab.shape != img.shape:
        extra = lab[img.shape[0] :]
        if extra.any() or lab.shape[1:] != img.shape[1:]:
            raise ValueError(f"{folder}: labels {lab.shape} do not match image {img.shape}")
        lab = lab[: img.shape[0]]
    levels = {int(k): Level.parse(v) for k, v in json.loads((folder / "levels.json").read_text()).items()}
    return img, lab.astype(np.uint16), levels


def thick_slices(img: Volume, lab: np.ndarray, factor: int = 4) -> tuple[Volume, np.ndarray]:
    """Average ``factor`` adjacent slices (clinical thick-slice simulation) and take the majority label."""
    n = img.shape[0] // factor
    arr = img.array[: n * factor].astype(np.float32).reshape(n, factor, *img.shape[1:]).mean(axis=1)
    sub = lab[: n * factor].reshape(n, factor, *lab.shape[1:])
    out = np.zeros((n, *lab.shape[1:]), dtype=np.uint16)
    best = np.zeros((n, *lab.shape[1:]), dtype=np.int16)
    for v in np.unique(sub):
        if v == 0:
            continue
        cnt = (sub == v).sum(axis=1)
        take = (cnt > best) & (cnt * 2 >= factor)
        out[take] = v
        best[take] = cnt[take]
    sp = (img.spacing_mm[0] * factor, img.spacing_mm[1], img.spacing_mm[2])
    origin = np.asarray(img.origin_lps) + (factor - 1) / 2.0 * img.spacing_mm[0] * img.axes_lps[0]
    return Volume(arr, sp, tuple(origin), img.axes_lps), out


def evaluate(
    set_name: str,
    case: str,
    truth: np.ndarray,
    levels: dict[int, Level],
    res: SegmentationResult,
    cpu_s: float,
    image: Volume,
) -> CaseResult:
    pred = res.labels.array
    t_ids = [int(v) for v in np.unique(truth) if v]
    p_ids = [v.label for v in res.vertebrae]
    # labelled span along the head-feet axis (LPS z)
    zs = []
    for t in t_ids:
        idx = np.argwhere(truth == t)
        z = image.index_to_lps(idx[:: max(1, len(idx) // 2000)])[:, 2]
        zs.extend([z.min(), z.max()])
    z_lo, z_hi = min(zs), max(zs)
    in_span = [v for v in res.vertebrae if z_lo <= v.centroid_lps_mm[2] <= z_hi]
    # Dice matrix
    dice = np.zeros((len(t_ids), len(p_ids)))
    t_counts = {t: int((truth == t).sum()) for t in t_ids}
    for j, p in enumerate(p_ids):
        pm = pred == p
        pc = int(pm.sum())
        if pc == 0:
            continue
        ov = np.bincount(truth[pm].ravel(), minlength=max(t_ids) + 1)
        for i, t in enumerate(t_ids):
            dice[i, j] = 2.0 * ov[t] / (t_counts[t] + pc)
    cr = CaseResult(set_name, case, len(t_ids), len(in_span), 0, 0, cpu_s=cpu_s, warnings=res.warnings)
    matched_pred = set()
    for i, t in enumerate(t_ids):
        if not p_ids:
            break
        j = int(np.argmax(dice[i]))
        if dice[i, j] > 0.5:
            cr.found += 1
            cr.dice.append(float(dice[i, j]))
            matched_pred.add(p_ids[j])
            v = res.vertebrae[j]
            if t in levels:
                cr.level_known += 1
                cr.level_ok += int(v.level is levels[t])
                cr.level_wrong += int(v.level is not None and v.level is not levels[t])
                cr.level_unnamed += int(v.level is None)
                if levels[t] is Level.S1:
                    cr.s1_named = v.level is Level.S1
            t_com = image.index_to_lps(np.argwhere(truth == t).mean(axis=0))
            cr.centroid_err_mm.append(float(np.linalg.norm(np.asarray(v.centroid_lps_mm) - t_com)))
            _error_breakdown(cr, truth == t, pred == p_ids[j])
    cr.matched_in_span = sum(1 for v in in_span if v.label in matched_pred)
    cr.s1_labelled = any(lv is Level.S1 for t, lv in levels.items() if t in t_ids)
    return cr


def match_bodies(truth: np.ndarray, res: SegmentationResult) -> dict[int, list[tuple[int, float]]]:
    """truth label -> [(predicted label, share of the predicted body inside this truth body)] for every predicted
    body that lies mostly (> 50 %) inside it; a body split in two has two entries."""
    out: dict[int, list[tuple[int, float]]] = {}
    pred = res.labels.array
    for v in res.vertebrae:
        pm = pred == v.label
        n = int(pm.sum())
        if n == 0:
            continue
        counts = np.bincount(truth[pm].ravel())
        counts[0] = 0
        t = int(np.argmax(counts))
        if t and counts[t] > 0.5 * n:
            out.setdefault(t, []).append((v.label, counts[t] / n))
    return out


def add_morphometry(
    cr: CaseResult,
    image: Volume,
    truth: np.ndarray,
    res: SegmentationResult,
    mcfg: MorphometryConfig,
    healthy: set[int],
    truth_loss: dict[int, float],
) -> None:
    """Grade the pipeline's masks: false fractures on healthy bodies, height-loss error on fractured ones."""
    if not res.vertebrae:
        return
    morph = {m.label: m for m in measure_vertebrae(image, res, cfg=mcfg)}
    sacrum = {v.label for v in res.vertebrae if v.is_sacrum}
    pairs = match_bodies(truth, res)
    # the true masks under the predicted label numbers: the morphometry's error without the segmentation's
    true_as_pred = np.zeros_like(res.labels.array)
    for t, preds in pairs.items():
        if len(preds) == 1:
            true_as_pred[truth == t] = preds[0][0]
    morph_true = {
        m.label: m
        for m in measure_vertebrae(image, dataclasses.replace(res, labels=image.with_array(true_as_pred)), cfg=mcfg)
    }
    for t, preds in pairs.items():
        if len(preds) != 1:
            continue
        m = morph.get(preds[0][0])
        if m is None or preds[0][0] in sacrum or m.genant_grade is None:
            continue
        if t in healthy:
            cr.healthy_graded += 1
            cr.false_fractures += int(m.genant_grade >= 1)
        if t in truth_loss and m.height_loss_pct is not None:
            cr.fx_loss_err_pp.append(float(m.height_loss_pct - truth_loss[t]))
            mt = morph_true.get(preds[0][0])
            if mt is not None and mt.height_loss_pct is not None:
                cr.fx_loss_err_truth_pp.append(float(mt.height_loss_pct - truth_loss[t]))
    for t, loss in truth_loss.items():
        if loss < 40.0:
            continue
        cr.crushed += 1
        preds = pairs.get(t, [])
        pm = res.labels.array == preds[0][0] if len(preds) == 1 else None
        # one body: a single prediction mostly inside it, covering most of it (not merged with a neighbour)
        if pm is not None and int((pm & (truth == t)).sum()) > 0.5 * int((truth == t).sum()):
            cr.crushed_one_body += 1


def _error_breakdown(cr: CaseResult, t_mask: np.ndarray, p_mask: np.ndarray) -> None:
    """Where a found body's error lies: its volume, its sagittal slices beyond the true body, the rest."""
    on = np.asarray(t_mask.any(axis=(1, 2)), dtype=bool)
    clipped = p_mask & on[:, None, None]
    n_t, n_p = int(t_mask.sum()), int(p_mask.sum())
    cr.volume_ratio.append(n_p / max(n_t, 1))
    cr.off_slice_share.append(1.0 - int(clipped.sum()) / max(n_p, 1))
    cr.dice_in_span.append(2.0 * int((clipped & t_mask).sum()) / max(n_t + int(clipped.sum()), 1))
    t_sl = np.flatnonzero(on)
    p_sl = np.flatnonzero(p_mask.any(axis=(1, 2)))
    cr.width_ratio.append(len(p_sl) / max(len(t_sl), 1))


def overlay(path: Path, image: Volume, truth: np.ndarray | None, res: SegmentationResult, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = image.array.astype(np.float32)
    mids = [v.mid_slice for v in res.vertebrae]
    k = int(np.median(mids)) if mids else arr.shape[0] // 2
    fig, ax = plt.subplots(figsize=(4, 5))
    ax.imshow(arr[k], cmap="gray", vmin=0, vmax=float(np.percentile(arr[k], 99.5)) or 1.0)
    if truth is not None and truth[k].any():
        ax.contour(truth[k] > 0, [0.5], colors="lime", linewidths=0.6)
    for v in res.vertebrae:
        m = res.labels.array[k] == v.label
        if m.any():
            ax.contour(m, [0.5], colors="red", linewidths=0.7)
            rr, cc = np.nonzero(m)
            name = v.level.value if v.level else "?"
            ax.text(cc.min() - 3, rr.mean(), name, color="yellow", fontsize=6, ha="right", va="center")
    ax.set_title(title, fontsize=7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def contact_sheet(paths: list[Path], out: Path, cols: int = 6, thumb: int = 180) -> None:
    from PIL import Image

    if not paths:
        return
    ims = [Image.open(p).convert("RGB") for p in paths]
    ims = [im.resize((thumb, int(thumb * im.height / im.width))) for im in ims]
    h = max(im.height for im in ims)
    rows = (len(ims) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * thumb, rows * h), "black")
    for i, im in enumerate(ims):
        sheet.paste(im, ((i % cols) * thumb, (i // cols) * h))
    sheet.save(out, optimize=True)


def summarise(name: str, rows: list[CaseResult]) -> str:
    """One block per set: the cases the model did not see, then (marked) the ones it was trained on."""
    blocks = []
    for seen in (False, True):
        part = [r for r in rows if r.seen is seen]
        if part:
            label = name if not seen else f"{name} (seen in training; not a validation figure)"
            blocks.append(_summary_block(label, part))
    return "\n".join(blocks)


def _summary_block(name: str, all_rows: list[CaseResult]) -> str:
    failed = [r for r in all_rows if r.error]
    rows = [r for r in all_rows if not r.error]
    if not rows:
        return f"{name}: no cases ({len(failed)} failed)"
    n_truth = sum(r.n_truth for r in rows)
    found = sum(r.found for r in rows)
    span = sum(r.n_pred_span for r in rows)
    matched = sum(r.matched_in_span for r in rows)
    dice = [d for r in rows for d in r.dice]
    lk = sum(r.level_known for r in rows)
    lo = sum(r.level_ok for r in rows)
    lw = sum(r.level_wrong for r in rows)
    lu = sum(r.level_unnamed for r in rows)
    cpu = [r.cpu_s for r in rows]
    ce = [x for r in rows for x in r.centroid_err_mm]
    worst = min(rows, key=lambda r: r.recall)
    line = (
        f"{name:10s} cases {len(rows):3d}{f' ({len(failed)} FAILED)' if failed else ''}  recall {found / n_truth:.3f} "
        f"({found}/{n_truth}; lowest exam {worst.recall:.2f} {worst.case})  precision {matched / max(span, 1):.3f}  "
        f"Dice {np.mean(dice) if dice else float('nan'):.3f}  centroid error median "
        f"{np.median(ce) if ce else float('nan'):.1f} mm  levels right {lo} / wrong {lw} / unnamed {lu} of {lk}  "
        f"CPU s/series median {np.median(cpu):.2f} max {np.max(cpu):.2f}"
    )
    s1 = [r for r in rows if r.s1_labelled]
    if s1:
        line += f"\n{'':10s} S1 found and named: {sum(r.s1_named for r in s1)}/{len(s1)} exams"
    graded = sum(r.healthy_graded for r in rows)
    if graded:
        ff = sum(r.false_fractures for r in rows)
        line += f"\n{'':10s} healthy bodies graded Genant >= 1: {ff}/{graded} ({100 * ff / graded:.1f} %)"
    fx = [x for r in rows for x in r.fx_loss_err_pp]
    if fx:
        mae, worst_fx = np.mean(np.abs(fx)), np.max(np.abs(fx))
        line += f"\n{'':10s} fractured bodies: height-loss error MAE {mae:.1f} pp (n {len(fx)}, max {worst_fx:.1f})"
        fx_t = [x for r in rows for x in r.fx_loss_err_truth_pp]
        if fx_t:
            line += f" [on their true masks: MAE {np.mean(np.abs(fx_t)):.1f} pp, n {len(fx_t)}]"
    crushed = sum(r.crushed for r in rows)
    if crushed:
        line += f"; crushed bodies (>= 40 %) found as one body {sum(r.crushed_one_body for r in rows)}/{crushed}"
    vr = [x for r in rows for x in r.volume_ratio]
    if vr:
        off = [x for r in rows for x in r.off_slice_share]
        wr = [x for r in rows for x in r.width_ratio]
        line += (
            f"\n{'':10s} found bodies: volume predicted/true median {np.median(vr):.2f}; predicted voxels on sagittal "
            f"slices without the true body {100 * np.mean(off):.1f} %; left-right extent predicted/true median "
            f"{np.median(wr):.2f}"
        )
    return line


def run_realdata(
    root: Path,
    set_name: str,
    cases: list[str] | None,
    cfg: SegmentationConfig,
    out: Path,
    thick: bool,
    model: ModelCard,
    mcfg: MorphometryConfig,
) -> tuple[list[CaseResult], list[Path]]:
    folder = root / set_name
    contrast = Role.STIR if set_name == "vb3" else Role.T2
    trained_on = {subj for subs in model.raw.get("training", {}).get("sets", {}).values() for subj in subs}
    results, pngs = [], []
    label = f"{set_name}_4mm" if thick else set_name
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if cases and case_dir.name not in cases:
            continue
        img, lab, levels = load_case(case_dir)
        if thick:
            img, lab = thick_slices(img, lab)
        t0 = time.process_time()
        try:
            res = segment_vertebrae(img, cfg=cfg, series_uid=f"{label}/{case_dir.name}", contrast=contrast, model=model)
        except Exception as exc:  # a benchmark records failures and carries on
            cr = CaseResult(label, case_dir.name, int(len(np.unique(lab)) - 1), 0, 0, 0, error=repr(exc))
            cr.seen = f"{set_name}/{case_dir.name}" in trained_on
            print(f"{label:8s} {case_dir.name}: FAILED {exc!r}", flush=True)
            results.append(cr)
            continue
        cpu = time.process_time() - t0
        cr = evaluate(label, case_dir.name, lab, levels, res, cpu, img)
        cr.seen = f"{set_name}/{case_dir.name}" in trained_on
        if set_name in ("vb2", "vb3"):  # healthy volunteers: every body graded >= 1 is a false fracture
            add_morphometry(cr, img, lab, res, mcfg, {t for t in levels if levels[t] is not Level.S1}, {})
        results.append(cr)
        png = out / f"{label}_{case_dir.name}.png"
        overlay(png, img, lab, res, f"{label} {case_dir.name} Dice {np.mean(cr.dice) if cr.dice else 0:.2f}")
        pngs.append(png)
        lv = " ".join(v.level.value if v.level else "?" for v in res.vertebrae)
        print(
            f"{label:8s} {case_dir.name}: recall {cr.found}/{cr.n_truth} precision {cr.matched_in_span}/"
            f"{cr.n_pred_span} Dice {np.mean(cr.dice) if cr.dice else float('nan'):.3f} levels "
            f"{cr.level_ok}/{cr.level_known} ({cr.level_wrong} wrong) [{lv}] false fx {cr.false_fractures} "
            f"cpu {cpu:.2f}s{' (seen in training)' if cr.seen else ''}",
            flush=True,
        )
    return results, pngs


def run_phantoms(
    cfg: SegmentationConfig, out: Path, n: int, model: ModelCard, mcfg: MorphometryConfig
) -> tuple[list[CaseResult], list[Path]]:
    """Phantoms of seeds 0..n-1 (training uses 1000+), each of T2, T1 and STIR as the anatomy series."""
    from pipeline.tools.phantom import render_phantom
    from pipeline.tools.phantom.variety import random_spec

    results, pngs = [], []
    for seed in range(n):
        spec = random_spec(seed)
        p = render_phantom(spec)
        truth = np.asarray(p.labels.array)
        tv = {int(v["label"]): v for v in p.truth["vertebrae"]}
        healthy = {t for t, v in tv.items() if not v.get("fractured") and not v.get("is_sacrum")}
        loss = {t: float(v["height_loss_pct"]) for t, v in tv.items() if v.get("fractured")}
        for role, vol in ((Role.T2, p.t2), (Role.T1, p.t1), (Role.STIR, p.stir)):
            name = f"seed{seed}_{role.value}" + (f"_fx{len(loss)}" if loss else "")
            t0 = time.process_time()
            try:
                res = segment_vertebrae(vol, cfg=cfg, series_uid=name, contrast=role, model=model)
            except Exception as exc:
                print(f"phantom  {name}: FAILED {exc!r}", flush=True)
                results.append(CaseResult("phantom", name, len(p.levels), 0, 0, 0, error=repr(exc)))
                continue
            cpu = time.process_time() - t0
            cr = evaluate("phantom", name, truth, dict(p.levels), res, cpu, vol)
            add_morphometry(cr, vol, truth, res, mcfg, healthy, loss)
            results.append(cr)
            png = out / f"phantom_{name}.png"
            overlay(png, vol, truth, res, f"phantom {name}")
            pngs.append(png)
            print(
                f"phantom  {name}: recall {cr.found}/{cr.n_truth} Dice "
                f"{np.mean(cr.dice) if cr.dice else float('nan'):.3f} levels {cr.level_ok}/{cr.level_known} "
                f"({cr.level_wrong} wrong) fx err {[round(x, 1) for x in cr.fx_loss_err_pp]} "
                f"crushed one body {cr.crushed_one_body}/{cr.crushed} cpu {cpu:.2f}s",
                flush=True,
            )
    return results, pngs


def runtime_series(root: Path, cfg: SegmentationConfig, model: ModelCard) -> None:
    """CPU time for a 15-slice 512 x 512 series (a vb2 case resampled: 4 mm slices, 381/512 mm pixels)."""
    folder = (
        next((p for p in sorted((root / "vb2").iterdir()) if p.is_dir()), None) if (root / "vb2").is_dir() else None
    )
    if folder is None:
        print("runtime    no vb2 case to build the 15 x 512 x 512 series from; skipped")
        return
    img, _, _ = load_case(folder)
    thick, _ = thick_slices(img, np.zeros(img.shape, np.uint16))
    c = thick.shape[0] // 2
    sub = thick.array[c - 7 : c + 8]
    origin = np.asarray(thick.origin_lps) + (c - 7) * thick.spacing_mm[0] * thick.axes_lps[0]
    small = Volume(sub, thick.spacing_mm, tuple(origin), thick.axes_lps)
    ref = sitk.Image(512, 512, 15, sitk.sitkFloat32)
    fov = np.asarray(small.spacing_mm[1:]) * (np.asarray(small.shape[1:]) - 1)
    ref.SetSpacing((fov[1] / 511, fov[0] / 511, small.spacing_mm[0]))
    ref.SetOrigin(small.origin_lps)
    ref.SetDirection(tuple(float(v) for v in small.axes_lps[::-1].T.ravel()))
    big = Volume.from_sitk(
        sitk.Resample(sitk.Cast(small.to_sitk(), sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0)
    )
    times = []
    for _ in range(3):
        t0 = time.process_time()
        res = segment_vertebrae(big, cfg=cfg, series_uid="runtime", contrast=Role.T2, model=model)
        times.append(time.process_time() - t0)
    print(
        f"runtime    15 x 512 x 512 series ({folder.name}): CPU s min {min(times):.2f} median "
        f"{np.median(times):.2f} over 3 runs, {len(res.vertebrae)} bodies"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/segbench"))
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--sets", default="vb1,vb2,vb3,vb1_4mm,vb2_4mm,vb3_4mm,phantom,runtime")
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="network to evaluate (default: committed)")
    ap.add_argument("--cases", default="", help="comma-separated case folder names (default all)")
    ap.add_argument("--phantoms", type=int, default=6, help="number of phantom seeds (x3 contrasts)")
    ap.add_argument("--config", type=Path, default=None, help="segmentation.yaml (default configs/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_segmentation_config(args.config)
    mcfg = load_morphometry_config()
    model = load_card(args.model_dir)
    tr = model.raw.get("training", {})
    print(
        f"model {args.model_dir / 'vertebra_net.onnx'} sha256 {model.sha256[:12]}: trained on "
        + ", ".join(f"{k} {len(v)}" for k, v in tr.get("sets", {}).items())
        + f" subjects (excluded sets: {tr.get('exclude_sets') or 'none'}, held-out fold: {tr.get('holdout_fold')})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] or None
    have_real = args.realdata.is_dir() and any((args.realdata / s).is_dir() for s in ("vb1", "vb2", "vb3"))
    if not have_real:
        print(f"notice: real data not found at {args.realdata}; real-data sets skipped")
    summaries, real_pngs, all_pngs = [], [], []
    for s in sets:
        if s in ("vb1", "vb2", "vb3", "vb1_4mm", "vb2_4mm", "vb3_4mm"):
            base = s.split("_")[0]
            if not have_real or not (args.realdata / base).is_dir():
                continue
            rows, pngs = run_realdata(
                args.realdata, base, cases, cfg, args.out, thick=s.endswith("4mm"), model=model, mcfg=mcfg
            )
            summaries.append(summarise(s, rows))
            all_pngs += pngs
            if not s.endswith("4mm"):
                real_pngs += pngs
        elif s == "phantom":
            rows, pngs = run_phantoms(cfg, args.out, args.phantoms, model, mcfg)
            if rows:
                summaries.append(summarise(s, rows))
                for role in ("T2", "T1", "STIR"):  # each contrast as the anatomy series
                    summaries.append(summarise(f"  {role}", [r for r in rows if f"_{role}" in r.case]))
            all_pngs += pngs
        elif s == "runtime" and have_real:
            runtime_series(args.realdata, cfg, model)
    print(
        "\nPrecision counts predicted bodies whose centroid lies inside the labelled span (top of the most cranial "
        "to bottom of the most caudal truth body); bodies outside it (unlabelled levels) are not false positives."
    )
    for line in summaries:
        print(line)
    contact_sheet(real_pngs, args.out / "contact_sheet.png")
    contact_sheet(all_pngs, args.out / "contact_sheet_all.png", cols=8, thumb=140)
    print(f"overlays and contact sheets in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
