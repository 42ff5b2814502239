"""Quality-assessment metrics on verification pairs: the fixed comparison threshold, the paper's
error-versus-reject curve (ERC), the ISO/IEC 29794-5 style error-versus-discard curve (EDC), their
areas, and a paired bootstrap. Pure numpy, no I/O.

Conventions (one place for each):

* Comparison scores are similarities (higher = more alike). A comparison is a *match* iff
  ``score >= T``. Quality is higher = better; the pair quality is ``min`` of the two images'.
* :func:`fmr_threshold` fixes ``T`` from the non-mated scores alone, once, before any rejection:
  with ``k = floor(FMR * N_non_mated)``, ``T`` is the smallest threshold that accepts at most ``k``
  non-mated pairs, i.e. ``T = nextafter(s_(k+1), +inf)`` where ``s_(k+1)`` is the (k+1)-th highest
  non-mated score. Exactly ``k`` are accepted unless non-mated scores tie at that boundary, in
  which case fewer are (the FMR never exceeds the target). ``T`` is then held fixed.
* **Paper ERC** (:func:`erc`), as in the authors' released evaluation: each pair's *risk* is
  minus its pair quality. For a reject fraction ``r`` the pairs kept are those whose risk is at
  most ``np.percentile(risk, (1 - r) * 100)`` (linear interpolation), so pairs of equal pair
  quality are kept or rejected together and the result does not depend on the order of the pair
  list. ``FNMR(r)`` is the share of the kept mated pairs scored below ``T`` (0 when no mated pair
  is kept). With distinct qualities about ``ceil(r * (N - 1))`` pairs are rejected; ties may
  reject fewer. ``AUC = trapezoid area of FNMR(r) over r - FNMR(0)**2 / 2``.
* **EDC** (:func:`edc`): mated pairs only. Pairs are discarded by pair quality, and only at the
  boundaries between distinct pair-quality values (all pairs of one quality value go at once):
  the curve has a point ``(d_j, FNMR_j)`` for each distinct value ``q_j``, with ``d_j`` = share of
  mated pairs with quality ``< q_j`` and ``FNMR_j`` = share of the mated pairs with quality
  ``>= q_j`` scored below ``T``. Between points it is a step function (``FNMR_j`` holds on
  ``[d_j, d_{j+1})``, the last value up to 1). :func:`edc_pauc` is its area on ``[0, limit]``;
  :func:`edc_best_area` is the area under the "theoretical best" line ``max(FNMR(0) - d, 0)``,
  ``e0**2/2 - max(0, e0 - limit)**2/2``. No real curve beats that line, so pAUC minus it is >= 0;
  it is 0 when there is no error at all, and small but positive for a perfect ordering, because
  the FNMR is a rate among the pairs that remain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REJECT_FRACTIONS = np.arange(100) / 100          # the paper's grid: r = 0, 0.01, ..., 0.99
REPORT_FRACTIONS = (0.1, 0.2)                    # FNMR(r) reported separately
DEFAULT_FMRS = (1e-3, 1e-2)
DEFAULT_EDC_LIMIT = 0.2
MIN_ACCEPTED_NON_MATED = 10                      # fewer accepted impostors -> unstable threshold

_EPS = 1e-9                                      # guards floor(x * N) against 0.29 * 100 = 28.999...


def accepted_count(fmr: float, n_non_mated: int) -> int:
    """``floor(fmr * n_non_mated)``: how many non-mated pairs the threshold may accept."""
    return int(np.floor(fmr * n_non_mated + _EPS))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays (rows are L2-normalised here)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("ij,ij->i", a, b) / (na * nb)


def pair_quality(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """The quality of a pair: the lower of its two images' qualities."""
    return np.minimum(np.asarray(qa, dtype=np.float64), np.asarray(qb, dtype=np.float64))


def fmr_threshold(non_mated_scores: np.ndarray, fmr: float) -> float:
    """The fixed comparison threshold ``T`` for a target FMR (see the module docstring).

    A comparison is a match iff ``score >= T``; at most ``floor(fmr * N)`` non-mated scores are.
    """
    s = np.asarray(non_mated_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no non-mated scores: the threshold cannot be fixed")
    if not 0 < fmr < 1:
        raise ValueError(f"fmr must lie in (0, 1), not {fmr}")
    k = accepted_count(fmr, s.size)
    # The (k+1)-th highest score: np.partition finds it without a full sort.
    boundary = np.partition(s, s.size - 1 - k)[s.size - 1 - k]
    return float(np.nextafter(boundary, np.inf))


def _rates(errors: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """errors / totals, with 0 where nothing remains."""
    errors = np.asarray(errors, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    out = np.zeros(np.broadcast(errors, totals).shape)
    np.divide(errors, totals, out=out, where=totals > 0)
    return out


def erc_drop_counts(sorted_quality: np.ndarray, fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """How many pairs the paper's ERC rejects at each fraction, per row of ``sorted_quality``.

    ``sorted_quality`` is (B, N), each row ascending. A pair is kept iff its risk (minus its
    quality) is at most ``np.percentile(risk, (1 - r) * 100)``, so the rejected pairs are a prefix
    of each row and tied pairs fall on the same side. Returns (B, F) counts.
    """
    qs = np.atleast_2d(np.asarray(sorted_quality, dtype=np.float64))
    r = np.asarray(fractions, dtype=np.float64)
    if r.size and (r.min() < 0 or r.max() > 1):
        raise ValueError("fractions must lie in [0, 1]")
    b, n = qs.shape
    if n == 0:
        return np.zeros((b, r.size), dtype=np.int64)
    if not np.isfinite(qs).all():
        # Missing qualities scored -inf (``--missing worst``) sort first but would make the
        # percentile's interpolation NaN: stand them in by finite values beyond the others.
        fin = qs[np.isfinite(qs)]
        lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
        span = hi - lo + 1.0
        qs = np.where(qs == -np.inf, lo - span, np.where(qs == np.inf, hi + span, qs))
    limit = np.percentile(-qs, (1 - r) * 100, axis=1)          # (F, B): the risk kept at most
    out = np.empty((b, r.size), dtype=np.int64)
    for i in range(b):
        # risk <= limit  <=>  quality >= -limit; the rejected pairs are those below -limit.
        out[i] = np.searchsorted(qs[i], -limit[:, i], side="left")
    return out


def erc(scores: np.ndarray, mated: np.ndarray, quality: np.ndarray, threshold: float,
        fractions: Sequence[float] | np.ndarray = REJECT_FRACTIONS) -> np.ndarray:
    """The paper's ERC: FNMR at the fixed ``threshold`` after rejecting each fraction of ALL pairs.

    ``scores``, ``mated`` and ``quality`` (pair quality) are aligned per pair. Pairs are rejected
    lowest pair quality first, tied pairs together (see :func:`erc_drop_counts`), so the curve
    does not depend on the order of the pairs. Returns FNMR per fraction.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mated = np.asarray(mated, dtype=bool)
    q = np.asarray(quality, dtype=np.float64)
    order = np.argsort(q, kind="stable")
    m = mated[order]
    e = m & (scores[order] < threshold)
    # Prefix sums: what the first n rejected pairs take away.
    cm = np.concatenate(([0], np.cumsum(m)))
    ce = np.concatenate(([0], np.cumsum(e)))
    nd = erc_drop_counts(q[order][None, :], fractions)[0]
    return _rates(ce[-1] - ce[nd], cm[-1] - cm[nd])


def erc_auc(fractions: Sequence[float] | np.ndarray, fnmr: np.ndarray) -> float:
    """Trapezoid area under FNMR(r) minus the area under the perfect line, ``FNMR(0)**2 / 2``.

    ``r`` counts all pairs while FNMR counts mated ones, so a near-perfect ordering can fall below
    the "perfect" line and the AUC can be negative.
    """
    r = np.asarray(fractions, dtype=np.float64)
    f = np.asarray(fnmr, dtype=np.float64)
    return float(np.sum((f[1:] + f[:-1]) * np.diff(r)) / 2 - f[0] ** 2 / 2)


@dataclass(frozen=True)
class EdcCurve:
    """Step points of an EDC: ``fnmr[j]`` holds from ``discard[j]`` up to ``discard[j+1]`` (or 1)."""

    discard: np.ndarray
    fnmr: np.ndarray
    quality: np.ndarray          # the pair-quality value q_j whose pairs are kept at that point

    @property
    def fnmr0(self) -> float:
        """FNMR before any discard."""
        return float(self.fnmr[0]) if self.fnmr.size else 0.0


def edc(mated_scores: np.ndarray, mated_quality: np.ndarray, threshold: float) -> EdcCurve:
    """ISO/IEC 29794-5 style EDC of the mated pairs at a fixed ``threshold`` (see module docstring)."""
    s = np.asarray(mated_scores, dtype=np.float64)
    q = np.asarray(mated_quality, dtype=np.float64)
    n = s.size
    if n == 0:
        return EdcCurve(np.zeros(0), np.zeros(0), np.zeros(0))
    order = np.argsort(q, kind="stable")
    qs = q[order]
    err = s[order] < threshold
    errors_from = np.concatenate((np.cumsum(err[::-1])[::-1], [0]))   # errors among positions >= i
    starts = np.flatnonzero(np.concatenate(([True], qs[1:] != qs[:-1])))
    return EdcCurve(starts / n, _rates(errors_from[starts], n - starts), qs[starts])


def edc_pauc(curve: EdcCurve, limit: float = DEFAULT_EDC_LIMIT) -> float:
    """Area under the step EDC on ``[0, limit]``."""
    if curve.discard.size == 0 or limit <= 0:
        return 0.0
    ends = np.concatenate((curve.discard[1:], [1.0]))
    widths = np.clip(np.minimum(ends, limit) - curve.discard, 0, None)
    return float(np.sum(widths * curve.fnmr))


def edc_best_area(fnmr0: float, limit: float = DEFAULT_EDC_LIMIT) -> float:
    """Area on ``[0, limit]`` under the theoretical best ``max(fnmr0 - d, 0)``."""
    return float(fnmr0**2 / 2 - max(0.0, fnmr0 - limit) ** 2 / 2)


def edc_step_at(curve: EdcCurve, fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """Evaluate the step EDC at discard fractions (for tables and sampled curves)."""
    d = np.asarray(fractions, dtype=np.float64)
    if curve.discard.size == 0:
        return np.zeros(d.shape)
    j = np.searchsorted(curve.discard, d + _EPS, side="right") - 1
    return curve.fnmr[np.clip(j, 0, None)]


# --------------------------------------------------------------------------------------------
# All figures at once, vectorised over bootstrap replicates.

def scalar_names(report: Sequence[float] = REPORT_FRACTIONS) -> list[str]:
    """Names of the scalar figures, in table order: ERC AUC, FNMR(r) per report fraction, EDC."""
    return ["erc_auc", *(f"erc_fnmr@{r:g}" for r in report), "edc_pauc", "edc_pauc_minus_best"]


@dataclass
class Figures:
    """Scalar figures per FMR, source and replicate: ``values[name]`` has shape (F, K, B).

    ``threshold``, ``fnmr0`` and ``edc_best`` do not depend on the quality source: shape (F, B).
    """

    values: dict[str, np.ndarray]
    threshold: np.ndarray
    fnmr0: np.ndarray
    edc_best: np.ndarray


def _batch_figures(idx: np.ndarray, n_mated: int, scores: np.ndarray, mated: np.ndarray,
                   qualities: np.ndarray, ranks: np.ndarray, orders: np.ndarray,
                   fmrs: Sequence[float], fractions: np.ndarray, report: Sequence[float],
                   limit: float) -> Figures:
    """Figures for a batch of pair samples ``idx`` (B, N): mated pair ids first, then non-mated.

    ``ranks[k]`` is each pair's position in source ``k``'s stable rejection order and
    ``orders[k]`` its inverse, so sorting a sample's ranks reproduces the stable order exactly
    (duplicates of one pair are interchangeable).
    """
    b, n = idx.shape
    n_nm = n - n_mated
    nm = np.sort(scores[idx[:, n_mated:]], axis=1)
    thr = np.stack([np.nextafter(nm[:, n_nm - 1 - accepted_count(f, n_nm)], np.inf) for f in fmrs])  # (F, B)
    frac = np.concatenate((np.asarray(fractions, dtype=np.float64), np.asarray(report, dtype=np.float64)))
    n_f, n_k = len(fmrs), qualities.shape[0]
    names = scalar_names(report)
    out = {name: np.zeros((n_f, n_k, b)) for name in names}
    ms = scores[idx[:, :n_mated]]
    fnmr0 = np.stack([(ms < t[:, None]).sum(axis=1) / max(n_mated, 1) for t in thr])   # (F, B)
    best = fnmr0**2 / 2 - np.maximum(0.0, fnmr0 - limit) ** 2 / 2
    kf = int(np.floor(limit * n_mated + _EPS))
    part = limit * n_mated - kf
    rows = np.arange(b)[:, None]
    for k in range(n_k):
        pid = orders[k][np.sort(ranks[k][idx], axis=1)]            # (B, N) in rejection order
        m = mated[pid]
        nd = erc_drop_counts(qualities[k][pid], frac)               # (B, F'): ties rejected together
        cm = np.concatenate((np.zeros((b, 1), np.int64), np.cumsum(m, axis=1)), axis=1)
        pid_m = pid[m].reshape(b, n_mated)                          # mated pairs, same order
        if n_mated:
            qm = qualities[k][pid_m]
            start = np.concatenate((np.ones((b, 1), bool), qm[:, 1:] != qm[:, :-1]), axis=1)
            pos = np.broadcast_to(np.arange(n_mated), (b, n_mated))
            group = np.maximum.accumulate(np.where(start, pos, 0), axis=1)   # start of each tie group
        for fi in range(n_f):
            t = thr[fi][:, None]
            e = m & (scores[pid] < t)
            ce = np.concatenate((np.zeros((b, 1), np.int64), np.cumsum(e, axis=1)), axis=1)
            curve = _rates(ce[:, -1:] - np.take_along_axis(ce, nd, axis=1),
                           cm[:, -1:] - np.take_along_axis(cm, nd, axis=1))
            r = curve[:, : len(fractions)]
            auc = np.sum((r[:, 1:] + r[:, :-1]) * np.diff(fractions), axis=1) / 2 - r[:, 0] ** 2 / 2
            out["erc_auc"][fi, k] = auc
            for j, name in enumerate(names[1: 1 + len(report)]):
                out[name][fi, k] = curve[:, len(fractions) + j]
            # EDC: the value at sorted position i is the FNMR after discarding its whole tie group's
            # predecessors; the pAUC sums those values over the positions inside [0, limit).
            if n_mated:
                em = scores[pid_m] < t
                err_from = np.concatenate((np.cumsum(em[:, ::-1], axis=1)[:, ::-1],
                                           np.zeros((b, 1), np.int64)), axis=1)
                val = err_from[rows, group] / (n_mated - group)
                pauc = val[:, :kf].sum(axis=1) / n_mated
                if kf < n_mated:
                    pauc += part / n_mated * val[:, kf]
                out["edc_pauc"][fi, k] = pauc
                out["edc_pauc_minus_best"][fi, k] = pauc - best[fi]
    return Figures(out, thr, fnmr0, best)


def _rank_orders(qualities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per source, the stable rejection order and each pair's rank in it."""
    orders = np.argsort(qualities, axis=1, kind="stable")
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(qualities.shape[1])[None, :], axis=1)
    return ranks, orders


def _check(scores: np.ndarray, mated: np.ndarray, qualities: np.ndarray) -> tuple[np.ndarray, ...]:
    scores = np.asarray(scores, dtype=np.float64)
    mated = np.asarray(mated, dtype=bool)
    qualities = np.atleast_2d(np.asarray(qualities, dtype=np.float64))
    if qualities.shape[1] != scores.size or mated.size != scores.size:
        raise ValueError("scores, mated and qualities must describe the same pairs")
    if np.isnan(qualities).any() or np.isnan(scores).any():
        raise ValueError("scores and qualities must not be NaN")
    if mated.all():
        raise ValueError("no non-mated pairs: the threshold cannot be fixed")
    return scores, mated, qualities


def point_figures(scores: np.ndarray, mated: np.ndarray, qualities: np.ndarray,
                  fmrs: Sequence[float] = DEFAULT_FMRS, fractions: np.ndarray = REJECT_FRACTIONS,
                  report: Sequence[float] = REPORT_FRACTIONS,
                  limit: float = DEFAULT_EDC_LIMIT) -> Figures:
    """All scalar figures on the pairs as given (B = 1). ``qualities`` is (K, N) pair quality."""
    scores, mated, qualities = _check(scores, mated, qualities)
    ids = np.concatenate((np.flatnonzero(mated), np.flatnonzero(~mated)))[None, :]
    ranks, orders = _rank_orders(qualities)
    return _batch_figures(ids, int(mated.sum()), scores, mated, qualities, ranks, orders,
                          fmrs, np.asarray(fractions), report, limit)


def bootstrap_figures(scores: np.ndarray, mated: np.ndarray, qualities: np.ndarray, n_boot: int,
                      seed: int = 0, fmrs: Sequence[float] = DEFAULT_FMRS,
                      fractions: np.ndarray = REJECT_FRACTIONS,
                      report: Sequence[float] = REPORT_FRACTIONS, limit: float = DEFAULT_EDC_LIMIT,
                      max_elements: int = 1_000_000) -> Figures:
    """Bootstrap replicates of every figure (shape (F, K, n_boot)).

    Mated and non-mated pairs are resampled separately (with replacement, keeping their counts),
    ``T`` is re-derived from each replicate's non-mated scores, and every source is evaluated on
    the same replicate, so differences between sources are paired. Seeded: same seed, same result.
    """
    scores, mated, qualities = _check(scores, mated, qualities)
    m_ids, nm_ids = np.flatnonzero(mated), np.flatnonzero(~mated)
    ranks, orders = _rank_orders(qualities)
    rng = np.random.default_rng(seed)
    chunk = max(1, max_elements // max(scores.size, 1))
    parts = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        # One uniform draw per slot, row by row: the replicates do not depend on the chunk size.
        u = rng.random((b, scores.size))
        idx = np.concatenate((m_ids[(u[:, : m_ids.size] * m_ids.size).astype(np.int64)],
                              nm_ids[(u[:, m_ids.size:] * nm_ids.size).astype(np.int64)]), axis=1)
        parts.append(_batch_figures(idx, m_ids.size, scores, mated, qualities, ranks, orders,
                                    fmrs, np.asarray(fractions), report, limit))
    if not parts:
        n_f, n_k = len(fmrs), qualities.shape[0]
        return Figures({n: np.zeros((n_f, n_k, 0)) for n in scalar_names(report)},
                       np.zeros((n_f, 0)), np.zeros((n_f, 0)), np.zeros((n_f, 0)))
    return Figures({n: np.concatenate([p.values[n] for p in parts], axis=-1) for n in parts[0].values},
                   np.concatenate([p.threshold for p in parts], axis=-1),
                   np.concatenate([p.fnmr0 for p in parts], axis=-1),
                   np.concatenate([p.edc_best for p in parts], axis=-1))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The ``level`` percentile interval over the last axis (NaN when there are no samples)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[-1] == 0:
        nan = np.full(samples.shape[:-1], np.nan)
        return nan, nan.copy()
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=-1)
    return lo, hi


def ranking_auc(score: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the 0/1 ``positive``: the probability that a
    positive outscores a negative (Mann-Whitney), ties counted half; NaN if a class is empty."""
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive).reshape(-1).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    _, start, counts = np.unique(score[order], return_index=True, return_counts=True)
    ranks = np.empty(score.size)
    ranks[order] = np.repeat(start + (counts - 1) / 2.0 + 1.0, counts)  # tied scores share their mean rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
