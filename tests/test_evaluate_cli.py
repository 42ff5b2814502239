"""`facequal eval` and `facequal calibrate` on small synthetic score and embedding files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facequal.cli.app import app
from facequal.eval import calibrate as cal
from facequal.eval import evaluate as ev

runner = CliRunner()
N_PEOPLE, PER, DIM = 62, 4, 16


def _name(i: int) -> str:
    return f"Person_{i:03d}"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Embeddings whose noise grows as quality falls, two quality sources, an LFW-style pair list.

    Scored "from another folder": stored paths are /data/lfw/<name>/<name>_<NNNN>.jpg and the CSV
    source uses /elsewhere/..., so matching needs the trailing two components (LFW default).
    Person_000_0004 has no face in the score and embedding files; Person_001_0001 is missing from
    the CSV source. Fold 1 pairs people 2-31, fold 2 people 32-61, plus one pair each with those
    two images.
    """
    d = tmp_path_factory.mktemp("evaldata")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(N_PEOPLE, DIM))
    paths, emb, qual, ident = [], [], [], []
    for i in range(N_PEOPLE):
        for n in range(1, PER + 1):
            q = rng.random()
            v = centers[i] / np.linalg.norm(centers[i]) + rng.normal(size=DIM) * (0.05 + 0.6 * (1 - q) ** 2)
            paths.append(f"/data/lfw/{_name(i)}/{_name(i)}_{n:04d}.jpg")
            emb.append((v / np.linalg.norm(v)).astype(np.float32).tolist())
            qual.append(q)
            ident.append(_name(i))
    n = len(paths)
    status = ["ok"] * n
    face = [0] * n
    status[3], face[3] = "no_face", -1
    emb[3] = None
    qual_col = pa.array([None if s != "ok" else q for s, q in zip(status, qual, strict=True)], pa.float32())
    pq.write_table(pa.table({"path": paths, "face_index": pa.array(face, pa.int32()), "status": status,
                             "embedding": pa.array(emb, pa.list_(pa.float32(), DIM)), "identity": ident}),
                   d / "emb.parquet")
    pq.write_table(pa.table({"path": paths, "face_index": pa.array(face, pa.int32()), "status": status,
                             "quality": qual_col, "quality_raw": qual_col}), d / "good.parquet")
    lines = ["path,noisy,rnd"]
    for i, (p, q) in enumerate(zip(paths, qual, strict=True)):
        if i != 4:                                                  # Person_001_0001 not scored
            lines.append(f"{p.replace('/data/lfw/', '/elsewhere/')},{q + rng.normal() * 0.3},{rng.random()}")
    (d / "other.csv").write_text("\n".join(lines) + "\n")
    rows = ["name\tnr\tname2\tnr2"]
    for fold in range(2):
        people = range(2 + fold * 30, 32 + fold * 30)
        for i in people:
            a, b = rng.choice(PER, 2, replace=False) + 1
            rows.append(f"{_name(i)}\t{a}\t{b}")
        rows.append(f"{_name(0)}\t1\t4" if fold == 0 else f"{_name(1)}\t1\t2")   # no face / not in CSV
        for i in people:
            j = int(rng.choice([k for k in people if k != i]))
            rows.append(f"{_name(i)}\t{rng.integers(1, PER + 1)}\t{_name(j)}\t{rng.integers(1, PER + 1)}")
    (d / "pairs.tsv").write_text("\n".join(rows) + "\n")
    return {"dir": d, "emb": d / "emb.parquet", "good": d / "good.parquet", "other": d / "other.csv",
            "pairs": d / "pairs.tsv"}


def _eval(data, *extra: str, sources=None):
    srcs = sources or [str(data["good"]), f"{data['other']}:noisy,rnd"]
    return runner.invoke(app, ["eval", *srcs, "-e", str(data["emb"]), "-p", str(data["pairs"]),
                               "--bootstrap", "50", *extra])


def test_eval_table_json_and_figure(data, tmp_path):
    out = tmp_path / "res.json"
    r = _eval(data, "--json", str(out), "--plot", str(tmp_path / "curves"))
    assert r.exit_code == 0, r.stderr
    assert "good" in r.stdout and "other:noisy" in r.stdout and "other:rnd" in r.stdout
    assert "FMR 0.001" in r.stdout and "FMR 0.01" in r.stdout and "ERC AUC" in r.stdout
    doc = json.loads(out.read_text())
    # 122 listed; the no-face pair and the pair missing from the CSV are dropped for every source.
    acc = doc["pairs"]
    assert acc["listed"] == 122 and acc["used"] == 120 and acc["dropped"] == 2
    assert acc["reasons"]["no face in embeddings"] == 1
    assert acc["reasons"]["not found in other:noisy"] == 1
    assert acc["mated"] == 60 and acc["non_mated"] == 60
    assert doc["settings"]["match_suffix"] == 2
    res = doc["results"][0]
    assert res["fmr"] == 0.001 and res["accepted_non_mated"] == 0
    assert set(res["sources"]) == {"good", "other:noisy", "other:rnd"}
    good = res["sources"]["good"]
    lo, hi = good["erc_auc"]["ci"]
    assert lo <= good["erc_auc"]["value"] <= hi
    assert len(good["erc_curve"]["fnmr"]) == 100 and good["erc_curve"]["reject"][1] == 0.01
    assert good["edc_curve"]["discard"][0] == 0
    assert len(res["differences"]) == 3
    assert doc["warnings"] and any("non-mated pairs" in w for w in doc["warnings"])
    # The figure: PNG of the layout's size, SVG with a polyline per curve in both panels.
    png = Image.open(tmp_path / "curves.png")
    assert png.size == (1100, 470)
    svg = ET.parse(tmp_path / "curves.svg").getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "perfect" in texts and "theoretical best" in texts and texts.count("other:rnd") == 2
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) > 2 * 4


def test_too_few_pairs_warning(data):
    r = _eval(data, "--bootstrap", "0")
    assert r.exit_code == 0
    assert "warning" in r.stderr and "FMR 0.001 with 60 non-mated pairs" in r.stderr
    assert "10,000" in r.stderr
    assert "2 of 122 pairs dropped" in r.stderr


def test_json_to_stdout_keeps_stdout_clean(data):
    r = _eval(data, "--json", "-", "--fmr", "0.05")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["fmr"] for x in doc["results"]] == [0.05]
    assert "ERC AUC" in r.stderr


def test_refuses_to_overwrite(data, tmp_path):
    out = tmp_path / "res.json"
    out.write_text("{}")
    r = _eval(data, "--json", str(out))
    assert r.exit_code != 0 and "already exists" in r.stderr and out.read_text() == "{}"
    (tmp_path / "fig.svg").write_text("")
    r = _eval(data, "--plot", str(tmp_path / "fig"))
    assert r.exit_code != 0 and "fig.svg" in r.stderr
    r = _eval(data, "--json", str(out), "--overwrite", "--bootstrap", "0")
    assert r.exit_code == 0 and json.loads(out.read_text())["pairs"]["used"] == 120


def test_missing_worst_keeps_pairs_without_quality(data):
    doc = ev.evaluate([str(data["good"]), f"{data['other']}:rnd"], data["emb"], data["pairs"],
                      bootstrap=0, missing="worst").to_dict()
    # Only the pair without an embedding is dropped; the one missing from the CSV stays.
    assert doc["pairs"]["used"] == 121 and doc["pairs"]["set_to_worst"] == {"good": 0, "other:rnd": 1}


def test_error_messages(data, tmp_path):
    r = _eval(data, sources=[str(data["other"])])
    assert r.exit_code == 2 and "several score columns (noisy, rnd)" in r.stderr
    bad = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"path": ["a"], "vector": [[1.0, 0.0]]}), bad)
    r = runner.invoke(app, ["eval", str(data["good"]), "-e", str(bad), "-p", str(data["pairs"])])
    assert r.exit_code == 2 and "has no column 'embedding'" in r.stderr
    r = runner.invoke(app, ["eval", f"{data['good']}:nope", "-e", str(data["emb"]), "-p", str(data["pairs"])])
    assert r.exit_code == 2 and "has no column 'nope'" in r.stderr
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b\nx,y\n")
    r = runner.invoke(app, ["eval", str(data["good"]), "-e", str(data["emb"]), "-p", str(pairs)])
    assert r.exit_code == 2 and "no column 'mated'" in r.stderr
    # Paths as stored do not match: the message shows both sides and suggests --match-suffix.
    r = _eval(data, "--match-suffix", "0")
    assert r.exit_code == 2 and "--match-suffix" in r.stderr and "Person_" in r.stderr


def test_table_pair_list_and_user_embeddings(data, tmp_path):
    # A recogniser's own output: path + variable-length list, no status, no face_index.
    t = pq.read_table(data["emb"]).filter(pa.compute.equal(pa.compute.field("status"), "ok"))
    own = tmp_path / "own.parquet"
    pq.write_table(pa.table({"path": t.column("path"),
                             "embedding": t.column("embedding").cast(pa.list_(pa.float32()))}), own)
    pairs = tmp_path / "pairs.csv"
    rows = ["path_a,path_b,mated"]
    def img(i: int, n: int) -> str:
        return f"/data/lfw/{_name(i)}/{_name(i)}_{n:04d}.jpg"

    for i in range(1, 30):
        rows.append(f"{img(i, 1)},{img(i, 2)},1")
        rows.append(f"{img(i, 1)},{img(i + 1, 3)},0")
    pairs.write_text("\n".join(rows) + "\n")
    res = ev.evaluate([str(data["good"])], own, pairs, bootstrap=0, fmrs=[0.05])
    assert res.accounting.used == 58 and res.settings["match_suffix"] is None


def test_identical_sources_differ_by_exactly_zero(data):
    res = ev.evaluate([f"a={data['good']}", f"b={data['good']}:quality_raw"], data["emb"], data["pairs"],
                      bootstrap=30, fmrs=[0.05])
    d = res.results[0].differences[0]
    assert (d.a, d.b) == ("a", "b")
    for est in d.figures.values():
        assert est.value == 0 and est.low == 0 and est.high == 0


def test_all_pairs_by_identity_of_the_selected_folds(data):
    res = ev.evaluate([str(data["good"])], data["emb"], data["pairs"], folds=[2], all_pairs_by="identity",
                      per_identity=3, non_mated=500, bootstrap=0, fmrs=[0.01])
    acc = res.accounting
    # Fold 2 names people 32-61 and Person_001 (4 faces each: C(4,2) = 6 pairs, capped at 3).
    assert acc.mated == 31 * 3 and acc.non_mated == 500 and acc.dropped == 0
    assert res.notes and "all-pairs" in res.notes[0]
    by_folder = ev.evaluate([str(data["good"])], data["emb"], data["pairs"], folds=[2], all_pairs_by="parent",
                            per_identity=3, non_mated=500, bootstrap=0, fmrs=[0.01])
    assert by_folder.results[0].threshold.value == res.results[0].threshold.value


def test_calibrate_prints_a_threshold_for_filter(data, tmp_path):
    base = ["calibrate", str(data["good"]), "-e", str(data["emb"]), "-p", str(data["pairs"]), "--fmr", "0.05"]
    r = runner.invoke(app, [*base, "--target-discard", "0.1", "--json", str(tmp_path / "cal.json")])
    assert r.exit_code == 0, r.stderr
    t = float(r.stdout.strip())                                    # nothing else on stdout
    doc = json.loads((tmp_path / "cal.json").read_text())
    rec = doc["recommended"]
    assert rec["min"] == t and rec["images_discarded"] <= 0.1
    assert "FNMR at T" in r.stderr and "recommended: --min" in r.stderr
    # The threshold keeps exactly the images at or above it.
    q = pq.read_table(data["good"]).column("quality").drop_null().to_numpy()
    assert 0 < t <= q.max()
    r = runner.invoke(app, [*base])
    assert r.exit_code == 0 and r.stdout == "" and "--target-fnmr" in r.stderr


def test_calibrate_api_by_hand(data):
    res = cal.calibrate(str(data["good"]), data["emb"], data["pairs"], fmr=0.05, target_fnmr=0.5)
    rows = res.rows
    assert rows[0].images_discarded == 0 and rows[0].fnmr == pytest.approx(res.fnmr0)
    assert all(a.min_quality < b.min_quality for a, b in zip(rows, rows[1:], strict=False))
    assert res.recommended is not None and res.recommended.fnmr <= 0.5
    # Least filtering: every lower candidate in the table misses the target.
    assert all(r.fnmr > 0.5 for r in rows if r.min_quality < res.recommended.min_quality)


def test_short_decimal():
    assert cal.short_decimal(0.1234, 0.1301) == (0.13, "0.13")
    assert cal.short_decimal(0.12, 0.1201) == (0.1201, "0.1201")
    x, text = cal.short_decimal(float("-inf"), 0.61234)
    assert x <= 0.61234 and text == "0.6"


def test_quality_specs():
    s = ev.parse_quality_spec("ref=samples.csv:dm100,-dm050")
    assert [(x.label, x.column, x.negate) for x in s] == [("ref:dm100", "dm100", False),
                                                          ("ref:-dm050", "dm050", True)]
    assert ev.parse_quality_spec("lq=scores.parquet")[0].label == "lq"
    assert ev.parse_quality_spec("scores.parquet")[0].label == "scores"
    assert [s.label for s in ev.as_sources(["x.parquet", "x.parquet"])] == ["x", "x#2"]


def test_all_pairs_from_the_cli_and_unknown_identity_column(data, tmp_path):
    base = ["eval", str(data["good"]), "-e", str(data["emb"]), "--all-pairs", "--bootstrap", "0",
            "--non-mated", "300", "--per-identity", "2", "--fmr", "0.01"]
    r = runner.invoke(app, [*base, "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["pairs"]["mated"] == N_PEOPLE * 2 and doc["pairs"]["non_mated"] == 300
    assert doc["settings"]["pair_kind"] == "all-pairs"
    r = runner.invoke(app, [*base, "--by", "team"])
    assert r.exit_code == 2 and "no 'team' column" in r.stderr and "--by parent" in r.stderr


def test_erc_figures_do_not_depend_on_the_order_of_the_pair_list(data, tmp_path):
    # An integer 0-10 quality scale (as some tools write): pair qualities tie massively. The
    # authors' evaluation keeps tied pairs together, so reordering the pair file changes nothing.
    t = pq.read_table(data["good"])
    q = np.round(np.nan_to_num(t.column("quality").to_numpy(zero_copy_only=False), nan=0.0) * 10)
    lines = ["path,q10"] + [f"{p},{v:g}" for p, v in zip(t.column("path").to_pylist(), q, strict=True)]
    (tmp_path / "int.csv").write_text("\n".join(lines) + "\n")
    rows = data["pairs"].read_text().splitlines()
    header, body = rows[0], rows[1:]
    rng = np.random.default_rng(7)
    shuffled = []
    for fold in (body[:61], body[61:]):                    # 31 mated then 30 non-mated rows per fold
        mated, non = fold[:31], fold[31:]
        shuffled += [mated[i] for i in rng.permutation(len(mated))] + [non[i] for i in rng.permutation(len(non))]
    (tmp_path / "shuffled.tsv").write_text("\n".join([header, *shuffled]) + "\n")
    figs = []
    for pairs in (data["pairs"], tmp_path / "shuffled.tsv"):
        out = tmp_path / f"{pairs.stem}.json"
        r = runner.invoke(app, ["eval", f"{tmp_path / 'int.csv'}:q10", "-e", str(data["emb"]), "-p", str(pairs),
                                "--bootstrap", "0", "--fmr", "0.05", "--json", str(out)])
        assert r.exit_code == 0, r.stderr
        src = json.loads(out.read_text())["results"][0]["sources"]["int:q10"]
        figs.append((src["erc_auc"]["value"], src["erc_fnmr@0.1"]["value"], src["erc_curve"]["fnmr"]))
    assert figs[0] == figs[1]
