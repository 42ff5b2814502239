"""The quality table of issue 5 in one command: LFW test folds 6-10, dlib comparator.

Scores every LFW image with the bundled models and, with their own contract, the LightQNet
authors' reference models (on exactly the same detected faces), embeds the faces with dlib,
adds random, inter-eye-distance and detector-confidence baselines, and prints the ERC / EDC
table of ``bench/eval_lfw.py`` for the pair list and for the all-pairs protocol.

    python bench/lfw_table.py ../shared/data --work runs/lfw-table

Files already in ``--work`` are reused, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REF_CONTRACT = HERE / "contracts" / "lightqnet-reference.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder with lfw/ and lfw-pairs.tsv (../shared/data)")
    ap.add_argument("--reference", default=None, help="reference ONNX folder (default: DATA/../reference)")
    ap.add_argument("--work", default="runs/lfw-table")
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--faces", default="largest", help="face per photo: largest (the tables in the model card) "
                                                        "or center (LFW's subject when a bystander is larger)")
    a = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facequal import api

    data = Path(a.data)
    ref = Path(a.reference) if a.reference else data.parent / "reference"
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = a.jobs or None
    det = work / "lfw-ours-dm100.parquet"          # detection + the bundled dm100
    if not det.exists():
        api.score([str(data / "lfw")], str(det), model="lightqnet-dm100", jobs=jobs, faces=a.faces)
    sources = [f"ours-dm100={det}"]
    for name in ("dm050", "dm025", "dm025x4", "dm025s2x4"):
        out = work / f"lfw-ours-{name}.parquet"
        if not out.exists():
            api.score([], str(out), from_scores=str(det), model=f"lightqnet-{name}", jobs=jobs)
        sources.append(f"ours-{name}={out}")
    for name in ("dm100", "dm050", "dm025"):
        model = ref / f"lightqnet-{name}.onnx"
        if not model.exists():
            print(f"skipping reference {name}: {model} is absent", file=sys.stderr)
            continue
        out = work / f"lfw-ref-{name}.parquet"
        if not out.exists():
            api.score([], str(out), from_scores=str(det), model=str(model), contract=str(REF_CONTRACT), jobs=jobs)
        sources.append(f"ref-{name}={out}")
    emb = work / "lfw-emb.parquet"
    if not emb.exists():
        api.embed([], str(emb), from_scores=str(det), jobs=jobs, flip_tta=False)  # the plain recogniser
    rnd = work / "lfw-random.parquet"
    if not rnd.exists():
        paths = pq.read_table(det, columns=["path"]).column("path")
        pq.write_table(pa.table({"path": paths, "score": np.random.default_rng(0).random(len(paths))}), rnd)
    sources += [f"random={rnd}:score", f"inter-eye={det}:eye_distance", f"det-score={det}:det_score"]
    cmd = [sys.executable, str(HERE / "eval_lfw.py"), str(emb), *sources, "--pairs", str(data / "lfw-pairs.tsv"),
           "--folds", "6-10", "--all-pairs", "--bootstrap", str(a.bootstrap), "--out", str(work / "eval")]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
