"""Calibration: the monotone map from the network's raw output to a probability that means something.

``quality`` estimates the probability that the face, compared with a good-quality photo of the
same person, is accepted by the teacher at its FMR 1e-3 threshold. On validation people:

1. :func:`acceptance_targets`: for each face, the outcome (0/1) of that comparison, the
   reference being the other photo of the person that the teacher finds most typical (highest
   mean cosine to the person's other photos) -- a teacher-side notion of "good quality photo",
   independent of the model being calibrated;
2. :func:`fit_calibration`: isotonic regression of the outcomes on the raw output's logit
   (pool-adjacent-violators), lightly smoothed (each block shrunk towards the overall rate by
   ``prior`` pseudo-observations, at most ``max_knots`` knots), joined by straight lines in
   logit units and continued by straight tails, so the map is strictly increasing: stored as
   :attr:`facequal.contract.Contract.calibration`;
3. :func:`reliability_table`: predicted vs observed by bins, for the model card.

Ranking is unchanged by the map (it is strictly increasing): no ties are made. Numpy only.
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


def _platt_slope(z: np.ndarray, target: np.ndarray, w: np.ndarray, iters: int = 50) -> float:
    """Slope of a weighted logistic fit ``target ~ sigmoid(a * z + b)`` (Newton's method)."""
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        g = np.array([np.sum(w * (p - target) * z), np.sum(w * (p - target))])
        h = w * p * (1 - p)
        hess = np.array([[np.sum(h * z * z), np.sum(h * z)], [np.sum(h * z), np.sum(h)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a)


def _strictly_increasing(bx: np.ndarray, by: np.ndarray, bw: np.ndarray,
                         min_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring knots whose y values rise by less than ``min_step`` (weighted means of
    x and y), so that every segment of the map has a positive slope."""
    xs, ys, ws = list(bx), list(by), list(bw)
    i = 1
    while i < len(xs):
        if ys[i] - ys[i - 1] < min_step or xs[i] - xs[i - 1] <= 0:
            wt = ws[i - 1] + ws[i]
            xs[i - 1] = (xs[i - 1] * ws[i - 1] + xs[i] * ws[i]) / wt
            ys[i - 1] = (ys[i - 1] * ws[i - 1] + ys[i] * ws[i]) / wt
            ws[i - 1] = wt
            del xs[i], ys[i], ws[i]
            i = max(i - 1, 1)
        else:
            i += 1
    return np.asarray(xs), np.asarray(ys)


TAIL = 60.0  # logit units from the outermost fitted knot to the end of each straight tail


def fit_calibration(raw: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, *,
                    max_knots: int = 32, prior: float = 2.0, min_step: float = 1e-3,
                    min_slope: float = 0.05, max_slope: float = 1.0) -> dict[str, Any]:
    """Fit the calibration map: ``{"space": "logit", "x": [...], "y": [...]}``, both strictly
    increasing (see :func:`facequal.contract.apply_calibration`).

    ``raw``: the network's outputs in (0, 1); ``target``: outcomes in [0, 1]. In logit units, an
    isotonic fit (``prior`` pseudo-observations at the overall rate shrink small blocks; at most
    ``max_knots`` knots; knots closer than ``min_step`` in logit merged, so no segment is flat)
    joined by straight lines, continued beyond the data by straight tails whose slope is that of
    a logistic (Platt) fit on all faces, kept within [``min_slope``, ``max_slope``]: at most 1
    (the odds change no faster than the network's own) so that the tails do not saturate to
    exactly 0 or 1 in floating point, which would tie faces again. The map is strictly
    increasing, so ordering by quality equals ordering by raw output, and the tails reach towards
    0 and 1.
    """
    from facequal.contract import logit

    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    w = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    ok = np.isfinite(raw) & np.isfinite(target) & (w > 0)
    raw, target, w = raw[ok], target[ok], w[ok]
    if raw.size == 0:
        raise ValueError("no finite (raw, target) pairs to calibrate on")
    z = logit(raw)
    order = np.argsort(z, kind="stable")
    z, target, w = z[order], target[order], w[order]
    # equal raw values form one point (else PAVA may split a tie)
    uniq, starts = np.unique(z, return_index=True)
    ws = np.add.reduceat(w, starts)
    ys = np.add.reduceat(target * w, starts) / ws
    bx, by, bw = _blocks(uniq, ys, ws)
    rate = float(np.sum(target * w) / np.sum(w))
    by = (by * bw + prior * rate) / (bw + prior)     # in (0, 1): finite logits
    by = pava(by, bw)  # shrinkage keeps order, this only guards against rounding
    bx, by, bw = _merge(bx, by, bw, max_knots)
    kx, ky = _strictly_increasing(bx, logit(by), bw, min_step)
    slope = float(np.clip(_platt_slope(z, target, w) if uniq.size > 1 else min_slope, min_slope, max_slope))
    if kx.size == 1:
        # One block: a line of the tail slope through it.
        kx, ky = np.array([kx[0] - 1.0, kx[0] + 1.0]), np.array([ky[0] - slope, ky[0] + slope])
    x = np.concatenate([[kx[0] - TAIL], kx, [kx[-1] + TAIL]])
    y = np.concatenate([[ky[0] - slope * TAIL], ky, [ky[-1] + slope * TAIL]])
    return {"space": "logit", "x": [float(v) for v in x], "y": [float(v) for v in y]}


def apply_calibration(raw: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """The calibrated quality of ``raw`` (as :meth:`facequal.contract.Contract.calibrate`)."""
    from facequal.contract import apply_calibration as apply

    return apply(raw, calibration)


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
