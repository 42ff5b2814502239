"""Image fingerprints for duplicate search (`facequal audit`): an exact hash of the decoded
pixels, a 64-bit DCT perceptual hash and a small normalised grey thumbnail for the pixel check.

* ``exact``: SHA-1 of the decoded RGB array at full resolution and its shape. Two files with the
  same pixels (a copy, a PNG re-save of a JPEG's pixels, other metadata) share it.
* ``phash``: the grey image at 32 x 32, its 2-D DCT, the 8 x 8 lowest frequencies without the
  constant term, each bit "above the median". Re-encoding, resizing and light crops change few
  bits; a different photo changes about half of them.
* ``thumb``: the grey image at :data:`THUMB` x :data:`THUMB`, zero mean and unit norm, so that
  the dot product of two thumbs is their pixel correlation (the stricter check that tells
  consecutive frames of a video apart from re-encoded copies).

Every image is decoded at full resolution once (the exact hash needs every pixel; JPEG draft
mode would give other pixels than a PNG copy of the same image). Functions take a file-system
path and never raise for a bad image: they return None.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIDE = 32
THUMB = 16


@dataclass(frozen=True)
class Fingerprint:
    """What :func:`fingerprint` keeps of one image."""

    exact: str          # hex SHA-1 of the decoded pixels and their shape
    phash: int          # 64-bit perceptual hash
    thumb: np.ndarray   # (THUMB * THUMB,) float32, zero mean, unit norm (or all zero when flat)


@lru_cache(maxsize=4)
def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix of size ``n`` (rows are frequencies)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def phash_of(grey: np.ndarray) -> int:
    """The 64-bit DCT hash of a (HASH_SIDE, HASH_SIDE) grey array."""
    d = dct_matrix(HASH_SIDE)
    coef = d @ grey.astype(np.float64) @ d.T
    low = coef[:8, :8].reshape(-1)[1:]  # 63 coefficients: the constant term says only brightness
    bits = low > np.median(low)
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def thumb_of(grey_image: Image.Image) -> np.ndarray:
    """Zero-mean, unit-norm grey thumbnail (THUMB x THUMB) of a PIL grey image."""
    t = np.asarray(grey_image.resize((THUMB, THUMB), Image.Resampling.BOX), np.float32).reshape(-1)
    t = t - t.mean()
    n = float(np.linalg.norm(t))
    return t / n if n > 1e-6 else np.zeros_like(t)


def fingerprint_image(rgb: Image.Image) -> Fingerprint:
    """The fingerprint of a decoded RGB image."""
    arr = np.asarray(rgb)
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    grey = rgb.convert("L")
    small = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), np.float32)
    return Fingerprint(exact=h.hexdigest(), phash=phash_of(small), thumb=thumb_of(grey))


def fingerprint(path: str) -> Fingerprint | None:
    """The fingerprint of the image file at ``path`` (a file-system path), None when it cannot be
    decoded."""
    from facequal.pipeline.decode import DecodeError, open_image

    try:
        rgb = open_image(path, max_side=None).image
    except (DecodeError, OSError):
        return None
    return fingerprint_image(rgb)


def fingerprint_many(paths: list[str]) -> list[Fingerprint | None]:
    """:func:`fingerprint` of each path (one job of a worker process)."""
    return [fingerprint(p) for p in paths]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit differences between uint64 hashes ``a`` and ``b`` (broadcast)."""
    x = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)
