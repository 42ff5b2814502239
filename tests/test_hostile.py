"""Hostile inputs: every broken, odd or malicious file becomes one row with a status, the batch
completes, and the exit code follows the documented policy. Tampered models are refused.

The corpus comes from ``tests/hostile_corpus.py`` (see its docstring).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from hostile_corpus import NO_READ, VANISHING, Case, make_corpus
from typer.testing import CliRunner

from facequal import api, schema
from facequal.cli import app
from facequal.errors import ModelError
from facequal.pipeline.decode import DecodeError, open_image
from facequal.pipeline.sources import printable_path

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, list[Case]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    return str(root), make_corpus(root)


def _deny_read(monkeypatch, target: str) -> str:
    """Make ``target`` unreadable: chmod when that means something, else (as root, who reads
    everything) make opening it fail with EACCES exactly as the kernel would. Returns how."""
    if os.name == "posix" and os.geteuid() != 0:
        os.chmod(target, 0)
        return "chmod"
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    return "simulated"


def _vanish_after_walk(monkeypatch, target: str) -> None:
    """Delete ``target`` after the inputs were collected (listed by the walk), before decoding."""
    real_collect = api.collect

    def collect_then_delete(*args, **kwargs):
        sources = real_collect(*args, **kwargs)
        assert any(r.fs_path == target for r in sources.refs), "the walk must list the file"
        os.unlink(target)
        return sources

    monkeypatch.setattr(api, "collect", collect_then_delete)


def test_decode_never_raises_anything_but_decode_error(corpus, monkeypatch):
    root, cases = corpus
    _deny_read(monkeypatch, os.path.join(root, NO_READ))
    for c in cases:
        if c.name == VANISHING:
            continue
        try:
            d = open_image(os.path.join(root, c.name), max_pixels=50_000_000)
        except DecodeError as e:
            assert e.status in c.statuses, (c.name, e.status, e.message)
            assert e.status in schema.STATUSES and e.message and "\n" not in e.message
            e.message.encode("utf-8")                       # storable in Parquet
        else:
            assert set(c.statuses) & {schema.OK, schema.NO_FACE}, (c.name, "decoded but should not")
            assert d.image.mode == "RGB" and d.image.size[0] >= 1 and d.image.size[1] >= 1


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model):
    """The corpus scored by the CLI (one worker), with the unreadable file made unreadable and
    the vanishing file deleted between the walk and the decoding."""
    tmp = tmp_path_factory.mktemp("scored")
    root = str(tmp / "corpus")
    cases = make_corpus(root)
    out = tmp / "hostile.parquet"
    with pytest.MonkeyPatch.context() as mp:
        how = _deny_read(mp, os.path.join(root, NO_READ))
        _vanish_after_walk(mp, os.path.join(root, VANISHING))
        r = runner.invoke(app, ["score", root, "-o", str(out), "--model", str(tiny_model), "-j", "1"])
    return root, cases, out, r, how


def test_hostile_corpus_scores_to_one_row_each(scored):
    root, cases, out, r, how = scored
    assert r.exit_code == 0, r.output                       # per-image errors: the run completed
    assert "inputs" in r.output and "non-UTF-8 names escaped" in r.output
    assert not os.path.exists(os.path.join(root, VANISHING))
    rows = pq.read_table(out).to_pylist()
    by_path = {x["path"]: x for x in rows}
    assert len(by_path) == len(rows), "one row per image (faces='largest')"
    expected = {printable_path(os.path.join(root, c.name)): c for c in cases if c.walked}
    assert set(by_path) == set(expected), (set(by_path) ^ set(expected))
    failures = 0
    for path, c in expected.items():
        x = by_path[path]
        assert x["status"] in c.statuses, (c.name, x["status"], x["error"])
        if c.face:
            assert x["status"] == schema.OK and x["face_index"] == 0 and 0 < x["quality"] < 1, c.name
        if c.needs_error or x["status"] not in (schema.OK, schema.NO_FACE):
            failures += 1
            assert x["error"] and x["face_index"] == -1 and x["quality"] is None, c.name
        else:
            assert x["error"] is None, (c.name, x["error"])
    assert failures == sum(c.needs_error for c in cases)
    st = {os.path.relpath(p, root): x for p, x in by_path.items()}
    assert st[NO_READ]["error"] == "permission denied", how
    assert st[VANISHING]["error"] == "file not found" and st[VANISHING]["file_size"] is None
    assert "bad CRC in its IDAT chunk" in st["bad-crc-idat.png"]["error"]
    assert "400000000 pixels" in st["bomb-20000.png"]["error"]
    assert "not a regular file" in st["special/fifo.jpg"]["error"]
    # the link loop is walked once: its image appears once, under its real folder
    assert [n for n in st if n.startswith("special/loop/")] == ["special/loop/x.png"]
    # EXIF: all eight orientations show the same upright picture, hence the same face
    ref = st["exif/orientation-1.jpg"]
    for k in range(2, 9):
        x = st[f"exif/orientation-{k}.jpg"]
        assert (x["width"], x["height"]) == (300, 240) == (ref["width"], ref["height"])
        np.testing.assert_allclose(x["bbox"], ref["bbox"], atol=3)
        np.testing.assert_allclose(x["landmarks"], ref["landmarks"], atol=3)


def test_exit_code_policy(tmp_path, corpus, tiny_model):
    src, _ = corpus
    d = tmp_path / "few"
    d.mkdir()
    for name in ("text.jpg", "one-pixel.png", "names/with space.jpg", "bomb-20000.png"):
        shutil.copy(os.path.join(src, name), d / os.path.basename(name))
    base = ["score", str(d), "--model", str(tiny_model), "-j", "1", "-q"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "a.parquet")])
    assert r.exit_code == 0, r.output                       # bad inputs are rows, not failures
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 4
    r = runner.invoke(app, base + ["-o", str(tmp_path / "b.parquet"), "--strict"])
    assert r.exit_code == 1 and "2 input(s)" in r.output    # --strict: any bad input fails the run
    assert pq.read_table(tmp_path / "b.parquet").num_rows == 4   # ... after writing every row
    # fatal errors: exit 2, one line, nothing written
    r = runner.invoke(app, ["score", str(tmp_path / "nope"), "-o", str(tmp_path / "c.parquet"),
                            "--model", str(tiny_model)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "c.parquet").exists()


def test_nothing_but_bad_inputs(tmp_path, corpus, tiny_model):
    src, cases = corpus
    d = tmp_path / "bad"
    d.mkdir()
    bad = [c for c in cases if c.needs_error and os.path.isfile(os.path.join(src, c.name))
           and not os.path.islink(os.path.join(src, c.name)) and c.name not in (NO_READ, VANISHING)]
    for c in bad:
        shutil.copy(os.path.join(src, c.name), d / c.name.replace("/", "_"))
    t = api.score([d], model=str(tiny_model), jobs=1)
    assert t.num_rows == len(bad) >= 10
    assert set(t.column("status").to_pylist()) <= {schema.UNREADABLE, schema.TOO_LARGE}
    assert t.column("quality").null_count == t.num_rows


# --------------------------------------------------------------------------------------------
# Models verified by sha256 before use


def _registry_dir(tmp_path, tiny_model, monkeypatch, *, sha: str | None = None):
    from facequal.models import zoo

    files = tmp_path / "files"
    files.mkdir()
    shutil.copy(tiny_model, files / "tiny.onnx")
    digest = sha or hashlib.sha256((files / "tiny.onnx").read_bytes()).hexdigest()
    (files / "registry.json").write_text(json.dumps(
        {"tiny-bundled": {"file": "tiny.onnx", "sha256": digest, "task": "quality", "description": "t"}}))
    monkeypatch.setattr(zoo, "_files", lambda: files)
    return files


def test_bundled_model_is_verified_and_a_tampered_one_refused(tmp_path, tiny_model, monkeypatch, face_folder):
    from facequal.models.zoo import resolve_model

    files = _registry_dir(tmp_path, tiny_model, monkeypatch)
    spec = resolve_model("tiny-bundled")
    assert spec.name == "tiny-bundled" and spec.sha256 == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    data = bytearray((files / "tiny.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01                            # one bit in the weights
    (files / "tiny.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="refusing a modified or corrupt model"):
        resolve_model("tiny-bundled")
    r = runner.invoke(app, ["score", str(face_folder), "-o", str(tmp_path / "s.parquet"),
                            "--model", "tiny-bundled"])
    assert r.exit_code == 2 and "refusing a modified or corrupt model" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "s.parquet").exists()
    (files / "tiny.onnx").unlink()
    with pytest.raises(ModelError, match="missing its file"):
        resolve_model("tiny-bundled")


def test_detector_weights_are_verified(tmp_path, monkeypatch):
    from facequal.models import retinaface

    retinaface.retinaface_bytes.cache_clear()
    good = retinaface.retinaface_bytes()
    assert hashlib.sha256(good).hexdigest() == retinaface.SHA256 and len(good) == retinaface.SIZE
    bad = bytearray(good)
    bad[1000] ^= 0x80
    with pytest.raises(ModelError, match="refusing a modified or corrupt model"):
        retinaface.verify(bytes(bad), "test")
    # A tampered file in the installed package is refused, and the refusal is not remembered.
    tampered = tmp_path / retinaface.FILE
    tampered.write_bytes(bytes(bad))
    monkeypatch.setattr(retinaface, "model_path", lambda: tampered)
    retinaface.retinaface_bytes.cache_clear()
    try:
        with pytest.raises(ModelError, match="refusing a modified or corrupt model"):
            retinaface.retinaface_bytes()
        tampered.write_bytes(good)
        assert retinaface.retinaface_bytes() == good
    finally:
        retinaface.retinaface_bytes.cache_clear()


# --------------------------------------------------------------------------------------------
# What the other verbs make of the hostile names


def test_filter_copies_and_links_stay_inside_their_target(scored, tmp_path):
    root, cases, out, _, _ = scored
    n_ok = sum(c.face for c in cases)
    escaped = [c for c in cases if printable_path(c.name) != c.name]
    for mode in ("copy", "symlink"):
        target = tmp_path / mode
        r = runner.invoke(app, ["filter", str(out), "--status", "ok", "--to", str(target), "--mode", mode])
        # a non-UTF-8 name is stored escaped; filter undoes the escape and places the real file
        assert r.exit_code == 0, r.output
        made = [os.path.join(d, f) for d, _, files in os.walk(target) for f in files]
        assert len(made) == n_ok
        for c in escaped:
            if c.face:
                assert os.path.lexists(os.path.join(target, c.name)), c.name
        real_target = os.path.realpath(target)
        for f in made:
            assert os.path.realpath(os.path.dirname(f)).startswith(real_target + os.sep) or \
                os.path.realpath(os.path.dirname(f)) == real_target
        names = {os.path.relpath(f, target) for f in made}
        assert "names/new\nline.jpg" in names and "names/tab\tand 'quotes\" & <b>.jpg" in names


def test_report_escapes_hostile_names(scored, tmp_path):
    _, _, out, _, _ = scored
    html = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(out), "-o", str(html), "-j", "1"])
    assert r.exit_code == 0, r.output
    text = html.read_text(encoding="utf-8")
    assert "<b>" not in text and "& <b>" not in text            # the file name's tag never reaches the markup
