"""Reliability of the calibrated quality on LFW's test people (pair folds 6-10).

For each face of a test person with at least two photos: is it accepted by the teacher (dlib,
cosine >= its FMR 1e-3 threshold from the model's label parameters) against the person's most
typical other photo? The table compares the mean predicted `quality` per bin with that share.

    python bench/reliability.py lfw-scores.parquet lfw-emb.parquet --pairs ../shared/data/lfw-pairs.tsv
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    from facequal.schema import read_table
    from facequal.train.build_cache import lfw_people_folds, read_lfw_pairs
    from facequal.train.calibrate import acceptance_targets, expected_calibration_error, reliability_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores")
    ap.add_argument("embeddings")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--threshold", type=float, default=None, help="teacher threshold (default: model metadata)")
    a = ap.parse_args()
    folds = lfw_people_folds(read_lfw_pairs(a.pairs))
    test = {n for n, f in folds.items() if f & {6, 7, 8, 9, 10}}
    s = read_table(a.scores)
    thr = a.threshold
    if thr is None:
        from facequal.models.zoo import resolve_model

        name = s.schema.metadata[b"facequal.model"].decode()
        thr = float(json.loads(resolve_model(name).metadata["facequal.training"])["teacher_threshold"])
    q = {(r["path"].split("/")[-2], r["path"].split("/")[-1]): r["quality"] for r in s.to_pylist()
         if r["status"] == "ok" and r["face_index"] == 0}
    e = read_table(a.embeddings)
    keys, embs = [], []
    for r in e.to_pylist():
        k = (r["path"].split("/")[-2], r["path"].split("/")[-1])
        if r["status"] == "ok" and r["face_index"] == 0 and k[0] in test and k in q:
            keys.append(k)
            embs.append(r["embedding"])
    ident = np.array([k[0] for k in keys])
    target, valid = acceptance_targets(np.array(embs), ident, thr)
    pred = np.array([q[k] for k in keys])[valid]
    table = reliability_table(pred, target[valid])
    print(f"{int(valid.sum())} faces of {len(set(ident[valid]))} test people; teacher threshold {thr:.4f}; "
          f"observed acceptance {target[valid].mean():.3f}, mean predicted {pred.mean():.3f}")
    print("| predicted | faces | mean predicted | observed |\n|---|---|---|---|")
    for row in table:
        print(f"| {row['lo']:.1f}-{row['hi']:.1f} | {row['n']} | {row['mean_pred']:.3f} | {row['observed']:.3f} |")
    print(f"expected calibration error: {expected_calibration_error(table):.4f}")


if __name__ == "__main__":
    main()
