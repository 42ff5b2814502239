"""`facequal score` end to end: rows, schema, metadata, overwrite, resume, determinism, manifests."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from facequal import api, schema
from facequal.cli import app
from facequal.pipeline.store import RunStore

runner = CliRunner()


def score_cli(*args: str):
    return runner.invoke(app, ["score", *map(str, args), "-q"])


def test_score_folder_rows_and_metadata(tmp_path, face_folder, tiny_model):
    out = tmp_path / "s.parquet"
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "-j", "1")
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    rows = t.to_pylist()
    names = [os.path.relpath(x["path"], face_folder) for x in rows]
    assert names == ["a/astronaut.jpg", "a/mirrored.png", "b/rotated.webp", "b/sky.png", "b/small.jpg"]
    by = {n: x for n, x in zip(names, rows, strict=True)}
    assert by["b/sky.png"]["status"] == schema.NO_FACE and by["b/sky.png"]["face_index"] == -1
    assert by["b/sky.png"]["quality"] is None
    for n in ("a/astronaut.jpg", "a/mirrored.png", "b/small.jpg", "b/rotated.webp"):
        x = by[n]
        assert x["status"] == schema.OK and x["face_index"] == 0 and 0 < x["quality"] < 1
        assert len(x["landmarks"]) == 5 and x["eye_distance"] > 10 and x["det_score"] > 0.5
    assert by["a/astronaut.jpg"]["width"] == 512
    # the mirrored image's face is mirrored: its box is mirrored about the centre
    a, m = by["a/astronaut.jpg"]["bbox"], by["a/mirrored.png"]["bbox"]
    assert abs((512 - m[2]) - a[0]) < 3
    meta = t.schema.metadata
    assert json.loads(meta[b"facequal.contract"])["name"] == "tiny-test"
    assert len(meta[b"facequal.model_sha256"]) == 64 and b"facequal.version" in meta
    assert t.schema.field("quality").type == pa.float64()


def test_existing_output_is_not_overwritten(tmp_path, face_folder, tiny_model):
    out = tmp_path / "s.parquet"
    out.write_bytes(b"precious")
    r = score_cli(face_folder, "-o", out, "--model", tiny_model)
    assert r.exit_code != 0 and "exists" in r.output and "--overwrite" in r.output
    assert out.read_bytes() == b"precious"
    # --overwrite replaces only a file facequal wrote (see test_output_safety.py)
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "--overwrite", "-j", "1")
    assert r.exit_code == 2 and "not a Parquet file facequal wrote" in r.output
    assert out.read_bytes() == b"precious"
    out.unlink()
    assert score_cli(face_folder, "-o", out, "--model", tiny_model, "--det-threshold", "0.9", "-j", "1").exit_code == 0
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "--overwrite", "-j", "1")
    assert r.exit_code == 0 and pq.read_table(out).num_rows == 5


def test_fatal_errors_are_one_line(tmp_path, face_folder, tiny_model):
    r = score_cli(face_folder, "-o", tmp_path / "nodir" / "s.parquet", "--model", tiny_model)
    assert r.exit_code == 2 and "does not exist" in r.output
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", tmp_path / "missing.onnx")
    assert r.exit_code == 2 and "no such file" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_model_without_contract_needs_one(tmp_path, face_folder):
    from modelkit import TINY_CONTRACT, build_tiny_model

    bare = build_tiny_model(tmp_path / "bare.onnx", with_contract=False)
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", bare)
    assert r.exit_code == 2 and "--contract" in r.output
    cfile = tmp_path / "c.json"
    cfile.write_text(TINY_CONTRACT.to_json())
    r = score_cli(face_folder, "-o", tmp_path / "s.parquet", "--model", bare, "--contract", cfile, "-j", "1")
    assert r.exit_code == 0, r.output


def test_same_rows_whatever_the_number_of_workers(tmp_path, face_folder, tiny_model):
    t1 = api.score([face_folder], model=str(tiny_model), jobs=1, chunk_size=2)
    t2 = api.score([face_folder], model=str(tiny_model), jobs=2, chunk_size=1)
    assert t1.equals(t2)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, face_folder, tiny_model):
    full = api.score([face_folder], model=str(tiny_model), jobs=1)
    out = tmp_path / "r.parquet"
    # Interrupted run: only the first chunk was committed before the process died.
    job = api.Job([face_folder], model=str(tiny_model), jobs=1, chunk_size=2)
    store = RunStore(output=str(out), schema=job.schema, fingerprint=job.options, metadata=job.metadata())
    store.prepare(overwrite=False, resume=False)
    first = next(job.iter_tables())
    store.commit(first)
    store.close()   # the process died: its lock went with it
    assert not out.exists()
    r = score_cli(face_folder, "-o", out, "--model", tiny_model)
    assert r.exit_code == 2 and "--resume" in r.output
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "--resume", "-j", "1")
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).select(full.column_names).equals(full)
    assert not store.work.exists()


def test_resume_adds_new_inputs_to_a_finished_output(tmp_path, face_folder, tiny_model):
    d = tmp_path / "imgs"
    shutil.copytree(face_folder, d)
    out = tmp_path / "s.parquet"
    (d / "b" / "small.jpg").rename(tmp_path / "held.jpg")
    assert score_cli(d, "-o", out, "--model", tiny_model, "-j", "1").exit_code == 0
    assert pq.read_table(out).num_rows == 4
    (tmp_path / "held.jpg").rename(d / "b" / "small.jpg")
    r = score_cli(d, "-o", out, "--model", tiny_model, "--resume", "-j", "1")
    assert r.exit_code == 0, r.output
    fresh = api.score([d], model=str(tiny_model), jobs=1)
    assert pq.read_table(out).select(fresh.column_names).equals(fresh)


def test_resume_refuses_other_options(tmp_path, face_folder, tiny_model):
    out = tmp_path / "s.parquet"
    assert score_cli(face_folder, "-o", out, "--model", tiny_model, "-j", "1").exit_code == 0
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "--resume", "--det-threshold", "0.9")
    assert r.exit_code == 2 and "other options" in r.output


def test_manifest_columns_are_carried(tmp_path, face_folder, tiny_model):
    m = tmp_path / "m.parquet"
    rel = os.path.relpath(face_folder / "a" / "astronaut.jpg", tmp_path)
    pq.write_table(pa.table({"path": [rel, "missing.jpg"], "identity": ["eileen", "nobody"],
                             "weight": pa.array([1.5, 2.5], pa.float32())}), m)
    t = api.score([m], model=str(tiny_model), jobs=1)
    rows = t.to_pylist()
    assert [r["identity"] for r in rows] == ["eileen", "nobody"]
    assert rows[0]["path"] == os.path.join(str(tmp_path), rel) and rows[0]["status"] == "ok"
    assert rows[1]["status"] == schema.MISSING and rows[1]["error"]
    assert t.schema.field("weight").type == pa.float32()


def test_bad_files_become_rows_and_the_run_goes_on(tmp_path, face_folder, tiny_model):
    d = tmp_path / "mixed"
    shutil.copytree(face_folder / "a", d)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("hello")
    r = score_cli(d, "-o", tmp_path / "s.parquet", "--model", tiny_model, "-j", "1")
    assert r.exit_code == 0
    rows = pq.read_table(tmp_path / "s.parquet").to_pylist()
    st = {os.path.basename(x["path"]): x["status"] for x in rows}
    assert st == {"astronaut.jpg": "ok", "empty.jpg": "unreadable", "mirrored.png": "ok",
                  "text.png": "unreadable"}
    r = score_cli(d, "-o", tmp_path / "s2.parquet", "--model", tiny_model, "-j", "1", "--strict")
    assert r.exit_code == 1


def test_all_faces_and_saved_crops(tmp_path, astronaut, tiny_model):
    from PIL import Image

    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    p = tmp_path / "two.png"
    Image.fromarray(two).save(p)
    crops = tmp_path / "crops"
    t = api.score([p], model=str(tiny_model), faces="all", jobs=1, save_crops=str(crops))
    ok = [r for r in t.to_pylist() if r["status"] == "ok"]
    assert [r["face_index"] for r in ok] == [0, 1] and all(r["n_faces"] == 2 for r in ok)
    for r in ok:
        assert os.path.isfile(r["crop_path"]) and Image.open(r["crop_path"]).size == (96, 96)


def test_aligned_inputs_skip_detection(tmp_path, tiny_model):
    from PIL import Image

    p = tmp_path / "crop.png"
    Image.new("RGB", (112, 112), (120, 100, 90)).save(p)
    t = api.score([p], model=str(tiny_model), aligned=True, jobs=1)
    row = t.to_pylist()[0]
    assert row["status"] == "ok" and row["landmarks"] is None and 0 < row["quality"] < 1


def test_dataset_directory_output(tmp_path, face_folder, tiny_model):
    out = str(tmp_path / "ds") + "/"
    r = score_cli(face_folder, "-o", out, "--model", tiny_model, "-j", "1")
    assert r.exit_code == 0, r.output
    files = sorted(os.listdir(out))
    assert files == [".facequal-dataset.json", "part-00000.parquet"]   # the parts and facequal's marker
    from facequal.schema import read_table

    assert read_table(out).num_rows == 5
