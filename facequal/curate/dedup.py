"""Exact and near-duplicate images from their fingerprints (:mod:`facequal.curate.phash`).

Rule (what counts as a duplicate):

* **exact**: the same decoded pixels (same SHA-1 of the RGB array);
* **near**: a candidate pair whose perceptual hashes differ in at most ``max_hamming`` bits
  *and* whose 16 x 16 grey thumbnails correlate at least ``min_corr``. Re-encoding, resizing
  and light crops keep the correlation near 1; two different photos of one person taken
  moments apart (consecutive video frames, press photos of one event) move the head, the
  expression or the background enough to fall below it. Frames that are truly identical to
  the eye are reported as duplicates: for training they are.

* **near, cropped**: a light crop moves the whole picture, so the thumbnails no longer line up
  (a 5 % crop keeps a correlation of only about 0.85-0.96). For those pairs the face landmarks
  give the geometry: the similarity transform that maps one face's five points onto the
  other's is, for a true crop or resize, the transform between the two pictures. The second
  image is warped into the first one's frame with it and the two grey images (64 x 64) must
  correlate at least ``min_reg_corr`` over an overlap of at least ``MIN_OVERLAP`` of the first.
  Consecutive frames and press photos of one event fail here: the face is aligned, but the
  background, the shoulders and the expression are not where the transform puts them.

Candidates are never all pairs: images whose hashes agree on one of four 16-bit bands
(pigeonhole: every pair within 3 bits is found, most pairs within ~10), plus any pairs the
caller adds (``audit`` adds each face's two nearest faces of its own identity by embedding,
which finds the crops the hash misses). Buckets are grouped with numpy sorts, so the work grows
with the number of images times the bucket size, not with its square.

In each group of duplicates the first image (input order) is the original; the others point at
it, so the answer does not depend on which pair was found first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_HAMMING = 12
MIN_CORR = 0.97
REG_SIDE = 64          # side of the grey images compared after registration
MIN_REG_CORR = 0.92    # registered crops: 5th percentile ~0.94; other photos of one person: at most ~0.86
MIN_OVERLAP = 0.7      # share of the first image the warped second one must cover
REG_MAX_HAMMING = 20   # hash candidates worth a registered check (5 % crops: up to ~20 bits)
BANDS = 4
REG_CACHE = 8  # decoded images kept by registered_many (full-size grey: ~12 MB for 12 MP)
MAX_BUCKET = 256  # a bucket larger than this (flat or blank images) is checked in windows


@dataclass
class Duplicates:
    """Per image: index of its original (-1: none), kind ("exact"/"near"/None), group id (-1: none)."""

    original: np.ndarray
    kind: list[str | None]
    group: np.ndarray


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def band_candidates(phash: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs ``i < j`` that share a 16-bit band of their hash."""
    idx = np.flatnonzero(valid)
    out = []
    for b in range(BANDS):
        key = (phash[idx] >> np.uint64(16 * b)) & np.uint64(0xFFFF)
        order = np.argsort(key, kind="stable")
        k = key[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        ends = np.r_[starts[1:], len(k)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            members = idx[order[s:e]]
            for w in range(0, len(members), MAX_BUCKET):
                m = members[w:w + 2 * MAX_BUCKET]  # overlapping windows keep neighbours together
                a, c = np.triu_indices(len(m), 1)
                out.append(np.stack([m[a], m[c]], axis=1))
    if not out:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(out)
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0)


def _warp_into(b: Image.Image, m: np.ndarray, size_a: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``b`` sampled on a REG_SIDE x REG_SIDE grid over an image of ``size_a`` pixels, ``m``
    mapping that image's pixels to ``b``'s: the grey values and which of them fall inside ``b``."""
    sx, sy = size_a[0] / REG_SIDE, size_a[1] / REG_SIDE
    # b is first shrunk (box filter) so that the warp samples about one pixel per output pixel:
    # point-sampling a large image would alias and lower the correlation of true copies
    k = max(1.0, float(np.sqrt(abs(np.linalg.det(m[:, :2])))) * max(sx, sy))
    size_b = (max(1, round(b.size[0] / k)), max(1, round(b.size[1] / k)))
    f = np.diag([size_b[0] / b.size[0], size_b[1] / b.size[1]])
    small = b.resize(size_b, Image.Resampling.BOX) if size_b != b.size else b
    m = np.hstack([f @ m[:, :2], (f @ (m[:, 2] + 0.5) - 0.5)[:, None]])  # into the shrunk pixels
    # output pixel (u, v) -> a's pixel ((u + .5) sx - .5, (v + .5) sy - .5) -> b's pixel by m
    lin = m[:, :2] @ np.diag([sx, sy])
    off = m[:, :2] @ np.array([0.5 * sx - 0.5, 0.5 * sy - 0.5]) + m[:, 2] + 0.5  # PIL samples at centres
    data = (lin[0, 0], lin[0, 1], off[0], lin[1, 0], lin[1, 1], off[1])
    vals = np.asarray(small.transform((REG_SIDE, REG_SIDE), Image.Transform.AFFINE, data,
                                      resample=Image.Resampling.BILINEAR), np.float64)
    inside = np.asarray(Image.new("L", small.size, 255).transform(
        (REG_SIDE, REG_SIDE), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST)) == 255
    return vals, inside


def registered_correlation(a: Image.Image, lm_a: np.ndarray, b: Image.Image, lm_b: np.ndarray) -> float:
    """Correlation of grey image ``a`` with grey image ``b`` warped into ``a``'s frame by the
    similarity that maps ``a``'s face landmarks (5 x 2 pixels) onto ``b``'s, over their overlap;
    NaN when the overlap covers less than :data:`MIN_OVERLAP` of ``a`` or the fit is degenerate."""
    la, lb = np.asarray(lm_a, np.float64).reshape(5, 2), np.asarray(lm_b, np.float64).reshape(5, 2)
    # both directions, the higher: warping the larger picture into a crop of it has been seen to
    # lose up to ~0.2 of correlation at the crop's far edges, the other direction does not
    both = [_registered_one(a, la, b, lb), _registered_one(b, lb, a, la)]
    return float(np.nanmax(both)) if np.isfinite(both).any() else float("nan")


def _registered_one(a: Image.Image, lm_a: np.ndarray, b: Image.Image, lm_b: np.ndarray) -> float:
    """:func:`registered_correlation` in one direction (``b`` warped into ``a``'s frame)."""
    from facequal.pipeline.align import similarity_transform

    try:
        m = similarity_transform(lm_a, lm_b)
    except ValueError:
        return float("nan")
    warped, inside = _warp_into(b, m, a.size)
    if inside.mean() < MIN_OVERLAP:
        return float("nan")
    ref, _ = _warp_into(a, np.array([[1.0, 0, 0], [0, 1.0, 0]]), a.size)  # the same resampling as b's
    x, y = ref[inside] - ref[inside].mean(), warped[inside] - warped[inside].mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-9 else float("nan")


RegItem = tuple[str, "np.ndarray", str, "np.ndarray"]  # (path a, landmarks a, path b, landmarks b)


def registered_many(items: list[RegItem]) -> list[float]:
    """:func:`registered_correlation` of each pair of image files (file-system paths); NaN for a
    pair whose images cannot be decoded. The caller sorts the pairs by their first image, so a
    few recently decoded images are kept (:data:`REG_CACHE`): memory stays bounded even for
    chunks of large photos, and an image met again in a row is not decoded again."""
    from collections import OrderedDict

    from facequal.pipeline.decode import DecodeError, open_image

    cache: OrderedDict[str, Image.Image | None] = OrderedDict()

    def grey(path: str) -> Image.Image | None:
        if path in cache:
            cache.move_to_end(path)
            return cache[path]
        try:
            im = open_image(path, max_side=None).image.convert("L")
        except (DecodeError, OSError):
            im = None
        cache[path] = im
        if len(cache) > REG_CACHE:
            cache.popitem(last=False)
        return im

    out = []
    for pa_, la, pb, lb in items:
        a, b = grey(pa_), grey(pb)
        out.append(registered_correlation(a, la, b, lb) if a is not None and b is not None else float("nan"))
    return out


def find_duplicates(
    exact: list[str | None],
    phash: np.ndarray,
    thumbs: np.ndarray,
    *,
    extra_pairs: np.ndarray | None = None,
    register: Callable[[np.ndarray], np.ndarray] | None = None,
    max_hamming: int = MAX_HAMMING,
    min_corr: float = MIN_CORR,
    min_reg_corr: float = MIN_REG_CORR,
) -> Duplicates:
    """Group images into duplicates. ``exact`` (hex hashes, None: not decoded), ``phash``
    (uint64), ``thumbs`` ((N, T) unit-norm grey thumbnails), ``extra_pairs`` (more candidate
    index pairs), ``register`` (image index pairs (P, 2) -> their registered correlations, NaN
    where there is none: the crop check, given only the candidates the plain check rejected that
    are ``extra_pairs`` or within :data:`REG_MAX_HAMMING` bits). Returns, per image, its
    original's index and the kind of the link."""
    from facequal.curate.phash import hamming

    n = len(exact)
    valid = np.array([e is not None for e in exact], dtype=bool)
    parent = np.arange(n)

    def union(i: int, j: int) -> None:
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the root is the earliest image

    first: dict[str, int] = {}
    for i, e in enumerate(exact):
        if e is not None:
            if e in first:
                union(first[e], i)
            else:
                first[e] = i
    pairs = band_candidates(phash, valid)
    is_extra = np.zeros(len(pairs), bool)
    if extra_pairs is not None and len(extra_pairs):
        ep = np.sort(np.asarray(extra_pairs, np.int64).reshape(-1, 2), axis=1)
        ep = ep[valid[ep[:, 0]] & valid[ep[:, 1]] & (ep[:, 0] != ep[:, 1])]
        if len(ep):
            both = np.concatenate([pairs, ep])
            pairs, inv = np.unique(both, axis=0, return_inverse=True)
            is_extra = np.zeros(len(pairs), bool)
            is_extra[inv.reshape(-1)[len(both) - len(ep):]] = True
    retry = []
    for start in range(0, len(pairs), 1 << 16):  # blocks bound the memory of the checks
        p, ex = pairs[start:start + (1 << 16)], is_extra[start:start + (1 << 16)]
        ham = hamming(phash[p[:, 0]], phash[p[:, 1]])
        corr = np.einsum("ij,ij->i", thumbs[p[:, 0]], thumbs[p[:, 1]])
        plain = (ham <= max_hamming) & (corr >= min_corr)
        for i, j in p[plain]:
            union(int(i), int(j))
        retry.append(p[~plain & (ex | (ham <= REG_MAX_HAMMING))])
    if register is not None and retry:
        rp = np.concatenate(retry)
        rp = rp[[_find(parent, int(i)) != _find(parent, int(j)) for i, j in rp]] if len(rp) else rp
        if len(rp):
            rc = np.asarray(register(rp), np.float64)
            for i, j in rp[np.nan_to_num(rc, nan=-1.0) >= min_reg_corr]:
                union(int(i), int(j))
    roots = np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
    original = np.where(roots != np.arange(n), roots, -1)
    in_group = np.zeros(n, bool)
    in_group[roots[original >= 0]] = True
    in_group |= original >= 0
    group = np.full(n, -1, np.int64)
    ids: dict[int, int] = {}
    for i in np.flatnonzero(in_group):
        group[i] = ids.setdefault(int(roots[i]), len(ids))
    kind: list[str | None] = [None] * n
    for i in np.flatnonzero(original >= 0):
        kind[i] = "exact" if exact[i] == exact[int(original[i])] else "near"
    return Duplicates(original=original, kind=kind, group=group)
