"""Training samples: one augmented 2-D sagittal patch and its target, drawn from a :class:`TrainingCase`.

The augmentation creates the variety the training scans lack (they are mostly T2 / Dixon-water of healthy
volunteers), so that the network holds on clinical T1, T2 and STIR at 1-5 mm slices:

- slice thickness: 1 mm cases are averaged over 1-5 adjacent slices (partial volume of thick slices);
- contrast: random monotone histogram warps and gamma, contrast inversion (T1-like from T2), and independent
  gains of marrow and disc signal (fatty bright marrow on T1, dark marrow on STIR, dark desiccated discs);
- scanner: smooth multiplicative bias fields, Gaussian / Rician-like noise, in-plane blur;
- geometry: field-of-view crop and padding, rotation, scaling, shift (the patch may show any part of the spine).

Everything is NumPy / SciPy, seeded through the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pipeline.segment.grid import normalise_slices
from pipeline.segment.train.data import BACKGROUND, BODY, BONY, DISC, FRACTURED, IGNORE, TrainingCase


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (probabilities and magnitudes)."""

    patch: int = 160
    body_slice_prob: float = 0.85  # draw a slice holding a body (else any slice)
    max_thick_mm: float = 5.0
    rotate_deg: float = 20.0
    scale: tuple[float, float] = (0.8, 1.25)
    fov_crop_prob: float = 0.3
    invert_prob: float = 0.2
    warp_prob: float = 0.5
    gamma: tuple[float, float] = (0.6, 1.7)
    body_gain: tuple[float, float] = (0.45, 1.8)
    disc_gain: tuple[float, float] = (0.15, 1.3)
    tissue_gain_prob: float = 0.7
    bias_prob: float = 0.7
    bias_amplitude: float = 0.45
    noise_prob: float = 0.7
    noise_sigma: tuple[float, float] = (0.0, 0.08)
    blur_prob: float = 0.25
    # off by default (one run with 0.35 / 3 did not help, see MODEL_CARD.md); with them off the draws are the same
    # as before the option existed
    fracture_prob: float = 0.0  # a case with a fractured body: draw its slice and centre the patch on it
    fracture_weight: float = 1.0  # loss weight of a fractured body's pixels and of those within ...
    fracture_margin_px: int = 2  # ... this many pixels of it (the depressed endplate's disc / background)


def sample_patch(case: TrainingCase, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """One augmented patch: ``(image (P, P) float32 normalised, target (P, P) uint8)``."""
    x, y, _ = sample_weighted_patch(case, rng, cfg)
    return x, y


def sample_weighted_patch(
    case: TrainingCase, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented patch with per-pixel loss weights: ``(image, target, weight (P, P) float32)``.

    The target holds the network's classes (0-3, 255); a fractured body (stored class 4) is class 1, and it and
    the pixels within ``fracture_margin_px`` of it weigh ``fracture_weight``.
    """
    focus = cfg.fracture_prob > 0 and case.fractured_slices.size > 0 and rng.random() < cfg.fracture_prob
    img, tgt = _pick_slice(case, rng, cfg, focus)
    img, tgt = _fov_crop(img, tgt, rng, cfg)
    img = _intensity(img, tgt, rng, cfg)
    img = normalise_slices(img[None])[0]
    x, y = _affine_patch(img, tgt, case.pitch_mm, rng, cfg, focus)
    fractured = y == FRACTURED
    weight = np.ones(y.shape, np.float32)
    if fractured.any():
        margin = cfg.fracture_margin_px
        near = ndi.binary_dilation(fractured, iterations=margin) if margin > 0 else fractured
        weight[near] = cfg.fracture_weight
        y = np.where(fractured, BODY, y).astype(np.uint8)
    return x, y, weight


def _pick_slice(
    case: TrainingCase, rng: np.random.Generator, cfg: AugmentConfig, focus: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    n = case.image.shape[0]
    bodies = case.fractured_slices if focus else case.body_slices
    on_body = bodies.size and (focus or rng.random() < cfg.body_slice_prob)
    s = int(rng.choice(bodies)) if on_body else int(rng.integers(n))
    k_max = max(1, int(cfg.max_thick_mm / max(case.slice_mm, 1e-3)))
    k = int(rng.integers(1, k_max + 1))
    s0 = int(np.clip(s - k // 2, 0, max(0, n - k)))
    img = case.image[s0 : s0 + k].astype(np.float32).mean(axis=0)
    return img, case.target[s].copy()


def _fov_crop(
    img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """A smaller field of view (normalisation then sees only that part, as on a tight clinical FOV)."""
    if rng.random() >= cfg.fov_crop_prob:
        return img, tgt
    r, c = img.shape
    h = int(r * rng.uniform(0.45, 0.9))
    w = int(c * rng.uniform(0.5, 0.9))
    r0 = int(rng.integers(0, r - h + 1))
    c0 = int(rng.integers(0, c - w + 1))
    return img[r0 : r0 + h, c0 : c0 + w], tgt[r0 : r0 + h, c0 : c0 + w]


def _smooth_weight(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return ndi.gaussian_filter(mask.astype(np.float32), sigma)


def _intensity(img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    hi = float(np.percentile(img, 99.5)) or 1.0
    x = np.clip(img / hi, 0.0, 2.0).astype(np.float32)
    if rng.random() < cfg.tissue_gain_prob:
        # marrow and disc signal relative to the surroundings varies with the sequence and with age
        body = _smooth_weight(np.isin(tgt, BONY))
        disc = _smooth_weight(tgt == DISC)
        gb = rng.uniform(*cfg.body_gain)
        gd = rng.uniform(*cfg.disc_gain)
        x = (x * (1.0 + (gb - 1.0) * body) * (1.0 + (gd - 1.0) * disc)).astype(np.float32)
    if rng.random() < cfg.warp_prob:
        knots = np.sort(rng.uniform(0, 1, 4))
        xs = np.concatenate([[0.0], np.linspace(0.2, 0.8, 4), [1.0, 2.0]])
        ys = np.concatenate([[0.0], knots, [1.0, 1.0 + rng.uniform(0.3, 1.0)]])
        x = np.interp(x, xs, ys).astype(np.float32)
    if rng.random() < cfg.invert_prob:
        x = np.clip(1.0 - np.clip(x, 0, 1) ** rng.uniform(0.7, 1.3), 0, 1) * (x > 0.04)
    g = rng.uniform(*cfg.gamma)
    x = np.clip(x, 0, None) ** g
    if rng.random() < cfg.bias_prob:
        x = x * _bias_field(x.shape, rng, cfg.bias_amplitude)
    if rng.random() < cfg.blur_prob:
        x = ndi.gaussian_filter(x, rng.uniform(0.3, 1.0))
    if rng.random() < cfg.noise_prob:
        sigma = rng.uniform(*cfg.noise_sigma)
        n1 = rng.normal(0, sigma, x.shape)
        n2 = rng.normal(0, sigma, x.shape)
        x = np.sqrt((x + n1) ** 2 + n2**2)  # Rician magnitude
    return x.astype(np.float32)


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    coarse = rng.normal(0, 1, (4, 4))
    field = ndi.zoom(coarse, (shape[0] / 4, shape[1] / 4), order=3, mode="nearest")[: shape[0], : shape[1]]
    if field.shape != shape:
        field = np.pad(field, [(0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])], mode="edge")
    field = field / (np.abs(field).max() + 1e-6)
    return np.exp(amplitude * rng.uniform(0.3, 1.0) * field).astype(np.float32)


def _affine_patch(
    img: np.ndarray,
    tgt: np.ndarray,
    pitch_mm: float,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    focus: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate / scale / shift into a ``patch`` x ``patch`` window centred near a body (or anywhere).

    ``focus``: centred near a fractured body when the slice shows one."""
    p = cfg.patch
    fg = np.argwhere(tgt == FRACTURED) if focus else np.empty((0, 2))
    if not fg.size:
        fg = np.argwhere(np.isin(tgt, BONY))
    if fg.size and (focus or rng.random() < 0.85):
        centre = fg[rng.integers(len(fg))].astype(float) + rng.normal(0, 20.0 / pitch_mm, 2)
    else:
        centre = np.array([rng.uniform(0, tgt.shape[0]), rng.uniform(0, tgt.shape[1])])
    theta = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    s = rng.uniform(*cfg.scale)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / s
    offset = centre - rot @ np.array([p / 2.0, p / 2.0])
    out_img = ndi.affine_transform(img, rot, offset, (p, p), order=1, mode="constant", cval=0.0)
    out_tgt = ndi.affine_transform(tgt, rot, offset, (p, p), order=0, mode="constant", cval=BACKGROUND)
    return out_img.astype(np.float32), out_tgt.astype(np.uint8)


__all__ = ["AugmentConfig", "IGNORE", "sample_patch", "sample_weighted_patch"]
