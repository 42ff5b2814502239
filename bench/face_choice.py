"""Which face is the photo's face? The subject rule against the largest face, judged by identity.

For each photo of LFW validation people (pair folds 4-5), CFP validation people (splits 4-5)
and the CelebA slice, every face is detected and embedded with the teacher (dlib) once
(``faces="all"``), then each rule picks its face from those detections. Where the rules pick
different faces, the one that belongs to the labelled person is the one closer (cosine) to the
person's centroid, built from the photos where both rules agree (unambiguous photos). Prints,
per set: photos, photos with several faces, photos where the rules differ, and how often each
rule picked the face of the labelled person there (a rule "wins" a photo when its face is the
closer one and is accepted at the teacher's FMR 1e-3 threshold).

    python bench/face_choice.py --data ../shared/data [--sets lfw-val,cfp-val,celeba] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def pick(rule: str, faces: list[dict], width: int, height: int) -> int:
    """face_index chosen by ``rule`` ("largest" or "subject") among one photo's face rows."""
    from facequal.pipeline.detect import Face, pick_centred, pick_largest

    objs = [Face(box=np.asarray(f["bbox"], np.float64), score=float(f["det_score"]),
                 landmarks=np.asarray(f["landmarks"], np.float64).reshape(5, 2)) for f in faces]
    chooser = pick_largest if rule == "largest" else pick_centred
    chosen = chooser(objs, width, height)[0]
    return faces[next(i for i, o in enumerate(objs) if o is chosen)]["face_index"]


def judge(rows: dict[str, list[dict]], ident: dict[str, str], emb: dict[tuple[str, int], np.ndarray],
          threshold: float) -> dict[str, int]:
    """Counts of photos where the rules differ and which rule picked the labelled person."""
    picks = {}
    for path, faces in rows.items():
        w, h = faces[0]["width"], faces[0]["height"]
        picks[path] = (pick("largest", faces, w, h), pick("subject", faces, w, h))
    by_person: dict[str, list[np.ndarray]] = defaultdict(list)
    for path, (a, b) in picks.items():
        if a == b and (path, a) in emb:
            by_person[ident[path]].append(emb[(path, a)])
    out = {"photos": len(rows), "several_faces": sum(len(f) > 1 for f in rows.values()), "differ": 0,
           "subject_wins": 0, "largest_wins": 0, "neither": 0}
    for path, (a, b) in picks.items():
        if a == b:
            continue
        out["differ"] += 1
        others = by_person.get(ident[path], [])
        if not others or (path, a) not in emb or (path, b) not in emb:
            out["neither"] += 1
            continue
        c = np.mean(others, axis=0)
        c /= np.linalg.norm(c)
        sa, sb = float(emb[(path, a)] @ c), float(emb[(path, b)] @ c)
        if max(sa, sb) < threshold:
            out["neither"] += 1
        elif sb > sa:
            out["subject_wins"] += 1
        else:
            out["largest_wins"] += 1
    return out


def main() -> None:
    import facequal
    from facequal.schema import read_table
    from facequal.train.build_cache import collect_items

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--sets", default="lfw-val,cfp-val,celeba")
    ap.add_argument("--limit", type=int, default=None, help="photos per set (first N, for a quick look)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    root = Path(a.data)
    items = collect_items(root)
    wanted = {"lfw-val": ("lfw", "val"), "cfp-val": ("cfp", "val"), "celeba": ("celeba", "train")}
    # The teacher's FMR 1e-3 threshold, as the bundled model's labels used it.
    from facequal.models.zoo import resolve_model

    thr = float(json.loads(resolve_model(None).metadata["facequal.training"])["teacher_threshold"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            source, split = wanted[name]
            sel = [it for it in items if it.source == source and it.split == split][: a.limit]
            paths = [str(root / it.path) for it in sel]
            ident = dict(zip(paths, (it.identity for it in sel), strict=True))
            t0 = time.perf_counter()
            scores = Path(tmp) / f"{name}-scores.parquet"
            facequal.score(paths, output=str(scores), faces="all", jobs=a.jobs)
            e = facequal.embed([], output=str(Path(tmp) / f"{name}-emb.parquet"), from_scores=str(scores),
                               jobs=a.jobs)
            rows: dict[str, list[dict]] = defaultdict(list)
            for r in read_table(scores).to_pylist():
                if r["status"] == "ok":
                    rows[r["path"]].append(r)
            emb = {(r["path"], r["face_index"]): np.asarray(r["embedding"], np.float64)
                   for r in e.to_pylist() if r["status"] == "ok"}
            res = judge(rows, ident, emb, thr)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            results[name] = res
            print(f"{name}: {json.dumps(res)}", flush=True)
    print("\n| set | photos | with several faces | rules differ | subject right | largest right | neither |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['photos']:,} | {r['several_faces']:,} | {r['differ']:,} | {r['subject_wins']:,} | "
              f"{r['largest_wins']:,} | {r['neither']:,} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
