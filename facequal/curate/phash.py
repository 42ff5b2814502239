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

A JPEG is decoded at the largest DCT reduction that keeps both sides at least
:data:`DECODE_SIDE` (1/4 for a 250 x 250 photo), enough for the hash and the thumbnail; other
images are decoded at full size and box-reduced by the same factor before hashing, which is what
the DCT reduction computes, so a PNG copy of a JPEG hashes like it. The ``exact`` key of a
reduced decode is only a candidate key: files sharing it are decoded again at full size and
compared by :func:`exact_key` (:func:`facequal.curate.audit.audit` does this), so "exact" still
means the same full-resolution pixels. Functions take a file-system path and never raise for a
bad image: they return None.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIDE = 32
THUMB = 16
# JPEGs are decoded at the largest DCT reduction keeping both sides at least this: 1/4 for a
# 250 x 250 photo (63 x 63). At 1/8 (28) they were 12% faster but found 2 fewer of 51 light crops on LFW.
DECODE_SIDE = 56


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
    return int.from_bytes(np.packbits(np.r_[False, bits]).tobytes(), "big")  # the same 63 bits, first highest


def thumb_of(grey_image: Image.Image) -> np.ndarray:
    """Zero-mean, unit-norm grey thumbnail (THUMB x THUMB) of a PIL grey image."""
    t = np.asarray(grey_image.resize((THUMB, THUMB), Image.Resampling.BOX), np.float32).reshape(-1)
    t = t - t.mean()
    n = float(np.linalg.norm(t))
    return t / n if n > 1e-6 else np.zeros_like(t)


def reduction(width: int, height: int) -> int:
    """The DCT reduction (8, 4, 2 or 1) a JPEG of this size is decoded at for its fingerprint:
    the largest keeping both sides at least :data:`DECODE_SIDE` (Pillow's draft rule)."""
    scale = min(width, height) // DECODE_SIDE
    return next(s for s in (8, 4, 2, 1) if scale >= s or s == 1)


def fingerprint_image(rgb: Image.Image, reduce: int = 1) -> Fingerprint:
    """The fingerprint of a decoded RGB image (``exact``: the SHA-1 of these pixels). ``reduce``:
    hash and thumbnail from the image box-reduced by that factor, which is what a JPEG's DCT
    reduction computes (8 x 8 block means at 1/8), so that a PNG copy of a JPEG gets the hash
    and thumbnail of the JPEG's reduced decode."""
    arr = np.asarray(rgb)
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    grey = (rgb.reduce(reduce) if reduce > 1 else rgb).convert("L")
    small = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), np.float32)
    return Fingerprint(exact=h.hexdigest(), phash=phash_of(small), thumb=thumb_of(grey))


def fingerprint(path: str) -> Fingerprint | None:
    """The fingerprint of the image file at ``path`` (a file-system path), None when it cannot be
    decoded. A JPEG is decoded at a reduced scale (see the module's docstring): its ``exact`` key
    then names the reduced pixels and the full size, a candidate for :func:`exact_key`."""
    from facequal.pipeline.decode import DecodeError, open_image

    try:
        dec = open_image(path, max_side=None, min_side=DECODE_SIDE)
    except (DecodeError, OSError):
        return None
    # a full-size decode (PNG, a small JPEG) is hashed as a JPEG of its size would be
    fp = fingerprint_image(dec.image, reduction(dec.image.width, dec.image.height) if dec.scale >= 1.0 else 1)
    if dec.scale < 1.0:  # the key of a reduced decode must never equal a full-size one
        fp = Fingerprint(exact=f"reduced:{dec.width}x{dec.height}:{fp.exact}", phash=fp.phash, thumb=fp.thumb)
    return fp


def exact_key(path: str) -> str | None:
    """SHA-1 of the image's pixels at full resolution and their shape (None: not decodable)."""
    from facequal.pipeline.decode import DecodeError, open_image

    try:
        arr = np.asarray(open_image(path, max_side=None).image)
    except (DecodeError, OSError):
        return None
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def exact_keys_many(paths: list[str]) -> list[str | None]:
    """:func:`exact_key` of each path (one job of a worker process)."""
    return [exact_key(p) for p in paths]


def fingerprint_many(paths: list[str]) -> list[Fingerprint | None]:
    """:func:`fingerprint` of each path (one job of a worker process)."""
    return [fingerprint(p) for p in paths]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit differences between uint64 hashes ``a`` and ``b`` (broadcast)."""
    x = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)
