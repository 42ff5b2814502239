"""The paper's Table I on our data: branch / student without / student with distillation, each with
cosine-L2 regression, hard-label CE and soft-label CE; ERC AUC on LFW folds 6-10 (dlib comparator).

    python bench/ablation.py ../shared/data --cache-dir runs/cache --work runs/ablation [--steps 1500]

Trains the nine variants from the training cache (``facequal train`` builds it), scores every LFW
face with each (students: through ``facequal score`` on the faces of one detection run; branches:
on the teacher's pooled feature map of the same faces), embeds the faces with dlib and prints the
table of ``bench/eval_lfw.py``. Outputs already in ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = [(mode, label) for mode in ("branch", "student", "distill") for label in ("regression", "hard", "soft")]


def branch_scores(checkpoint: Path, feats, paths, out: Path) -> None:
    """Score faces with a trained branch network on the teacher's pooled features."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from facequal.train.nets import BranchNet

    st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = BranchNet(feats.shape[1])
    net.load_state_dict({k.split(".", 1)[1]: v for k, v in st["branches"].items() if k.startswith("0.")})
    net.eval()
    with torch.no_grad():
        z = net(torch.from_numpy(feats)).numpy()
    pq.write_table(pa.table({"path": paths, "score": z.astype(np.float32)}), out)


def teacher_features(det: Path, out: Path):
    """Pooled teacher feature maps of the ok faces of a scores file (cached in ``out``)."""
    import numpy as np
    import onnxruntime as ort
    import pyarrow.parquet as pq
    from PIL import Image

    from facequal.contract import to_tensor
    from facequal.models.dlib_resnet import DLIB_CONTRACT, dlib_model_path
    from facequal.pipeline.align import align_face

    rows = [r for r in pq.read_table(det).to_pylist() if r["status"] == "ok"]
    paths = [r["path"] for r in rows]
    if out.exists():
        return np.load(out), paths
    sess = ort.InferenceSession(str(dlib_model_path()), providers=["CPUExecutionProvider"])
    feats = []
    for i in range(0, len(rows), 64):
        crops = np.stack([align_face(Image.open(r["path"]).convert("RGB"), np.array(r["landmarks"]),
                                     DLIB_CONTRACT) for r in rows[i:i + 64]])
        f = sess.run(["features"], {"input": to_tensor(crops, DLIB_CONTRACT)})[0]
        feats.append(f.mean(axis=(2, 3)))
    arr = np.concatenate(feats).astype(np.float32)
    np.save(out, arr)
    return arr, paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder with lfw/ and lfw-pairs.tsv (../shared/data)")
    ap.add_argument("--cache-dir", required=True, help="training caches (train/, val/) from facequal train")
    ap.add_argument("--work", default="runs/ablation")
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "train-dm100-6000.json"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--bootstrap", type=int, default=200)
    a = ap.parse_args()

    from facequal import api
    from facequal.train import run

    data, work = Path(a.data), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    det = work / "lfw-det.parquet"
    if not det.exists():
        api.score([str(data / "lfw")], str(det), model="lightqnet-dm100")
    emb = work / "lfw-emb.parquet"
    if not emb.exists():
        api.embed([], str(emb), from_scores=str(det), flip_tta=False)
    base = json.loads(Path(a.config).read_text())
    base.update(cache=str(Path(a.cache_dir) / "train"), val_cache=None, steps=a.steps, eval_every=0,
                checkpoint_every=a.steps, calibrate=False)
    sources = []
    for mode, label in ROWS:
        name = f"{mode}-{label}"
        out_dir = work / name
        scores = work / f"lfw-{name}.parquet"
        if not scores.exists():
            run(dict(base, mode=mode, label=label, out_dir=str(out_dir), export=mode != "branch",
                     export_name=f"{name}.onnx"))
            if mode == "branch":
                feats, paths = teacher_features(det, work / "lfw-teacher-features.npy")
                branch_scores(out_dir / "checkpoint.pt", feats, paths, scores)
            else:
                api.score([], str(scores), from_scores=str(det), model=str(out_dir / f"{name}.onnx"))
        sources.append(f"{name}={scores}" + (":score" if mode == "branch" else ""))
    cmd = [sys.executable, str(HERE / "eval_lfw.py"), str(emb), *sources, "--pairs", str(data / "lfw-pairs.tsv"),
           "--folds", "6-10", "--all-pairs", "--fmr", "1e-3", "--bootstrap", str(a.bootstrap),
           "--out", str(work / "eval")]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
