"""Calibration under shift: is ``quality`` still the teacher's acceptance probability off clean photos?

The model card promises that ``quality`` is the probability that the face is accepted by the
teacher recogniser (dlib ResNet, the ``embed`` default) against a good photo of the same person
at the teacher's FMR 1e-3 threshold. This bench builds a clean + degraded set from LFW people of
the chosen split (``validation``: pair folds 4-5, for every tuning choice; ``test``: folds 6-10,
run once by the lead after the choice is made), people with at least two photos only, and
measures that promise per degradation and overall:

    python bench/calibration_shift.py --data ../shared/data --people validation \\
        [--max-photos 400] [--max-per-person 8] [--model NAME] [--work DIR] \\
        [--fit CAL.json [--clean-weight W]] [--calibration CAL.json] [--json OUT.json]

Set. People are drawn in a seeded random order (``--seed``) and taken while their photos fit in
``--max-photos`` (0: all); a person contributes at most ``--max-per-person`` photos (a seeded
subset), so that one prolific person does not dominate. Every source photo appears clean (the
original JPEG) and under every degradation below, applied to the whole 250x250 photo before
detection (seeded per variant and photo, so deterministic and independent of the subset) and
written losslessly (PNG) to the work folder, so that only the intended degradation is present:

* ``jpeg-q30/q10/q5/q2``: a JPEG round trip at quality 30, 10, 5, 2;
* ``noise-10/25/50``: additive Gaussian colour noise, sigma 10, 25, 50 grey levels;
* ``blur-1.5/3/6``: Gaussian blur, sigma 1.5, 3, 6 px;
* ``down-2/4/8``: down-scaling to 1/2, 1/4, 1/8 and back up (bilinear both ways);
* ``dark-0.4/0.2/0.1``: ``255 * gain * (x/255) ** gamma`` with (gain, gamma) (0.4, 1.0),
  (0.2, 1.2), (0.1, 1.5);
* ``bright-2/3.5``: over-exposure with clipping, (gain, gamma) (2.0, 0.8), (3.5, 0.6);
* combinations, in physical order: ``blur3+jpeg10``, ``down4+noise15``, ``dark0.2+noise10``.

The default (400 photos, 22 variants: about 8,800 images) takes about 5-8 minutes on 2 cores.

Pipeline: ``facequal.score(..., faces="center")`` on all images, then ``facequal.embed(...,
from_scores=<scores>)`` so that the teacher embeds exactly the faces that were scored.

Target per face (:func:`clean_reference_targets`): 1 if the face's cosine to its reference is at
least the teacher threshold (the model's ``teacher_threshold`` metadata), else 0. The reference
is the clean photo of the same person that the teacher finds most typical (highest mean cosine
to the person's other clean photos), never the face's own source photo: a degraded copy of photo
k is compared with another photo. Faces whose person has no other clean face found are left out.

Prints (markdown): per variant: photos, faces found, faces evaluated, mean ``quality``, observed
acceptance, ECE (10 uniform bins), share below ``--min``; the overall reliability table (10
uniform bins: n, mean predicted, observed) and ECE; the ranking AUC of ``quality`` (and of
``quality_raw``) for "accepted" (Mann-Whitney, ties count half); what ``--min 0.4`` removes
(share of faces below it, their observed acceptance vs the kept faces'); the wall time of each
stage. ``--json`` writes all of it.

``--fit CAL.json`` fits :func:`facequal.train.calibrate.fit_calibration` on (``quality_raw``,
target) of this set and writes the returned dict; the in-sample ECE of the fitted map is printed
(overall and on the clean faces alone). ``--clean-weight W`` weighs the clean faces so that
together they count W times all degraded faces: with every face weighing 1 the map suits a set
that is 21 parts degraded to 1 part clean, and is too cautious on clean photos.
``--calibration CAL.json`` evaluates ``apply_calibration(quality_raw, map)`` instead of the
file's ``quality``, so a map fitted on validation people can be judged on test people without
rebuilding the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facequal.eval.metrics import ranking_auc  # noqa: E402  (Mann-Whitney, ties half; also cs.ranking_auc)

Op = tuple[str, dict[str, float]]

# name -> operations applied in order (see the module docstring).
VARIANTS: dict[str, list[Op]] = {
    "clean": [],
    "jpeg-q30": [("jpeg", {"quality": 30})],
    "jpeg-q10": [("jpeg", {"quality": 10})],
    "jpeg-q5": [("jpeg", {"quality": 5})],
    "jpeg-q2": [("jpeg", {"quality": 2})],
    "noise-10": [("noise", {"sigma": 10})],
    "noise-25": [("noise", {"sigma": 25})],
    "noise-50": [("noise", {"sigma": 50})],
    "blur-1.5": [("blur", {"sigma": 1.5})],
    "blur-3": [("blur", {"sigma": 3})],
    "blur-6": [("blur", {"sigma": 6})],
    "down-2": [("rescale", {"factor": 1 / 2})],
    "down-4": [("rescale", {"factor": 1 / 4})],
    "down-8": [("rescale", {"factor": 1 / 8})],
    "dark-0.4": [("exposure", {"gain": 0.4, "gamma": 1.0})],
    "dark-0.2": [("exposure", {"gain": 0.2, "gamma": 1.2})],
    "dark-0.1": [("exposure", {"gain": 0.1, "gamma": 1.5})],
    "bright-2": [("exposure", {"gain": 2.0, "gamma": 0.8})],
    "bright-3.5": [("exposure", {"gain": 3.5, "gamma": 0.6})],
    "blur3+jpeg10": [("blur", {"sigma": 3}), ("jpeg", {"quality": 10})],
    "down4+noise15": [("rescale", {"factor": 1 / 4}), ("noise", {"sigma": 15})],
    "dark0.2+noise10": [("exposure", {"gain": 0.2, "gamma": 1.2}), ("noise", {"sigma": 10})],
}

PEOPLE_FOLDS = {"validation": {4, 5}, "test": {6, 7, 8, 9, 10}}


# ---------------------------------------------------------------------------------------------
# Pure functions (unit-tested in tests/test_calibration_shift.py)


def variant_seed(seed: int, variant: str, photo: str) -> int:
    """A seed for one (variant, photo): stable across runs and subsets."""
    return zlib.crc32(f"{seed}/{variant}/{photo}".encode()) & 0xFFFFFFFF


def degrade(img: np.ndarray, ops: Sequence[Op], rng: np.random.Generator) -> np.ndarray:
    """Apply ``ops`` (see :data:`VARIANTS`) in order to an ``(H, W, 3)`` uint8 image."""
    from facequal.train import degrade as d

    out = img
    for name, p in ops:
        if name == "jpeg":
            out = d.jpeg(out, int(p["quality"]))
        elif name == "noise":
            out = d.add_noise(out, float(p["sigma"]), rng, colour=True)
        elif name == "blur":
            out = d.gaussian_blur(out, float(p["sigma"]))
        elif name == "rescale":
            out = d.rescale(out, float(p["factor"]))
        elif name == "exposure":
            out = d.exposure(out, float(p["gain"]), float(p.get("gamma", 1.0)))
        else:
            raise ValueError(f"unknown degradation {name!r}")
    return out


def select_people(photos: dict[str, list[str]], max_photos: int, max_per_person: int,
                  seed: int) -> dict[str, list[str]]:
    """People (with >= 2 photos) in a seeded random order, taken while their photos fit in
    ``max_photos`` (0: no limit); each keeps at most ``max_per_person`` photos (a seeded subset,
    0: all). Returns ``{person: sorted photos}``."""
    rng = np.random.default_rng(seed)
    names = sorted(n for n, p in photos.items() if len(p) >= 2)
    out: dict[str, list[str]] = {}
    total = 0
    for i in rng.permutation(len(names)):
        name = names[int(i)]
        mine = sorted(photos[name])
        if max_per_person >= 2 and len(mine) > max_per_person:
            pick = np.sort(rng.choice(len(mine), size=max_per_person, replace=False))
            mine = [mine[int(k)] for k in pick]
        if max_photos and total + len(mine) > max_photos:
            continue
        out[name] = mine
        total += len(mine)
    return dict(sorted(out.items()))


def clean_reference_targets(emb: np.ndarray, person: Sequence[str], source: Sequence[str],
                            clean: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face: accepted (cosine >= ``threshold``) against the person's most typical clean photo?

    ``emb``: one embedding per face (normalised here); ``person``: its identity; ``source``: the
    id of its source photo (a clean photo and its degraded copies share one); ``clean``: True for
    faces of clean photos. A clean face's typicality is its mean cosine to the person's other
    clean faces (other sources). The reference of face i is the most typical clean face of the
    same person from another source. Returns ``(target, valid, reference)``: ``valid`` False
    where no such clean face exists (then ``target`` is 0 and ``reference`` -1).
    """
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    person = np.asarray(person).reshape(-1)
    source = np.asarray(source).reshape(-1)
    clean = np.asarray(clean, dtype=bool).reshape(-1)
    n = person.size
    target = np.zeros(n)
    valid = np.zeros(n, dtype=bool)
    reference = np.full(n, -1, dtype=np.int64)
    for ident in np.unique(person):
        rows = np.flatnonzero(person == ident)
        refs = rows[clean[rows]]
        if refs.size == 0:
            continue
        c = e[refs] @ e[refs].T
        other = source[refs][:, None] != source[refs][None, :]
        n_other = other.sum(axis=1)
        typical = np.where(n_other > 0, (c * other).sum(axis=1) / np.maximum(n_other, 1), -np.inf)
        order = refs[np.lexsort((refs, -typical))]  # most typical first; ties by row
        for r in rows:
            cand = order[source[order] != source[r]]
            if cand.size == 0:
                continue
            ref = int(cand[0])
            target[r] = float(e[r] @ e[ref] >= threshold)
            valid[r] = True
            reference[r] = ref
    return target, valid, reference


def min_removal(pred: np.ndarray, target: np.ndarray, threshold: float) -> dict[str, float]:
    """What ``--min threshold`` removes: share of faces below it and the observed acceptance of
    the removed and of the kept faces."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    low = pred < threshold
    return {"min": float(threshold), "faces": int(pred.size), "removed": int(low.sum()),
            "removed_share": float(low.mean()) if pred.size else float("nan"),
            "removed_observed": float(target[low].mean()) if low.any() else float("nan"),
            "kept_observed": float(target[~low].mean()) if (~low).any() else float("nan")}


# ---------------------------------------------------------------------------------------------
# The run


def _write_variants(job: tuple[str, str, str, int, list[str]]) -> int:
    """Worker: write every degraded variant of one source photo (PNG); returns files written."""
    from PIL import Image

    src, rel, work, seed, names = job
    with Image.open(src) as im:
        img = np.asarray(im.convert("RGB"))
    n = 0
    for name in names:
        out = Path(work) / "images" / name / Path(rel).with_suffix(".png")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(variant_seed(seed, name, rel))
        tmp = out.with_name(out.name + ".tmp")
        Image.fromarray(degrade(img, VARIANTS[name], rng)).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, out)
        n += 1
    return n


def _teacher_threshold(model: str | None) -> float:
    from facequal.models.zoo import resolve_model

    spec = resolve_model(model)
    return float(json.loads(spec.metadata["facequal.training"])["teacher_threshold"])


def _default_faces() -> str:
    from facequal.options import FACE_CHOICES

    return "center" if "center" in FACE_CHOICES else "subject"


def _fmt(v: float, p: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{p}f}"


def evaluate(pred: np.ndarray, raw: np.ndarray, target: np.ndarray, variant: np.ndarray,
             counts: dict[str, dict[str, int]], min_q: float) -> dict[str, Any]:
    """All figures of the report for predictions ``pred`` of the evaluated faces."""
    from facequal.train.calibrate import expected_calibration_error, reliability_table

    per = []
    for name in VARIANTS:
        sel = variant == name
        tab = reliability_table(pred[sel], target[sel]) if sel.any() else []
        per.append({"variant": name, **counts[name], "evaluated": int(sel.sum()),
                    "mean_quality": float(pred[sel].mean()) if sel.any() else float("nan"),
                    "observed": float(target[sel].mean()) if sel.any() else float("nan"),
                    "ece": expected_calibration_error(tab),
                    "below_min": float((pred[sel] < min_q).mean()) if sel.any() else float("nan")})
    table = reliability_table(pred, target)
    return {"per_variant": per, "reliability": table, "ece": expected_calibration_error(table),
            "faces": int(pred.size), "mean_quality": float(pred.mean()), "observed": float(target.mean()),
            "auc_quality": ranking_auc(pred, target), "auc_quality_raw": ranking_auc(raw, target),
            "distinct_share": float(np.unique(pred).size / pred.size), "min_removal": min_removal(pred, target, min_q)}


def print_report(r: dict[str, Any], what: str) -> None:
    print(f"\n### Per variant ({what})\n")
    print(f"| variant | photos | faces found | evaluated | mean {what} | observed | ECE "
          f"| < {r['min_removal']['min']} |")
    print("|---|---|---|---|---|---|---|---|")
    for v in r["per_variant"]:
        print(f"| {v['variant']} | {v['photos']} | {v['faces_found']} | {v['evaluated']} | "
              f"{_fmt(v['mean_quality'])} | {_fmt(v['observed'])} | {_fmt(v['ece'])} | {_fmt(v['below_min'])} |")
    print(f"\n### Reliability, all variants ({r['faces']} faces; mean predicted {r['mean_quality']:.3f}, "
          f"observed {r['observed']:.3f})\n")
    print("| predicted | faces | mean predicted | observed |\n|---|---|---|---|")
    for row in r["reliability"]:
        print(f"| {row['lo']:.1f}-{row['hi']:.1f} | {row['n']} | {row['mean_pred']:.3f} | {row['observed']:.3f} |")
    print(f"\nexpected calibration error: {r['ece']:.4f}")
    print(f"ranking AUC for accepted (ties count half): {what} {r['auc_quality']:.4f}, "
          f"quality_raw {r['auc_quality_raw']:.4f}; distinct values: {100 * r['distinct_share']:.1f}%")
    m = r["min_removal"]
    print(f"\n### What `--min {m['min']}` removes\n")
    print("| faces | removed | removed share | observed (removed) | observed (kept) |\n|---|---|---|---|---|")
    print(f"| {m['faces']} | {m['removed']} | {_fmt(m['removed_share'])} | {_fmt(m['removed_observed'])} | "
          f"{_fmt(m['kept_observed'])} |")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the shared data folder (lfw/, lfw-pairs.tsv)")
    ap.add_argument("--people", choices=sorted(PEOPLE_FOLDS), required=True)
    ap.add_argument("--max-photos", type=int, default=400, help="source photos at most (0: all)")
    ap.add_argument("--max-per-person", type=int, default=8, help="photos per person at most (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="quality model (default: the facequal default)")
    ap.add_argument("--faces", default=None, help='face choice (default: "center")')
    ap.add_argument("--threshold", type=float, default=None, help="teacher threshold (default: model metadata)")
    ap.add_argument("--min", type=float, default=0.4, dest="min_q", help="the --min threshold to examine")
    ap.add_argument("--work", default=None, help="work folder, kept (default: a temporary one, removed)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fit", default=None, help="fit the calibration on this set, write it here (JSON)")
    ap.add_argument("--clean-weight", type=float, default=None,
                    help="with --fit: the clean faces together weigh this many times all degraded faces "
                         "(default: every face weighs 1, so clean faces are 1 in 22)")
    ap.add_argument("--sweep-clean-weight", type=float, nargs="*", default=None, metavar="W",
                    help="with --fit: print the in-sample ECE (all faces, clean faces) of maps fitted with "
                         "each clean weight, to choose one on validation people")
    ap.add_argument("--calibration", default=None, help="evaluate this map applied to quality_raw")
    ap.add_argument("--json", default=None, help="write the report here")
    a = ap.parse_args(argv)

    import facequal
    from facequal.schema import read_table
    from facequal.train.build_cache import lfw_people_folds, read_lfw_pairs
    from facequal.train.calibrate import apply_calibration, fit_calibration

    times: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = round(now - clock, 2)
        clock = now
        print(f"[{name}: {times[name]:.1f} s]", flush=True)

    data = Path(os.path.abspath(a.data))
    folds = lfw_people_folds(read_lfw_pairs(data / "lfw-pairs.tsv"))
    wanted = PEOPLE_FOLDS[a.people]
    others = set().union(*(f for k, f in PEOPLE_FOLDS.items() if k != a.people))
    names = [n for n, f in folds.items() if f & wanted and not f & others]
    photos = {n: sorted(p.name for p in (data / "lfw" / n).glob("*.jpg")) for n in names}
    chosen = select_people(photos, a.max_photos, a.max_per_person, a.seed)
    n_src = sum(len(p) for p in chosen.values())
    print(f"{a.people} people: {len(chosen)} of {sum(len(p) >= 2 for p in photos.values())} with >= 2 photos, "
          f"{n_src} photos, {len(VARIANTS)} variants ({n_src * len(VARIANTS)} images)", flush=True)
    stage("select")

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="calshift-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # Degraded images: regenerated unless the folder holds this very set of definitions.
        spec = {"variants": VARIANTS, "seed": a.seed}
        spec_file = work / "variants.json"
        if not spec_file.exists() or json.loads(spec_file.read_text()) != json.loads(json.dumps(spec)):
            shutil.rmtree(work / "images", ignore_errors=True)
            spec_file.write_text(json.dumps(spec, indent=1))
        degraded = [v for v in VARIANTS if VARIANTS[v]]
        jobs = [(str(data / "lfw" / n / p), f"{n}/{p}", str(work), a.seed, degraded)
                for n, ps in chosen.items() for p in ps]
        with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            written = sum(pool.map(_write_variants, jobs, chunksize=8))
        print(f"{written} degraded images written to {work / 'images'}", flush=True)
        stage("degrade")

        key: dict[str, tuple[str, str, str]] = {}  # image path -> (variant, person, source photo)
        for n, ps in chosen.items():
            for p in ps:
                rel = f"{n}/{p}"
                key[str(data / "lfw" / n / p)] = ("clean", n, rel)
                for v in degraded:
                    key[str(work / "images" / v / Path(rel).with_suffix(".png"))] = (v, n, rel)
        scores_path, emb_path = work / "scores.parquet", work / "embeddings.parquet"
        faces = a.faces or _default_faces()
        facequal.score(list(key), output=str(scores_path), overwrite=True, faces=faces, jobs=a.jobs,
                       model=a.model)
        stage("score")
        facequal.embed([], output=str(emb_path), overwrite=True, from_scores=str(scores_path), jobs=a.jobs)
        stage("embed")

        threshold = a.threshold if a.threshold is not None else _teacher_threshold(a.model)
        s = read_table(scores_path).select(["path", "face_index", "status", "quality", "quality_raw"]).to_pylist()
        e = read_table(emb_path).select(["path", "face_index", "status", "embedding"]).to_pylist()
        found = {r["path"]: (r["quality"], r["quality_raw"]) for r in s
                 if r["status"] == "ok" and r["face_index"] == 0 and r["quality_raw"] is not None}
        emb = {r["path"]: r["embedding"] for r in e
               if r["status"] == "ok" and r["face_index"] == 0 and r["embedding"] is not None}
        paths = [p for p in key if p in found and p in emb]
        counts = {v: {"photos": 0, "faces_found": 0} for v in VARIANTS}
        for p, (v, _, _) in key.items():
            counts[v]["photos"] += 1
            counts[v]["faces_found"] += int(p in found)
        variant = np.array([key[p][0] for p in paths])
        target, valid, _ = clean_reference_targets(
            np.array([emb[p] for p in paths], dtype=np.float64), [key[p][1] for p in paths],
            [key[p][2] for p in paths], variant == "clean", threshold)
        quality = np.array([found[p][0] for p in paths], dtype=np.float64)[valid]
        raw = np.array([found[p][1] for p in paths], dtype=np.float64)[valid]
        target, variant = target[valid], variant[valid]

        calibration = None
        what = "quality"
        pred = quality
        if a.calibration:
            calibration = json.loads(Path(a.calibration).read_text())
            calibration = calibration.get("calibration", calibration)
            pred = apply_calibration(raw, calibration)
            what = "calibrated"
        print(f"teacher threshold {threshold:.4f}; {int(valid.sum())} faces evaluated "
              f"({len(paths) - int(valid.sum())} without a clean reference of another photo)")
        report: dict[str, Any] = {
            "command": " ".join(["python", "bench/calibration_shift.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "people": a.people, "people_used": len(chosen), "photos": n_src, "seed": a.seed,
            "model": a.model, "faces": faces, "teacher_threshold": threshold, "variants": VARIANTS,
            "predicted": what, "calibration": a.calibration, "work": str(work)}
        report.update(evaluate(pred, raw, target, variant, counts, a.min_q))
        stage("evaluate")
        print_report(report, what)
        if calibration is not None:
            base = evaluate(quality, raw, target, variant, counts, a.min_q)
            report["file_quality"] = {k: base[k] for k in ("ece", "auc_quality", "mean_quality", "distinct_share")}
            print(f"\n(the file's own quality on this set: ECE {base['ece']:.4f}, AUC {base['auc_quality']:.4f})")

        if a.fit:
            clean = variant == "clean"
            weight = None
            if a.clean_weight is not None:
                weight = np.where(clean, a.clean_weight * (~clean).sum() / max(int(clean.sum()), 1), 1.0)
            cal = fit_calibration(raw, target, weight)

            Path(a.fit).parent.mkdir(parents=True, exist_ok=True)
            Path(a.fit).write_text(json.dumps(cal, indent=1) + "\n")
            fitted = evaluate(apply_calibration(raw, cal), raw, target, variant, counts, a.min_q)
            report["fit"] = {"file": a.fit, "calibration": cal, "in_sample": {
                k: fitted[k] for k in ("ece", "auc_quality", "distinct_share", "per_variant", "reliability",
                                       "min_removal")}}
            stage("fit")
            from facequal.train.calibrate import expected_calibration_error, reliability_table

            pc = apply_calibration(raw[clean], cal)
            report["fit"]["in_sample"]["ece_clean"] = clean_ece = expected_calibration_error(
                reliability_table(pc, target[clean]))
            print(f"\nfitted calibration written to {a.fit} ({len(cal.get('x', []))} knots; clean weight "
                  f"{a.clean_weight}); in-sample: ECE {fitted['ece']:.4f} (clean faces alone {clean_ece:.4f}), "
                  f"AUC {fitted['auc_quality']:.4f}, distinct {100 * fitted['distinct_share']:.1f}%")
            if a.sweep_clean_weight:
                print("\n| clean weight | ECE, all faces | ECE, clean faces | larger |\n|---|---|---|---|")
                for w_c in a.sweep_clean_weight:
                    m = fit_calibration(raw, target, np.where(clean, w_c * (~clean).sum() / max(int(clean.sum()), 1),
                                                              1.0))
                    e_all = expected_calibration_error(reliability_table(apply_calibration(raw, m), target))
                    e_clean = expected_calibration_error(reliability_table(apply_calibration(raw[clean], m),
                                                                           target[clean]))
                    print(f"| {w_c:g} | {e_all:.4f} | {e_clean:.4f} | {max(e_all, e_clean):.4f} |")
            print("| variant | mean calibrated | observed | ECE |\n|---|---|---|---|")
            for v in fitted["per_variant"]:
                print(f"| {v['variant']} | {_fmt(v['mean_quality'])} | {_fmt(v['observed'])} | {_fmt(v['ece'])} |")

        report["times_s"] = times
        print("\n### Wall time\n\n| stage | seconds |\n|---|---|")
        for k, v in times.items():
            print(f"| {k} | {v:.1f} |")
        print(f"| total | {sum(times.values()):.1f} |")
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        return report
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


if __name__ == "__main__":
    main()
