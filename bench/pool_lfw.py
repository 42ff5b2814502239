"""Benchmark: does quality-weighted template pooling beat the plain mean on LFW?

Usage (files from `facequal score` and `facequal embed` run over the LFW folder)::

    python bench/pool_lfw.py scores.parquet embeddings.parquet ../shared/data/lfw-pairs.tsv \
        [--splits 10] [--seed 0] [--tau 0.1] [--k 3] [--far 1e-3 1e-2] [--json out.json]

People: those of pair folds 6-10 (the project's test split; nothing is tuned here -- tau and k
are fixed in advance) with at least 4 images in the score file (319 people on full LFW). The
identity of an image is its parent folder (``lfw/<Name>/<Name>_NNNN.jpg``); when an image has
several faces the one nearest the image centre is used (LFW's subject).

Two protocols, each over ``--splits`` random splits of every person's images:

* template vs probe: one held-out image is the probe, the other images (>= 3) form the template;
* template vs template: the images are cut into two disjoint halves, one template each.

Genuine scores compare a person's template with their own probe (or other half); impostor
scores compare it with every other person's. We report TAR at fixed FARs (mean and SD over the
splits) for mean, quality, softmax and top-k pooling, and how often each beats the mean.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal.curate.pool import embedding_matrix, l2_normalise, member_weights  # noqa: E402
from facequal.schema import read_table  # noqa: E402

FOLDS = range(6, 11)
MIN_IMAGES = 4
METHODS = ("mean", "quality", "softmax", "topk")


def fold_people(pairs_tsv: str | Path, folds: range = FOLDS) -> set[str]:
    """Names appearing in the given folds of LFW View 2 pairs (header, then 10 folds of 600 rows)."""
    names: set[str] = set()
    lines = Path(pairs_tsv).read_text(encoding="utf-8").splitlines()[1:]
    for r, line in enumerate(lines):
        f = line.split("\t")
        if not line.strip() or r // 600 + 1 not in folds:
            continue
        names.add(f[0])
        if len(f) == 4:
            names.add(f[2])
    return names


def identity_of(path: str) -> str:
    """LFW identity: the image's parent folder."""
    return os.path.basename(os.path.dirname(path))


def load_faces(
    scores: str | Path, embeddings: str | Path
) -> tuple[dict[str, int], dict[str, tuple[float, np.ndarray]]]:
    """Images per identity (all rows of the score file), and per image path its chosen face's
    (quality, L2-normalised embedding) where both files have it."""
    st = read_table(scores)
    et = read_table(embeddings)
    n_images: dict[str, int] = defaultdict(int)
    for p in set(st["path"].to_pylist()):
        n_images[identity_of(p)] += 1

    def ok(t: pa.Table) -> pa.Table:
        return t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.greater_equal(t["face_index"], 0)))

    st, et = ok(st), ok(et)
    q = dict(
        zip(
            zip(st["path"].to_pylist(), st["face_index"].to_pylist(), strict=True),
            st["quality"].to_pylist(),
            strict=True,
        )
    )
    emb, good = embedding_matrix(et["embedding"])
    # choose per image the face nearest the centre (using the embeddings file's boxes)
    best: dict[str, tuple[float, int]] = {}
    boxes = et["bbox"].to_pylist() if "bbox" in et.column_names else [None] * et.num_rows
    ws = et["width"].to_pylist() if "width" in et.column_names else [None] * et.num_rows
    hs = et["height"].to_pylist() if "height" in et.column_names else [None] * et.num_rows
    epaths, efis = et["path"].to_pylist(), et["face_index"].to_pylist()
    for i, (p, fi) in enumerate(zip(epaths, efis, strict=True)):
        qi = q.get((p, fi))
        if not good[i] or qi is None or not np.isfinite(qi):
            continue
        b, w, h = boxes[i], ws[i], hs[i]
        d = float(fi)
        if b is not None and w and h:
            d = float(np.hypot((b[0] + b[2]) / 2 - w / 2, (b[1] + b[3]) / 2 - h / 2))
        if p not in best or d < best[p][0]:
            best[p] = (d, i)
    emb = l2_normalise(emb)
    faces = {p: (float(q[(p, efis[i])]), emb[i]) for p, (_, i) in best.items()}
    return dict(n_images), faces


def tar_at_far(gen: np.ndarray, imp: np.ndarray, far: float) -> float:
    """True accept rate at the threshold whose false accept rate is at most ``far``."""
    imp = np.sort(imp)[::-1]
    k = int(np.floor(far * len(imp)))
    thr = imp[k] if k < len(imp) else -np.inf
    return float(np.mean(gen > thr))


def template(e: np.ndarray, q: np.ndarray, method: str, tau: float, k: int) -> np.ndarray:
    w = member_weights(q, method, tau=tau, k=k)
    return l2_normalise(w @ e)


def run(
    people: dict[str, list[tuple[float, np.ndarray]]],
    *,
    splits: int,
    seed: int,
    tau: float,
    k: int,
    fars: list[float],
) -> dict:
    """Both protocols for every method over ``splits`` random splits; returns the results dict."""
    rng = np.random.default_rng(seed)
    names = sorted(people)
    res: dict = {"protocols": {}}
    per_split: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for _ in range(splits):
        perms = {n: rng.permutation(len(people[n])) for n in names}
        for proto in ("template_vs_probe", "template_vs_template"):
            for m in METHODS:
                ta, tb = [], []
                for n in names:
                    faces = [people[n][j] for j in perms[n]]
                    q = np.array([f[0] for f in faces])
                    e = np.stack([f[1] for f in faces])
                    if proto == "template_vs_probe":
                        ta.append(template(e[1:], q[1:], m, tau, k))
                        tb.append(e[0])
                    else:
                        h = len(faces) // 2
                        ta.append(template(e[:h], q[:h], m, tau, k))
                        tb.append(template(e[h:], q[h:], m, tau, k))
                s = np.stack(ta) @ np.stack(tb).T
                gen = np.diag(s)
                imp = s[~np.eye(len(names), dtype=bool)]
                for far in fars:
                    per_split[(proto, m, far)].append(tar_at_far(gen, imp, far))
    for (proto, m, far), v in per_split.items():
        base = np.array(per_split[(proto, "mean", far)])
        arr = np.array(v)
        res["protocols"].setdefault(proto, {}).setdefault(m, {})[f"{far:g}"] = {
            "tar_mean": float(arr.mean()),
            "tar_sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "diff_vs_mean": float((arr - base).mean()),
            "wins_vs_mean": int((arr > base).sum()),
            "ties_vs_mean": int((arr == base).sum()),
            "splits": len(arr),
        }
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores")
    ap.add_argument("embeddings")
    ap.add_argument("pairs")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tau", type=float, default=0.1, help="softmax temperature (fixed in advance, not tuned)"
    )
    ap.add_argument("--k", type=int, default=3, help="faces averaged by top-k pooling")
    ap.add_argument("--far", type=float, nargs="+", default=[1e-3, 1e-2])
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    wanted = fold_people(a.pairs)
    n_images, faces = load_faces(a.scores, a.embeddings)
    chosen = sorted(n for n in wanted if n_images.get(n, 0) >= MIN_IMAGES)
    people: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    for p, f in sorted(faces.items()):
        if identity_of(p) in chosen:
            people[identity_of(p)].append(f)
    usable = {n: v for n, v in people.items() if len(v) >= MIN_IMAGES}
    print(
        f"people of folds 6-10 with >= {MIN_IMAGES} images: {len(chosen)} "
        f"(319 expected on full LFW); with >= {MIN_IMAGES} usable faces: {len(usable)}; "
        f"faces used: {sum(len(v) for v in usable.values())}"
    )
    if len(usable) < 2:
        raise SystemExit("fewer than 2 usable people: nothing to benchmark")
    res = run(usable, splits=a.splits, seed=a.seed, tau=a.tau, k=a.k, fars=a.far)
    res.update(
        {
            "people": len(chosen),
            "people_used": len(usable),
            "splits": a.splits,
            "seed": a.seed,
            "tau": a.tau,
            "k": a.k,
            "faces": sum(len(v) for v in usable.values()),
        }
    )
    for proto, by_m in res["protocols"].items():
        print(f"\n{proto} (TAR at FAR; mean ± SD over {a.splits} splits; wins = splits beating mean)")
        print("| method | " + " | ".join(f"TAR@FAR={f:g}" for f in a.far) + " |")
        print("|---|" + "---|" * len(a.far))
        for m in METHODS:
            cells = []
            for f in a.far:
                r = by_m[m][f"{f:g}"]
                extra = (
                    ""
                    if m == "mean"
                    else f" ({r['diff_vs_mean']:+.4f}, wins {r['wins_vs_mean']}/{r['splits']})"
                )
                cells.append(f"{r['tar_mean']:.4f} ± {r['tar_sd']:.4f}{extra}")
            label = m + (f" (tau={a.tau:g})" if m == "softmax" else f" (k={a.k})" if m == "topk" else "")
            print(f"| {label} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
