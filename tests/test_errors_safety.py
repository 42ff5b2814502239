"""Issue #14, C10-C12 and D14-D17: crafted inputs and options out of their domain stop a run with
one line and exit code 2 (never a traceback, never an empty output with exit 0); user text is
printed as it is; SIGTERM ends a run like Ctrl-C; bad given faces, cancelling templates and
empty inputs are reported, not hidden."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facequal import api, schema
from facequal.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
DIM = 4


def one_line_error(r, *needles: str) -> str:
    """The run stopped with exit code 2 and one 'facequal: error:' line holding every needle."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, (r.exit_code, r.output)
    err = r.stderr.strip()
    assert err.startswith("facequal: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def scores_table(n: int = 4, **override: pa.Array) -> pa.Table:
    """A small score table: paths p0.jpg..., ok faces, qualities, an identity, a bbox."""
    cols = {
        "path": pa.array([f"p{i}.jpg" for i in range(n)]),
        "face_index": pa.array([0] * n, pa.int32()),
        "status": pa.array(["ok"] * n),
        "error": pa.array([None] * n, pa.string()),
        "quality": pa.array([0.2 + 0.6 * i / max(n - 1, 1) for i in range(n)], pa.float64()),
        "bbox": pa.array([[0.0, 0.0, 50.0, 50.0]] * n, pa.list_(pa.float32(), 4)),
        "identity": pa.array([f"id{i % 2}" for i in range(n)]),
    }
    cols.update(override)
    return pa.table(cols)


def embeddings_table(n: int = 4, vectors: list | None = None) -> pa.Table:
    rng = np.random.default_rng(0)
    vecs = vectors if vectors is not None else rng.normal(size=(n, DIM)).tolist()
    return pa.table({
        "path": pa.array([f"p{i}.jpg" for i in range(n)]),
        "face_index": pa.array([0] * n, pa.int32()),
        "status": pa.array(["ok"] * n),
        "embedding": pa.array(vecs, pa.list_(pa.float32(), DIM)),
    })


def write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------------------------------------
# C10: crafted inputs to filter / report / pool / eval
# ---------------------------------------------------------------------------------------------
def _verbs(scores: Path, tmp_path: Path, emb: Path | None = None) -> dict[str, list[str]]:
    emb = emb or write(embeddings_table(), tmp_path / "emb.parquet")
    return {
        "filter": ["filter", str(scores), "--min", "0.1", "--status", "ok", "-o", "-"],
        "report": ["report", str(scores), "-o", str(tmp_path / "r.html")],
        "pool": ["pool", "--scores", str(scores), "--embeddings", str(emb), "-o", str(tmp_path / "t.parquet")],
    }


@pytest.mark.parametrize("verb", ["filter", "report", "pool"])
def test_dataset_folder_with_incompatible_parts_is_one_line(tmp_path, verb):
    d = tmp_path / "scores"
    d.mkdir()
    write(scores_table(), d / "part-00000.parquet")
    write(scores_table(quality=pa.array(["high", "low", "high", "low"])), d / "part-00001.parquet")
    r = runner.invoke(app, _verbs(d, tmp_path)[verb])
    one_line_error(r, "quality", "part-00000.parquet", "part-00001.parquet")


@pytest.mark.parametrize("verb", ["filter", "report", "pool"])
def test_integer_status_column_is_refused(tmp_path, verb):
    f = write(scores_table(status=pa.array([1, 1, 0, 1], pa.int64())), tmp_path / "s.parquet")
    r = runner.invoke(app, _verbs(f, tmp_path)[verb])
    one_line_error(r, "s.parquet", "'status'", "int64")


@pytest.mark.parametrize("verb", ["filter", "report"])
def test_integer_path_column_is_refused(tmp_path, verb):
    f = write(scores_table(path=pa.array([10, 11, 12, 13], pa.int64())), tmp_path / "s.parquet")
    r = runner.invoke(app, _verbs(f, tmp_path)[verb])
    one_line_error(r, "'path'", "int64")


def test_float_nan_error_column_is_refused_by_report(tmp_path):
    t = scores_table(status=pa.array(["ok", "ok", "unreadable", "ok"]),
                     error=pa.array([None, None, float("nan"), None], pa.float64()))
    f = write(t, tmp_path / "s.parquet")
    r = runner.invoke(app, ["report", str(f), "-o", str(tmp_path / "r.html")])
    one_line_error(r, "'error'", "double")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("verb", ["report", "pool"])
def test_non_numeric_quality_in_csv_names_the_value(tmp_path, verb):
    f = tmp_path / "s.csv"
    f.write_text("path,face_index,status,quality,identity\np0.jpg,0,ok,0.5,a\np1.jpg,0,ok,good,a\n"
                 "p2.jpg,0,ok,0.7,b\np3.jpg,0,ok,0.9,b\n")
    r = runner.invoke(app, _verbs(f, tmp_path)[verb])
    one_line_error(r, "s.csv", "'quality'", "'good'")


def test_csv_path_that_looks_like_a_number_stays_a_path(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("path,face_index,status,quality\n2024,0,ok,0.9\n2025,0,ok,0.1\n")
    r = runner.invoke(app, ["filter", str(f), "--min", "0.5", "-o", "-"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["2024"]


def test_list_column_as_group_is_refused(tmp_path):
    tags = pa.array([["a"], ["b"], ["a"], ["b"]], pa.list_(pa.string()))
    f = write(scores_table(identity=tags), tmp_path / "s.parquet")
    r = runner.invoke(app, ["filter", str(f), "--per-group", "1", "--group", "identity", "-o", "-"])
    one_line_error(r, "--group identity", "list")
    emb = write(embeddings_table(), tmp_path / "emb.parquet")
    r = runner.invoke(app, ["pool", "--scores", str(f), "--embeddings", str(emb), "-o", str(tmp_path / "t.parquet")])
    one_line_error(r, "--by identity", "list")


def test_all_null_embedding_column_is_one_line(tmp_path):
    emb = embeddings_table(vectors=[None] * 4)
    f = write(scores_table(), tmp_path / "s.parquet")
    e = write(emb, tmp_path / "emb.parquet")
    r = runner.invoke(app, ["pool", "--scores", str(f), "--embeddings", str(e), "-o", str(tmp_path / "t.parquet")])
    one_line_error(r, "'embedding'")
    r = runner.invoke(app, ["pool", "--scores", str(f), "--embeddings", str(e), "-o", str(tmp_path / "t.parquet"),
                            "--drop-invalid"])
    one_line_error(r, "no face is left")
    assert not (tmp_path / "t.parquet").exists()


def test_eval_quality_file_with_integer_status_is_one_line(tmp_path):
    q = write(scores_table(status=pa.array([1, 1, 1, 1], pa.int64())), tmp_path / "q.parquet")
    e = write(embeddings_table(), tmp_path / "e.parquet")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,mated\np0.jpg,p1.jpg,1\np2.jpg,p3.jpg,0\n")
    r = runner.invoke(app, ["eval", str(q), "-e", str(e), "--pairs", str(pairs), "--bootstrap", "0"])
    one_line_error(r, "q.parquet", "'status'")


@pytest.mark.parametrize("field, value", [
    ("template", "abc"),
    ("mean", "abc"),
    ("crop_size", [96.5, 96]),
    ("warp_size", "96x96"),
    ("name", 5),
    ("calibration", {"x": ["a", "b"], "y": [0.0, 1.0]}),
])
def test_contract_with_a_wrong_type_names_the_field(tmp_path, face_folder, tiny_model, field, value):
    from modelkit import TINY_CONTRACT

    d = TINY_CONTRACT.to_dict()
    d[field] = value
    contract = tmp_path / "c.json"
    contract.write_text(json.dumps(d))
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["score", str(face_folder), "-o", str(out), "--model", str(tiny_model),
                            "--contract", str(contract), "-q", "-j", "1"])
    one_line_error(r, field)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# C11: numeric options are range-checked before any work
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [
    ("--det-size", "-5"), ("--det-size", "0"), ("--det-size", "100000"),
    ("--det-threshold", "2"), ("--det-threshold", "nan"),
    ("--min-face", "-1"), ("--min-face", "inf"),
    ("--pad", "inf"), ("--pad", "nan"), ("--pad", "-1"), ("--pad", "1000"),
    ("--max-pixels", "-1"), ("--max-pixels", "0"),
    ("--jobs", "-1"), ("--threads", "0"),
])
def test_score_option_out_of_range_is_refused_before_any_work(tmp_path, face_folder, tiny_model, flag, value):
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["score", str(face_folder), "-o", str(out), "--model", str(tiny_model), "-q",
                            flag, value])
    one_line_error(r, flag)
    assert sorted(os.listdir(tmp_path)) == []  # no output, no work folder


def test_embed_option_out_of_range_is_refused(tmp_path, face_folder):
    r = runner.invoke(app, ["embed", str(face_folder), "-o", str(tmp_path / "e.parquet"), "--det-threshold", "1.5"])
    one_line_error(r, "--det-threshold")


def test_filter_min_outside_unit_interval_creates_nothing(tmp_path):
    f = write(scores_table(), tmp_path / "s.parquet")
    target = tmp_path / "kept"
    r = runner.invoke(app, ["filter", str(f), "--min", "1.5", "--to", str(target)])
    one_line_error(r, "--min")
    assert not target.exists()
    r = runner.invoke(app, ["filter", str(f), "--max", "-0.5", "-o", "-"])
    one_line_error(r, "--max")


def test_pool_options_out_of_range(tmp_path):
    f = write(scores_table(), tmp_path / "s.parquet")
    e = write(embeddings_table(), tmp_path / "e.parquet")
    base = ["pool", "--scores", str(f), "--embeddings", str(e), "-o", str(tmp_path / "t.parquet")]
    one_line_error(runner.invoke(app, base + ["--k", "0"]), "--k")
    one_line_error(runner.invoke(app, base + ["--tau", "nan"]), "--tau")
    one_line_error(runner.invoke(app, base + ["--min-quality", "inf"]), "--min-quality")


def test_report_jobs_out_of_range(tmp_path):
    f = write(scores_table(), tmp_path / "s.parquet")
    one_line_error(runner.invoke(app, ["report", str(f), "-o", str(tmp_path / "r.html"), "-j", "-2"]), "--jobs")


def test_eval_seed_out_of_range(tmp_path):
    one_line_error(runner.invoke(app, ["eval", "q.parquet", "-e", "e.parquet", "--all-pairs", "--seed", "-1"]),
                   "--seed")


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


@needs_proc
def test_report_checks_its_output_is_writable_before_rendering(tmp_path, monkeypatch):
    from facequal.curate.report import build

    def no_rendering(*args, **kwargs):
        raise AssertionError("thumbnails were made for an output that cannot be written")

    monkeypatch.setattr(build, "make_thumbnails", no_rendering)
    f = write(scores_table(), tmp_path / "s.parquet")
    r = runner.invoke(app, ["report", str(f), "-o", "/proc/facequal-report.html"])
    one_line_error(r, "/proc/facequal-report.html")


@needs_proc
@pytest.mark.parametrize("verb", ["eval", "calibrate"])
def test_eval_checks_its_outputs_are_writable_before_computing(tmp_path, monkeypatch, verb):
    from facequal.eval import calibrate, evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("pairs were loaded for an output that cannot be written")

    monkeypatch.setattr(evaluate, "prepare_pairs", no_work)
    monkeypatch.setattr(calibrate, "prepare_pairs", no_work)
    r = runner.invoke(app, [verb, "q.parquet", "-e", "e.parquet", "--all-pairs", "--json", "/proc/facequal.json"])
    one_line_error(r, "/proc/facequal.json")
    if verb == "eval":
        r = runner.invoke(app, [verb, "q.parquet", "-e", "e.parquet", "--all-pairs", "--plot", "/sys/facequal-plot"])
        one_line_error(r, "/sys/facequal-plot")


@needs_proc
def test_pool_checks_its_output_is_writable_before_reading(tmp_path, monkeypatch):
    from facequal.curate import pool

    def no_reading(*args, **kwargs):
        raise AssertionError("inputs were read for an output that cannot be written")

    monkeypatch.setattr(pool, "read_table", no_reading)
    r = runner.invoke(app, ["pool", "--scores", "s.parquet", "--embeddings", "e.parquet", "-o", "/proc/t.parquet"])
    one_line_error(r, "/proc/t.parquet")


# ---------------------------------------------------------------------------------------------
# C12: messages keep their square brackets
# ---------------------------------------------------------------------------------------------
def test_install_hints_keep_their_brackets(capsys):
    import typer

    from facequal.cli.app import fatal

    with pytest.raises(typer.Exit):
        fatal("dlib's recogniser needs its weights: pip install 'facequal[embed]'")
    assert "pip install 'facequal[embed]'" in capsys.readouterr().err


def test_paths_with_markup_are_printed_as_they_are(tmp_path, face_folder, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["score", "photos[bold red]", "-o", "s.parquet", "--model", str(tiny_model)])
    one_line_error(r, "photos[bold red]")
    # the summary's title names the output as given
    r = runner.invoke(app, ["score", str(face_folder / "a"), "-o", "o[red]x.parquet", "--model", str(tiny_model),
                            "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "o[red]x.parquet" in r.stderr
    # warnings of filter --to name the source as it is
    f = write(scores_table(path=pa.array([f"gone[bold]/{i}.jpg" for i in range(4)])), tmp_path / "s2.parquet")
    r = runner.invoke(app, ["filter", str(f), "--min", "0.1", "--to", "kept"])
    assert r.exit_code == 1 and "'gone[bold]/0.jpg'" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# D14: SIGTERM ends `score -j 2` like Ctrl-C
# ---------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], fields[19]


def _descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``pid``."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None:
                parents.setdefault(st[0], []).append((int(name), st[2]))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.add(child)
            todo.append(child[0])
    return out


def _alive(procs: set[tuple[int, str]]) -> set[int]:
    alive = set()
    for pid, start in procs:
        st = _proc_stat(pid)
        if st is not None and st[2] == start and st[1] != "Z":
            alive.add(pid)
    return alive


@needs_proc
@pytest.mark.slow
def test_sigterm_stops_the_workers_and_keeps_the_work_folder(tmp_path, tiny_model):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(folder / "0000.png")
    for i in range(1, 400):  # hard links: 400 inputs, made in no time
        os.link(folder / "0000.png", folder / f"{i:04d}.png")
    out = tmp_path / "s.parquet"
    work = tmp_path / ".s.parquet.facequal-work"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    err = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "facequal", "score", str(folder), "-o", str(out),
                             "--model", str(tiny_model), "-j", "2", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    seen: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + 120
        while not (work.is_dir() and any(p.name.startswith("part-") for p in work.iterdir())):
            assert proc.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline, "no part file appeared"
            seen |= _descendants(proc.pid)
            time.sleep(0.05)
        seen |= _descendants(proc.pid)
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert len(_alive(seen)) >= 2, "expected two worker processes"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while _alive(seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _alive(seen)
    finally:
        err.close()
        for pid in _alive(seen):  # never leave them behind, whatever the outcome
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    assert not left, f"worker processes {sorted(left)} outlived the SIGTERM'd run"
    assert proc.returncode == 143
    stderr = (tmp_path / "stderr.txt").read_text().strip()
    assert stderr == "facequal: terminated (SIGTERM)", stderr
    assert not out.exists() and any(p.name.startswith("part-") for p in work.iterdir()), "kept for --resume"


# ---------------------------------------------------------------------------------------------
# D15: NaN / inf landmarks given by --from-scores are error rows
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def crafted_scores(tmp_path, face_folder, tiny_model) -> Path:
    """A scores file of face_folder's four faces: NaN landmarks, inf landmarks, a NaN bbox, intact."""
    t = api.score([face_folder], model=str(tiny_model), jobs=1)
    rows = t.to_pylist()
    ok = [r for r in rows if r["status"] == schema.OK]
    assert len(ok) == 4
    ok[0]["landmarks"] = [[float("nan"), float("nan")]] * 5
    ok[1]["landmarks"][2] = [float("inf"), 10.0]
    ok[2]["bbox"] = [float("nan"), 0.0, 10.0, 10.0]
    path = tmp_path / "crafted.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), path)
    return path


def _check_given_rows(t: pa.Table, crafted: Path) -> None:
    src = pq.read_table(crafted).to_pylist()
    by_path = {r["path"]: r for r in t.to_pylist()}
    faces = [r["path"] for r in src if r["status"] == schema.OK]
    for p, what in zip(faces[:3], ["landmarks", "landmarks", "bbox"], strict=True):
        row = by_path[p]
        assert row["status"] == schema.ERROR and what in row["error"] and row["face_index"] == 0, row
        assert row.get("quality") is None and row.get("embedding") is None
    assert by_path[faces[3]]["status"] == schema.OK


def test_nan_landmarks_from_scores_are_error_rows(crafted_scores, tiny_model):
    t = api.score([], model=str(tiny_model), jobs=1, from_scores=str(crafted_scores))
    _check_given_rows(t, crafted_scores)


def test_nan_landmarks_from_scores_are_not_embedded(tmp_path, crafted_scores):
    import onnx
    from modelkit import TINY_CONTRACT, build_tiny_model

    contract = replace(TINY_CONTRACT, name="tiny-embedding", task="embedding", output="embedding",
                       output_name="embedding")
    model = build_tiny_model(tmp_path / "emb.onnx", contract)
    m = onnx.load(str(model))
    props = {p.key: p.value for p in m.metadata_props}
    props["facequal.embedding_dim"] = "1"
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    onnx.save(m, str(model))
    t = api.Job([], task="embedding", model=str(model), jobs=1, from_scores=str(crafted_scores)).run()
    _check_given_rows(t, crafted_scores)


# ---------------------------------------------------------------------------------------------
# D16: pool never writes a zero template
# ---------------------------------------------------------------------------------------------
def test_pool_leaves_out_a_group_whose_embeddings_cancel(tmp_path):
    e = [1.0, 0.0, 0.0, 0.0]
    vecs = [e, [-v for v in e], [0.0, 1.0, 0.0, 0.0], [0.0, 0.8, 0.6, 0.0]]
    s = write(scores_table(identity=pa.array(["cancel", "cancel", "fine", "fine"])), tmp_path / "s.parquet")
    emb = write(embeddings_table(vectors=vecs), tmp_path / "e.parquet")
    out = tmp_path / "t.parquet"
    r = runner.invoke(app, ["pool", "--scores", str(s), "--embeddings", str(emb), "-o", str(out), "--method", "mean"])
    assert r.exit_code == 0, r.output
    assert "cancel" in r.stderr and "no template" in r.stderr
    t = pq.read_table(out)
    assert t["identity"].to_pylist() == ["fine"]
    norms = np.linalg.norm(np.asarray(t["embedding"].to_pylist()), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)
    # when every group cancels there is nothing to write: an error, and no file
    s2 = write(scores_table(identity=pa.array(["cancel"] * 4)), tmp_path / "s2.parquet")
    emb2 = write(embeddings_table(vectors=[e, [-v for v in e], e, [-v for v in e]]), tmp_path / "e2.parquet")
    r = runner.invoke(app, ["pool", "--scores", str(s2), "--embeddings", str(emb2), "-o", str(tmp_path / "t2.parquet"),
                            "--method", "mean"])
    one_line_error(r, "cancel")
    assert not (tmp_path / "t2.parquet").exists()


# ---------------------------------------------------------------------------------------------
# D17: empty inputs, skipped non-image files, progress without a terminal
# ---------------------------------------------------------------------------------------------
def test_empty_folder_is_an_error_before_any_work(tmp_path, tiny_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["score", str(empty), "-o", str(out), "--model", str(tiny_model), "-q"])
    one_line_error(r, "no image files found in", str(empty))
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.md", "sub/c.csv"):
        (notes / name).write_text("x")
    r = runner.invoke(app, ["score", str(notes), "-o", str(out), "--model", str(tiny_model), "-q"])
    one_line_error(r, "no image files found", "3 non-image files skipped")
    assert not out.exists() and not (tmp_path / ".s.parquet.facequal-work").exists()


def test_empty_manifest_is_a_warning(tmp_path, tiny_model):
    m = write(pa.table({"path": pa.array([], pa.string())}), tmp_path / "m.parquet")
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["score", str(m), "-o", str(out), "--model", str(tiny_model), "-q"])
    assert r.exit_code == 0, r.output
    assert "facequal: warning: no image files found" in r.stderr
    assert pq.read_table(out).num_rows == 0


def test_non_image_files_are_counted_in_the_summary(tmp_path, face_folder, tiny_model):
    import shutil

    d = tmp_path / "mixed"
    shutil.copytree(face_folder / "a", d)
    (d / "notes.txt").write_text("x")
    (d / "README").write_text("x")
    (d / ".hidden").write_text("x")  # hidden files are not inputs, nor counted
    r = runner.invoke(app, ["score", str(d), "-o", str(tmp_path / "s.parquet"), "--model", str(tiny_model), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert re.search(r"inputs\s*│?\s*non-image files skipped 2", r.stderr), r.stderr


def test_progress_without_a_terminal_prints_plain_lines(tmp_path, face_folder, tiny_model, capsys, monkeypatch):
    from facequal.cli import progress

    def run(name: str) -> list[str]:
        bar = progress.RunProgress(label="scoring")  # stderr is captured: not a terminal
        try:
            api.Job([face_folder], model=str(tiny_model), jobs=1, chunk_size=1).run(
                str(tmp_path / name), progress=bar, collect=False)
        finally:
            bar.stop()
        return capsys.readouterr().err.splitlines()

    lines = run("once.parquet")  # a run shorter than PLAIN_INTERVAL: the final line only
    assert len(lines) == 1, lines
    assert re.match(r"facequal: scoring 5/5 \(100%\), \d+ img/s, faces 4, errors 0", lines[0]), lines

    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)  # a line after every chunk (one image each)
    lines = run("every.parquet")
    done = [int(m.group(1)) for m in (re.match(r"facequal: scoring (\d)/5", ln) for ln in lines) if m]
    assert done == [1, 2, 3, 4, 5, 5] and len(done) == len(lines), lines
    assert "ETA" in lines[0]
