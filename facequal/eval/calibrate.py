"""The quality threshold to use (``facequal calibrate``): for each candidate ``--min t``, the share
of images and mated pairs it discards and the FNMR it leaves at the comparison threshold fixed by
an FMR, on the same inputs and pairs as ``facequal eval`` (:func:`facequal.eval.evaluate.prepare_pairs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facequal.errors import UserError
from facequal.eval import metrics
from facequal.eval.evaluate import (
    PairAccounting,
    PreparedPairs,
    QualitySource,
    prepare_pairs,
    reasons_text,
    threshold_warnings,
)

CALIBRATION_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def short_decimal(lo: float, hi: float) -> tuple[float, str]:
    """The shortest decimal ``x`` with ``lo < x <= hi`` (and its text), for ``--min``."""
    for d in range(1, 18):
        x = math.floor(hi * 10**d) / 10**d
        text = f"{x:.{d}f}"
        x = float(text)
        if lo < x <= hi:
            return x, text
    return hi, repr(float(hi))


@dataclass
class CalibrationRow:
    """Keeping faces with quality >= ``min_quality`` (``--min`` text ``min_text``)."""

    min_quality: float
    min_text: str
    images_discarded: float
    mated_discarded: float
    fnmr: float
    mated_remaining: int
    non_mated_remaining: int

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min_quality, "min_text": self.min_text, "images_discarded": self.images_discarded,
                "mated_pairs_discarded": self.mated_discarded, "fnmr": self.fnmr,
                "mated_remaining": self.mated_remaining, "non_mated_remaining": self.non_mated_remaining}


@dataclass
class CalibrationResult:
    """The result of :func:`calibrate`."""

    source: QualitySource
    fmr: float
    threshold: float
    fnmr0: float
    n_images: int
    rows: list[CalibrationRow]
    recommended: CalibrationRow | None
    target: dict[str, float]
    accounting: PairAccounting
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        src = {"label": self.source.label, "path": self.source.path, "column": self.source.column}
        return {"source": src,
                "fmr": self.fmr, "threshold": self.threshold, "fnmr0": self.fnmr0, "images": self.n_images,
                "target": self.target, "pairs": self.accounting.to_dict(), "warnings": self.warnings,
                "rows": [r.to_dict() for r in self.rows],
                "recommended": None if self.recommended is None else self.recommended.to_dict()}


def calibrate(quality: str | QualitySource, embeddings: str | Path, pairs: str | Path | None = None, *,
              target_fnmr: float | None = None, target_discard: float | None = None,
              fmr: float = 1e-3, grid: Sequence[float] = CALIBRATION_GRID,
              prepared: PreparedPairs | None = None, **pair_options: Any) -> CalibrationResult:
    """The quality threshold trade-off: for ``--min t`` (keep faces with quality >= t), the share of
    images and mated pairs discarded and the FNMR at the fixed threshold ``T`` among the mated pairs
    that remain. Recommends ``t`` for ``target_fnmr`` (the least discard that reaches it) or
    ``target_discard`` (the most filtering that discards at most that share of images).

    ``pair_options`` are those of :func:`prepare_pairs`.
    """
    if target_fnmr is not None and target_discard is not None:
        raise UserError("give --target-fnmr or --target-discard, not both")
    if target_fnmr is not None and not 0 <= target_fnmr <= 1:
        raise UserError("--target-fnmr must lie in [0, 1]")
    if target_discard is not None and not 0 <= target_discard < 1:
        raise UserError("--target-discard must lie in [0, 1)")
    if not 0 < fmr < 1:
        raise UserError(f"--fmr must lie in (0, 1), not {fmr:g}")
    prep = prepared or prepare_pairs([quality], embeddings, pairs, **pair_options)
    if len(prep.sources) != 1:
        raise UserError("calibrate takes one quality source")
    t = metrics.fmr_threshold(prep.scores[~prep.mated], fmr)
    n_img = int(max(prep.image_a.max(), prep.image_b.max())) + 1
    qi = np.full(n_img, np.nan)
    qi[prep.image_a] = prep.quality_a[0]
    qi[prep.image_b] = prep.quality_b[0]
    present = ~np.isnan(qi)
    qi = qi[present]
    pq = prep.pair_quality[0]
    mq = np.sort(pq[prep.mated])
    nq = np.sort(pq[~prep.mated])
    order = np.argsort(pq[prep.mated], kind="stable")
    err_sorted = (prep.scores[prep.mated] < t)[order]
    err_from = np.concatenate((np.cumsum(err_sorted[::-1])[::-1], [0]))
    cand = np.unique(qi[np.isfinite(qi)])
    q_sorted = np.sort(qi)
    if cand.size == 0:
        raise UserError("no finite quality among the usable images")
    img_disc = np.searchsorted(q_sorted, cand, side="left") / qi.size
    m_drop = np.searchsorted(mq, cand, side="left")
    m_rem = mq.size - m_drop
    fnmr = np.where(m_rem > 0, err_from[m_drop] / np.maximum(m_rem, 1), 0.0)
    nm_rem = nq.size - np.searchsorted(nq, cand, side="left")

    def row(j: int) -> CalibrationRow:
        lo = float(cand[j - 1]) if j > 0 else -math.inf
        x, text = short_decimal(lo, float(cand[j]))
        return CalibrationRow(x, text, float(img_disc[j]), float(m_drop[j] / mq.size), float(fnmr[j]),
                              int(m_rem[j]), int(nm_rem[j]))

    picks = sorted({int(np.searchsorted(img_disc, g + 1e-12, side="right") - 1) for g in grid} - {-1})
    rec_j: int | None = None
    warns = threshold_warnings(fmr, int((~prep.mated).sum()), int(err_from[0]))
    target: dict[str, float] = {}
    if target_fnmr is not None:
        target = {"fnmr": target_fnmr}
        hit = np.flatnonzero((fnmr <= target_fnmr + 1e-12) & (m_rem > 0))
        if hit.size:
            rec_j = int(hit[0])
        else:
            warns.append(f"no quality threshold brings the FNMR to {target_fnmr:g} (lowest "
                         f"{fnmr[m_rem > 0].min():.4g})")
    elif target_discard is not None:
        target = {"discard": target_discard}
        rec_j = int(np.searchsorted(img_disc, target_discard + 1e-12, side="right") - 1)
    if rec_j is not None:
        picks = sorted(set(picks) | {rec_j})
    rows = [row(j) for j in picks]
    rec = rows[picks.index(rec_j)] if rec_j is not None else None
    if prep.accounting.dropped:
        warns.insert(0, f"{prep.accounting.dropped:,} of {prep.accounting.listed:,} pairs dropped: "
                        + reasons_text(prep.accounting))
    return CalibrationResult(prep.sources[0], fmr, t, float(err_from[0] / max(mq.size, 1)), int(qi.size),
                             rows, rec, target, prep.accounting, warns)


