"""`--save-crops`: never through a symlink, never outside the crop folder, one file per
(image, face), absolute `crop_path`, and one-line errors for unusable crop folders (issue #14:
B5, B6, C9)."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facequal import api
from facequal.cli import app
from facequal.pipeline.run import crop_file_name

runner = CliRunner()


def _image(path: Path, colour: tuple[int, int, int]) -> Path:
    """A small aligned 'face' (96 x 96, the tiny model's crop size) with a colour of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour))
    px = np.clip(np.asarray(colour, float) + rng.normal(0, 8, (96, 96, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(px).save(path)
    return path


def _score(tiny_model, *args) -> object:
    return runner.invoke(app, ["score", *map(str, args), "--model", str(tiny_model), "--aligned", "-j", "1", "-q"])


def _one_line_error(r) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("facequal: error:"), r.output


# ---------------------------------------------------------------------------------------------
# B5: symlinks
# ---------------------------------------------------------------------------------------------
def test_planted_symlinks_at_crop_names_are_replaced_not_written_through(tmp_path, tiny_model):
    img = _image(tmp_path / "imgs" / "a.png", (180, 120, 90))
    crops = tmp_path / "crops"
    rel = crop_file_name(str(img), 0)
    dest = crops / rel
    dest.parent.mkdir(parents=True)
    victims = {}
    # a link at the crop's own name, and at the old predictable temp name next to it
    for link in (dest, Path(str(dest) + ".tmp")):
        v = tmp_path / f"victim-{len(victims)}.txt"
        v.write_bytes(b"precious")
        os.symlink(v, link)
        victims[v] = link
    t = api.score([str(img)], model=str(tiny_model), aligned=True, jobs=1, save_crops=str(crops))
    assert t.column("status").to_pylist() == ["ok"]
    for v in victims:
        assert v.read_bytes() == b"precious", f"{v} was written through a symlink"
    crop = t.column("crop_path").to_pylist()[0]
    assert os.path.realpath(crop) == os.path.realpath(dest)
    assert not os.path.islink(crop) and Image.open(crop).size == (96, 96)


def test_symlinked_subfolder_pointing_outside_stops_the_run(tmp_path, tiny_model):
    img = _image(tmp_path / "imgs" / "a.png", (180, 120, 90))
    crops = tmp_path / "crops"
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = Path(crop_file_name(str(img), 0)).parts[0]
    crops.mkdir()
    os.symlink(outside, crops / folder)  # crops/imgs -> ../outside
    out = tmp_path / "s.parquet"
    r = _score(tiny_model, img, "-o", out, "--save-crops", crops)
    _one_line_error(r)
    assert "symlink pointing outside the crop folder" in r.output
    assert list(outside.iterdir()) == [] and not out.exists()
    # a symlinked sub-folder that stays inside the crop folder is followed
    os.unlink(crops / folder)
    (crops / "real").mkdir()
    os.symlink(crops / "real", crops / folder)
    r = _score(tiny_model, img, "-o", tmp_path / "s2.parquet", "--save-crops", crops)
    assert r.exit_code == 0, r.output
    assert [p.name for p in (crops / "real").iterdir()] == [Path(crop_file_name(str(img), 0)).name]


# ---------------------------------------------------------------------------------------------
# B6: names
# ---------------------------------------------------------------------------------------------
def test_crop_names_are_distinct_for_every_image_and_face():
    paths = ["imgs/p.jpg", "imgs/p.png", "imgs/P.png", "imgs/a:b.jpg", "imgs/a_b.jpg", "imgs/a\\b.jpg",
             "other/p.jpg", "/abs/imgs/p.jpg", "../../imgs/p.jpg", "p.jpg"]
    names = [crop_file_name(p, i) for p in paths for i in (0, 1)]
    # unique even on a case-insensitive file system
    assert len({n.lower() for n in names}) == len(names), names
    for n in names:
        parts = Path(n).parts
        assert not os.path.isabs(n) and ".." not in parts and len(parts) <= 2, n
        assert n.endswith(".png") and ":" not in n and "\\" not in n
    assert crop_file_name("/data/lfw/Aaron/Aaron_0001.jpg", 0).startswith("Aaron" + os.sep + "Aaron_0001.jpg_face0")


def test_same_stem_images_get_their_own_crop(tmp_path, tiny_model):
    d = tmp_path / "imgs"
    red = _image(d / "p.jpg", (220, 40, 40))
    blue = _image(d / "p.png", (40, 40, 220))
    t = api.score([str(d)], model=str(tiny_model), aligned=True, jobs=1, save_crops=str(tmp_path / "crops"))
    rows = {os.path.basename(r["path"]): r["crop_path"] for r in t.to_pylist()}
    assert rows[red.name] != rows[blue.name]
    r_mean = np.asarray(Image.open(rows[red.name])).reshape(-1, 3).mean(0)
    b_mean = np.asarray(Image.open(rows[blue.name])).reshape(-1, 3).mean(0)
    assert r_mean[0] > r_mean[2] + 100 and b_mean[2] > b_mean[0] + 100  # each row shows its own face


def test_crop_path_is_absolute_and_report_link_finds_it_from_elsewhere(tmp_path, tiny_model, monkeypatch):
    from facequal.curate.report import build_report

    work = tmp_path / "work"
    work.mkdir()
    img = _image(tmp_path / "deep" / "tree" / "imgs" / "a.png", (150, 110, 90))
    monkeypatch.chdir(work)
    out = work / "s.parquet"
    r = _score(tiny_model, img, "-o", out, "--save-crops", "crops")  # a relative crop folder
    assert r.exit_code == 0, r.output
    crop = pq.read_table(out).column("crop_path").to_pylist()[0]
    assert os.path.isabs(crop) and os.path.isfile(crop)
    # the absolute input path is not recreated under the crop folder: only the image's folder
    assert os.path.relpath(crop, work / "crops").split(os.sep)[:-1] == ["imgs"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = build_report(str(out), str(elsewhere / "r.html"), link=True, jobs=1)
    assert res.n_linked == 1


# ---------------------------------------------------------------------------------------------
# C9: unusable crop folders, long names, disk full
# ---------------------------------------------------------------------------------------------
def test_save_crops_onto_a_file_is_one_line_before_any_work(tmp_path, tiny_model):
    img = _image(tmp_path / "imgs" / "a.png", (150, 110, 90))
    (tmp_path / "crops").write_text("not a folder")
    out = tmp_path / "s.parquet"
    r = _score(tiny_model, img, "-o", out, "--save-crops", tmp_path / "crops")
    _one_line_error(r)
    assert "not a folder" in r.output
    assert (tmp_path / "crops").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops", "imgs"]  # no output, no work folder


def test_save_crops_on_a_read_only_file_system_is_one_line_before_any_work(tmp_path, tiny_model, monkeypatch):
    img = _image(tmp_path / "imgs" / "a.png", (150, 110, 90))
    crops = tmp_path / "crops"
    crops.mkdir()
    inside = str(crops) + os.sep
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def refuse(path) -> None:
        p = os.path.abspath(os.fsdecode(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if p.startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), p)

    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (refuse(f), real_open(f, *a, **k))[1])
    monkeypatch.setattr(os, "open", lambda f, *a, **k: (refuse(f), real_os_open(f, *a, **k))[1])
    monkeypatch.setattr(os, "mkdir", lambda f, *a, **k: (refuse(f), real_mkdir(f, *a, **k))[1])
    out = tmp_path / "s.parquet"
    r = _score(tiny_model, img, "-o", out, "--save-crops", crops)
    monkeypatch.undo()
    _one_line_error(r)
    assert "read-only" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops", "imgs"]


@pytest.mark.parametrize("stem", ["n" * 242, "é" * 123])
def test_a_long_image_name_still_gets_its_crop(tmp_path, tiny_model, stem):
    img = _image(tmp_path / "imgs" / f"{stem}.png", (150, 110, 90))  # 246 characters, 250 bytes
    out = tmp_path / "s.parquet"
    r = _score(tiny_model, tmp_path / "imgs", "-o", out, "--save-crops", tmp_path / "crops")
    assert r.exit_code == 0, r.output
    row = pq.read_table(out).to_pylist()[0]
    assert row["status"] == "ok" and row["path"] == str(img)
    assert os.path.isfile(row["crop_path"]) and len(os.fsencode(os.path.basename(row["crop_path"]))) <= 255


def test_disk_full_while_saving_a_crop_stops_with_one_line_and_keeps_the_output(tmp_path, tiny_model,
                                                                                monkeypatch):
    d = tmp_path / "imgs"
    for i in range(3):
        _image(d / f"{i}.png", (100 + 40 * i, 110, 90))
    out = tmp_path / "s.parquet"
    crops = tmp_path / "crops"
    r = _score(tiny_model, d, "-o", out, "--save-crops", crops)
    assert r.exit_code == 0, r.output
    before = out.read_bytes()
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if os.fspath(fp).startswith(str(crops)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    r = _score(tiny_model, d, "-o", out, "--save-crops", crops, "--overwrite")
    monkeypatch.undo()
    _one_line_error(r)
    assert "no space left" in r.output
    assert out.read_bytes() == before  # the previous output is intact
    assert not [p for p in crops.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
