"""Refit the calibration of a finished model on a validation cache, without retraining.

The same fit as the end of a training run (:func:`facequal.train.trainer.finish`): the model's raw
output on the clean validation crops, each face's acceptance target against the person's most
typical photo at the teacher threshold the model was trained with, then
:func:`facequal.train.calibrate.fit_calibration`. Numpy and onnxruntime only (no torch), so a
calibration change reaches a shipped model without touching its weights:

    python -m facequal.train.recalibrate facequal/models/files/lightqnet-dm100.onnx \\
        --val-cache runs/cache/val -o runs/lightqnet-dm100.onnx --report runs/calibration.json
    python -m facequal.train.recalibrate lightqnet-dm100 --map cal-shift-dm100.json -o runs/dm100.onnx

``--map`` writes a map fitted elsewhere, such as ``bench/calibration_shift.py --fit`` on clean and
degraded validation photos (what the bundled models carry).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from facequal.train import calibrate as cal


def raw_outputs(model_path: str | Path, crops: np.ndarray, batch: int = 256) -> tuple[np.ndarray, Any]:
    """The model's raw (uncalibrated) output on uint8 student crops, and its contract."""
    from facequal.models.zoo import OnnxModel, resolve_model

    spec = resolve_model(str(model_path))
    model = OnnxModel(spec, threads=0, batch_size=batch)
    raw = np.concatenate([model.quality(np.asarray(crops[i:i + batch]))[1]
                          for i in range(0, len(crops), batch)]) if len(crops) else np.zeros(0, np.float32)
    return raw, spec


def refit(model_path: str | Path, val_cache: str | Path) -> dict[str, Any]:
    """Fit a new calibration for the model on ``val_cache``; returns the map, its reliability
    table on the same faces, and what it was fitted on (nothing is written)."""
    from facequal.train.cache import TrainingCache
    from facequal.train.trainer import clean_rows

    cache = TrainingCache.open(val_cache)
    rows = clean_rows(cache)
    raw, spec = raw_outputs(model_path, cache.crops_student[rows])
    training = json.loads(spec.metadata.get("facequal.training", "{}"))
    if "teacher_threshold" not in training:
        raise ValueError(f"{model_path}: no teacher_threshold in its training metadata")
    thr = float(training["teacher_threshold"])
    target, valid = cal.acceptance_targets(np.asarray(cache.emb[rows]), np.asarray(cache.identity[rows]), thr,
                                           np.asarray(cache.image[rows]))
    if valid.sum() < 2:
        raise ValueError(f"{val_cache}: fewer than two faces with a reference photo")
    calibration = cal.fit_calibration(raw[valid], target[valid])
    table = cal.reliability_table(cal.apply_calibration(raw[valid], calibration), target[valid])
    old = cal.reliability_table(np.asarray(spec.contract.calibrate(raw[valid]), np.float64), target[valid])
    return {"calibration": calibration, "reliability_validation": table,
            "ece_validation": cal.expected_calibration_error(table),
            "ece_validation_previous_map": cal.expected_calibration_error(old),
            "n_faces": int(valid.sum()), "acceptance_rate": float(target[valid].mean()), "threshold": thr,
            "val_cache": str(val_cache), "sources": sorted(set(np.asarray(cache.source[rows]).tolist()))}


def main(argv: list[str] | None = None) -> None:
    """Command line: refit (or take a fitted map), print the reliability table, write the recalibrated copy."""

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="ONNX model (bundled name or path)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--val-cache", help="validation cache folder (facequal train builds it): fit on its clean faces")
    src.add_argument("--map", help="a map fitted elsewhere (bench/calibration_shift.py --fit CAL.json): write it as is")
    ap.add_argument("-o", "--output", required=True, help="recalibrated copy (must not exist)")
    ap.add_argument("--report", default=None, help="write the fit and its reliability table here (JSON)")
    a = ap.parse_args(argv)
    from facequal.models.zoo import resolve_model
    from facequal.train.export import recalibrate

    if a.map:
        fitted = json.loads(Path(a.map).read_text(encoding="utf-8"))
        prov = {"method": "fit_calibration (logit-space isotonic, strictly increasing, straight tails)",
                "map_file": Path(a.map).name}
        out = recalibrate(resolve_model(a.model).path, fitted.get("calibration", fitted), a.output, prov)
        print(f"wrote {out}")
        return
    result = refit(a.model, a.val_cache)
    print(f"{result['n_faces']} validation faces, acceptance {result['acceptance_rate']:.3f}; ECE "
          f"{result['ece_validation']:.4f} (previous map {result['ece_validation_previous_map']:.4f})")
    for r in result["reliability_validation"]:
        print(f"  {r['lo']:.1f}-{r['hi']:.1f}  n={r['n']:5d}  predicted {r['mean_pred']:.3f}  "
              f"observed {r['observed']:.3f}")
    prov = {k: result[k] for k in ("n_faces", "acceptance_rate", "threshold", "ece_validation", "sources")}
    prov["method"] = "fit_calibration (logit-space isotonic, strictly increasing, straight tails)"
    out = recalibrate(resolve_model(a.model).path, result["calibration"], a.output, prov)
    if a.report:
        Path(a.report).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
