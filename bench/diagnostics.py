"""What the per-face diagnostics are worth, on validation data only, and what they cost.

1. CFP validation (splits 4-5): ``abs(yaw)`` separating profile from frontal photos (ROC AUC,
   profile = positive) and the yaw distribution of each pose.
2. LFW validation people (pair folds 4-5): each photo blurred at increasing strength (Gaussian
   radius in pixels of the 250 px photo) and darkened at increasing strength (pixel values
   scaled down): the share of faces whose ``sharpness`` / ``brightness`` fall strictly at every
   step (faces the detector loses at some step are counted apart).
3. The same photos rotated in the image plane by known angles: the median error of the change
   in ``roll``, and how far ``yaw`` / ``pitch`` move (they should not).
4. The ranges of every diagnostic on the clean LFW validation photos (README's table).
5. Cost: ``facequal.score`` on the same photos with diagnostics and with them switched off
   (one worker, this process, interleaved rounds, best of each): the throughput ratio.

    python bench/diagnostics.py --data ../shared/data            # about 5 minutes on 2 cores
    python bench/diagnostics.py --data ../shared/data --photos 200 --rounds 2   # quicker

Every figure comes from a fresh run over the images; nothing is read from earlier outputs.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

BLUR_RADII = (0.0, 1.0, 2.0, 3.5, 6.0)
DARKEN = (1.0, 0.7, 0.5, 0.3, 0.15)
ANGLES = (-45, -30, -15, 15, 30, 45)
COLUMNS = ("yaw", "pitch", "roll", "eye_distance", "sharpness", "brightness", "contrast")


def lfw_people(pairs_tsv: Path, folds: set[int]) -> set[str]:
    """Names in the given folds of LFW View 2 (the project's split: validation = folds 4-5)."""
    from facequal.eval.pairs import people_of_folds, read_lfw_pairs

    return people_of_folds(read_lfw_pairs(pairs_tsv), sorted(folds))


def percentiles(x: np.ndarray, ps: Sequence[float] = (5, 25, 50, 75, 95)) -> str:
    return " ".join(f"p{p:g} {v:7.1f}" for p, v in zip(ps, np.percentile(x, ps), strict=True))


def first_face(scorer, img: Image.Image) -> dict | None:
    rows = [r for r in scorer.score_image(img) if r["status"] == "ok"]
    return rows[0] if rows else None


def cfp_pose(data: Path) -> None:
    import facequal
    from facequal.eval.metrics import ranking_auc

    with open(data / "cfp" / "identities.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["split"] in ("4", "5")]
    paths = [str(data / "cfp" / r["path"]) for r in rows]
    table = facequal.score(paths)
    by_path = {p: (y, s) for p, y, s in zip(table["path"].to_pylist(), table["yaw"].to_pylist(),
                                              table["status"].to_pylist(), strict=True)}
    pose = np.array([r["pose"] == "profile" for r in rows])
    yaw = np.array([by_path[p][0] if by_path[p][0] is not None else np.nan for p in paths], float)
    found = np.isfinite(yaw)
    print(f"\n## CFP validation (splits 4-5): {len(paths)} photos, {int(pose.sum())} profile; "
          f"no face found in {int((~found & pose).sum())} profile and {int((~found & ~pose).sum())} frontal")
    y, p = yaw[found], pose[found]
    print(f"abs(yaw) profile vs frontal: ROC AUC {ranking_auc(np.abs(y), p):.4f}")
    for name, sel in (("frontal", ~p), ("profile", p)):
        print(f"  {name:8s} yaw      {percentiles(y[sel])}")
        print(f"  {name:8s} abs(yaw) {percentiles(np.abs(y[sel]))}")
    for t in (30, 45):
        print(f"  abs(yaw) > {t}: {np.mean(np.abs(y[p]) > t):.1%} of profiles, "
              f"{np.mean(np.abs(y[~p]) > t):.1%} of frontals")


def degradations(photos: list[str]) -> dict[str, list[float]]:
    import facequal

    scorer = facequal.Scorer()
    # per series: faces where the measure falls strictly, faces counted, faces the detector lost
    falls = {"blurred": 0, "dark": 0}
    counted = {"blurred": 0, "dark": 0}
    lost = {"blurred": 0, "dark": 0}
    roll_err: dict[int, list[float]] = {a: [] for a in ANGLES}
    yaw_move, pitch_move = [], []
    clean_cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
    # rows for the report's likely-cause check: clean, strongest blur / darkening / rotation
    labelled: dict[str, list[dict]] = {"clean": [], "blurred": [], "dark": [], "tilted": []}
    for path in photos:
        with Image.open(path) as im:
            img = im.convert("RGB")
        base = first_face(scorer, img)
        if base is None:
            continue
        labelled["clean"].append(base)
        for c in COLUMNS:
            if base[c] is not None:
                clean_cols[c].append(float(base[c]))
        arr = np.asarray(img, np.float32)
        series = {
            "blurred": [first_face(scorer, img.filter(ImageFilter.GaussianBlur(r))) if r else base
                        for r in BLUR_RADII],
            "dark": [first_face(scorer, Image.fromarray(np.round(arr * f).astype(np.uint8))) if f != 1 else base
                     for f in DARKEN],
        }
        for name, column in (("blurred", "sharpness"), ("dark", "brightness")):
            faces = series[name]
            if faces[-1] is not None:
                labelled[name].append(faces[-1])
            if any(f is None for f in faces):
                lost[name] += 1
                continue
            v = [f[column] for f in faces]
            counted[name] += 1
            falls[name] += all(b < a for a, b in zip(v, v[1:], strict=False))
        for a in ANGLES:
            # PIL turns counter-clockwise for positive angles: -a turns the face a degrees clockwise
            r = first_face(scorer, img.rotate(-a, resample=Image.Resampling.BICUBIC, expand=True,
                                              fillcolor=(128, 128, 128)))
            if r is None:
                continue
            roll_err[a].append((r["roll"] - base["roll"]) - a)
            if abs(a) == max(ANGLES):
                labelled["tilted"].append(r)
            if r["yaw"] is not None and base["yaw"] is not None:
                yaw_move.append(abs(r["yaw"] - base["yaw"]))
                pitch_move.append(abs(r["pitch"] - base["pitch"]))
    print(f"\n## LFW validation photos: {len(photos)} photos")
    for name, what in (("blurred", f"blur radii {BLUR_RADII} px: sharpness"),
                       ("dark", f"darkening x{DARKEN}: brightness")):
        print(f"{what} falls strictly at every step for {falls[name]} of {counted[name]} faces "
              f"({falls[name] / max(counted[name], 1):.1%}); {lost[name]} faces lost by the detector at some step")
    allerr = np.concatenate([np.abs(v) for v in roll_err.values() if v])
    print(f"rotation by {ANGLES} degrees: median |roll error| {np.median(allerr):.2f} deg "
          f"(p90 {np.percentile(allerr, 90):.2f}) over {len(allerr)} rotated faces")
    for a, v in roll_err.items():
        print(f"  {a:+4d} deg: median error {np.median(v):+.2f}, "
              f"median |error| {np.median(np.abs(v)):.2f} (n={len(v)})")
    print(f"  yaw moves by median {np.median(yaw_move):.1f} deg, pitch by {np.median(pitch_move):.1f} deg "
          "under rotation (they should not move)")
    causes(labelled)
    return clean_cols


def causes(labelled: dict[str, list[dict]]) -> None:
    """The report's likely-cause label (facequal.curate.report.diagnostics) on clean and on the
    most degraded faces, all in one table (sharpness's bound is relative to the table's median)."""
    import pyarrow as pa

    from facequal.curate.report.diagnostics import CAUSES, DIAGNOSTICS, outside, read_diagnostics

    rows = [r for group in labelled.values() for r in group]
    table = pa.table({c: pa.array([r[c] for r in rows], pa.float64()) for c in COLUMNS})
    diag = read_diagnostics(table)
    print("\n## The report's likely cause (clean photos and the strongest of each degradation, one table)")
    start = 0
    for name, group in labelled.items():
        cause = diag.cause[start:start + len(group)]
        start += len(group)
        counts = {CAUSES[c]: int((cause == c).sum()) for c in range(len(CAUSES)) if (cause == c).any()}
        none = int((cause < 0).sum())
        top = ", ".join(f"{k} {v / len(group):.0%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"  {name:8s} ({len(group)} faces): no cause {none / len(group):.0%}; {top}")
    clean = len(labelled["clean"])
    print("  clean faces outside each typical range:")
    for d in DIAGNOSTICS:
        if d.name not in diag.values:
            continue
        low, high = diag.ranges[d.name]
        below, above = outside(d, diag.values[d.name][:clean], low, high)
        share = np.mean((below > 0) | (above > 0))
        bounds = f"[{'' if low is None else f'{low:.3g}'}, {'' if high is None else f'{high:.3g}'}]"
        print(f"    {d.name:12s} {bounds}{' of abs' if d.magnitude else ''}: {share:.1%}")


def ranges(cols: dict[str, list[float]]) -> None:
    print("\n## Ranges on clean LFW validation photos (first face of each photo)")
    print(f"{'column':14s} {'p1':>8s} {'p5':>8s} {'median':>8s} {'p95':>8s} {'p99':>8s}")
    for c, v in cols.items():
        q = np.percentile(v, (1, 5, 50, 95, 99))
        print(f"{c:14s} " + " ".join(f"{x:8.2f}" for x in q))


def cost(photos: list[str], rounds: int) -> None:
    import facequal
    import facequal.pipeline.faces as faces_mod
    from facequal.pipeline.diagnostics import DIAGNOSTIC_COLUMNS

    real = faces_mod.face_diagnostics

    def off(crop, landmarks):  # the same columns, none computed
        return dict.fromkeys(DIAGNOSTIC_COLUMNS)

    best = {"with": np.inf, "without": np.inf}
    facequal.score(photos[:20], jobs=1)  # sessions loaded, caches warm
    for _ in range(rounds):
        for name, fn in (("without", off), ("with", real)):
            faces_mod.face_diagnostics = fn
            t = time.perf_counter()
            facequal.score(photos, jobs=1)
            best[name] = min(best[name], time.perf_counter() - t)
    faces_mod.face_diagnostics = real
    n = len(photos)
    print(f"\n## Cost: facequal.score on {n} photos, 1 worker, best of {rounds} interleaved rounds")
    print(f"without diagnostics {n / best['without']:.1f} images/s, with {n / best['with']:.1f} images/s: "
          f"ratio {best['without'] / best['with']:.3f} (1.0 = free; target >= 0.95)")
    from facequal.pipeline.diagnostics import face_diagnostics

    crop = np.asarray(Image.open(photos[0]).convert("RGB").resize((96, 96)), np.uint8)
    lm = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
    k = 2000
    t = time.perf_counter()
    for _ in range(k):
        face_diagnostics(crop, lm)
    print(f"face_diagnostics alone: {(time.perf_counter() - t) / k * 1e6:.0f} us per face")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--photos", type=int, default=400, help="LFW validation photos for steps 2-3 and 5")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the cost measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=(), choices=("cfp", "degrade", "cost"))
    a = ap.parse_args(argv)
    if not (a.data / "lfw").is_dir():
        sys.exit(f"no LFW under {a.data}: pass --data")
    people = sorted(lfw_people(a.data / "lfw-pairs.tsv", {4, 5}))
    photos = sorted(str(p) for name in people for p in (a.data / "lfw" / name).glob("*.jpg"))
    random.Random(a.seed).shuffle(photos)
    photos = photos[: a.photos]
    print(f"# bench/diagnostics.py: {len(people)} LFW validation people, {len(photos)} photos sampled "
          f"(seed {a.seed}); cpu count {os.cpu_count()}")
    if "cfp" not in a.skip:
        cfp_pose(a.data)
    if "degrade" not in a.skip:
        ranges(degradations(photos))
    if "cost" not in a.skip:
        cost(photos, a.rounds)


if __name__ == "__main__":
    main()
