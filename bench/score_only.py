"""Score-only speed: the quality model's forward pass against the reference LightQNet dm100, and
`facequal score --aligned` on a folder of 96x96 PNG crops against that model-only throughput.

Everything is measured in this one process, interleaved over ``--rounds`` rounds (best round
reported), with the same crops, batch size and onnxruntime thread count for both models:

* model only: the crops are decoded and turned into each model's input tensor beforehand;
  the timed part is the onnxruntime ``run`` over all batches;
* `facequal score --aligned`: the complete run (walk, PNG decode, tensor, model, Parquet);
* a model-only sweep over batch sizes (``--sweep``), which chose the CPU default of 2.

    python bench/score_only.py --n 2000                                  # the bundled model
    python bench/score_only.py --model tests-tiny --n 500                 # the test suite's tiny model
    python bench/score_only.py --model ../shared/reference/lightqnet-dm100.onnx \\
        --contract bench/contracts/lightqnet-reference.json               # the reference against itself
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facequal.options import BATCH_SIZE

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference" / "lightqnet-dm100.onnx"
DEFAULT_REFERENCE_CONTRACT = REPO / "bench" / "contracts" / "lightqnet-reference.json"


def make_crops(folder: Path, n: int, source: str | None) -> np.ndarray:
    """``n`` 96x96 PNG crops in ``folder`` (the centres of ``source``'s images, or noise);
    returns them as an (n, 96, 96, 3) uint8 array too."""
    from PIL import Image

    paths: list[str] = []
    if source and os.path.isdir(source):
        from facequal.pipeline.sources import walk_folder

        for p in walk_folder(source):
            paths.append(p)
            if len(paths) >= n:
                break
    rng = np.random.default_rng(0)
    out = np.empty((n, 96, 96, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i < len(paths):
            im = Image.open(paths[i]).convert("RGB")
            w, h = im.size
            s = min(w, h) * 0.45
            im = im.crop((round(w / 2 - s), round(h / 2 - s), round(w / 2 + s), round(h / 2 + s)))
            im = im.resize((96, 96), Image.Resampling.BILINEAR)
        else:
            im = Image.fromarray(rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8))
        sub = folder / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        im.save(sub / f"crop{i:06d}.png")
        out[i] = np.asarray(im)
    return out


class ModelOnly:
    """One model's session and its input tensor for the crops, prepared before timing."""

    def __init__(self, spec, crops: np.ndarray, threads: int) -> None:
        from facequal.contract import to_tensor
        from facequal.models.session import make_session

        self.spec = spec
        self.session = make_session(spec.path, threads=threads)
        self.x = to_tensor(crops, spec.contract)
        self.input = spec.contract.input_name

    def rate(self, batch: int) -> float:
        """Images/s of the forward passes over all crops, in batches of ``batch``."""
        n = len(self.x)
        t = time.perf_counter()
        for i in range(0, n, batch):
            self.session.run(None, {self.input: self.x[i:i + batch]})
        return n / (time.perf_counter() - t)


def score_aligned_rate(folder: Path, n: int, model: str, contract: str | None, batch: int, jobs: int,
                       out: Path) -> float:
    """Images/s of a complete `facequal score --aligned` run over the crop folder."""
    from facequal import api

    t = time.perf_counter()
    job = api.Job([str(folder)], model=model, contract=contract, aligned=True, jobs=jobs, threads=1,
                  batch_size=batch)
    job.run(str(out), overwrite=True, collect=False)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help="model under test: bundled name or ONNX path (default: the bundled model); "
                         "'tests-tiny' builds the test suite's tiny model")
    ap.add_argument("--contract", default=None, help="contract JSON for --model, if it carries none")
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="reference dm100 ONNX")
    ap.add_argument("--reference-contract", default=str(DEFAULT_REFERENCE_CONTRACT))
    ap.add_argument("--crops-from", default=str(REPO.parent / "shared" / "data" / "lfw"),
                    help="folder whose images' centres become the crops (noise when absent)")
    ap.add_argument("--n", type=int, default=2000, help="number of crops")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the model-only runs")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes of the `score --aligned` run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sweep", default="1,2,4,8,16,64",
                    help="batch sizes of a model-only sweep (interleaved rounds, in the same process); '' skips it")
    a = ap.parse_args()

    from facequal.errors import UserError
    from facequal.models.zoo import resolve_model

    with tempfile.TemporaryDirectory() as d:
        model = a.model
        if model == "tests-tiny":
            sys.path.insert(0, str(REPO / "tests"))
            from modelkit import build_tiny_model

            model = str(build_tiny_model(Path(d) / "tiny.onnx"))
        try:
            spec = resolve_model(model, contract_file=a.contract)
        except UserError as e:
            raise SystemExit(f"score_only: {e} (pass --model PATH to measure another model)") from None
        ref = None
        if os.path.isfile(a.reference):
            ref = resolve_model(a.reference, contract_file=a.reference_contract)
        else:
            print(f"reference {a.reference} is absent: measuring the model alone")
        folder = Path(d) / "crops"
        crops = make_crops(folder, a.n, a.crops_from)
        print(f"{a.n} crops of 96x96; batch {a.batch_size}; {a.threads} onnxruntime thread(s) for the "
              f"model-only runs; `score --aligned` with {a.jobs} worker(s) of 1 thread; best of {a.rounds} rounds")
        mine = ModelOnly(spec, crops, a.threads)
        theirs = ModelOnly(ref, crops, a.threads) if ref else None
        out = Path(d) / "out.parquet"
        score_aligned_rate(folder, a.n, model or spec.name, a.contract, a.batch_size, a.jobs, out)  # warm
        best: dict[str, float] = {}
        for r in range(a.rounds):
            figures = {"model": mine.rate(a.batch_size)}
            if theirs is not None:
                figures["reference"] = theirs.rate(a.batch_size)
            figures["score"] = score_aligned_rate(folder, a.n, model or spec.name, a.contract, a.batch_size,
                                                  a.jobs, out)
            line = ", ".join(f"{k} {v:8.1f} images/s" for k, v in figures.items())
            print(f"  round {r + 1}: {line}")
            for k, v in figures.items():
                best[k] = max(best.get(k, 0.0), v)
    print("best rounds:")
    print(f"  model only, {spec.name}: {best['model']:8.1f} images/s")
    if "reference" in best:
        print(f"  model only, reference {Path(a.reference).name}: {best['reference']:8.1f} images/s")
        print(f"  {spec.name} / reference forward throughput: {best['model'] / best['reference']:.2f}x "
              "(target >= 1.0x)")
    sweep = [int(b) for b in a.sweep.split(",") if b.strip()]
    if sweep:
        rates: dict[int, float] = {}
        for _ in range(a.rounds):
            for b in sweep:
                rates[b] = max(rates.get(b, 0.0), mine.rate(b))
        base = rates.get(BATCH_SIZE) or max(rates.values())
        print(f"  model-only sweep, {spec.name} (best of {a.rounds} interleaved rounds; "
              f"ratio to batch {BATCH_SIZE}, the default):")
        for b, v in rates.items():
            print(f"    batch {b:4d}: {v:8.1f} images/s  {v / base:.2f}x")
    per_core = best["model"] / max(1, a.threads)
    print(f"  facequal score --aligned --jobs {a.jobs}: {best['score']:8.1f} images/s = "
          f"{best['score'] / (per_core * a.jobs):.2f} of the model-only throughput on {a.jobs} core(s) "
          "(target >= 0.60)")


if __name__ == "__main__":
    main()
