"""Integration on the ../shared face data (skipped with a message where it is absent)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO, shared_or_skip
from typer.testing import CliRunner

from facequal import api
from facequal.cli import app


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_lfw_200_images_faces_found(tmp_path, tiny_model):
    lfw = shared_or_skip("data", "lfw")
    people = sorted(os.listdir(lfw))
    paths = []
    for p in people:
        paths += sorted(str(Path(lfw, p, f)) for f in os.listdir(Path(lfw, p)))
        if len(paths) >= 200:
            break
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": paths[:200]}), m)
    out = tmp_path / "lfw.parquet"
    r = CliRunner().invoke(app, ["score", str(m), "-o", str(out), "--model", str(tiny_model), "-q"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    ok = sum(s == "ok" for s in t.column("status").to_pylist())
    assert t.num_rows == 200 and ok >= 198


def test_reference_model_runs_with_its_own_contract(tmp_path):
    """The authors' dm100 through `facequal score` agrees with their published scores."""
    ref = shared_or_skip("reference")
    t = api.score([ref / "samples"], model=str(ref / "lightqnet-dm100.onnx"),
                  contract=str(REPO / "bench" / "contracts" / "lightqnet-reference.json"), jobs=1)
    with open(ref / "samples-scores.csv") as f:
        published = {r["image"]: r for r in csv.DictReader(f)}
    ours, theirs = [], []
    for row in t.to_pylist():
        pub = published[os.path.basename(row["path"])]
        if row["status"] == "ok" and pub["detected"] == "yes":
            ours.append(row["quality"])
            theirs.append(float(pub["dm100"]))
    assert len(ours) >= 20
    assert _spearman(ours, theirs) >= 0.9
    assert np.abs(np.array(ours) - np.array(theirs)).max() < 0.1
