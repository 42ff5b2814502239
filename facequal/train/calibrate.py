"""Calibration: the monotone map from the network's raw output to a probability that means something.

``quality`` estimates the probability that the face, compared with a good-quality photo of the
same person, is accepted by the teacher at its FMR 1e-3 threshold. On validation people:

1. :func:`acceptance_targets`: for each face, the outcome (0/1) of that comparison, the
   reference being the other photo of the person that the teacher finds most typical (highest
   mean cosine to the person's other photos) -- a teacher-side notion of "good quality photo",
   independent of the model being calibrated;
2. :func:`fit_calibration`: isotonic regression of the outcomes on the raw output
   (pool-adjacent-violators), lightly smoothed (each block shrunk towards the overall rate by
   ``prior`` pseudo-observations, at most ``max_knots`` knots at the blocks' mean raw outputs,
   linear in between), stored as the x / y lists of :attr:`facequal.contract.Contract.calibration`;
3. :func:`reliability_table`: predicted vs observed by bins, for the model card.

Ranking is unchanged by the map (it is non-decreasing). Numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pava(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit of ``y`` (in the given order), weights ``w``."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    if y.size != w.size:
        raise ValueError("y and w differ in length")
    means: list[float] = []
    weights: list[float] = []
    counts: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        means.append(float(yi))
        weights.append(float(wi))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, c2 = means.pop(), weights.pop(), counts.pop()
            m1, w1 = means[-1], weights[-1]
            wt = w1 + w2
            means[-1] = (m1 * w1 + m2 * w2) / wt if wt > 0 else (m1 + m2) / 2
            weights[-1] = wt
            counts[-1] += c2
    return np.repeat(np.asarray(means), counts)


def _blocks(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isotonic blocks of (x sorted): weighted mean x, fitted y, total weight per block."""
    fit = pava(y, w)
    cuts = np.flatnonzero(np.diff(fit) != 0) + 1
    starts = np.concatenate([[0], cuts])
    wsum = np.add.reduceat(w, starts)
    bx = np.add.reduceat(x * w, starts) / wsum
    by = fit[starts]
    return bx, by, wsum


def _merge(bx: np.ndarray, by: np.ndarray, bw: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge adjacent blocks into at most ``k`` groups of about equal weight (keeps monotonicity)."""
    if bx.size <= k:
        return bx, by, bw
    edges = np.cumsum(bw) / bw.sum()
    group = np.minimum((edges * k - 1e-9).astype(np.int64), k - 1)
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], group])) != 0)
    wsum = np.add.reduceat(bw, starts)
    return (np.add.reduceat(bx * bw, starts) / wsum, np.add.reduceat(by * bw, starts) / wsum, wsum)


def fit_calibration(raw: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, *,
                    max_knots: int = 32, prior: float = 2.0) -> dict[str, list[float]]:
    """Fit the calibration map; returns ``{"x": [...], "y": [...]}`` (x increasing, y non-decreasing).

    ``raw``: the network's outputs; ``target``: outcomes in [0, 1]. ``prior`` pseudo-observations
    at the overall rate shrink small blocks (the ends of an isotonic fit are often 0 or 1 on a
    handful of faces); ``max_knots`` bounds the size of the stored map.
    """
    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    w = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    ok = np.isfinite(raw) & np.isfinite(target) & (w > 0)
    raw, target, w = raw[ok], target[ok], w[ok]
    if raw.size == 0:
        raise ValueError("no finite (raw, target) pairs to calibrate on")
    order = np.argsort(raw, kind="stable")
    raw, target, w = raw[order], target[order], w[order]
    # equal raw values form one point (else PAVA may split a tie)
    uniq, starts = np.unique(raw, return_index=True)
    ws = np.add.reduceat(w, starts)
    ys = np.add.reduceat(target * w, starts) / ws
    bx, by, bw = _blocks(uniq, ys, ws)
    rate = float(np.sum(target * w) / np.sum(w))
    by = (by * bw + prior * rate) / (bw + prior)
    by = pava(by, bw)  # shrinkage keeps order, this only guards against rounding
    bx, by, bw = _merge(bx, by, bw, max_knots)
    by = np.maximum.accumulate(np.clip(by, 0.0, 1.0))
    if bx.size == 1:
        lo, hi = float(raw[0]), float(raw[-1])
        if hi <= lo:
            lo, hi = lo - 1e-6, lo + 1e-6
        return {"x": [lo, hi], "y": [float(by[0]), float(by[0])]}
    return {"x": [float(v) for v in bx], "y": [float(v) for v in by]}


def apply_calibration(raw: np.ndarray, calibration: dict[str, list[float]] | None) -> np.ndarray:
    """Piecewise-linear map through the knots, clamped at the ends (as Contract.calibrate)."""
    raw = np.asarray(raw, dtype=np.float64)
    if calibration is None:
        return raw
    return np.interp(raw, calibration["x"], calibration["y"])


def acceptance_targets(emb: np.ndarray, identity: np.ndarray, threshold: float,
                       image: np.ndarray | None = None,
                       reference_score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each face: is it accepted (cosine >= threshold) against a good photo of the same person?

    The reference of face i is, among the person's other photos (other ``image`` ids), the one
    with the highest ``reference_score`` (default: the teacher's typicality, each photo's mean
    cosine to the person's other photos). Returns ``(target, valid)``: ``valid`` is False for
    faces whose person has no other photo.
    """
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    identity = np.asarray(identity).reshape(-1)
    image = np.arange(identity.size) if image is None else np.asarray(image).reshape(-1)
    target = np.zeros(identity.size)
    valid = np.zeros(identity.size, dtype=bool)
    for ident in np.unique(identity):
        rows = np.flatnonzero(identity == ident)
        c = e[rows] @ e[rows].T
        other = image[rows][:, None] != image[rows][None, :]
        if reference_score is None:
            n_other = other.sum(axis=1)
            score = np.where(n_other > 0, (c * other).sum(axis=1) / np.maximum(n_other, 1), -np.inf)
        else:
            score = np.asarray(reference_score, dtype=np.float64)[rows]
        for a, r in enumerate(rows):
            cand = np.flatnonzero(other[a])
            if cand.size == 0:
                continue
            ref = cand[np.argmax(score[cand])]
            target[r] = float(c[a, ref] >= threshold)
            valid[r] = True
    return target, valid


def reliability_table(pred: np.ndarray, observed: np.ndarray, n_bins: int = 10,
                      strategy: str = "uniform") -> list[dict[str, Any]]:
    """Predicted vs observed by bins of the prediction.

    ``strategy="uniform"``: equal-width bins over [0, 1]; ``"quantile"``: equally filled bins.
    Each row: ``lo``, ``hi``, ``n``, ``mean_pred``, ``observed`` (empty bins are left out).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    observed = np.asarray(observed, dtype=np.float64).reshape(-1)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(pred, np.linspace(0, 1, n_bins + 1)))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}")
    idx = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        sel = idx == b
        if not sel.any():
            continue
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()),
                     "mean_pred": float(pred[sel].mean()), "observed": float(observed[sel].mean())})
    return rows


def expected_calibration_error(table: list[dict[str, Any]]) -> float:
    """Count-weighted mean |mean_pred - observed| over a reliability table."""
    n = sum(r["n"] for r in table)
    return float(sum(r["n"] * abs(r["mean_pred"] - r["observed"]) for r in table) / n) if n else float("nan")
