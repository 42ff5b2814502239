"""`facequal report`: diagnostics in the tiles, sorting by them, the "likely cause" label, and the
paged report for big datasets (``-o report/``), as files and in headless Chromium.

The browser tests reuse the DevTools-pipe client of ``tests/test_report.py`` and skip the same
way when no chromium is found.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from test_report import Chrome, set_control  # noqa: E402  (tests/ is on sys.path)
from typer.testing import CliRunner

from facequal.curate.report import build_report
from facequal.curate.report.diagnostics import CAUSES, read_diagnostics
from facequal.curate.report.folder import MARKER
from facequal.curate.report.paged import page_plan
from facequal.errors import OutputExistsError, UserError


def payload_of(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="fq-data">(.*?)</script>', text, re.S)
    assert m is not None
    return json.loads(m.group(1))


# A face per row with the diagnostics the newer score files carry; each row is typical but for
# the one diagnostic its name says (the first row is typical in every way).
TYPICAL = dict(yaw=5.0, pitch=-3.0, roll=2.0, eye_distance=60.0, sharpness=0.8, brightness=120.0, contrast=0.35)
CASES = [
    ("typical", {}, None),
    ("profile", dict(yaw=-70.0), "profile"),
    ("tilted", dict(roll=35.0), "tilted"),
    ("small", dict(eye_distance=12.0), "small face"),
    ("blurred", dict(sharpness=0.05), "blurred"),
    ("dark", dict(brightness=15.0), "dark"),
    ("bright", dict(brightness=250.0), "over-exposed"),
    ("flat", dict(contrast=0.04), "low contrast"),
    ("looking_up", dict(pitch=45.0), "head up/down"),
    # two diagnostics outside: the one further out wins (yaw 50: 1/3 unit; eye distance 10: 1.6 halvings)
    ("both", dict(yaw=50.0, eye_distance=10.0), "small face"),
]


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("crops")
    for i in range(6):
        Image.new("RGB", (96, 96), (40 * i, 120, 200 - 30 * i)).save(d / f"c{i}.png")
    return d


def diag_table(crops: Path, n_repeat: int = 1, eye_column: str = "eye_distance") -> pa.Table:
    """The CASES (``n_repeat`` times each), with qualities falling along the list."""
    rows = []
    for r in range(n_repeat):
        for k, (name, change, _) in enumerate(CASES):
            vals = {**TYPICAL, **change}
            rows.append(dict(path=f"{name}_{r}.jpg", quality=round(0.9 - 0.08 * k - 0.001 * r, 4),
                             crop_path=str(crops / f"c{k % 6}.png"), **vals))
    cols: dict[str, pa.Array] = {
        "path": pa.array([r["path"] for r in rows]),
        "face_index": pa.array([0] * len(rows), pa.int32()),
        "status": pa.array(["ok"] * len(rows)),
        "quality": pa.array([r["quality"] for r in rows], pa.float64()),
        "crop_path": pa.array([r["crop_path"] for r in rows]),
    }
    for k in TYPICAL:
        cols[eye_column if k == "eye_distance" else k] = pa.array([r[k] for r in rows], pa.float32())
    return pa.table(cols)


# ---------------------------------------------------------------------------------------------
# the likely cause
# ---------------------------------------------------------------------------------------------
def test_likely_cause_names_the_diagnostic_furthest_out(crops):
    t = diag_table(crops, n_repeat=3)
    diag = read_diagnostics(t)
    got = [CAUSES[c] if c >= 0 else None for c in diag.cause]
    want = [c for _ in range(3) for _, _, c in CASES]
    assert got == want
    # sharpness is judged against the dataset's own median: 0.8 here, so the bound is 0.4
    assert diag.ranges["sharpness"] == (pytest.approx(0.4), None)


def test_older_files_work_without_diagnostics_and_inter_eye_counts(crops, tmp_path):
    t = diag_table(crops, eye_column="inter_eye")
    assert read_diagnostics(t).values["eye_distance"][3] == 12.0  # the older column name is read
    bare = t.select(["path", "face_index", "status", "quality", "crop_path"])
    build_report(bare, tmp_path / "old.html")
    data = payload_of((tmp_path / "old.html").read_text())
    assert data["diag"] == [] and data["faces"]["c"] is None and data["faces"]["d"] == {}
    # missing values (a row without a face has none) give no cause and are shown as missing
    nulls = t.set_column(t.column_names.index("yaw"), "yaw", pa.array([None] * t.num_rows, pa.float32()))
    d = read_diagnostics(nulls)
    assert CAUSES[d.cause[1]] != "profile" and "yaw" not in d.values  # not offered at all
    some = t.set_column(t.column_names.index("yaw"), "yaw", pa.array([None] + [5.0] * (t.num_rows - 1), pa.float32()))
    assert np.isnan(read_diagnostics(some).values["yaw"][0])


def test_payload_carries_diagnostics_and_causes(crops, tmp_path):
    t = diag_table(crops)
    out = tmp_path / "r.html"
    build_report(t, out)
    data = payload_of(out.read_text())
    names = [g["name"] for g in data["diag"]]
    assert names == ["yaw", "pitch", "roll", "eye_distance", "sharpness", "brightness", "contrast"]
    f = data["faces"]
    by_path = {p: i for i, p in enumerate(f["p"])}
    assert f["d"]["yaw"][by_path["profile_0.jpg"]] == -70.0
    assert data["causes"][f["c"][by_path["dark_0.jpg"]]] == "dark"
    assert f["c"][by_path["typical_0.jpg"]] is None


# ---------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------
def test_page_plan_orders_and_packs():
    q = np.array([0.5, 0.1, np.nan, 0.9, 0.3, 0.1])
    pages = page_plan(q, None, "asc", 2)
    assert [p.tolist() for p in pages] == [[1, 5], [4, 0], [3, 2]]  # ties in row order, NaN last
    assert [p.tolist() for p in page_plan(q, None, "desc", 4)] == [[3, 0, 4, 1], [5, 2]]
    groups = ["b", "a", "b", None, "c", "a"]
    pages = page_plan(q, groups, "asc", 3)
    # groups by name, whole: a (1, 5) | b (0, 2) then c (4) fits with b | none last
    assert [p.tolist() for p in pages] == [[1, 5], [0, 2, 4], [3]]
    big = page_plan(np.arange(7.0), ["x"] * 7, "asc", 3)
    assert [p.tolist() for p in big] == [[0, 1, 2], [3, 4, 5], [6]]


def test_paged_report_files(crops, tmp_path):
    t = diag_table(crops, n_repeat=5)  # 50 faces
    bad = pa.table({"path": ["gone.jpg", "x.jpg"], "face_index": pa.array([0, -1], pa.int32()),
                    "status": ["ok", "no_face"], "quality": pa.array([0.05, None], pa.float64())})
    t = pa.concat_tables([t, bad], promote_options="default")
    out = tmp_path / "rep"
    res = build_report(t, f"{out}/", page_size=12, threshold=0.5)
    assert res.n_faces == 51 and res.n_shown == 51 and res.n_pages == 5 and res.thumb_errors == 1
    assert res.n_nonface == 1
    names = sorted(os.listdir(out))
    assert names == sorted([MARKER, "index.html", "pages", "thumbs"])
    pages = sorted(os.listdir(out / "pages"))
    assert pages == [f"{i:05d}.html" for i in range(1, 6)]
    thumbs = sorted(os.listdir(out / "thumbs" / "0000"))
    assert len(thumbs) == 50 and thumbs[0] == "0000001.webp"  # face 0, gone.jpg, has no picture
    assert Image.open(out / "thumbs" / "0000" / thumbs[0]).size == (80, 80)
    n_files = sum(len(f) for _, _, f in os.walk(out))
    assert res.n_files == n_files
    assert res.size_bytes == sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    # every face on exactly one page, pages in quality order, thumbnails that exist
    seen, last_q = [], -1.0
    for k, name in enumerate(pages):
        data = payload_of((out / "pages" / name).read_text())
        f = data["faces"]
        assert len(f["p"]) <= 12 and f["t"] is None
        qs = [q for q in f["q"] if q is not None]
        assert qs == sorted(qs) and (not qs or qs[0] >= last_q)
        last_q = qs[-1] if qs else last_q
        for p, u, e in zip(f["p"], f["u"], f["e"] or [""] * len(f["p"]), strict=True):
            assert (u and (out / "pages" / u).resolve().is_file()) or (p == "gone.jpg" and e)
        assert data["nav"]["prev"] == (pages[k - 1] if k else None)
        assert data["nav"]["next"] == (pages[k + 1] if k + 1 < len(pages) else None)
        assert data["nav"]["index"] == "../index.html"
        assert sum(data["hist"]) == 51  # every page counts the whole dataset
        seen += f["p"]
    assert sorted(seen) == sorted(p for p in t["path"].to_pylist() if p != "x.jpg")
    index = payload_of((out / "index.html").read_text())
    assert index["faces"] is None and len(index["pages"]) == 5
    assert [r["n"] for r in index["pages"]] == [12, 12, 12, 12, 3]
    assert index["nonface"]["p"] == ["x.jpg"]
    # the likely causes of the faces below 0.5 add up over the pages (dark_0 has 0.5 exactly: kept)
    cause_counts: dict[str, int] = {}
    for r in index["pages"]:
        for c, v in r["c"].items():
            cause_counts[index["causes"][int(c)]] = cause_counts.get(index["causes"][int(c)], 0) + v
    assert cause_counts == {"small face": 5, "dark": 4, "over-exposed": 5, "low contrast": 5, "head up/down": 5}


def test_paged_output_is_deterministic(crops, tmp_path):
    t = diag_table(crops, n_repeat=2)
    a = build_report(t, f"{tmp_path}/a/", page_size=7)
    b = build_report(t, f"{tmp_path}/b/", page_size=7)
    assert a.n_files == b.n_files
    for root, _, files in os.walk(a.path):
        for f in files:
            pa_, pb = Path(root) / f, Path(b.path) / Path(root).relative_to(a.path) / f
            if f.endswith(".html"):  # the same pages but for the time they were made
                strip = re.compile(r'"generated":"[^"]*"')
                assert strip.sub("", pa_.read_text()) == strip.sub("", pb.read_text())
            elif f != MARKER:
                assert pa_.read_bytes() == pb.read_bytes()


def test_folder_output_safety(crops, tmp_path):
    t = diag_table(crops)
    # a folder of someone's files is never used, even with --overwrite
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    for ow in (False, True):
        with pytest.raises(UserError, match="facequal did not make it"):
            build_report(t, f"{mine}/", overwrite=ow)
    assert os.listdir(mine) == ["holiday.jpg"]
    # a file where the folder should be, and a symlink, are refused
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(UserError, match="not a folder"):
        build_report(t, f"{tmp_path}/afile/")
    os.symlink(mine, tmp_path / "link")
    with pytest.raises(UserError, match="symlink"):
        build_report(t, f"{tmp_path}/link/", overwrite=True)
    # an empty folder is fine; facequal's own report is replaced only with overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    build_report(t, f"{empty}/")
    assert (empty / "index.html").is_file() and (empty / MARKER).is_file()
    with pytest.raises(OutputExistsError):
        build_report(t, f"{empty}/")
    build_report(t, str(empty), overwrite=True, page_size=10)  # an existing folder: paged, no slash needed
    assert len(os.listdir(empty / "pages")) == 1
    # facequal's report with a file dropped into it is facequal's no longer: refused, nothing removed
    (empty / "thumbs" / "0000" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt, which facequal did not write"):
        build_report(t, f"{empty}/", overwrite=True)
    assert (empty / "thumbs" / "0000" / "notes.txt").read_text() == "mine"
    # no temp folders left behind
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_folder_output_checked_before_any_work(crops, tmp_path, monkeypatch):
    import facequal.curate.report.build as rb

    def no_work(*a, **k):
        raise AssertionError("thumbnails were made for an output that is refused")

    monkeypatch.setattr(rb, "make_thumbnails", no_work)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    with pytest.raises(UserError):
        build_report(diag_table(crops), f"{mine}/")
    with pytest.raises(UserError, match="page_size must be between"):
        build_report(diag_table(crops), f"{tmp_path}/new/", page_size=0)
    assert not (tmp_path / "new").exists()


def test_a_failed_build_leaves_the_old_report(crops, tmp_path, monkeypatch):
    t = diag_table(crops)
    out = tmp_path / "rep"
    build_report(t, f"{out}/", title="first")
    import facequal.curate.report.paged as pg

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pg, "_write_text", boom)
    with pytest.raises(UserError, match="no space left.*unchanged"):
        build_report(t, f"{out}/", overwrite=True, title="second")
    assert "first" in (out / "index.html").read_text()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_cli_paged_report(crops, tmp_path):
    import pyarrow.parquet as pq

    from facequal.cli import app

    pq.write_table(diag_table(crops, n_repeat=3), tmp_path / "s.parquet")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "s.parquet"), "-o", f"{tmp_path}/rep/",
                                 "--page-size", "10", "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "on 3 pages" in r.output and (tmp_path / "rep" / "pages" / "00003.html").is_file()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "s.parquet"), "-o", f"{tmp_path}/rep/"])
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path / "s.parquet"), "-o", f"{tmp_path}/x/", "--page-size", "0"])
    assert r.exit_code == 2 and "--page-size must be between 1 and 20,000" in r.output
    assert len(r.output.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# in headless Chromium
# ---------------------------------------------------------------------------------------------
# `chrome` (one headless Chromium per test module) is a fixture of conftest.py


def fresh_open(chrome: Chrome, url: str) -> None:
    """Open ``url`` as a new document (not a same-page hash change, which would race the test)."""
    chrome.call("Page.navigate", {"url": "about:blank"}, session=True)
    time.sleep(0.2)
    chrome.open(url)


def tiles(chrome: Chrome) -> list[dict]:
    """The rendered tiles in page order: path, caption, cause badge text (when shown), rejected."""
    return chrome.eval(
        "Array.from(document.querySelectorAll('#sheet .tile')).map(e => ({p: e.title.split('\\n')[0], "
        "cap: e.querySelector('.cap').textContent, rej: e.classList.contains('rej'), "
        "cause: (e.querySelector('.cause') && getComputedStyle(e.querySelector('.cause')).display !== 'none') "
        "? e.querySelector('.cause').textContent : null}))"
    )


def test_browser_sort_details_and_cause(chrome, crops, tmp_path):
    t = diag_table(crops)
    out = tmp_path / "d.html"
    build_report(t, out, threshold=0.5)
    chrome.events.clear()
    chrome.open(out.as_uri())
    assert chrome.errors() == []
    got = tiles(chrome)
    assert [g["p"] for g in got][:3] == ["both_0.jpg", "looking_up_0.jpg", "flat_0.jpg"]  # lowest quality first
    # the label is on the tiles below the threshold only, and names the likely cause
    want = {f"{name}_0.jpg": c for name, _, c in CASES}
    q = dict(zip(t["path"].to_pylist(), t["quality"].to_pylist(), strict=True))
    for g in got:
        assert g["rej"] == (q[g["p"]] < 0.5)
        assert g["cause"] == (want[g["p"]] if g["rej"] else None)
    # moving the threshold to 0 hides every label; to 1 shows every face's cause
    set_control(chrome, "thr", "value", "0", "input")
    assert all(g["cause"] is None for g in tiles(chrome))
    set_control(chrome, "thr", "value", "1", "input")
    assert {g["p"]: g["cause"] for g in tiles(chrome)} == want
    # sort by |yaw|, largest first: the profile face, then yaw 50; missing-free, captions show yaw
    set_control(chrome, "sort", "value", "yaw", "change")
    set_control(chrome, "order", "value", "desc", "change")
    got = tiles(chrome)
    assert [g["p"] for g in got][:2] == ["profile_0.jpg", "both_0.jpg"]
    assert got[0]["cap"].endswith("-70.0°")
    assert "sort=yaw" in chrome.eval("location.hash") and "order=desc" in chrome.eval("location.hash")
    set_control(chrome, "sort", "value", "eye_distance", "change")
    set_control(chrome, "order", "value", "asc", "change")
    assert [g["p"] for g in tiles(chrome)][:2] == ["both_0.jpg", "small_0.jpg"]
    # details: click a tile
    chrome.eval("document.querySelector('#sheet .tile[title^=\"dark_0.jpg\"]').click()")
    rows = chrome.eval("Array.from(document.querySelectorAll('#details-body tr')).map(r => "
                       "[r.cells[0].textContent, r.cells[1].textContent, r.cells[1].classList.contains('out')])")
    d = {k: (v, out_) for k, v, out_ in rows}
    assert d["path"][0] == "dark_0.jpg"
    assert d["brightness"][0].startswith("15.0") and "typical 50–205" in d["brightness"][0] and d["brightness"][1]
    assert d["yaw"][0].startswith("5.00°") and not d["yaw"][1]
    assert d["likely cause"][0] == "dark"
    assert chrome.eval("document.getElementById('details').hidden") is False
    chrome.eval("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
    assert chrome.eval("document.getElementById('details').hidden") is True
    # the sort survives a reload through the URL
    fresh_open(chrome, out.as_uri() + "#t=0.500&sort=sharpness")
    assert chrome.eval("document.getElementById('sort').value") == "sharpness"
    assert tiles(chrome)[0]["p"] == "blurred_0.jpg"
    assert chrome.errors() == []


def test_browser_paged_report(chrome, crops, tmp_path):
    t = diag_table(crops, n_repeat=4)  # 40 faces
    out = tmp_path / "rep"
    build_report(t, f"{out}/", page_size=15, threshold=0.7)
    chrome.events.clear()
    chrome.open((out / "index.html").as_uri())
    assert chrome.errors() == []
    assert chrome.eval("document.querySelectorAll('#sheet .tile').length") == 0
    assert chrome.eval("document.querySelectorAll('#pages-body tr').length") == 3
    qs = t["quality"].to_pylist()
    assert chrome.eval("document.getElementById('keeps').dataset.n") == str(sum(q >= 0.7 for q in qs))
    # the index sorts its pages by a likely cause's count: the page with the most blurred faces first
    heads = chrome.eval("Array.from(document.querySelectorAll('#pages-head th')).map(e => e.textContent)")
    chrome.eval(f"document.querySelectorAll('#pages-head th')[{heads.index('blurred')}].click()")
    index = payload_of((out / "index.html").read_text())
    bl = str(index["causes"].index("blurred"))
    best = max(range(3), key=lambda k: (index["pages"][k]["c"].get(bl, 0), -k))
    first = chrome.eval("document.querySelector('#pages-body tr a').textContent")
    assert first == f"page {best + 1}" and best == 1  # the 4 blurred faces (0.58) are all on page 2
    # a threshold set on the index travels along the links
    set_control(chrome, "thr", "value", "0.3", "input")
    href = chrome.eval("document.querySelector('#pages-body tr a').href")
    assert href.endswith(f"pages/{best + 1:05d}.html#t=0.300")
    chrome.open(href)
    assert chrome.errors() == []
    assert chrome.eval("document.getElementById('thr').value") == "0.3"
    assert chrome.eval("document.getElementById('keeps').dataset.n") == str(sum(q >= 0.3 for q in qs))
    # the page shows its tiles with thumbnails loaded from the files beside it
    time.sleep(0.3)
    widths = chrome.eval(
        "Array.from(document.querySelectorAll('#sheet img')).map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) == len(payload_of((out / "pages" / f"{best + 1:05d}.html").read_text())["faces"]["p"])
    assert set(widths) == {80}
    # prev / next / index links, each keeping the state
    chrome.open((out / "pages" / "00001.html").as_uri() + "#t=0.600&sort=yaw")
    assert chrome.eval("document.getElementById('nav-prev').hasAttribute('href')") is False
    nxt = chrome.eval("document.getElementById('nav-next').href")
    assert nxt.endswith("pages/00002.html#t=0.600&sort=yaw")
    assert chrome.eval("document.getElementById('nav-index').href").endswith("/index.html#t=0.600&sort=yaw")
    chrome.open(nxt)
    assert chrome.eval("document.getElementById('sort').value") == "yaw"
    assert chrome.eval("document.getElementById('nav-pos').textContent") == "page 2 of 3"
    # the path filter works within the page
    set_control(chrome, "q", "value", "blurred", "input")
    time.sleep(0.1)
    on_page = [p for p in payload_of((out / "pages" / "00002.html").read_text())["faces"]["p"] if "blurred" in p]
    assert len(on_page) == 4
    assert sorted(e.split("\n")[0] for e in chrome.eval(
        "Array.from(document.querySelectorAll('#sheet .tile')).map(e => e.title)")) == sorted(on_page)
    assert chrome.errors() == []


def test_grouped_paged_report_keeps_groups_whole(crops, tmp_path):
    t = diag_table(crops, n_repeat=3)  # 30 faces
    t = t.append_column("identity", pa.array([f"person_{i % 4}" for i in range(t.num_rows)]))
    out = tmp_path / "g"
    res = build_report(t, f"{out}/", page_size=12, group="identity")
    index = payload_of((out / "index.html").read_text())
    assert res.n_pages == 4  # groups of 8, 8, 7 and 7 faces: no two fit on a page of 12
    seen: list[str] = []
    for r in index["pages"]:
        page = payload_of((out / r["href"]).read_text())
        groups = page["faces"]["g"]
        assert [r["g0"], r["g1"]] == [groups[0], groups[-1]] and page["gorder"] == "name"
        seen += list(dict.fromkeys(groups))
    assert seen == ["person_0", "person_1", "person_2", "person_3"]  # by name, each on one page only


def test_a_file_dropped_into_the_old_report_during_the_build_is_not_deleted(crops, tmp_path, monkeypatch):
    import facequal.curate.report.folder as fo

    t = diag_table(crops)
    out = tmp_path / "rep"
    build_report(t, f"{out}/", title="first")
    real = fo.check_report_folder
    calls = []

    def then_a_user_writes(*a, **k):  # after the last check (at the swap), before the old report goes
        res = real(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            (out / "pages" / "my-notes.txt").write_text("keep me")
        return res

    monkeypatch.setattr(fo, "check_report_folder", then_a_user_writes)
    res = build_report(t, f"{out}/", overwrite=True, title="second")
    assert "second" in (out / "index.html").read_text()
    kept = [p for p in tmp_path.rglob("my-notes.txt")]
    assert len(kept) == 1 and kept[0].read_text() == "keep me"
    assert kept[0].parent.parent != out  # in the old report, set aside, not mixed into the new one
    assert len(calls) == 2 and any("not deleted" in n for n in res.notes)
    # of the old report only facequal's own files went: the aside folder holds just the user's file
    assert sorted(p.name for p in kept[0].parent.parent.rglob("*")) == ["my-notes.txt", "pages"]


def test_a_failed_swap_puts_the_old_report_back(crops, tmp_path, monkeypatch):
    t = diag_table(crops)
    out = tmp_path / "rep"
    build_report(t, f"{out}/", title="first")
    real = os.replace

    def refuse_the_swap(src, dst, *a, **k):
        if os.fspath(dst) == os.fspath(out):
            raise OSError(5, "Input/output error")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", refuse_the_swap)
    with pytest.raises(UserError, match="unchanged"):
        build_report(t, f"{out}/", overwrite=True, title="second")
    assert "first" in (out / "index.html").read_text() and (out / MARKER).is_file()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # neither the build nor the old one


def test_remove_old_report_deletes_only_report_files_never_links_or_other_names(tmp_path):
    """The only os.unlink of the paged report: regular files with the names a report writes."""
    from facequal.curate.report.folder import INDEX, MARKER, remove_old_report

    outside = tmp_path / "thesis.tex"
    outside.write_text("years of work")
    rep = tmp_path / "rep"
    (rep / "pages").mkdir(parents=True)
    (rep / "thumbs" / "0000").mkdir(parents=True)
    for p in (rep / INDEX, rep / MARKER, rep / "pages" / "00001.html", rep / "thumbs" / "0000" / "0000001.webp"):
        p.write_text("facequal's")
    (rep / "pages" / "00002.html").symlink_to(outside)           # a page name, but a link
    (rep / "thumbs" / "0000" / "0000002.webp").mkdir()           # a thumb name, but a folder
    (rep / "thumbs" / "0000" / "notes.txt").write_text("mine")   # not a report name
    (rep / "thumbs" / "mine").mkdir()                            # not a shard name
    left = remove_old_report(rep)
    assert left == str(rep)
    assert outside.read_text() == "years of work"
    assert sorted(str(p.relative_to(rep)) for p in rep.rglob("*")) == [
        "pages", "pages/00002.html", "thumbs", "thumbs/0000", "thumbs/0000/0000002.webp",
        "thumbs/0000/notes.txt", "thumbs/mine"]
    assert (rep / "pages" / "00002.html").is_symlink()
