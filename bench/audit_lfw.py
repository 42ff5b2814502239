"""Benchmark of `facequal audit` on LFW training people with injected label noise and duplicates.

Usage::

    python bench/audit_lfw.py [--lfw ../shared/data/lfw] [--pairs ../shared/data/lfw-pairs.tsv] \
        [--suite-min-photos 2 5] [--intruders random lookalike] [--seeds 5] [--thresholds -0.05 0 0.05] \
        [--min-photos 5] [--mislabel 0.05] [--dups 0.03] [--seed 0] [--no-images] \
        [--work /tmp/facequal-audit-bench] [--jobs 2]

People: LFW *training* people only (those in no pair of folds 4-10, the validation and test
folds, i.e. the people of folds 1-3 and those in no pair; see ../shared/data/README.md).

**Label-noise suite** (first; every setting of ``--suite-min-photos`` x ``--intruders``): the
untouched photos of the training people with at least 2 photos are scored and embedded once
(cached under ``--work``); a setting keeps the people with at least N photos and moves a seeded
share ``--mislabel`` of their photos into another person's label. A face's embedding does not
depend on the folder it is filed in, so moving a photo is relabelling its row (no re-embedding).
``random``: the new label is a random other person; ``lookalike``: the other person whose mean
embedding (of the untouched photos) is most similar to the photo's true person's, the hard case
of a web search returning a similar-looking celebrity; ``outsider``: instead of moving photos,
the same number of photos of people who are *not* in the dataset (the training people with one
photo) are added under random labels, so no identity is the intruder's own. For each setting, the mean over
``--seeds`` seeds of the average precision of ``identity_outlier`` and of the plain
leave-one-out centroid distance (the baseline) for "this face is not its label's person", also
per labelled identity size (2, 3, 4-5, 6+), and precision / recall of ``mislabel`` at the default
threshold and at ``--thresholds``. AP is tie-aware (tied scores are one threshold, as in
scikit-learn): in an identity of 2 the baseline gives both faces the same score.

**Image run** (skipped with ``--no-images``): people with at least ``--min-photos`` photos;
into a folder under ``--work`` (never the data folder) the bench writes every photo once, a
seeded share ``--mislabel`` of them under another person's folder, and for a seeded share
``--dups`` of the photos each of four copies: an exact copy (new name, same pixels), a JPEG
re-encode at quality 40, a 0.5x resize, a light crop (5 % of each side's length removed, at a
random offset). A quarter of the copies go into another person's folder (the same photo filed
under two names: those copies are intruders too). Scores and embeddings come from `facequal
score` and `facequal embed --from-scores` on that folder, cached under ``--work``. Printed: the
same AP and mislabel figures, duplicate recall per kind and false duplicate links (images linked
to a photo that is not a copy of the same original); identity pairs found when ten people are
split into two labels each. Then a run on the untouched training photos and its top flagged
faces.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal.curate.audit import DEFAULT_MISLABEL_THRESHOLD, audit, baseline_outlier  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
KINDS = ("exact", "q40", "half", "crop")


def fold_people(pairs_tsv: Path, folds: range) -> set[str]:
    """Names in the given folds of LFW View 2 pairs."""
    from facequal.eval.pairs import people_of_folds, read_lfw_pairs

    return people_of_folds(read_lfw_pairs(pairs_tsv), list(folds))


def training_people(lfw: Path, pairs: Path, min_photos: int) -> dict[str, list[str]]:
    """Training people (in no pair of folds 4-10) with at least ``min_photos`` photos."""
    held_out = fold_people(pairs, range(4, 11))
    out = {}
    for name in sorted(os.listdir(lfw)):
        if name in held_out or not (lfw / name).is_dir():
            continue
        photos = sorted(f for f in os.listdir(lfw / name) if f.lower().endswith(".jpg"))
        if len(photos) >= min_photos:
            out[name] = photos
    return out


def average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve, step-wise and tie-aware: faces with equal scores
    enter together at one threshold (as scikit-learn's ``average_precision_score``), so an
    arbitrary order of ties earns nothing. NaN scores rank last."""
    s = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
    pos = np.asarray(positive, bool)
    if not pos.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last face of each run of equal scores
    tp = np.cumsum(pos)[last]
    n = (np.flatnonzero(last) + 1).astype(np.float64)
    recall_step = np.diff(np.r_[0, tp]) / pos.sum()
    return float((recall_step * tp / n).sum())


SIZE_BUCKETS = (("2", 2, 2), ("3", 3, 3), ("4-5", 4, 5), ("6+", 6, 10**9))


def clean_faces(scores: Path, embeddings: Path) -> tuple[pa.Table, np.ndarray, list[str]]:
    """The ``ok`` faces with an embedding of the untouched photos: (scores rows, unit embedding
    matrix in the same order, true person of each = the photo's folder name)."""
    from facequal.curate.pool import embedding_matrix

    st = pq.read_table(scores)
    st = st.filter(pc.equal(st["status"], "ok"))
    et = pq.read_table(embeddings)
    ekey = {k: i for i, k in enumerate(zip(et["path"].to_pylist(), et["face_index"].to_pylist(), strict=True))}
    keys = list(zip(st["path"].to_pylist(), st["face_index"].to_pylist(), strict=True))
    keep = [i for i, k in enumerate(keys) if k in ekey]
    st = st.take(pa.array(keep, pa.int64()))
    emb, _ = embedding_matrix(et["embedding"], "embedding")
    emb = np.asarray(emb, np.float64)[[ekey[keys[i]] for i in keep]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    person = [os.path.basename(os.path.dirname(p)) for p in st["path"].to_pylist()]
    return st, emb, person


def relabel(person: list[str], emb: np.ndarray, *, share: float, intruders: str, seed: int) -> list[str]:
    """A seeded share of the faces moved to another person's label: a random other person, or
    (``lookalike``) the person whose mean embedding is most similar to the true person's."""
    rng = np.random.default_rng(seed)
    names = sorted(set(person))
    code = np.array([names.index(p) for p in person])
    moved = rng.choice(len(person), int(round(share * len(person))), replace=False)
    label = list(person)
    if intruders == "lookalike":
        means = np.zeros((len(names), emb.shape[1]))
        np.add.at(means, code, emb)
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        sim = means @ means.T
        np.fill_diagonal(sim, -np.inf)
        target = np.argmax(sim, axis=1)
        for k in moved:
            label[k] = names[target[code[k]]]
    else:
        for k in moved:
            label[k] = names[(code[k] + 1 + int(rng.integers(len(names) - 1))) % len(names)]
    return label


def label_noise_setting(st: pa.Table, emb: np.ndarray, person: list[str], *, min_photos: int, intruders: str,
                        share: float, seeds: int, thresholds: list[float],
                        outsiders: tuple[pa.Table, np.ndarray, list[str]] | None = None) -> dict:
    """AP (ours, baseline; overall and per identity size) and mislabel precision / recall of one
    setting, each the mean over ``seeds`` seeded relabellings. ``outsider``: instead of moving
    photos, add that share of photos of ``outsiders`` (people not in the dataset) under random
    labels."""
    cnt: dict[str, int] = {}
    for p in person:
        cnt[p] = cnt.get(p, 0) + 1
    keep = np.array([cnt[p] >= min_photos for p in person])
    st_s = st.filter(pa.array(keep))
    emb_s = emb[keep]
    person_s = [p for p, k in zip(person, keep, strict=True) if k]
    et = pa.table({"path": st_s["path"], "face_index": st_s["face_index"], "status": st_s["status"],
                   "embedding": pa.array(list(emb_s.astype(np.float32)), pa.list_(pa.float32(), emb.shape[1]))})
    ths = sorted(set([DEFAULT_MISLABEL_THRESHOLD, *thresholds]))
    runs = []
    base_st, base_emb, base_person = st_s, emb_s, person_s
    for seed in range(seeds):
        if intruders == "outsider":  # photos of people with one photo, not otherwise in the dataset
            ost, oemb, operson = outsiders
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(operson), int(round(share * len(base_person))), replace=False)
            names = sorted(set(base_person))
            st_s = pa.concat_tables([base_st, ost.take(pa.array(pick, pa.int64())).select(base_st.column_names)
                                     .cast(base_st.schema)])
            emb_s = np.concatenate([base_emb, oemb[pick]])
            person_s = base_person + [operson[int(k)] for k in pick]
            label = base_person + [names[int(rng.integers(len(names)))] for _ in pick]
            et = pa.table({"path": st_s["path"], "face_index": st_s["face_index"], "status": st_s["status"],
                           "embedding": pa.array(list(emb_s.astype(np.float32)),
                                                 pa.list_(pa.float32(), emb.shape[1]))})
        else:
            label = relabel(person_s, emb_s, share=share, intruders=intruders, seed=seed)
        t = audit(st_s.append_column("identity", pa.array(label, pa.string())), et, duplicates=False).table
        out = np.asarray(t["identity_outlier"].to_numpy(zero_copy_only=False), np.float64)
        ok = np.isfinite(out)  # an identity of one face is not scored, by either method
        pos = np.array([a != b for a, b in zip(label, person_s, strict=True)])
        codes = np.unique(np.array(label), return_inverse=True)[1]
        base = baseline_outlier(emb_s, codes)
        size = np.asarray(t["identity_size"].to_numpy(zero_copy_only=False), np.int64)
        r = {"faces": int(ok.sum()), "intruders": int(pos[ok].sum()),
             "ap": average_precision(out[ok], pos[ok]), "ap_base": average_precision(base[ok], pos[ok])}
        for name, lo, hi in SIZE_BUCKETS:
            m = ok & (size >= lo) & (size <= hi)
            r[f"n_{name}"], r[f"pos_{name}"] = int(m.sum()), int(pos[m].sum())
            r[f"ap_{name}"] = average_precision(out[m], pos[m])
            r[f"ap_base_{name}"] = average_precision(base[m], pos[m])
        for th in ths:
            flag = ok & (out > th)
            r[f"prec@{th:g}"] = float(pos[flag].mean()) if flag.any() else float("nan")
            r[f"rec@{th:g}"] = float(flag[pos & ok].mean())
            r[f"flag@{th:g}"] = int(flag.sum())
        runs.append(r)
    with warnings.catch_warnings():  # a bucket without faces in every seed stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([r[k] for r in runs])) for k in runs[0]}


def print_setting(name: str, r: dict, thresholds: list[float]) -> None:
    """One setting's figures, as the README table reads them."""
    print(f"\n[{name}] {r['faces']:.0f} scored faces, {r['intruders']:.0f} intruders (means over seeds)")
    print(f"  AP identity_outlier {r['ap']:.3f}   AP baseline {r['ap_base']:.3f}   ({r['ap'] - r['ap_base']:+.3f})")
    for b, _, _ in SIZE_BUCKETS:
        if r[f"n_{b}"]:
            print(f"    identity size {b:>3}: {r[f'n_{b}']:6.0f} faces, {r[f'pos_{b}']:5.0f} intruders, "
                  f"AP {r[f'ap_{b}']:.3f} vs baseline {r[f'ap_base_{b}']:.3f}")
    for th in sorted(set([DEFAULT_MISLABEL_THRESHOLD, *thresholds])):
        mark = " (default)" if th == DEFAULT_MISLABEL_THRESHOLD else ""
        print(f"  mislabel > {th:g}{mark}: {r[f'flag@{th:g}']:.0f} flagged, precision {r[f'prec@{th:g}']:.3f}, "
              f"recall {r[f'rec@{th:g}']:.3f}")


def run_suite(a: argparse.Namespace, lfw: Path) -> dict:
    """The label-noise suite (see the module docstring); returns the figures per setting."""
    people = training_people(lfw, a.pairs, 2)
    work = (a.work / "clean2").resolve()
    work.mkdir(parents=True, exist_ok=True)
    s_file, e_file = score_and_embed([str(lfw / n) for n in sorted(people)], work, a.jobs, "clean")
    st, emb, person = clean_faces(s_file, e_file)
    outsiders = None
    if "outsider" in a.intruders:  # the training people with exactly one photo
        single = sorted(set(training_people(lfw, a.pairs, 1)) - set(people))
        w1 = (a.work / "clean1").resolve()
        w1.mkdir(parents=True, exist_ok=True)
        so, eo = score_and_embed([str(next((lfw / n).glob("*.jpg"))) for n in single], w1, a.jobs, "single")
        outsiders = clean_faces(so, eo)
    print(f"label-noise suite: {len(people)} training people with >= 2 photos, {len(person)} faces; "
          f"{a.mislabel:.0%} of the faces relabelled, {a.seeds} seeds")
    figs = {}
    for m in a.suite_min_photos:
        for kind in a.intruders:
            name = f"min-photos {m}, {kind} intruders"
            figs[name] = label_noise_setting(st, emb, person, min_photos=m, intruders=kind, share=a.mislabel,
                                             seeds=a.seeds, thresholds=a.thresholds, outsiders=outsiders)
            print_setting(name, figs[name], a.thresholds)
    return figs


def _jpeg(im, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def build_dataset(people: dict[str, list[str]], lfw: Path, out: Path, *, seed: int, mislabel: float,
                  dups: float) -> list[dict]:
    """Write the corrupted dataset into ``out``; return one truth row per written image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = sorted(people)
    photos = [(n, f) for n in names for f in people[n]]
    moved = set(rng.choice(len(photos), int(round(mislabel * len(photos))), replace=False).tolist())
    truth = []
    for k, (name, f) in enumerate(photos):
        folder = name
        if k in moved:
            folder = names[(names.index(name) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        (out / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lfw / name / f, out / folder / f)
        truth.append(dict(path=f"{folder}/{f}", person=name, folder=folder, source=f"{name}/{f}", kind=None))
    picked = rng.choice(len(photos), int(round(dups * len(photos))), replace=False)
    for k in picked:
        name, f = photos[int(k)]
        src = truth[int(k)]
        im = Image.open(lfw / name / f).convert("RGB")
        w, h = im.size
        for kind in KINDS:
            folder = src["folder"]
            if rng.random() < 0.25:  # the same photo filed under another name
                folder = names[int(rng.integers(len(names)))]
            stem = f[:-4] + f"_copy_{kind}"
            if kind == "exact":
                dest, data = f"{folder}/{stem}.png", None
                (out / folder).mkdir(parents=True, exist_ok=True)
                im.save(out / dest)  # other bytes, same decoded pixels
            elif kind == "q40":
                dest, data = f"{folder}/{stem}.jpg", _jpeg(im, 40)
            elif kind == "half":
                dest, data = f"{folder}/{stem}.jpg", _jpeg(im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90)
            else:
                dx, dy = int(round(0.05 * w)), int(round(0.05 * h))
                ox, oy = int(rng.integers(dx + 1)), int(rng.integers(dy + 1))
                dest, data = f"{folder}/{stem}.jpg", _jpeg(im.crop((ox, oy, w - dx + ox, h - dy + oy)), 90)
            if data is not None:
                (out / folder).mkdir(parents=True, exist_ok=True)
                (out / dest).write_bytes(data)
            truth.append(dict(path=dest, person=name, folder=folder, source=src["source"], kind=kind))
    return truth


def score_and_embed(images: list[str] | str, work: Path, jobs: int, tag: str) -> tuple[Path, Path]:
    """`facequal score` then `facequal embed --from-scores` (cached under ``work``)."""
    s, e = work / f"{tag}-scores.parquet", work / f"{tag}-emb.parquet"
    fq = [sys.executable, "-m", "facequal"]
    inputs = images if isinstance(images, list) else [images]
    if not s.exists():
        subprocess.run(["nice", *fq, "score", *inputs, "-o", str(s), "-j", str(jobs), "--quiet"], check=True,
                       cwd=work)
    if not e.exists():
        subprocess.run(["nice", *fq, "embed", *inputs, "--from-scores", str(s), "-o", str(e), "-j", str(jobs),
                        "--quiet"], check=True, cwd=work)
    return s, e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, default=HERE.parent / "shared/data/lfw")
    ap.add_argument("--pairs", type=Path, default=HERE.parent / "shared/data/lfw-pairs.tsv")
    ap.add_argument("--min-photos", type=int, default=5)
    ap.add_argument("--mislabel", type=float, default=0.05)
    ap.add_argument("--dups", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/facequal-audit-bench"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--suite-min-photos", type=int, nargs="+", default=[2, 5],
                    help="label-noise suite: people with at least this many photos (one setting each)")
    ap.add_argument("--intruders", nargs="+", choices=("random", "lookalike", "outsider"),
                    default=["random", "lookalike", "outsider"],
                    help="label-noise suite: where a moved photo goes")
    ap.add_argument("--seeds", type=int, default=5, help="label-noise suite: relabellings averaged per setting")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[-0.05, 0.05, 0.1],
                    help="mislabel thresholds reported besides the default")
    ap.add_argument("--no-suite", action="store_true", help="skip the label-noise suite")
    ap.add_argument("--no-images", action="store_true", help="skip the image run (duplicates, untouched photos)")
    a = ap.parse_args()

    lfw = a.lfw.resolve()
    all_figs: dict = {}
    if not a.no_suite:
        all_figs["suite"] = run_suite(a, lfw)
    if a.no_images:
        if a.json is not None:
            a.json.write_text(json.dumps(all_figs, indent=2))
        return
    print(f"\nimage run (min-photos {a.min_photos}, {a.mislabel:.0%} moved, {a.dups:.0%} copied four ways)")
    people = training_people(lfw, a.pairs, a.min_photos)
    n_photos = sum(len(v) for v in people.values())
    print(f"{len(people)} training people with >= {a.min_photos} photos, {n_photos} photos")
    cfg = dict(people=len(people), photos=n_photos, seed=a.seed, mislabel=a.mislabel, dups=a.dups, v=1)
    key = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    work = (a.work / key).resolve()
    data = work / "data"
    truth_file = work / "truth.json"
    if not truth_file.exists():
        shutil.rmtree(work, ignore_errors=True)  # our own cache folder, never the data folder
        data.mkdir(parents=True)
        truth = build_dataset(people, lfw, data, seed=a.seed, mislabel=a.mislabel, dups=a.dups)
        truth_file.write_text(json.dumps(truth))
    truth = json.loads(truth_file.read_text())
    t0 = time.perf_counter()
    s_file, e_file = score_and_embed("data", work, a.jobs, "noisy")
    print(f"scores and embeddings: {time.perf_counter() - t0:.0f} s (0 when cached) in {work}")

    t0 = time.perf_counter()
    res = audit(s_file, e_file, by="parent", image_root=work, jobs=a.jobs)
    t_audit = time.perf_counter() - t0
    t = res.table.filter(pc.is_valid(res.table["identity_outlier"]))
    tr = {("data/" + r["path"]): r for r in truth}
    paths = t["path"].to_pylist()
    pos = np.array([tr[p]["person"] != tr[p]["folder"] for p in paths])
    out = np.asarray(t["identity_outlier"].to_numpy(zero_copy_only=False), np.float64)
    # the baseline on exactly the same faces
    from facequal.curate.pool import embedding_matrix

    et = pq.read_table(e_file)
    ekey = {k: i for i, k in enumerate(zip(et["path"].to_pylist(), et["face_index"].to_pylist(), strict=True))}
    emb, _ = embedding_matrix(et["embedding"], "embedding")
    fi = t["face_index"].to_pylist()
    ee = emb[[ekey[(p, f)] for p, f in zip(paths, fi, strict=True)]]
    codes = np.asarray(pc.dictionary_encode(t["identity"]).combine_chunks().indices.to_numpy(), np.int64)
    base = baseline_outlier(ee, codes)
    flag = np.asarray(t["mislabel"].to_numpy(zero_copy_only=False), bool)
    figs = {
        "faces": int(len(paths)), "intruders": int(pos.sum()),
        "ap_identity_outlier": average_precision(out, pos), "ap_baseline": average_precision(base, pos),
        "mislabel_precision": float(pos[flag].mean()) if flag.any() else float("nan"),
        "mislabel_recall": float(flag[pos].mean()), "mislabel_flagged": int(flag.sum()),
        "audit_seconds": t_audit,
    }
    print(f"faces audited {figs['faces']}, intruders {figs['intruders']} "
          f"({figs['intruders'] / figs['faces']:.1%})")
    print(f"AP identity_outlier {figs['ap_identity_outlier']:.3f}   AP baseline (leave-one-out centroid) "
          f"{figs['ap_baseline']:.3f}")
    print(f"mislabel at the default threshold {DEFAULT_MISLABEL_THRESHOLD}: {figs['mislabel_flagged']} flagged, "
          f"precision {figs['mislabel_precision']:.3f}, recall {figs['mislabel_recall']:.3f}")

    # duplicates: every image row (one face per image is enough: the columns are per image)
    full = res.table.filter(pc.is_valid(res.table["identity_outlier"]))
    dup_of = dict(zip(full["path"].to_pylist(), full["duplicate_of"].to_pylist(), strict=True))
    group = dict(zip(full["path"].to_pylist(), full["dup_group"].to_pylist(), strict=True))
    by_source = {}
    for r in truth:
        if r["kind"] is None:
            by_source[r["source"]] = "data/" + r["path"]
    found = {k: [0, 0] for k in KINDS}
    for r in truth:
        if r["kind"] is None:
            continue
        p, orig = "data/" + r["path"], by_source[r["source"]]
        if p not in group:  # no face detected in this copy: not audited
            continue
        found[r["kind"]][1] += 1
        found[r["kind"]][0] += int(group[p] is not None and group.get(orig) == group[p])
    false_links = 0
    for p, d in dup_of.items():
        if d is not None and tr[p]["source"] != tr[d]["source"]:
            false_links += 1
    for k, (f, n) in found.items():
        figs[f"dup_recall_{k}"] = f / n if n else float("nan")
    figs["false_duplicate_links"] = false_links
    print("duplicate recall: " + ", ".join(f"{k} {f}/{n} ({f / max(n, 1):.1%})" for k, (f, n) in found.items())
          + f"; false duplicate links: {false_links}")
    print(f"audit (outliers + fingerprints + duplicates + identities) took {t_audit:.1f} s with --jobs {a.jobs}")

    # the untouched training photos
    real_inputs = [str(lfw / n) for n in sorted(people)]
    rs, re_ = score_and_embed(real_inputs, work, a.jobs, "real")
    real = audit(rs, re_, by="parent", jobs=a.jobs)
    rt = real.table.filter(pc.is_valid(real.table["identity_outlier"]))
    rt = rt.sort_by([("identity_outlier", "descending")])
    print(f"\nuntouched training photos: {rt.num_rows} faces, {real.n_mislabel} flagged as mislabel, "
          f"{real.n_duplicates} duplicate faces")
    for r in rt.slice(0, 10).to_pylist():
        print(f"  {r['identity_outlier']:+.3f}  {r['path']}  (nearest: {r['nearest_identity']})")
    for r in real.table.filter(pc.is_valid(real.table["duplicate_of"])).to_pylist()[:10]:
        print(f"  duplicate ({r['duplicate_kind']}): {r['path']} of {r['duplicate_of']}")
    figs["real_flagged"] = real.n_mislabel
    figs["real_duplicates"] = real.n_duplicates

    # identity pairs: ten people with >= 10 photos split into two labels each
    rng = np.random.default_rng(a.seed + 1)
    big = sorted(n for n, v in people.items() if len(v) >= 10)
    split = set(rng.choice(big, min(10, len(big)), replace=False).tolist())
    rst = pq.read_table(rs)
    ident = [os.path.basename(os.path.dirname(p)) for p in rst["path"].to_pylist()]
    half = rng.random(len(ident)) < 0.5
    ident = [f"{n}__b" if (n in split and h) else n for n, h in zip(ident, half, strict=True)]
    rst = rst.append_column("identity", pa.array(ident, pa.string()))
    sp = audit(rst, re_, duplicates=False).identities
    pairs = set(zip(sp["identity_a"].to_pylist(), sp["identity_b"].to_pylist(), strict=True))
    hit = sum(((n, n + "__b") in pairs) or ((n + "__b", n) in pairs) for n in split)
    wrong = len(pairs) - hit
    figs["identity_pairs_found"], figs["identity_pairs_other"] = hit, wrong
    print(f"\nidentity pairs (10 people split in two labels): {hit}/10 found, {wrong} other pairs above the "
          "default threshold")
    for r in sp.slice(0, 15).to_pylist():
        print(f"  {r['score']:.3f} (centre cos {r['centre_similarity']:.3f})  {r['identity_a']} / {r['identity_b']}")
    all_figs["images"] = figs
    if a.json is not None:
        a.json.write_text(json.dumps(all_figs, indent=2))


if __name__ == "__main__":
    main()
