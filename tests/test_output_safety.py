"""The run's outputs are safe to point at real data (issue #14, A1-A4, C9, D13, D17): facequal
replaces or deletes only what it wrote, never writes into its inputs, runs one run per output,
keeps every committed row on --resume, honours the umask, and stops with one line (exit 2) on a
bad output or a full disk, leaving the previous output as it was."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facequal import api
from facequal.cli import app
from facequal.errors import UserError
from facequal.pipeline import run as pipeline
from facequal.pipeline import store
from facequal.pipeline.store import MARKER, RunStore

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _crops(folder: Path, names: list[str], seed: int = 0) -> Path:
    """Small aligned crops (random colours, so distinct qualities) named ``names``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for n in names:
        p = folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(p)
    return folder


def _score(model: Path, *args) -> object:
    return runner.invoke(app, ["score", *map(str, args), "--model", str(model), "--aligned", "-j", "1", "-q"])


def _one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    return r.output


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones too) with the bytes of files."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _work_folders(*folders: Path) -> list[str]:
    return [p.name for d in folders for p in d.iterdir() if "facequal-work" in p.name]


def _forbid_work(monkeypatch) -> None:
    """Fail the test if any image is processed from now on: the checks come before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("an image was processed before the output was checked")

    monkeypatch.setattr(pipeline, "process_chunk", refuse)


@pytest.fixture
def no_work(monkeypatch):
    """No image may be processed in this test."""
    _forbid_work(monkeypatch)


# -- A1: dataset folders ---------------------------------------------------------------------------

def test_score_into_its_input_folder_deletes_nothing(tmp_path, tiny_model, no_work):
    photos = _crops(tmp_path / "photos", ["a.png", "b.png", "sub/c.png"])
    (photos / "notes.txt").write_text("keep me")
    before = _tree(photos)
    for extra in ([], ["--overwrite"], ["--resume"]):
        out = _one_line_error(_score(tiny_model, photos, "-o", str(photos) + "/", *extra))
        assert "input" in out
        # a file output inside an input folder is refused too
        _one_line_error(_score(tiny_model, photos, "-o", photos / "sub" / "s.parquet", *extra))
    assert _tree(photos) == before
    assert not _work_folders(tmp_path, photos, photos / "sub")


def test_a_folder_facequal_did_not_make_is_refused(tmp_path, tiny_model, no_work):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    results = tmp_path / "results"
    (results / "sub").mkdir(parents=True)
    (results / "notes.txt").write_text("mine")
    (results / "sub" / "x.csv").write_text("a,b\n")
    before = _tree(results)
    for extra in ([], ["--overwrite"], ["--resume"]):
        out = _one_line_error(_score(tiny_model, imgs, "-o", str(results) + "/", *extra))
        assert "facequal did not make it" in out
    assert _tree(results) == before
    assert not _work_folders(tmp_path)


def test_dot_outputs_are_refused_or_written_without_touching_anything(tmp_path, tiny_model, monkeypatch):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png"])
    here = tmp_path / "here"
    here.mkdir()
    (here / "precious.txt").write_text("mine")
    monkeypatch.chdir(here)
    for out in ("./", ".", "../here/"):
        _one_line_error(_score(tiny_model, imgs, "-o", out))
        _one_line_error(_score(tiny_model, imgs, "-o", out, "--overwrite"))
    assert _tree(here) == {"precious.txt": b"mine"}
    assert not _work_folders(tmp_path, here)
    # an empty current folder is a fine dataset output: the work folder goes beside it
    (here / "precious.txt").unlink()
    r = _score(tiny_model, imgs, "-o", "./")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(here)) == [MARKER, "part-00000.parquet"]
    assert pq.read_table(here / "part-00000.parquet").num_rows == 2
    assert not _work_folders(tmp_path, here)


def test_overwrite_of_a_dataset_replaces_only_files_facequal_listed(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(store, "ROWS_PER_DATASET_PART", 2)
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    ds = tmp_path / "ds"
    assert _score(tiny_model, imgs, "-o", str(ds) + "/").exit_code == 0
    written = sorted(os.listdir(ds))
    # the user adds files of their own
    (ds / "notes.txt").write_text("mine")
    (ds / "sub").mkdir()
    (ds / "sub" / "x.png").write_bytes(b"png")
    (imgs / "c.png").unlink()   # fewer rows now: one part file less
    r = _score(tiny_model, imgs, "-o", str(ds) + "/", "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(ds)) == [MARKER, "notes.txt", "part-00000.parquet", "sub"]
    assert (ds / "notes.txt").read_text() == "mine" and (ds / "sub" / "x.png").read_bytes() == b"png"
    # the first run listed its two part files in its marker; the second replaced one, deleted the other
    assert written == [MARKER, "part-00000.parquet", "part-00001.parquet"]
    marker = json.loads((ds / MARKER).read_text())
    assert marker["files"] == ["part-00000.parquet"] and marker["facequal_version"]
    # a Parquet file facequal did not write would be read as part of the dataset: refused, kept
    pq.write_table(pa.table({"x": [1]}), ds / "other.parquet")
    before = _tree(ds)
    out = _one_line_error(_score(tiny_model, imgs, "-o", str(ds) + "/", "--overwrite"))
    assert "other.parquet" in out and "did not write" in out
    assert _tree(ds) == before


def test_embed_into_its_input_folder_is_refused(tmp_path, no_work):
    pytest.importorskip("onnx", reason="the dlib converter needs the onnx package")
    photos = _crops(tmp_path / "photos", ["a.png", "b.png"])
    before = _tree(photos)
    r = runner.invoke(app, ["embed", str(photos), "-o", str(photos) + "/", "-j", "1", "-q", "--overwrite"])
    if "not installed" in r.output:
        pytest.skip(r.output)
    assert "input" in _one_line_error(r)
    assert _tree(photos) == before and not _work_folders(tmp_path)


def test_output_may_not_be_a_manifest_or_scores_file_of_the_run(tmp_path, tiny_model, monkeypatch):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    scores = tmp_path / "s.parquet"
    assert _score(tiny_model, imgs, "-o", scores).exit_code == 0
    _forbid_work(monkeypatch)
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": [str(imgs / "a.png")]}), manifest)
    before = manifest.read_bytes()
    _one_line_error(_score(tiny_model, manifest, "-o", manifest, "--overwrite"))
    assert manifest.read_bytes() == before
    before = scores.read_bytes()
    r = runner.invoke(app, ["score", "--from-scores", str(scores), "-o", str(scores), "--model", str(tiny_model),
                            "-j", "1", "-q", "--overwrite"])
    assert "one of the inputs" in _one_line_error(r)
    assert scores.read_bytes() == before


# -- A2: file outputs --------------------------------------------------------------------------------

def test_a_folder_is_never_replaced_by_a_file_output(tmp_path, tiny_model, no_work):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    victim = tmp_path / "results.parquet"   # a folder, named like a file output
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    for extra in (["--overwrite"], ["--resume"], []):
        assert "is a folder" in _one_line_error(_score(tiny_model, imgs, "-o", victim, *extra))
    assert _tree(victim) == {"thesis.tex": b"years of work"}
    assert not _work_folders(tmp_path)


def test_overwrite_replaces_only_a_parquet_file_facequal_wrote(tmp_path, tiny_model, monkeypatch):
    real = pipeline.process_chunk
    _forbid_work(monkeypatch)
    imgs = _crops(tmp_path / "imgs", ["victim.jpg"])
    victim = imgs / "victim.jpg"
    before = victim.read_bytes()
    out = _one_line_error(_score(tiny_model, victim, "-o", victim, "--overwrite"))
    assert "one of the inputs" in out
    assert victim.read_bytes() == before
    # a text file and a Parquet file facequal did not write are not replaced either
    notes = tmp_path / "notes.parquet"
    notes.write_text("not a table")
    assert "not a Parquet file facequal wrote" in _one_line_error(_score(tiny_model, imgs, "-o", notes, "--overwrite"))
    theirs = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"path": ["x.jpg"], "quality": [0.5]}), theirs)
    data = theirs.read_bytes()
    assert "not written by facequal" in _one_line_error(_score(tiny_model, imgs, "-o", theirs, "--overwrite"))
    assert notes.read_text() == "not a table" and theirs.read_bytes() == data
    # facequal's own output is replaced
    out = tmp_path / "s.parquet"
    monkeypatch.setattr(pipeline, "process_chunk", real)
    assert _score(tiny_model, imgs, "-o", out).exit_code == 0
    _crops(imgs, ["other.png"])
    assert _score(tiny_model, imgs, "-o", out, "--overwrite").exit_code == 0
    assert pq.read_table(out).num_rows == 2


# -- A3: resume ----------------------------------------------------------------------------------------

def _rows(path: Path) -> list[tuple[str, float]]:
    t = pq.read_table(path)
    return list(zip([os.path.basename(p) for p in t.column("path").to_pylist()],
                    t.column("quality").to_pylist(), strict=True))


def test_resume_with_other_inputs_keeps_every_earlier_row_in_order(tmp_path, tiny_model):
    old = _crops(tmp_path / "old", ["a1.png", "a2.png", "a3.png"], seed=1)
    new = _crops(tmp_path / "newbatch", ["b1.png"], seed=2)
    out = tmp_path / "old.parquet"
    assert _score(tiny_model, old, "-o", out).exit_code == 0
    first = _rows(out)
    r = _score(tiny_model, new, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    got = _rows(out)
    assert got[:3] == first and [n for n, _ in got] == ["a1.png", "a2.png", "a3.png", "b1.png"]
    # a changed input is scored again and its row replaces the old one in place; an input new to
    # this run comes after every earlier row, even one that sorts first
    _crops(old, ["a2.png"], seed=7)
    os.utime(old / "a2.png", ns=(1_000_000_000, 1_000_000_000))
    _crops(old, ["a0.png"], seed=3)
    r = _score(tiny_model, old, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    again = _rows(out)
    assert [n for n, _ in again] == ["a1.png", "a2.png", "a3.png", "b1.png", "a0.png"]
    assert again[1][1] != got[1][1] and again[0] == got[0] and again[2:4] == got[2:4]
    fresh = {os.path.basename(p): q for p, q in zip(*(api.score([old], model=str(tiny_model), aligned=True, jobs=1)
                                                       .column(c).to_pylist() for c in ("path", "quality")),
                                                     strict=True)}
    assert again[1][1] == pytest.approx(fresh["a2.png"])


def test_resume_cut_short_while_copying_the_earlier_output_loses_nothing(tmp_path, tiny_model, monkeypatch):
    old = _crops(tmp_path / "old", ["a1.png", "a2.png", "a3.png"], seed=1)
    new = _crops(tmp_path / "newbatch", ["b1.png"], seed=2)
    out = tmp_path / "s.parquet"
    api.score([old], out, model=str(tiny_model), aligned=True, jobs=1)
    first = _rows(out)
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 1)   # the earlier rows are copied one part each
    real = RunStore.commit
    calls = []

    def killed_on_the_second_part(self, table, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while resuming")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(RunStore, "commit", killed_on_the_second_part)
    with pytest.raises(KeyboardInterrupt):
        api.score([new], out, model=str(tiny_model), aligned=True, jobs=1, resume=True)
    monkeypatch.setattr(RunStore, "commit", real)
    assert _rows(out) == first
    api.score([new], out, model=str(tiny_model), aligned=True, jobs=1, resume=True)
    got = _rows(out)
    assert got[:3] == first and [n for n, _ in got][3:] == ["b1.png"]


def test_resume_onto_a_file_facequal_did_not_write_is_refused_first(tmp_path, tiny_model, monkeypatch):
    real = pipeline.process_chunk
    _forbid_work(monkeypatch)
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    out = tmp_path / "s.parquet"
    pq.write_table(pa.table({"path": ["x.jpg"], "face_index": [0]}), out)
    data = out.read_bytes()
    assert "not written by facequal" in _one_line_error(_score(tiny_model, imgs, "-o", out, "--resume"))
    assert out.read_bytes() == data
    # facequal's metadata but not its key columns
    meta = {b"facequal.version": b"0.1.0", b"facequal.options": b"{}"}
    bare = pa.table({"path": ["x.jpg"], "face_index": [0], "status": ["ok"]})
    pq.write_table(bare.replace_schema_metadata(meta), out)
    assert "file_size" in _one_line_error(_score(tiny_model, imgs, "-o", out, "--resume"))
    assert not _work_folders(tmp_path)
    # nothing was left behind to block a later run on the same output, once the file is moved away
    out.rename(tmp_path / "theirs.parquet")
    monkeypatch.setattr(pipeline, "process_chunk", real)
    r = _score(tiny_model, imgs, "-o", out, "--resume")
    assert r.exit_code == 0, r.output


def test_resume_with_other_options_names_them(tmp_path, tiny_model):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    out = tmp_path / "s.parquet"
    assert _score(tiny_model, imgs, "-o", out).exit_code == 0
    out_text = _one_line_error(_score(tiny_model, imgs, "-o", out, "--resume", "--det-threshold", "0.9"))
    assert "--det-threshold" in out_text and "0.6" in out_text and "0.9" in out_text
    # an unfinished run: the first chunk committed, then the process died
    unfinished = tmp_path / "u.parquet"
    job = api.Job([imgs], model=str(tiny_model), aligned=True, jobs=1, chunk_size=1)
    st = RunStore(output=str(unfinished), schema=job.schema, fingerprint=job.options, metadata=job.metadata())
    st.prepare(overwrite=False, resume=False)
    st.commit(next(job.iter_tables()))
    st.close()
    out_text = _one_line_error(_score(tiny_model, imgs, "-o", unfinished, "--resume", "--faces", "all",
                                      "--pad", "0.1"))
    assert "--faces" in out_text and "--pad" in out_text and "unfinished" in out_text


# -- A4: one run per output --------------------------------------------------------------------------

def test_a_second_run_on_the_same_output_fails_at_once_and_the_first_finishes(tmp_path, tiny_model, monkeypatch):
    imgs = _crops(tmp_path / "imgs", [f"c{i}.png" for i in range(6)])
    out = tmp_path / "s.parquet"
    full = api.score([imgs], model=str(tiny_model), aligned=True, jobs=1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "facequal", "score", str(imgs), "-o", str(out), "--model", str(tiny_model),
           "--aligned", "-j", "1", "-q"]
    seen: dict[str, list] = {}

    class DuringTheRun:
        """Progress hook: once the first chunk is committed, other runs try the same output."""

        def start(self, total, done):
            pass

        def advance(self, table, n):
            if "run" not in seen:
                seen["run"] = [subprocess.run([*cmd, "--overwrite"], env=env, capture_output=True, text=True,
                                              timeout=120),
                               _score(tiny_model, imgs, "-o", out), _score(tiny_model, imgs, "-o", out, "--resume")]

    real_add = store.RunSummary.add

    def during_the_merge(self, table, ordinals):
        if "merge" not in seen:
            seen["merge"] = []
            seen["merge"].append(_score(tiny_model, imgs, "-o", out, "--overwrite"))
        return real_add(self, table, ordinals)

    monkeypatch.setattr(store.RunSummary, "add", during_the_merge)
    job = api.Job([imgs], model=str(tiny_model), aligned=True, jobs=1, chunk_size=2)
    t = job.run(str(out), progress=DuringTheRun())
    proc, plain, resume = seen["run"]
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    for text in (proc.stderr, _one_line_error(plain), _one_line_error(resume), _one_line_error(seen["merge"][0])):
        assert f"pid {os.getpid()} on {socket.gethostname()}" in text and "another facequal run" in text
    # the first run was not disturbed: every row, and nothing left behind
    assert t.equals(full) and pq.read_table(out).select(full.column_names).equals(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "s.parquet"]
    # and once it is over, the output is free again
    assert _score(tiny_model, imgs, "-o", out, "--overwrite").exit_code == 0


# -- C9: a full disk, system folders, long names ------------------------------------------------------

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_committing_parts(tmp_path, tiny_model, monkeypatch):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    out = tmp_path / "s.parquet"
    assert _score(tiny_model, imgs, "-o", out).exit_code == 0
    before = out.read_bytes()
    real = pq.write_table

    def full_disk(table, where, **kwargs):
        if ".facequal-work" in os.fspath(where):
            _no_space()
        return real(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(UserError) as e:   # through the API
        api.score([imgs], out, model=str(tiny_model), aligned=True, jobs=1, overwrite=True)
    assert "no space left" in str(e.value) and "unchanged" in str(e.value) and "\n" not in str(e.value)
    out_text = _one_line_error(_score(tiny_model, imgs, "-o", out, "--overwrite"))   # and the CLI
    assert "no space left" in out_text and "unchanged" in out_text and "--resume" in out_text
    assert out.read_bytes() == before
    monkeypatch.setattr(pq, "write_table", real)   # space was freed
    r = _score(tiny_model, imgs, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == 3


@pytest.mark.parametrize("dataset", [False, True])
def test_disk_full_at_the_final_merge(tmp_path, tiny_model, monkeypatch, dataset):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png"])
    out = str(tmp_path / "ds") + "/" if dataset else str(tmp_path / "s.parquet")
    assert _score(tiny_model, imgs, "-o", out).exit_code == 0
    _crops(imgs, ["c.png"])
    before = _tree(tmp_path / "ds") if dataset else Path(out).read_bytes()

    class FullDisk(pq.ParquetWriter):
        write_table = _no_space

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)
    with pytest.raises(UserError) as e:
        api.score([imgs], out, model=str(tiny_model), aligned=True, jobs=1, resume=True)
    assert "no space left" in str(e.value) and "--resume" in str(e.value)
    out_text = _one_line_error(_score(tiny_model, imgs, "-o", out, "--resume"))
    assert "no space left" in out_text and "unchanged" in out_text
    assert (_tree(tmp_path / "ds") if dataset else Path(out).read_bytes()) == before   # no temp file either
    monkeypatch.setattr(pq, "ParquetWriter", FullDisk.__mro__[1])
    monkeypatch.setattr(pipeline, "process_chunk", _no_space)   # the parts are kept: nothing to redo
    r = _score(tiny_model, imgs, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    from facequal.schema import read_table

    assert [os.path.basename(p) for p in read_table(out).column("path").to_pylist()] == ["a.png", "b.png", "c.png"]


def test_outputs_under_proc_or_sys_are_one_line(tmp_path, tiny_model, no_work):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    for out in ("/proc/facequal-test.parquet", "/sys/facequal-test.parquet", "/proc/facequal-test/"):
        _one_line_error(_score(tiny_model, imgs, "-o", out, "--overwrite"))


def test_long_output_names_work(tmp_path, tiny_model):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    out = tmp_path / ("s" * 240 + ".parquet")   # 248 characters, a legal name
    r = _score(tiny_model, imgs, "-o", out)
    assert r.exit_code == 0, r.output
    r = _score(tiny_model, imgs, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    ds = tmp_path / ("d" * 250)
    r = _score(tiny_model, imgs, "-o", str(ds) + "/", "--shard", "0/1")
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == 1 and len(os.listdir(ds)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["imgs", out.name, ds.name])
    work = RunStore(output=str(out), schema=pa.schema([]), fingerprint={}, metadata={}).work
    assert len(os.fsencode(work.name)) <= 255 and work.name.endswith(".facequal-work")


# -- D13: the umask -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_follow_the_umask(tmp_path, tiny_model, mask):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png"])
    old = os.umask(mask)
    try:
        api.score([imgs], tmp_path / "s.parquet", model=str(tiny_model), aligned=True, jobs=1)
        api.score([imgs], str(tmp_path / "ds") + "/", model=str(tiny_model), aligned=True, jobs=1)
        api.score([imgs], str(tmp_path / "ds") + "/", model=str(tiny_model), aligned=True, jobs=1, overwrite=True)
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return os.stat(p).st_mode & 0o777

    assert mode(tmp_path / "s.parquet") == 0o666 & ~mask
    assert mode(tmp_path / "ds") == 0o777 & ~mask
    assert sorted(os.listdir(tmp_path / "ds")) == [MARKER, "part-00000.parquet"]
    assert all(mode(p) == 0o666 & ~mask for p in (tmp_path / "ds").iterdir())


def test_model_cache_files_follow_the_umask(tmp_path, monkeypatch):
    # The detector ships inside the package; the one model written to the cache is dlib's, converted.
    from facequal.models import dlib_resnet

    monkeypatch.setenv("FACEQUAL_CACHE", str(tmp_path / "cache"))
    pytest.importorskip("onnx")
    try:
        dlib_resnet.find_dat_file()
    except FileNotFoundError:
        pytest.skip("dlib's model (face-recognition-models) is not installed")
    old = os.umask(0o002)
    try:
        converted = dlib_resnet.dlib_model_path(tmp_path / "dlib")
    finally:
        os.umask(old)
    assert os.stat(converted).st_mode & 0o777 == 0o664
    assert os.listdir(tmp_path / "dlib") == [converted.name]


# -- D17: the output's format -------------------------------------------------------------------------

def test_output_that_is_not_parquet_is_refused_before_any_work(tmp_path, tiny_model, no_work):
    imgs = _crops(tmp_path / "imgs", ["a.png"])
    for name in ("x.csv", "x.txt", "scores"):
        out_text = _one_line_error(_score(tiny_model, imgs, "-o", tmp_path / name))
        assert ".parquet" in out_text
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_resume_onto_an_output_of_a_build_without_the_diagnostics_is_refused_and_kept(tmp_path, tiny_model):
    imgs = _crops(tmp_path / "imgs", ["a.png", "b.png"])
    more = _crops(tmp_path / "more", ["c.png"], seed=4)
    out = tmp_path / "s.parquet"
    assert _score(tiny_model, imgs, "-o", out).exit_code == 0
    t = pq.read_table(out)
    old = t.drop_columns(["yaw", "pitch", "roll", "sharpness", "brightness", "contrast"])
    old = old.rename_columns(["inter_eye" if c == "eye_distance" else c for c in old.column_names])
    pq.write_table(old.replace_schema_metadata(t.schema.metadata), out)  # as an earlier build wrote it
    data = out.read_bytes()
    msg = _one_line_error(_score(tiny_model, more, "-o", out, "--resume"))
    assert "without eye_distance, yaw" in msg and "--overwrite" in msg
    assert out.read_bytes() == data and not _work_folders(tmp_path)


def test_an_existing_output_is_one_line_that_says_what_to_do(tmp_path, tiny_model):
    """Not a disk error: the run never started, so no 'the run stopped ... --resume to go on'."""
    crops = _crops(tmp_path / "in", ["a.png"])
    out = tmp_path / "s.parquet"
    assert _score(tiny_model, crops, "-o", out).exit_code == 0
    before = out.read_bytes()
    msg = _one_line_error(_score(tiny_model, crops, "-o", out))
    assert "exists; pass --overwrite to replace it or --resume" in msg
    assert "stopped" not in msg and out.read_bytes() == before
