"""Paths: `filter --to` never takes a symlink for a copy, non-UTF-8 names round-trip through the
`path` column to every consumer, a backslash is a file name's character on POSIX, and one file
spelt two ways is scored once (issue #14: B7, B8)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facequal import api, schema
from facequal.cli import app
from facequal.pipeline.sources import collect, printable_path

runner = CliRunner()
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file names (bytes, backslashes)")


def _scores(paths: list[str]) -> pa.Table:
    """A score table of ok rows for ``paths`` (the filter verbs only need these columns)."""
    n = len(paths)
    return pa.table({"path": pa.array(paths, pa.string()), "face_index": pa.array([0] * n, pa.int32()),
                     "status": pa.array([schema.OK] * n), "quality": pa.array([0.9] * n, pa.float32())})


def _face(path: Path, colour: tuple[int, int, int]) -> Path:
    """A 96 x 96 aligned 'face' of one colour (``path`` may hold surrogate-escaped bytes)."""
    Image.fromarray(np.full((96, 96, 3), colour, np.uint8)).save(path, format="PNG")
    return path


# ---------------------------------------------------------------------------------------------
# B7: a symlink is not a copy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_copy_over_earlier_symlinks_replaces_them_with_real_files(tmp_path, mode):
    src = tmp_path / "photos"
    names = ["x/a.jpg", "x/b.jpg", "y/c.jpg"]
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(n.encode())
    scores = tmp_path / "s.parquet"
    pq.write_table(_scores([str(src / n) for n in names]), scores)
    target = tmp_path / "T"
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target), "--mode", "symlink"])
    assert r.exit_code == 0, r.output
    assert all(os.path.islink(target / n) for n in names)
    # without --overwrite the links stay, and the summary says they are not copies
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target), "--mode", mode])
    assert r.exit_code == 0, r.output
    assert "3 skipped that are not" in r.output and "already there" not in r.output
    assert all(os.path.islink(target / n) for n in names)
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target), "--mode", mode,
                            "--overwrite"])
    assert r.exit_code == 0, r.output
    assert f"{'copied' if mode == 'copy' else 'hardlinked'} 3 kept images" in r.output
    assert "already there" not in r.output and "skipped" not in r.output
    assert not any(os.path.islink(target / n) for n in names)
    # a second run finds real files of the source and leaves them (nothing to redo)
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target), "--mode", mode,
                            "--overwrite"])
    assert (mode == "copy" and "copied 3" in r.output) or "3 already there" in r.output, r.output
    shutil.rmtree(src)  # the user deletes the source: the data must be in T
    assert [(target / n).read_bytes() for n in names] == [n.encode() for n in names]


# ---------------------------------------------------------------------------------------------
# B8: non-UTF-8 names, backslashes, two spellings of one file
# ---------------------------------------------------------------------------------------------
def test_path_escaping_is_injective_and_undone_by_fs_path_of():
    from facequal.pipeline.sources import fs_path_of

    alphabet = [b"\\", b"x", b"f", b"9", b"a", b"\xff", b"\x9f", b"\xc3", b"\xa9", b"/", b"A"]
    shown: dict[str, bytes] = {}
    for k in range(5):
        for t in itertools.product(alphabet, repeat=k):
            raw = b"".join(t)
            p = printable_path(os.fsdecode(raw))
            p.encode("utf-8")  # storable in Parquet
            assert os.fsencode(fs_path_of(p)) == raw, (raw, p)
            assert shown.setdefault(p, raw) == raw, f"{raw!r} and {shown[p]!r} both give {p!r}"
    assert printable_path("plain/ünï 顔.jpg") == "plain/ünï 顔.jpg"  # ordinary names stay as they are
    assert printable_path("win\\path\\x41.jpg") == "win\\path\\x41.jpg"


@posix_only
def test_a_non_utf8_name_and_its_escape_text_are_two_images(tmp_path, tiny_model):
    d = tmp_path / "imgs"
    d.mkdir()
    raw = os.fsencode(d) + b"/a\xff.png"
    _face(Path(os.fsdecode(raw)), (200, 60, 60))
    literal = _face(d / "a\\xff.png", (60, 60, 200))  # a name that is the escape's text
    src = collect([str(d)])
    assert len(src.refs) == 2 and "duplicates" not in src.stats
    t = api.score([str(d)], model=str(tiny_model), aligned=True, jobs=1)
    paths = t.column("path").to_pylist()
    assert len(set(paths)) == 2 and t.column("status").to_pylist() == ["ok", "ok"]
    # a score file is a manifest of its images: both names lead back to their own file
    scores = tmp_path / "s.parquet"
    pq.write_table(t, scores)
    refs = collect([str(scores)]).refs
    assert sorted(os.fsencode(r.fs_path) for r in refs) == sorted([raw, os.fsencode(literal)])
    assert all(os.path.isfile(r.fs_path) for r in refs)


@posix_only
def test_escaped_paths_materialise_and_list_as_real_bytes(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    raws = [os.fsencode(d) + b"/latin1-\xe9t\xe9.jpg", os.fsencode(d) + b"/x\\\xff.jpg"]
    for raw in raws:
        with open(raw, "wb") as fh:
            fh.write(raw)
    scores = tmp_path / "s.parquet"
    pq.write_table(_scores([printable_path(os.fsdecode(r)) for r in raws]), scores)
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "-o", "-", "-0"])
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == b"".join(raw + b"\0" for raw in raws)
    ls = subprocess.run(["xargs", "-0", "ls", "--"], input=r.stdout_bytes, capture_output=True)
    assert ls.returncode == 0, ls.stderr
    target = tmp_path / "T"
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target)])
    assert r.exit_code == 0, r.output
    made = sorted(os.listdir(os.fsencode(target)))
    assert made == sorted(os.path.basename(raw) for raw in raws)
    for raw in raws:
        with open(os.fsencode(target) + b"/" + os.path.basename(raw), "rb") as fh:
            assert fh.read() == raw


@posix_only
def test_a_backslash_in_a_name_is_not_a_separator_for_to(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a\\b.jpg").write_bytes(b"one file")
    (src / "c.jpg").write_bytes(b"c")
    scores = tmp_path / "s.parquet"
    pq.write_table(_scores([str(src / "a\\b.jpg"), str(src / "c.jpg")]), scores)
    target = tmp_path / "T"
    r = runner.invoke(app, ["filter", str(scores), "--min", "0.5", "--to", str(target)])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(target)) == ["a\\b.jpg", "c.jpg"]
    assert (target / "a\\b.jpg").read_bytes() == b"one file"


def test_one_file_spelt_with_dot_or_double_slash_is_read_once(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    (d / "x.jpg").write_bytes(b"x")
    (d / "y.jpg").write_bytes(b"y")
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": ["imgs/x.jpg", "imgs/./x.jpg", "imgs//x.jpg", "./imgs/x.jpg", "imgs/y.jpg"],
                             "who": ["A", "B", "C", "D", "E"]}), m)
    src = collect([str(m)])
    assert [(os.path.basename(r.path), r.carried["who"]) for r in src.refs] == [("x.jpg", "A"), ("y.jpg", "E")]
    assert src.stats == {"duplicates": 3}
    # the same for folders given twice
    src = collect([str(d), str(d) + "/.", str(d) + "//"])
    assert len(src.refs) == 2 and src.stats == {"duplicates": 4}
    # '..' is kept: behind a symbolic link it is not the folder's parent
    os.symlink(d, tmp_path / "link")
    pq.write_table(pa.table({"path": ["imgs/x.jpg", "link/../imgs/x.jpg"]}), m)
    assert len(collect([str(m)]).refs) == 2


@posix_only
def test_from_scores_and_report_open_escaped_names(tmp_path, tiny_model, face_folder):
    from facequal.curate.report import build_report

    d = tmp_path / "imgs"
    d.mkdir()
    raw = os.fsencode(d) + b"/astro-\xff.jpg"
    shutil.copyfile(face_folder / "b" / "small.jpg", os.fsdecode(raw))
    scores = tmp_path / "s.parquet"
    t = api.score([str(d)], output=str(scores), model=str(tiny_model), jobs=1)
    assert t.column("status").to_pylist() == ["ok"]
    again = api.score([], model=str(tiny_model), jobs=1, from_scores=str(scores))
    assert again.column("status").to_pylist() == ["ok"], again.column("error").to_pylist()
    res = build_report(str(scores), str(tmp_path / "r.html"), jobs=1)
    assert res.thumb_errors == 0
