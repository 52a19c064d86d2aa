"""Posterior elements: pedicles, articular processes and facet joints, laminae, spinous and transverse
processes, ribs, ligaments (interspinous, flavum), foraminal fat and exiting roots; the sacral ala and
fused sacral laminae. All are built in their vertebra's local frame (u anterior, v cranial, w left) and
drawn as bone (cortical shell + marrow) that is never labelled: a fractured body keeps them.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.tools.phantom.column import PlacedBody
from pipeline.tools.phantom.primitives import BoneGroup, Capsule, Ellipsoid, Painter
from pipeline.tools.phantom.tissues import Tissue


def posterior_elements(
    bodies: dict[str, PlacedBody],
    order: list[str],
    discs: dict[str, tuple[float, float, bool]],
    canal: dict[str, tuple[float, float]],
    k_canal: float,
) -> tuple[list[Painter], list[Painter], list[np.ndarray]]:
    """Bone groups, soft parts (ligaments, facet fluid, foraminal fat and roots) and spinous tip points (LPS).

    Parameters
    ----------
    order : list of str
        Levels cranial to caudal (S1 last, skipped here).
    discs : dict
        Disc below each level: (posterior height mm, anterior height mm, degenerated).
    canal : dict
        Bony canal half sizes (AP, LR) in mm per level, scaled by ``k_canal``.
    """
    bones: list[Painter] = []
    soft: list[Painter] = []
    tips: list[np.ndarray] = []
    sp_mid: dict[str, np.ndarray] = {}
    lam_mid: dict[str, np.ndarray] = {}
    for i, name in enumerate(order):
        if name == "S1":
            continue
        b = bodies[name]
        s = b.shape
        d, wh, h = s.D, s.Wh, s.dims.hp_rim_mm
        ac, bc = (v * k_canal for v in canal[name])
        thoracic = name.startswith("T")
        rw = 3.6 if thoracic else (6.0 if name == "L5" else 4.5)
        rv = 0.28 * h
        pw = bc + rw
        vp = h / 2 - rv - 1.0
        up0 = -d / 2
        upl = up0 - 1.6 * ac
        disc_above = discs[order[i - 1]][0] if i > 0 else 4.0
        disc_below = discs[name][0]

        def P(u: float, v: float, w: float, body: PlacedBody = b) -> np.ndarray:
            return body.to_lps(np.array([u, v, w]))

        vdir = np.r_[0.0, b.frame.v]
        udir = np.r_[0.0, b.frame.u]
        wdir = np.array([1.0, 0.0, 0.0])
        parts: list[Capsule | Ellipsoid] = []
        for sgn in (-1.0, 1.0):
            parts.append(Capsule(P(up0 + 3, vp, sgn * pw), P(upl + 1, vp, sgn * (pw + 1)), rv, rw, vdir, Tissue.CORTEX))
            parts.append(
                Capsule(
                    P(upl + 2, vp + 1, sgn * (pw + 1.5)),
                    P(upl + 2.5, h / 2 + 0.75 * disc_above + 2, sgn * (pw + 2.5)),
                    4.5,
                    3.6,
                    udir,
                    Tissue.CORTEX,
                )
            )  # superior articular process
            parts.append(
                Capsule(
                    P(upl - 8, vp - 2, sgn * (pw - 1.0)),
                    P(upl - 8.5, -h / 2 - 0.55 * disc_below, sgn * (pw - 1.5)),
                    4.0,
                    3.4,
                    udir,
                    Tissue.CORTEX,
                )
            )  # inferior articular process
            parts.append(
                Capsule(
                    P(upl - 4, vp - 2, sgn * (pw - 1)),
                    P(up0 - 2 * ac - 3.5, vp - 6.5, 0.0),
                    0.3 * h,
                    2.6,
                    vdir,
                    Tissue.CORTEX,
                )
            )  # lamina
            if thoracic:
                parts.append(
                    Capsule(
                        P(upl, vp + 1, sgn * (pw + 2)),
                        P(upl - 10, vp + 3, sgn * (wh + 18)),
                        5.0,
                        4.0,
                        vdir,
                        Tissue.CORTEX,
                    )
                )  # transverse process
                rib = [
                    P(up0 + 3, h / 2 + 1.0, sgn * (wh - 1.5)),
                    P(up0 - 16, h / 2 - 1, sgn * (wh + 22)),
                    P(up0 - 22, h / 2 - 10, sgn * (wh + 58)),
                ]
                rr = 5.5 if name not in ("T11", "T12") else 4.5
                bones.append(
                    BoneGroup(
                        [
                            Capsule(rib[0], rib[1], rr, 4.0, vdir, Tissue.CORTEX),
                            Capsule(rib[1], rib[2], rr, 4.0, vdir, Tissue.CORTEX),
                        ],
                        cortex_mm=1.3,
                    )
                )
            else:
                length = {"L1": 18, "L2": 24, "L3": 30, "L4": 26, "L5": 22}[name]
                parts.append(
                    Capsule(
                        P(upl + 2, vp, sgn * (pw + 2)),
                        P(upl + 1, vp - 1, sgn * (wh + length)),
                        4.2,
                        3.4,
                        vdir,
                        Tissue.CORTEX,
                    )
                )
            # facet joint fluid with the level below (between this IAP and the next SAP)
            soft.append(
                Ellipsoid(
                    P(upl - 3.6, -h / 2 - 0.5 * disc_below, sgn * (pw + 0.5)),
                    np.array([udir, vdir, wdir]),
                    np.array([1.1, 6.0, 4.0]),
                    Tissue.FACET_FLUID,
                )
            )
            # foraminal fat + exiting root below the pedicle
            soft.append(
                Ellipsoid(
                    P(up0 - 0.5 * ac, -h / 2 + 1.0, sgn * (bc + 5.0)),
                    np.array([udir, vdir, wdir]),
                    np.array([0.75 * ac + 1.5, 0.35 * h + 3.0, 5.0]),
                    Tissue.FAT,
                )
            )
            soft.append(
                Ellipsoid(
                    P(up0 - 0.55 * ac, vp - rv - 3.5, sgn * (bc + 5.0)),
                    np.array([udir, vdir, wdir]),
                    np.array([2.6, 2.6, 5.5]),
                    Tissue.NERVE_ROOT,
                )
            )
        if thoracic:
            sp_len, sp_ang, sp_r, sp_w = 30.0, math.radians(48), 4.8, 2.6
            sp0 = np.array([up0 - 2 * ac - 3.0, vp - 4.0])
        else:
            sp_len, sp_ang, sp_r, sp_w = 24.0, math.radians(8), 0.36 * h, 3.2
            sp0 = np.array([up0 - 2 * ac - 3.0, -0.12 * h])
        sp1 = sp0 + sp_len * np.array([-math.cos(sp_ang), -math.sin(sp_ang)])
        parts.append(Capsule(P(sp0[0], sp0[1], 0.0), P(sp1[0], sp1[1], 0.0), sp_r, sp_w, vdir, Tissue.CORTEX))
        if not thoracic:  # the tip of a lumbar spinous process is broad (tall)
            parts.append(
                Capsule(
                    P(sp1[0] + 6.0, sp1[1], 0.0),
                    P(sp1[0] + 1.0, sp1[1], 0.0),
                    sp_r + 1.5,
                    sp_w + 0.6,
                    vdir,
                    Tissue.CORTEX,
                )
            )
        bones.append(BoneGroup(parts, cortex_mm=1.2))
        tips.append(P(sp1[0] - sp_r * 0.6, sp1[1], 0.0))
        sp_mid[name] = P(0.5 * (sp0[0] + sp1[0]), 0.5 * (sp0[1] + sp1[1]), 0.0)
        lam_mid[name] = P(up0 - 2 * ac - 1.6, vp - 6.5, 0.0)
    names = [n for n in order if n != "S1"]
    for a, b_ in zip(names[:-1], names[1:], strict=True):
        vdir = np.r_[0.0, bodies[a].frame.v]
        udir = np.r_[0.0, bodies[a].frame.u]
        soft.append(Capsule(sp_mid[a], sp_mid[b_], 9.0, 2.2, udir, Tissue.LIGAMENT))  # interspinous
        wdir = np.array([1.0, 0.0, 0.0])
        bc = canal[a][1] * k_canal
        soft.append(Capsule(lam_mid[a], lam_mid[b_], bc, 2.0, wdir, Tissue.LIGAMENT))  # ligamentum flavum
    return bones, soft, tips


def sacral_posterior(
    bodies: dict[str, PlacedBody], canal: dict[str, tuple[float, float]], k_canal: float
) -> tuple[list[Painter], list[np.ndarray]]:
    """S1 articular processes and ala, the fused sacral laminae (posterior wall of the sacral canal)."""
    s1 = bodies["S1"]
    s = s1.shape
    d, wh, h = s.D, s.Wh, s.dims.hp_rim_mm
    ac, bc = (v * k_canal for v in canal["S1"])
    vdir = np.r_[0.0, s1.frame.v]
    udir = np.r_[0.0, s1.frame.u]
    parts: list[Capsule | Ellipsoid] = []
    upl = -d / 2 - 1.6 * ac
    for sgn in (-1.0, 1.0):
        parts.append(
            Capsule(
                s1.to_lps([-d / 2 + 3, 2.0, sgn * (bc + 4)]),
                s1.to_lps([upl + 1, 2.0, sgn * (bc + 5)]),
                7.0,
                5.0,
                vdir,
                Tissue.CORTEX,
            )
        )
        parts.append(
            Capsule(
                s1.to_lps([upl + 2, 4.0, sgn * (bc + 5.5)]),
                s1.to_lps([upl + 2.5, h / 2 + 6, sgn * (bc + 6.5)]),
                4.5,
                4.0,
                udir,
                Tissue.CORTEX,
            )
        )
        # ala: lateral mass continuous with the S1 body
        parts.append(
            Capsule(
                s1.to_lps([2.0, -1.0, sgn * (wh - 6)]),
                s1.to_lps([-4.0, -4.0, sgn * (wh + 38)]),
                0.42 * h,
                0.40 * d,
                vdir,
                Tissue.CORTEX,
            )
        )
    # fused laminae and median crest along S1..S4
    chain = []
    for name in ("S1", "S2", "S3", "S4"):
        b = bodies[name]
        a_c = canal[name][0] * k_canal
        chain.append(b.to_lps([b.shape.u_at(1.0) - 2 * a_c - 2.2, 0.0, 0.0]))
    tips: list[np.ndarray] = []
    for i, (p, q) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
        half_w = [14.0, 11.0, 8.0][i]
        parts.append(Capsule(p, q, half_w, 2.8, np.array([1.0, 0, 0]), Tissue.CORTEX))
        crest0 = p + np.r_[0.0, -bodies["S1"].frame.u] * 4.0
        parts.append(
            Capsule(
                crest0,
                0.5 * (p + q) + np.r_[0.0, -bodies["S1"].frame.u] * 4.0,
                3.0,
                2.2,
                np.array([1.0, 0, 0]),
                Tissue.CORTEX,
            )
        )
        tips.append(crest0 + np.r_[0.0, -bodies["S1"].frame.u] * 2.5)
    for name in ("S2", "S3"):
        b = bodies[name]
        for sgn in (-1.0, 1.0):
            parts.append(
                Capsule(
                    b.to_lps([0.0, 0.0, sgn * (b.shape.Wh - 4)]),
                    b.to_lps([-3.0, 0.0, sgn * (b.shape.Wh + 26)]),
                    0.45 * b.shape.dims.hp_rim_mm,
                    0.38 * b.shape.D,
                    vdir,
                    Tissue.CORTEX,
                )
            )
    tips.append(chain[-1] + np.r_[0.0, -bodies["S4"].frame.u] * 5.0)
    return [BoneGroup(parts, cortex_mm=1.2)], tips
