"""How differently a quality model scores an aligned face and its mirror image.

A face and its left-right mirror are the same face to a recogniser, so a user expects the same
quality for both. This scores every clean crop of a validation cache (``facequal.train.build_cache``;
aligned 96 x 96 faces, nothing else varies) and its mirror with each model, applies the model's
calibration map, and prints per source (LFW, CFP, ...) the mean, 90th percentile and largest
``|quality - quality_mirror|``, the share of faces whose two scores differ by more than 0.1, and
the share that fall on different sides of ``--threshold`` (what `facequal filter --min` would
decide differently):

    python bench/mirror_consistency.py lightqnet-dm025x4 lightqnet-dm025s2x4 runs/x/model.onnx \\
        --cache runs/cache3/val
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np


def mirror_gaps(model: str, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated quality of ``crops`` (uint8 [N, H, W, 3] RGB) and of their mirror images, from
    the pipeline's own model wrapper (its input conversion, batching and calibration map)."""
    from facequal.models.zoo import OnnxModel, resolve_model

    q, _ = OnnxModel(resolve_model(model)).quality(np.concatenate([crops, crops[:, :, ::-1]]))
    return q[:len(crops)], q[len(crops):]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="bundled model names or ONNX paths")
    ap.add_argument("--cache", default="runs/cache3/val", help="a validation training cache")
    ap.add_argument("--threshold", type=float, default=0.4, help="a `filter --min` threshold")
    args = ap.parse_args(argv)

    from facequal.train.cache import TrainingCache
    from facequal.train.trainer import clean_rows

    cache = TrainingCache.open(args.cache)
    rows = clean_rows(cache)
    crops = np.asarray(cache.crops_student[rows])
    sources = np.asarray(cache.source[rows])
    names = list(cache.meta.get("sources", []))
    for model in args.models:
        a, b = mirror_gaps(model, crops)
        gap = np.abs(a - b)
        for s in np.unique(sources):
            m = sources == s
            label = names[int(s)] if int(s) < len(names) else str(s)
            print(f"{model}  {label:6s} faces {int(m.sum()):5d}  |q - q_mirror| mean {gap[m].mean():.3f}  "
                  f"p90 {np.quantile(gap[m], 0.9):.3f}  max {gap[m].max():.3f}  "
                  f"> 0.1: {np.mean(gap[m] > 0.1):5.1%}  either side of {args.threshold}: "
                  f"{np.mean((a[m] < args.threshold) != (b[m] < args.threshold)):5.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
