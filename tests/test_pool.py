"""`facequal pool`: quality-weighted template pooling, the join, and its error messages."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facequal.curate.pool import member_weights, pool, pool_arrays
from facequal.errors import OutputExistsError, UserError

runner = CliRunner()
DIM = 16


def make_sets(n_people: int = 6, per: int = 5, seed: int = 0, dim: int = DIM):
    """Scores and embeddings tables: each face = its identity's centre + noise growing as quality falls."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    paths, ids, qs, embs = [], [], [], []
    for p in range(n_people):
        for j in range(per):
            q = float(rng.uniform(0.05, 0.95))
            e = centres[p] + rng.normal(size=dim) * (3.0 * (1 - q))
            paths.append(f"people/p{p}/{j}.jpg")
            ids.append(f"p{p}")
            qs.append(q)
            embs.append(e / np.linalg.norm(e))
    n = len(paths)
    scores = pa.table(
        {
            "path": paths,
            "face_index": pa.array([0] * n, pa.int32()),
            "status": ["ok"] * n,
            "quality": pa.array(qs, pa.float32()),
            "identity": ids,
        }
    )
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(embs), pa.float32()), dim)
    embeddings = pa.table(
        {"path": paths, "face_index": pa.array([0] * n, pa.int32()), "status": ["ok"] * n, "embedding": emb}
    )
    return scores, embeddings, centres


def test_member_weights():
    q = np.array([0.2, 0.6, 0.2])
    assert np.allclose(member_weights(q, "mean"), 1 / 3)
    assert np.allclose(member_weights(q, "quality"), [0.2, 0.6, 0.2])
    w = member_weights(q, "softmax", tau=0.1)
    assert np.allclose(w, np.exp(q / 0.1) / np.exp(q / 0.1).sum())
    assert np.allclose(member_weights(q, "topk", k=2), [0.5, 0.5, 0])  # tie at 0.2 -> the first
    assert np.allclose(member_weights(np.zeros(4), "quality"), 0.25)  # all zero -> uniform
    for m in ("mean", "quality", "softmax", "topk"):
        assert math.isclose(member_weights(np.array([0.3, 0.9, 0.1, 0.5]), m).sum(), 1.0)


def test_pool_arrays_normalises_and_counts():
    e = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 5.0], [3.0, 4.0, 0]])
    q = np.array([0.5, 0.5, 0.9, 0.1])
    codes = np.array([0, 0, 1, 1])
    out = pool_arrays(e, q, codes, method="mean")
    assert np.allclose(np.linalg.norm(out.templates, axis=1), 1)
    assert np.allclose(out.templates[0], [2**-0.5, 2**-0.5, 0], atol=1e-6)  # members normalised first
    assert out.n_members.tolist() == [2, 2] and out.n_used.tolist() == [2, 2]
    out = pool_arrays(e, q, codes, method="quality", min_quality=0.3)
    assert out.n_used.tolist() == [2, 1] and np.allclose(out.templates[1], [0, 0, 1])
    assert np.isclose(out.q_min[1], 0.9) and np.isclose(out.q_mean[0], 0.5)


def test_quality_pooling_beats_mean_on_noisy_low_quality_faces():
    scores, embeddings, centres = make_sets(n_people=40, per=6, seed=1)
    cos = {}
    for m in ("mean", "quality", "softmax"):
        t = pool(scores, embeddings, method=m).table
        tmpl = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
        c = centres[[int(s[1:]) for s in t["identity"].to_pylist()]]
        cos[m] = float(np.mean(np.sum(tmpl * (c / np.linalg.norm(c, axis=1, keepdims=True)), axis=1)))
    assert cos["quality"] > cos["mean"] and cos["softmax"] > cos["mean"]


def test_pool_files_and_output_table(tmp_path):
    scores, embeddings, _ = make_sets()
    pq.write_table(scores, tmp_path / "s.parquet")
    pq.write_table(embeddings, tmp_path / "e.parquet")
    res = pool(tmp_path / "s.parquet", tmp_path / "e.parquet", by="identity", output=tmp_path / "t.parquet")
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.column_names == [
        "identity",
        "n_members",
        "n_used",
        "quality_mean",
        "quality_min",
        "quality_max",
        "method",
        "embedding",
    ]
    assert t.num_rows == 6 and t["n_members"].to_pylist() == [5] * 6
    assert pa.types.is_fixed_size_list(t["embedding"].type) and t["embedding"].type.list_size == DIM
    e = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    qmin, qmax = np.array(t["quality_min"].to_pylist()), np.array(t["quality_max"].to_pylist())
    assert (qmin <= np.array(t["quality_mean"].to_pylist())).all() and (qmax >= qmin).all()
    assert res.messages == []
    with pytest.raises(OutputExistsError):
        pool(tmp_path / "s.parquet", tmp_path / "e.parquet", output=tmp_path / "t.parquet")


def test_list_column_and_group_from_embeddings():
    scores, embeddings, _ = make_sets()
    vecs = embeddings["embedding"].to_pylist()
    emb = embeddings.set_column(3, "embedding", pa.array(vecs, pa.list_(pa.float64())))
    emb = emb.append_column("person", scores["identity"])
    t = pool(scores.drop_columns(["identity"]), emb, by="person", method="softmax").table
    assert t.num_rows == 6 and t["embedding"].type.list_size == DIM
    bad = emb.set_column(3, "embedding", pa.array([v[:-1] if i == 0 else v for i, v in enumerate(vecs)]))
    with pytest.raises(UserError, match="different lengths"):
        pool(scores.drop_columns(["identity"]), bad, by="person")


def test_mismatched_keys():
    scores, embeddings, _ = make_sets()
    with pytest.raises(UserError, match="1 face\\(s\\) of the score file have no embedding and 0"):
        pool(scores, embeddings.slice(1))
    res = pool(scores, embeddings.slice(1), drop_invalid=True)
    assert "left out" in res.messages[0] and sum(res.table["n_members"].to_pylist()) == 29
    other = embeddings.set_column(0, "path", pa.array(["x/" + p for p in embeddings["path"].to_pylist()]))
    with pytest.raises(UserError, match="do not match"):
        pool(scores, other, drop_invalid=True)
    dup = pa.concat_tables([embeddings, embeddings.slice(0, 1)])
    with pytest.raises(UserError, match="twice"):
        pool(scores, dup)


def test_nan_quality():
    scores, embeddings, _ = make_sets()
    q = scores["quality"].to_pylist()
    q[3], q[7] = float("nan"), None
    s = scores.set_column(3, "quality", pa.array(q, pa.float32()))
    with pytest.raises(UserError, match="2 face\\(s\\) have no finite quality"):
        pool(s, embeddings, method="quality")
    assert pool(s, embeddings, method="mean").table.num_rows == 6  # mean does not need quality
    res = pool(s, embeddings, method="softmax", drop_invalid=True)
    assert sum(res.table["n_members"].to_pylist()) == 28


def test_empty_groups_and_empty_inputs():
    scores, embeddings, _ = make_sets()
    q = np.array(scores["quality"].to_pylist())
    q[:5] = 0.01  # p0 entirely below the threshold
    s = scores.set_column(3, "quality", pa.array(q, pa.float32()))
    res = pool(s, embeddings, min_quality=0.02)
    assert "p0" not in res.table["identity"].to_pylist() and "p0" in res.messages[-1]
    best = pool(s, embeddings, min_quality=0.02, if_empty="best").table
    assert best["n_used"].to_pylist()[best["identity"].to_pylist().index("p0")] == 1
    with pytest.raises(UserError, match="no face with quality"):
        pool(s, embeddings, min_quality=0.02, if_empty="error")
    with pytest.raises(UserError, match="every group is empty"):
        pool(s, embeddings, min_quality=2.0)
    with pytest.raises(UserError, match="no face with status 'ok'"):
        pool(scores.slice(0, 0), embeddings)
    g = s["identity"].to_pylist()
    g[0] = None
    with pytest.raises(UserError, match="have no 'identity' value"):
        pool(s.set_column(4, "identity", pa.array(g)), embeddings)
    with pytest.raises(UserError, match="column 'team'"):
        pool(scores, embeddings, by="team")


def test_cli_pool(tmp_path):
    from facequal.cli import app

    scores, embeddings, _ = make_sets()
    pq.write_table(scores, tmp_path / "s.parquet")
    pq.write_table(embeddings.slice(2), tmp_path / "e.parquet")
    args = [
        "pool",
        "--scores",
        str(tmp_path / "s.parquet"),
        "--embeddings",
        str(tmp_path / "e.parquet"),
        "--by",
        "identity",
        "-o",
        str(tmp_path / "t.parquet"),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code != 0 and "--drop-invalid" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, args + ["--drop-invalid", "--method", "softmax", "--tau", "0.2"])
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and pq.read_table(tmp_path / "t.parquet").num_rows == 6


def _lfw_like(tmp_path: Path):
    """A tiny LFW-shaped benchmark input: pairs of folds 6-10 name our people."""
    rng = np.random.default_rng(3)
    people = [f"Person_{i}" for i in range(12)]
    rows_s, rows_e = [], []
    for n, name in enumerate(people):
        centre = rng.normal(size=DIM)
        for j in range(4 + n % 3):
            q = float(rng.uniform(0.05, 0.95))
            e = centre + rng.normal(size=DIM) * 3 * (1 - q)
            p = f"lfw/{name}/{name}_{j + 1:04d}.jpg"
            rows_s.append((p, q))
            rows_e.append((p, e / np.linalg.norm(e)))
    n = len(rows_s)
    common = {"face_index": pa.array([0] * n, pa.int32()), "status": ["ok"] * n}
    pq.write_table(
        pa.table(
            {
                "path": [r[0] for r in rows_s],
                **common,
                "quality": pa.array([r[1] for r in rows_s], pa.float32()),
            }
        ),
        tmp_path / "s.parquet",
    )
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate([r[1] for r in rows_e]), pa.float32()), DIM
    )
    pq.write_table(
        pa.table({"path": [r[0] for r in rows_e], **common, "embedding": emb}), tmp_path / "e.parquet"
    )
    lines = ["name\tnr\tname2\tnr2"]
    for r in range(6000):
        if r < 3000:
            lines.append(f"Other_{r}\t1\t2")
        else:
            lines.append(f"{people[r % 12]}\t1\t{people[(r + 1) % 12]}\t1")
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")


def test_bench_pool_lfw_runs_on_lfw_shaped_files(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "pool_lfw", Path(__file__).resolve().parents[1] / "bench" / "pool_lfw.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _lfw_like(tmp_path)
    res = mod.main(
        [
            str(tmp_path / "s.parquet"),
            str(tmp_path / "e.parquet"),
            str(tmp_path / "pairs.tsv"),
            "--splits",
            "3",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert res["people"] == 12 and res["people_used"] == 12
    assert set(res["protocols"]) == {"template_vs_probe", "template_vs_template"}
    assert "| quality |" in capsys.readouterr().out
    assert (tmp_path / "r.json").exists()
