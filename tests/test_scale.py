"""Scale-out and flat memory: shards sharing a dataset directory, per-shard resume, the streamed
merge of part files, and the Dask backend against a LocalCluster (loopback only)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facequal import api
from facequal.cli import app
from facequal.pipeline import store
from facequal.pipeline.store import ORDINAL, RunStore
from facequal.schema import read_table

runner = CliRunner()


def score_cli(*args: str):
    return runner.invoke(app, ["score", *map(str, args), "-q"])


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """A folder of 23 small aligned crops (distinct colours, so distinct qualities)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(1)
    for i in range(23):
        sub = d / f"id{i % 4}"
        sub.mkdir(exist_ok=True)
        arr = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(sub / f"c{i:02d}.png")
    return d


def _parts(folder: str) -> list[str]:
    """The visible files of a dataset folder (beside them: facequal's hidden marker)."""
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _by_path(t: pa.Table) -> pa.Table:
    return t.sort_by([("path", "ascending"), ("face_index", "ascending")])


# -- shards --------------------------------------------------------------------------------------

def test_shards_partition_the_inputs_into_one_dataset_directory(tmp_path, crops, tiny_model):
    full = api.score([crops], model=str(tiny_model), aligned=True, jobs=1)
    out = str(tmp_path / "ds") + "/"
    sizes = []
    for i in range(3):
        r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", f"{i}/3")
        assert r.exit_code == 0, r.output
        sizes.append(pq.read_table(os.path.join(out, f"shard-{i:05d}-of-00003.part-00000.parquet")).num_rows)
    assert _parts(out) == [f"shard-{i:05d}-of-00003.part-00000.parquet" for i in range(3)]
    # the shards list their files, one after the other, in the folder's marker
    marker = json.loads(open(os.path.join(out, store.MARKER)).read())
    assert marker["files"] == _parts(out)
    assert sum(sizes) == full.num_rows == 23 and all(s > 0 for s in sizes)
    merged = read_table(out)
    assert _by_path(merged).equals(_by_path(full))
    # each shard keeps its own work directory, and none is left behind
    assert not [p for p in os.listdir(tmp_path) if p.endswith("facequal-work")]


def test_shard_refuses_foreign_files_unless_overwrite(tmp_path, crops, tiny_model):
    out = str(tmp_path / "ds") + "/"
    assert score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1").exit_code == 0
    # an unsharded dataset is there: a shard may not mix its files into it
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "0/2")
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "0/2", "--overwrite")
    assert r.exit_code == 0, r.output
    assert _parts(out) == ["shard-00000-of-00002.part-00000.parquet"]
    # another shard with other options conflicts with shard 0
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "1/2",
                  "--batch-size", "3", "--identity-from", "parent")
    assert r.exit_code == 2 and "other options" in r.output
    # the same options are fine, and a finished shard is not rerun without --resume / --overwrite
    assert score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1",
                     "--shard", "1/2").exit_code == 0
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "1/2")
    assert r.exit_code == 2 and "exists" in r.output
    assert len(_parts(out)) == 2


def test_shard_resume_is_per_shard(tmp_path, crops, tiny_model):
    out = str(tmp_path / "ds") + "/"
    assert score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "0/2").exit_code == 0
    other = os.path.join(out, "shard-00000-of-00002.part-00000.parquet")
    before = os.stat(other).st_mtime_ns
    # shard 1 is interrupted after its first chunk
    job = api.Job([crops], model=str(tiny_model), aligned=True, jobs=1, chunk_size=4, shard="1/2")
    st = RunStore(output=out, schema=job.schema, fingerprint=job.options, metadata=job.metadata(), shard=job.shard)
    st.prepare(overwrite=False, resume=False)
    st.commit(next(job.iter_tables()))
    st.close()   # the process died: its lock went with it
    assert st.work.name == ".ds.shard-00001-of-00002.facequal-work" and st.work.is_dir()
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "1/2")
    assert r.exit_code == 2 and "--resume" in r.output
    r = score_cli(crops, "-o", out, "--model", tiny_model, "--aligned", "-j", "1", "--shard", "1/2", "--resume")
    assert r.exit_code == 0, r.output
    assert not st.work.exists() and os.stat(other).st_mtime_ns == before
    fresh = api.score([crops], model=str(tiny_model), aligned=True, jobs=1, shard="1/2")
    got = pq.read_table(os.path.join(out, "shard-00001-of-00002.part-00000.parquet"))
    assert got.select(fresh.column_names).equals(fresh)
    # resuming a finished shard adds new inputs of that shard only
    shutil.copy(crops / "id0" / "c00.png", tmp_path / "extra.png")
    r = score_cli(crops, tmp_path / "extra.png", "-o", out, "--model", tiny_model, "--aligned", "-j", "1",
                  "--shard", "1/2", "--resume")
    assert r.exit_code == 0, r.output
    fresh = api.score([crops, tmp_path / "extra.png"], model=str(tiny_model), aligned=True, jobs=1, shard="1/2")
    got = pq.read_table(os.path.join(out, "shard-00001-of-00002.part-00000.parquet"))
    assert got.select(fresh.column_names).equals(fresh)


def test_dataset_output_rolls_over_into_several_parts(tmp_path, crops, tiny_model, monkeypatch):
    monkeypatch.setattr(store, "ROWS_PER_DATASET_PART", 10)
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 4)
    out = str(tmp_path / "ds") + "/"
    full = api.score([crops], out, model=str(tiny_model), aligned=True, jobs=1, chunk_size=3)
    names = _parts(out)
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(os.path.join(out, n)).num_rows for n in names] == [10, 10, 3]
    assert pq.read_metadata(os.path.join(out, names[0])).num_row_groups == 3
    assert read_table(out).equals(full.replace_schema_metadata(read_table(out).schema.metadata))
    # resume of a finished dataset reads its parts back and leaves the rows as they were
    again = api.score([crops], out, model=str(tiny_model), aligned=True, jobs=1, resume=True)
    assert again.equals(full)


# -- the streamed merge --------------------------------------------------------------------------

def _reference_merge(parts: list[pa.Table], order: dict[str, int]) -> pa.Table:
    """The semantics, all in memory: newest part per path wins; paths not in ``order`` dropped;
    rows sorted by input position then face_index (stable)."""
    rows = []
    newest: dict[str, int] = {}
    for s, t in enumerate(parts):
        for p in t.column("path").to_pylist():
            newest[p] = s
    for s, t in enumerate(parts):
        for r in t.to_pylist():
            if r["path"] in order and newest[r["path"]] == s:
                rows.append((order[r["path"]], r["face_index"], len(rows), r))
    rows.sort(key=lambda x: x[:3])
    schema = parts[0].schema.remove(parts[0].schema.get_field_index(ORDINAL))
    return pa.Table.from_pylist([r for *_, r in rows], schema=schema)


def _part(paths: list[str], faces: list[int], tag: str) -> pa.Table:
    return pa.table({"path": pa.array(paths, pa.string()), "face_index": pa.array(faces, pa.int32()),
                     "status": pa.array(["ok"] * len(paths)), "note": pa.array([tag] * len(paths)),
                     ORDINAL: pa.array([0] * len(paths), pa.int64())})


@pytest.mark.parametrize("seed", range(12))
def test_streamed_merge_matches_in_memory_semantics(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = 60
    inputs = [f"img{i:03d}.jpg" for i in range(n)]
    order = {p: i for i, p in enumerate(inputs)}
    if seed % 4 == 3:  # the inputs were reordered between the runs (a shuffled manifest)
        order = {p: i for i, p in enumerate(rng.permutation(inputs))}
    # a first run commits some chunks in order, then a resumed run (with new inputs appearing in
    # the middle, changed files re-done, and some rows of inputs that are gone) commits the rest
    parts: list[pa.Table] = []
    done = sorted(rng.choice(n, size=rng.integers(0, n), replace=False))
    extra = [f"gone{i}.jpg" for i in range(3)]
    first = [inputs[i] for i in done] + extra
    for k in range(0, len(first), 7):
        ps = first[k:k + 7]
        faces = [int(x) for x in rng.integers(-1, 3, size=len(ps))]
        parts.append(_part(ps, faces, f"a{k}"))
    redo = [inputs[i] for i in range(n) if i not in set(done) or rng.random() < 0.2]
    for k in range(0, len(redo), 5):
        ps, faces = [], []
        for p in redo[k:k + 5]:
            f = list(range(int(rng.integers(1, 4)))) if rng.random() < 0.8 else [-1]
            ps += [p] * len(f)
            faces += f
        parts.append(_part(ps, faces, f"b{k}"))
    schema = parts[0].schema.remove(parts[0].schema.get_field_index(ORDINAL))
    st = RunStore(output=str(tmp_path / "o.parquet"), schema=schema, fingerprint={}, metadata={})
    st.work.mkdir()
    for p in parts:
        st.commit(p)
    blocks = list(st.iter_merged(order))
    assert max((b.num_rows for b, _ in blocks), default=0) <= max(p.num_rows for p in parts)
    want = _reference_merge(parts, order)
    got = pa.concat_tables([b for b, _ in blocks]) if blocks else schema.empty_table()
    assert got.equals(want)
    # and the written file holds the same rows, with the counts in the summary
    assert st.finish(order, collect=False) is None
    assert pq.read_table(tmp_path / "o.parquet").select(schema.names).cast(schema).equals(want)
    assert st.summary.rows == want.num_rows
    assert st.summary.images == len(set(want.column("path").to_pylist()))


@pytest.mark.parametrize("seed", range(12))
def test_merge_without_gone_inputs_keeps_the_newest_rows_in_input_order(tmp_path, seed):
    # No input that left the run (every uninterrupted run; a resume that adds inputs or redoes
    # changed files): the merge may take the key ranges from its first pass, unless an input is
    # in two parts. Parts hold any subset of the inputs (in input order), arriving in any order.
    rng = np.random.default_rng(seed)
    inputs = [f"img{i:03d}.jpg" for i in range(50)]
    order = {p: i for i, p in enumerate(inputs)}
    owner = rng.integers(0, int(rng.integers(1, 9)), size=len(inputs))
    if seed % 3 == 0:   # contiguous pieces, as an uninterrupted run commits them
        owner = np.sort(owner)
    groups = [[p for p, o in zip(inputs, owner, strict=True) if o == k] for k in np.unique(owner)]
    if seed % 2:        # and some inputs done again in a later part (a changed file)
        groups.append(sorted(rng.choice(inputs, size=5, replace=False), key=order.get))
    if seed % 4 == 1:   # every input of a part done again: none of its rows is kept
        groups.append(list(groups[0]))
    parts = []
    for k, ps in enumerate(groups):
        rows = [(p, f) for p in ps for f in (range(int(rng.integers(1, 3))) if rng.random() < 0.8 else [-1])]
        t = _part([p for p, _ in rows], [f for _, f in rows], f"p{k}")
        parts.append(t.set_column(t.schema.get_field_index(ORDINAL), ORDINAL,
                                  pa.array([order[p] for p, _ in rows], pa.int64())))
    schema = parts[0].schema.remove(parts[0].schema.get_field_index(ORDINAL))
    st = RunStore(output=str(tmp_path / "o.parquet"), schema=schema, fingerprint={}, metadata={})
    st.work.mkdir()
    for p in parts:
        st.commit(p)
    want = _reference_merge(parts, order)
    assert set(want.column("path").to_pylist()) == set(inputs)
    for by in (order, None):   # paths mapped by the inputs' order, or the parts' own ordinals
        got = pa.concat_tables([b for b, _ in st.iter_merged(by)])
        assert got.equals(want)


def test_flat_run_returns_a_summary_instead_of_a_table(tmp_path, crops, tiny_model):
    job = api.Job([crops], model=str(tiny_model), aligned=True, jobs=1, chunk_size=5)
    out = tmp_path / "s.parquet"
    assert job.run(str(out), collect=False) is None
    t = pq.read_table(out)
    s = job.summary
    assert s.rows == t.num_rows == s.images == 23 and s.status_counts == {"ok": 23}
    q = np.sort(t.column("quality").to_numpy())
    assert abs(s.median_quality - float(np.median(q))) < 2e-3


# -- Dask ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_cluster():
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, protocol="tcp")
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_backend_gives_exactly_the_rows_of_a_local_run(tmp_path, face_folder, tiny_model, dask_cluster):
    local = api.score([face_folder], model=str(tiny_model), jobs=1, chunk_size=2, faces="all")
    remote = api.score([face_folder], model=str(tiny_model), chunk_size=2, faces="all", backend="dask",
                       scheduler=dask_cluster.scheduler_address)
    assert remote.equals(local)
    out = tmp_path / "d.parquet"
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "--faces", "all", "--backend", "dask",
                  "--scheduler", dask_cluster.scheduler_address)
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).select(local.column_names).equals(local)


def test_dask_backend_argument_errors(tmp_path, face_folder, tiny_model):
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", tiny_model, "--backend", "dask")
    assert r.exit_code == 2 and "--scheduler" in r.output
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", tiny_model, "--scheduler", "tcp://x:1")
    assert r.exit_code == 2 and "--backend dask" in r.output
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", tiny_model, "--backend", "spark")
    assert r.exit_code == 2 and "--backend" in r.output


def test_cuda_device_says_why_it_cannot(tmp_path, face_folder, tiny_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", tiny_model, "--device", "cuda")
    assert r.exit_code == 2 and "CUDA provider" in r.output and "onnxruntime-gpu" in r.output


def test_faces_from_a_scores_file_stream_through_the_compact_input_list(tmp_path, face_folder, tiny_model):
    out = tmp_path / "s.parquet"
    first = api.score([face_folder], out, model=str(tiny_model), jobs=1, faces="all")
    job = api.Job([], model=str(tiny_model), from_scores=str(out), jobs=2, chunk_size=2)
    assert len(job.refs) == 5 and job.refs[-1].path == first.column("path")[-1].as_py()
    again = job.run()
    # the same faces (landmarks as stored, in float32: the quality moves in the last bits only)
    cols = ["path", "face_index", "n_faces", "status", "bbox", "landmarks"]
    assert again.select(cols).equals(first.select(cols))
    q0, q1 = (np.array(t.column("quality").to_pylist(), dtype=float) for t in (first, again))
    assert np.allclose(q0, q1, atol=1e-5, equal_nan=True)
