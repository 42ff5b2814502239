"""Benchmark: LFW verification accuracy of an embeddings file (from `facequal embed`).

Usage::

    facequal embed ../shared/data/lfw --faces center -o emb.parquet
    python bench/lfw_verification.py emb.parquet [--pairs ../shared/data/lfw-pairs.tsv] [--folds 6-10]

Each pair compares the embeddings of face 0 of its two images by cosine similarity. Printed for
the pairs of ``--folds`` (LFW View 2: folds 1-5 for tuning, 6-10 for testing):

* best-threshold accuracy: the accuracy at the single threshold that is best on those pairs
  (an optimistic figure: the threshold is fitted on the pairs it is measured on);
* cross-validated accuracy: for each fold, the threshold best on the other chosen folds, applied
  to that fold; the mean over folds (the LFW protocol's figure, over the chosen folds only).

Pairs whose images have no embedding are left out, and their number is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal.eval.pairs import LFW_SUFFIX, parse_folds, path_key, read_lfw_pairs, select_folds  # noqa: E402

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-pairs.tsv"


def load_embeddings(path: str) -> dict[str, np.ndarray]:
    """``<name>/<file>`` -> the unit embedding of face 0, for the rows with status ok."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["path", "face_index", "status", "embedding"])
    t = t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.equal(t["face_index"], 0)))
    emb = np.stack(t["embedding"].to_numpy(zero_copy_only=False)).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return {path_key(p, LFW_SUFFIX): e for p, e in zip(t["path"].to_pylist(), emb, strict=True)}


def best_threshold(sims: np.ndarray, mated: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) of the threshold t that maximises the accuracy of "mated iff sim >= t"."""
    order = np.argsort(sims, kind="stable")
    s, m = sims[order], mated[order].astype(np.int64)
    n = len(s)
    # Threshold at s[i]: pairs i.. are called mated. Correct = non-mated below i + mated from i on.
    non_mated_below = np.concatenate([[0], np.cumsum(1 - m)])          # length n + 1
    mated_from = np.concatenate([np.cumsum(m[::-1])[::-1], [0]])        # length n + 1
    correct = non_mated_below + mated_from
    first = np.concatenate([[True], s[1:] != s[:-1], [True]])           # only where the value changes
    correct = np.where(first, correct, -1)
    i = int(np.argmax(correct))
    t = float(s[i]) if i < n else float(np.nextafter(s[-1], np.inf))
    return correct[i] / n, t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("embeddings", help="Embeddings file from `facequal embed` over the LFW folder.")
    ap.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="LFW pairs.txt / lfw-pairs.tsv.")
    ap.add_argument("--folds", default="6-10", help="Folds to measure on (default 6-10, the test folds).")
    args = ap.parse_args(argv)

    folds = parse_folds(args.folds)
    pairs = select_folds(read_lfw_pairs(args.pairs), folds)
    emb = load_embeddings(args.embeddings)
    keep = np.array([a in emb and b in emb for a, b in zip(pairs.path_a, pairs.path_b, strict=True)])
    sims = np.array([emb[a] @ emb[b] for a, b, k in zip(pairs.path_a, pairs.path_b, keep, strict=True) if k])
    mated, fold = pairs.mated[keep], pairs.fold[keep]

    acc, t = best_threshold(sims, mated)
    cv = []
    for f in folds:
        test = fold == f
        _, tf = best_threshold(sims[~test], mated[~test])
        cv.append(float(((sims[test] >= tf) == mated[test]).mean()))
    print(f"{args.embeddings}: folds {args.folds}, {len(sims)} pairs ({int((~keep).sum())} left out: "
          "no embedding)")
    print(f"best-threshold accuracy   {acc:.4f}  (threshold {t:.4f})")
    print(f"cross-validated accuracy  {np.mean(cv):.4f} +- {np.std(cv):.4f}  "
          f"(per fold: {' '.join(f'{c:.4f}' for c in cv)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
