"""Synthetic degradations of a canonical uint8 RGB face crop (numpy / Pillow only, seeded).

The cache builder degrades the *canonical* crop (:mod:`facequal.train.framing`), then cuts the
teacher's and the student's inputs from the result, so that the teacher's labels describe what
the student sees. Labels always come from the teacher, never from the degradation's strength.

Operations (each takes and returns an ``(H, W, 3)`` uint8 array):
blur, down-and-up scaling, noise, JPEG, under / over exposure, occlusion patches inside the
face; plus :func:`border_bands`, the pad/crop jitter applied to *every* source alike so that
CelebA's edge-replicate streaks (and LFW's black wedges) stop telling the sources apart.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[float, float, float, float]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def _check(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    return img


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels."""
    img = _check(img)
    if sigma <= 0:
        return img.copy()
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=float(sigma))))


def rescale(img: np.ndarray, factor: float, down: str = "bilinear", up: str = "bilinear") -> np.ndarray:
    """Downscale by ``factor`` (< 1) and back up to the original size: lost resolution."""
    img = _check(img)
    h, w = img.shape[:2]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    im = Image.fromarray(img).resize(small, _RESAMPLE[down])
    return np.asarray(im.resize((w, h), _RESAMPLE[up]))


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, colour: bool = True) -> np.ndarray:
    """Additive Gaussian noise of ``sigma`` grey levels (per channel, or luminance-only)."""
    img = _check(img)
    shape = img.shape if colour else img.shape[:2] + (1,)
    noise = rng.normal(0.0, sigma, size=shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (1-95)."""
    img = _check(img)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def exposure(img: np.ndarray, gain: float, gamma: float = 1.0) -> np.ndarray:
    """``255 * clip(gain * (x / 255) ** gamma)``: gain < 1 under-, gain > 1 over-exposes (clipping)."""
    img = _check(img)
    x = (img.astype(np.float64) / 255.0) ** gamma * gain
    return np.clip(x * 255.0, 0, 255).round().astype(np.uint8)


def occlude(img: np.ndarray, box: Box, fill: str, rng: np.random.Generator) -> np.ndarray:
    """Paint the rectangle ``box`` (x0, y0, x1, y1) with ``fill``: solid, grey, black or noise."""
    img = _check(img).copy()
    h, w = img.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if x1 <= x0 or y1 <= y0:
        return img
    if fill == "solid":
        img[y0:y1, x0:x1] = rng.integers(0, 256, size=3, dtype=np.uint8)
    elif fill == "grey":
        img[y0:y1, x0:x1] = np.uint8(rng.integers(60, 200))
    elif fill == "black":
        img[y0:y1, x0:x1] = 0
    elif fill == "noise":
        img[y0:y1, x0:x1] = rng.integers(0, 256, size=(y1 - y0, x1 - x0, 3), dtype=np.uint8)
    else:
        raise ValueError(f"unknown occlusion fill {fill!r}")
    return img


def occlusion_box(face: Box, rng: np.random.Generator, size: tuple[float, float] = (0.25, 0.6)) -> Box:
    """A random rectangle centred inside the ``face`` box, sides a ``size`` fraction of its sides."""
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    w = rng.uniform(*size) * fw
    h = rng.uniform(*size) * fh
    cx = rng.uniform(fx0, fx1)
    cy = rng.uniform(fy0, fy1)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def border_bands(img: np.ndarray, rng: np.random.Generator, window: Box | None = None,
                 p_side: float = 0.3, max_frac: float = 0.2,
                 modes: Sequence[str] = ("edge", "black")) -> tuple[np.ndarray, dict[str, Any]]:
    """Random pad/crop jitter: on each side (with probability ``p_side``) cut a band and pad it back.

    The band's width is up to ``max_frac`` of ``window`` (default: the whole image), measured
    inward from the window's edge; everything between the band's inner edge and the image
    border is replaced, by edge replication of the inner edge (``"edge"``, CelebA's streaks) or
    black (``"black"``, LFW deep-funneled's wedges, out-of-image warps). Applied alike to every
    source, padding no longer identifies one. Returns the image and what was done.
    """
    img = _check(img).copy()
    h, w = img.shape[:2]
    x0, y0, x1, y1 = window if window is not None else (0.0, 0.0, float(w), float(h))
    done: dict[str, Any] = {}
    mode = str(modes[int(rng.integers(len(modes)))])
    for side in ("left", "right", "top", "bottom"):
        if rng.random() >= p_side:
            continue
        horizontal = side in ("left", "right")
        extent = (x1 - x0) if horizontal else (y1 - y0)
        band = rng.uniform(0.02, max_frac) * extent
        if side == "left":
            c = int(np.clip(round(x0 + band), 1, w - 1))
            img[:, :c] = img[:, c:c + 1] if mode == "edge" else 0
        elif side == "right":
            c = int(np.clip(round(x1 - band), 1, w - 1))
            img[:, c:] = img[:, c - 1:c] if mode == "edge" else 0
        elif side == "top":
            c = int(np.clip(round(y0 + band), 1, h - 1))
            img[:c] = img[c:c + 1] if mode == "edge" else 0
        else:
            c = int(np.clip(round(y1 - band), 1, h - 1))
            img[c:] = img[c - 1:c] if mode == "edge" else 0
        done[side] = c
    if done:
        done["mode"] = mode
    return img, done


@dataclass(frozen=True)
class DegradeConfig:
    """How often and how strongly :func:`random_degradation` degrades (canonical-crop pixels).

    The ranges are for a canonical crop at the teacher's scale (dlib: about 54 px between the
    eyes); ``n_ops`` gives the probabilities of applying 1, 2, 3, ... operations.
    """

    ops: dict[str, float] = field(default_factory=lambda: {
        "blur": 1.0, "rescale": 1.0, "noise": 0.8, "jpeg": 0.8, "exposure": 0.8, "occlusion": 0.8})
    n_ops: tuple[float, ...] = (0.6, 0.3, 0.1)
    blur_sigma: tuple[float, float] = (1.0, 5.0)
    rescale_factor: tuple[float, float] = (0.1, 0.5)
    # Reaching the strengths where the teacher fails (issue 15: very heavy JPEG, heavy noise and
    # deep darkness were scored far too high or too low when training stopped at q 5 / sigma 30).
    noise_sigma: tuple[float, float] = (5.0, 50.0)
    jpeg_quality: tuple[int, int] = (2, 35)
    under_gain: tuple[float, float] = (0.06, 0.5)
    over_gain: tuple[float, float] = (1.7, 3.5)
    occlusion_size: tuple[float, float] = (0.25, 0.6)
    occlusion_fills: tuple[str, ...] = ("solid", "grey", "black", "noise")


# Physical order: the scene (occlusion, light), the optics (blur), the sensor (resolution,
# noise), then compression.
_ORDER = ("occlusion", "exposure", "blur", "rescale", "noise", "jpeg")


def random_degradation(img: np.ndarray, rng: np.random.Generator, face: Box,
                       config: DegradeConfig | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply 1 to ``len(config.n_ops)`` random operations; returns the image and their parameters.

    ``face`` is the inner-face box (canonical pixels) inside which occlusions are centred.
    """
    cfg = config or DegradeConfig()
    img = _check(img)
    names = [n for n in _ORDER if cfg.ops.get(n, 0) > 0]
    weights = np.array([cfg.ops[n] for n in names], dtype=np.float64)
    probs = np.asarray(cfg.n_ops, dtype=np.float64)
    n = min(len(names), 1 + int(rng.choice(len(probs), p=probs / probs.sum())))
    picked = set(rng.choice(len(names), size=n, replace=False, p=weights / weights.sum()).tolist())
    applied: list[dict[str, Any]] = []
    out = img
    for idx, name in enumerate(names):
        if idx not in picked:
            continue
        if name == "occlusion":
            box = occlusion_box(face, rng, cfg.occlusion_size)
            fill = str(cfg.occlusion_fills[int(rng.integers(len(cfg.occlusion_fills)))])
            out = occlude(out, box, fill, rng)
            applied.append({"op": name, "box": [round(v, 1) for v in box], "fill": fill})
        elif name == "exposure":
            if rng.random() < 0.5:
                gain, gamma = rng.uniform(*cfg.under_gain), rng.uniform(1.0, 2.0)
            else:
                gain, gamma = rng.uniform(*cfg.over_gain), rng.uniform(0.5, 1.0)
            out = exposure(out, gain, gamma)
            applied.append({"op": name, "gain": round(float(gain), 3), "gamma": round(float(gamma), 3)})
        elif name == "blur":
            sigma = float(rng.uniform(*cfg.blur_sigma))
            out = gaussian_blur(out, sigma)
            applied.append({"op": name, "sigma": round(sigma, 3)})
        elif name == "rescale":
            factor = float(np.exp(rng.uniform(np.log(cfg.rescale_factor[0]), np.log(cfg.rescale_factor[1]))))
            down = str(rng.choice(["box", "bilinear", "nearest"]))
            up = str(rng.choice(["bilinear", "bicubic", "nearest"]))
            out = rescale(out, factor, down, up)
            applied.append({"op": name, "factor": round(factor, 4), "down": down, "up": up})
        elif name == "noise":
            sigma = float(rng.uniform(*cfg.noise_sigma))
            colour = bool(rng.random() < 0.7)
            out = add_noise(out, sigma, rng, colour=colour)
            applied.append({"op": name, "sigma": round(sigma, 3), "colour": colour})
        elif name == "jpeg":
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            out = jpeg(out, q)
            applied.append({"op": name, "quality": q})
    return out, applied
