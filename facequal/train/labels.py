"""The teacher's score distributions and the label parameters chosen from them (numpy only).

dlib's cosines are compressed (same person mostly 0.90-0.98, different people 0.74-0.91), so
the paper's m = 0.4, s = 16 (tuned for ArcFace) do not carry over. :func:`choose_label_params`
sets

- ``m`` at the teacher's threshold for a false-match rate (default 1e-3): a pair is labelled
  good exactly when the teacher would accept it at its operating point;
- ``s = 2 ln 9 / (q90 - q10)`` of the same-person cosines: the central 80% of genuine cosines
  spans a logit range of 2 ln 9 (labels from about 0.1 to 0.9 if centred on m), so soft labels
  spread over (0, 1) instead of being flat (paper's s) or nearly hard.

It also reports the share of same-person pairs labelled below 0.5 (to be logged).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _unit(emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def genuine_pairs(identity: np.ndarray, image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (a, b), a < b, of every same-identity pair of different photos.

    Pairs come identity by identity (in sorted identity order); ``image`` ids mark the variants of
    one photo, which never pair with each other.
    """
    identity = np.asarray(identity).reshape(-1)
    image = np.arange(identity.size) if image is None else np.asarray(image).reshape(-1)
    out_a, out_b = [], []
    for ident in np.unique(identity):
        rows = np.flatnonzero(identity == ident)
        if rows.size < 2:
            continue
        i, j = np.triu_indices(rows.size, 1)
        keep = image[rows[i]] != image[rows[j]]
        out_a.append(rows[i[keep]])
        out_b.append(rows[j[keep]])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def genuine_cosines(emb: np.ndarray, identity: np.ndarray, image: np.ndarray | None = None,
                    max_pairs: int = 2_000_000, seed: int = 0) -> np.ndarray:
    """Cosines of all same-identity pairs of different photos (a random subset beyond ``max_pairs``)."""
    e = _unit(emb)
    a, b = genuine_pairs(identity, image)
    cos = np.einsum("nd,nd->n", e[a], e[b])
    if cos.size > max_pairs:
        cos = np.random.default_rng(seed).choice(cos, size=max_pairs, replace=False)
    return cos


def impostor_cosines(emb: np.ndarray, identity: np.ndarray, n_pairs: int = 1_000_000,
                     seed: int = 0) -> np.ndarray:
    """Cosines of ``n_pairs`` random pairs of different identities (drawn with replacement)."""
    e = _unit(emb)
    identity = np.asarray(identity).reshape(-1)
    if np.unique(identity).size < 2:
        raise ValueError("need at least two identities for impostor pairs")
    rng = np.random.default_rng(seed)
    out = []
    need = n_pairs
    while need > 0:
        k = max(need * 2, 1024)
        i = rng.integers(identity.size, size=k)
        j = rng.integers(identity.size, size=k)
        ok = identity[i] != identity[j]
        i, j = i[ok][:need], j[ok][:need]
        out.append(np.einsum("nd,nd->n", e[i], e[j]))
        need -= i.size
    return np.concatenate(out)


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """The cosine threshold above which a fraction ``fmr`` of impostor scores lies."""
    impostor = np.asarray(impostor, dtype=np.float64)
    if impostor.size == 0:
        raise ValueError("no impostor scores")
    return float(np.quantile(impostor, 1.0 - fmr, method="higher"))


def soft_labels(cos: np.ndarray, m: float, s: float) -> np.ndarray:
    """Eq. 2 in numpy: ``1 / (1 + exp(-s (cos - m)))``."""
    return 1.0 / (1.0 + np.exp(-s * (np.asarray(cos, dtype=np.float64) - m)))


def choose_label_params(genuine: np.ndarray, impostor: np.ndarray, fmr: float = 1e-3,
                        spread: tuple[float, float] = (0.1, 0.9)) -> dict[str, Any]:
    """``m`` at the teacher's FMR threshold and ``s`` spreading the genuine cosines (module docstring).

    ``spread`` are the genuine-cosine quantiles mapped onto a logit range of ``2 ln 9``. Returns
    ``m``, ``s``, the genuine quantiles used, and ``share_below_half`` (soft and hard).
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    if genuine.size < 2:
        raise ValueError("need same-person cosines to choose the label scale")
    m = threshold_at_fmr(impostor, fmr)
    lo, hi = np.quantile(genuine, spread)
    s = 2.0 * math.log(9.0) / max(float(hi - lo), 1e-6)
    return {
        "m": m,
        "s": s,
        "fmr": fmr,
        "genuine_quantiles": {str(spread[0]): float(lo), "0.5": float(np.median(genuine)),
                              str(spread[1]): float(hi)},
        "share_below_half_soft": float(np.mean(soft_labels(genuine, m, s) < 0.5)),
        "share_below_half_hard": float(np.mean(genuine <= m)),
        "n_genuine": int(genuine.size),
        "n_impostor": int(np.asarray(impostor).size),
    }


def cosine_range(genuine: np.ndarray, quantiles: tuple[float, float] = (0.01, 0.99)) -> tuple[float, float]:
    """The teacher's observed same-person range ``[lo, hi]`` used to rescale regression targets."""
    lo, hi = np.quantile(np.asarray(genuine, dtype=np.float64), quantiles)
    if not hi > lo:
        hi = lo + 1e-3
    return float(lo), float(hi)
