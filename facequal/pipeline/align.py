"""Face alignment: a least-squares similarity fit from landmarks to a template, and the warp.

Coordinates follow the convention of the detector and of the published templates: pixel
(i, j) has its centre at (i, j). Pillow's own transform puts pixel centres at +0.5; the
conversion happens in one place, :func:`warp_affine`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from facequal.contract import Contract

# Warp at most this much larger than the target before downsampling (antialiasing).
_MAX_SUPERSAMPLE = 4


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    ``src`` and ``dst`` are (K, 2) arrays, K >= 2. Returns a 2x3 matrix ``M`` with
    ``dst ~= src @ M[:, :2].T + M[:, 2]``. In complex numbers a similarity is ``z -> a z + b``,
    so the fit is one complex least-squares ratio on centred points: the same answer as
    Umeyama's SVD form without reflections, at a fraction of its cost (it runs once per face).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    mu_s, mu_d = zs.mean(), zd.mean()
    zs = zs - mu_s
    var_s = float((zs.real * zs.real + zs.imag * zs.imag).sum())
    if var_s <= 1e-12 * len(zs):
        raise ValueError("source points are degenerate (all equal)")
    a = complex((np.conj(zs) * (zd - mu_d)).sum()) / var_s
    b = mu_d - a * mu_s
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (K, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:, :2].T + m[:, 2]


def invert_transform(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -a @ m[:, 2:3]])


def transform_scale(m: np.ndarray) -> float:
    """The uniform scale factor of a similarity matrix (output pixels per input pixel)."""
    return float(math.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_affine(image: Image.Image, m: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Warp ``image`` by the 2x3 matrix ``m`` (input -> output coordinates) to ``size`` (w, h).

    Bilinear sampling; when ``m`` shrinks the face by more than 2x the warp runs at an integer
    multiple of ``size`` and is box-downsampled, so that a large face is antialiased.
    Outside the image the canvas is black.
    """
    w, h = size
    scale = transform_scale(m)
    k = 1
    if scale < 0.5:
        k = int(min(_MAX_SUPERSAMPLE, math.floor(1.0 / scale)))
    if k > 1:
        # Output pixel u of the reduced image averages big pixels k*u .. k*u+k-1: centre k*u+(k-1)/2.
        m = k * m
        m[:, 2] += (k - 1) / 2.0
    inv = invert_transform(m)
    # Pillow samples output pixel centre X = u + 0.5 at input Pillow coordinate; convert both ends.
    a, b, c = inv[0]
    d, e, f = inv[1]
    c_p = c - 0.5 * (a + b) + 0.5
    f_p = f - 0.5 * (d + e) + 0.5
    out = image.transform((w * k, h * k), Image.Transform.AFFINE, (a, b, c_p, d, e, f_p),
                          resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    if k > 1:
        out = out.reduce(k)
    return out


def resize_bilinear_noaa(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) uint8 array with plain bilinear interpolation and no antialiasing.

    Half-pixel centres, edge clamping: the behaviour of ``cv2.resize(..., INTER_LINEAR)``,
    which the reference models were trained with. Returns float32 values.
    """
    h_in, w_in = arr.shape[:2]
    w_out, h_out = size

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        x0 = np.floor(x).astype(np.int64)
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, (x - x0).astype(np.float32)

    y0, y1, wy = axis(h_in, h_out)
    x0, x1, wx = axis(w_in, w_out)
    a = arr.astype(np.float32)
    top = a[y0][:, x0] * (1 - wx)[None, :, None] + a[y0][:, x1] * wx[None, :, None]
    bot = a[y1][:, x0] * (1 - wx)[None, :, None] + a[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def align_face(image: Image.Image, landmarks: np.ndarray, contract: Contract) -> np.ndarray:
    """Cut the face at ``landmarks`` (5 x 2 detector points) out of ``image`` as the contract says.

    Returns an (H, W, 3) uint8 RGB crop of ``contract.crop_size`` (before colour order,
    normalisation and layout, which :func:`facequal.contract.to_tensor` applies).
    """
    pts = contract.select_landmarks(landmarks)
    m = similarity_transform(pts, contract.template_array())
    warped = warp_affine(image, m, tuple(contract.warp_size))
    if contract.resize == "none":
        return np.asarray(warped, dtype=np.uint8)
    if contract.resize == "bilinear":
        return np.asarray(warped.resize(tuple(contract.crop_size), Image.Resampling.BILINEAR), dtype=np.uint8)
    out = resize_bilinear_noaa(np.asarray(warped), tuple(contract.crop_size))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def alignment_matrix(landmarks: np.ndarray, contract: Contract) -> np.ndarray:
    """The 2x3 matrix from image coordinates to ``contract.crop_size`` coordinates."""
    m = similarity_transform(contract.select_landmarks(landmarks), contract.template_array())
    if tuple(contract.warp_size) != tuple(contract.crop_size):
        sx = contract.crop_size[0] / contract.warp_size[0]
        sy = contract.crop_size[1] / contract.warp_size[1]
        # half-pixel-centre resize: x' = (x + 0.5) * s - 0.5
        m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]) @ np.vstack([m, [0, 0, 1]])
    return m
