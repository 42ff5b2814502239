"""GPU throughput: the detector and the quality model on onnxruntime's CUDA provider at several
batch sizes, and `facequal score --device cuda` end to end, against the CPU in the same run.

    python bench/gpu_speed.py ../shared/data/lfw [--limit 2000] [--batches 1,16,64,256] [--jobs 2]

Stages, each timed after a warm-up call (best of ``--rounds``):

* detector: RetinaFace on a batch of N same-size photos (the photos of the folder, resized to the
  size of the first one, as the pipeline's padded input) -- images/s;
* quality model: the bundled model on N crops of its input size (seeded noise: the cost does not
  depend on the pixels) -- faces/s;
* end to end: `facequal.score(folder images, device=...)` with ``--jobs`` worker processes
  decoding and detecting (each with its own session on the device) -- images/s.

Every figure is printed for the CPU and, when onnxruntime has a working CUDA provider, for the
GPU, with the GPU / CPU ratio. Without one (the plain `onnxruntime` build, or no GPU visible) the
bench says so in its first line and prints the CPU figures alone, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def list_images(folder: str, limit: int) -> list[str]:
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith((".jpg", ".jpeg", ".png"))]
        if len(out) >= limit:
            break
    return out[:limit]


def gpu_status() -> str | None:
    """None when a CUDA session can start, else why not (one line)."""
    from facequal.errors import UserError
    from facequal.models.retinaface import retinaface_session

    try:
        retinaface_session(device="cuda")
    except UserError as e:
        return str(e)
    return None


def best_rate(fn, count: int, rounds: int) -> float:
    """``count`` items per call of ``fn``: the best items/s of ``rounds`` timed calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return count / best


def detector_rates(paths: list[str], batches: list[int], device: str, rounds: int) -> dict[int, float]:
    from PIL import Image

    from facequal.models.retinaface import retinaface_session
    from facequal.pipeline.detect import preprocess

    first = Image.open(paths[0]).convert("RGB")
    size = first.size
    xs = [preprocess(np.asarray(Image.open(p).convert("RGB").resize(size)))[0] for p in paths[:max(batches)]]
    while len(xs) < max(batches):
        xs += xs[:max(batches) - len(xs)]
    sess = retinaface_session(device=device, threads=0)
    out = {}
    for b in batches:
        x = np.concatenate(xs[:b], axis=0)
        out[b] = best_rate(lambda x=x: sess.run(None, {"input": x}), b, rounds)
    return out


def quality_rates(crops: np.ndarray, batches: list[int], device: str, rounds: int) -> dict[int, float]:
    from facequal.models.zoo import OnnxModel, resolve_model

    out = {}
    for b in batches:
        model = OnnxModel(resolve_model(None), threads=0, device=device, batch_size=b)
        n = max(b, len(crops) // b * b)
        x = np.resize(crops, (n, *crops.shape[1:]))
        out[b] = best_rate(lambda m=model, x=x: m.quality(x), n, rounds)
    return out


def face_crops(n: int) -> np.ndarray:
    """``n`` crops of the bundled model's input size: seeded noise, since the network's cost does
    not depend on what the pixels show."""
    from facequal.models.zoo import resolve_model

    w, h = resolve_model(None).contract.crop_size
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def end_to_end(paths: list[str], device: str, jobs: int) -> float:
    import facequal

    t0 = time.perf_counter()
    facequal.score(paths, device=device, jobs=jobs)
    return len(paths) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=1000, help="images for the end-to-end run")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    paths = list_images(a.folder, a.limit)
    why = gpu_status()
    devices = ["cpu"] if why else ["cpu", "cuda"]
    print(f"GPU: {'none found: ' + why if why else 'CUDA provider working'}; {len(paths)} images from "
          f"{a.folder}; {os.cpu_count()} cores")
    crops = face_crops(max(batches))
    det = {d: detector_rates(paths, batches, d, a.rounds) for d in devices}
    qual = {d: quality_rates(crops, batches, d, a.rounds) for d in devices}
    for name, rates, unit in (("detector", det, "images/s"), ("quality model", qual, "faces/s")):
        for b in batches:
            line = "  ".join(f"{d} {rates[d][b]:9.1f}" for d in devices)
            ratio = f"  GPU/CPU x{rates['cuda'][b] / rates['cpu'][b]:.1f}" if "cuda" in rates else ""
            print(f"{name:14s} batch {b:4d}: {line} {unit}{ratio}")
    e2e = {d: end_to_end(paths, d, a.jobs) for d in devices}
    line = "  ".join(f"{d} {e2e[d]:7.1f}" for d in devices)
    ratio = f"  GPU/CPU x{e2e['cuda'] / e2e['cpu']:.2f}" if "cuda" in e2e else ""
    print(f"end to end, {a.jobs} worker(s): {line} images/s{ratio}")


if __name__ == "__main__":
    main()
