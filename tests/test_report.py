"""`facequal report`: the HTML contact sheet, checked as text and in real headless Chromium.

The browser tests drive Debian's ``chromium`` over the DevTools protocol on a pipe
(``--remote-debugging-pipe``): no Python or npm package is needed. They skip when no
chromium binary is found (set FACEQUAL_CHROMIUM to point at one).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from facequal import schema
from facequal.curate.report import build_report, sample_even
from facequal.curate.report.build import quality_histogram
from facequal.curate.select import filter_scores
from facequal.errors import OutputExistsError

XSS = "<img src=x onerror=alert(1)>.jpg"
# Landmarks of the astronaut's face in skimage.data.astronaut() (512 x 512).
ASTRO_LMS = np.array([[206, 100], [249, 100], [226, 122], [209, 142], [245, 141]], float)


# ---------------------------------------------------------------------------------------------
# synthetic faces
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> tuple[Path, pa.Table]:
    """A folder of degraded astronaut photos, a score table for them, and odd rows."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (a test dependency) makes the faces")

    d = tmp_path_factory.mktemp("faces")
    base = Image.fromarray(data.astronaut()).crop((96, 0, 352, 256))  # the face region
    lms0 = ASTRO_LMS - [96, 0]
    rng = np.random.default_rng(0)
    rows = []
    names = [f"astro_{i}.jpg" for i in range(9)] + [XSS, "new\nline.jpg", "a&b \"quoted\" 'x'.jpg"]
    for i, name in enumerate(names):
        level = i / (len(names) - 1)
        im = base.filter(ImageFilter.GaussianBlur(3 * level))
        arr = np.asarray(im, np.float32) * (1 - 0.5 * level) + rng.normal(0, 25 * level, (256, 256, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(d / name, quality=85)
        rows.append(
            dict(path=name, quality=round(1 - level, 4), landmarks=lms0.tolist(), identity=f"id{i % 3}")
        )
    # one face with a saved crop, one whose image vanished, one with NaN quality
    crop = Image.open(d / "astro_0.jpg").resize((96, 96))
    crop.save(d / "crop_0.jpg")
    rows.append(dict(path="astro_0.jpg", face_index=1, quality=0.66, crop_path="crop_0.jpg", identity="id0"))
    rows.append(dict(path="vanished.jpg", quality=0.42, landmarks=lms0.tolist(), identity="id1"))
    rows.append(
        dict(path="astro_1.jpg", face_index=1, quality=float("nan"), landmarks=lms0.tolist(), identity="id2")
    )
    # rows without a face
    rows.append(dict(path="nothing.jpg", face_index=-1, status=schema.NO_FACE))
    rows.append(
        dict(path="<b>bad</b>.jpg", face_index=-1, status=schema.UNREADABLE, error="<script>x</script>")
    )
    fields = {f.name: f for f in schema.SCORE_FIELDS}
    cols = {n: [r.get(n, {"face_index": 0, "status": "ok"}.get(n)) for r in rows] for n in fields}
    t = pa.table({n: pa.array(v, fields[n].type) for n, v in cols.items()})
    t = t.append_column("identity", pa.array([r.get("identity") for r in rows], pa.string()))
    pq.write_table(t, d / "scores.parquet")
    return d, t


def payload_of(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" id="fq-data">(.*?)</script>', html_text, re.S)
    assert m is not None
    return json.loads(m.group(1))


# ---------------------------------------------------------------------------------------------
# the page as text
# ---------------------------------------------------------------------------------------------
def test_report_is_self_contained_and_escaped(faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "r.html"
    res = build_report(t, out, base=d, title=f"title {XSS}", group="identity")
    text = out.read_text(encoding="utf-8")
    assert res.n_faces == 15 and res.n_shown == 15 and res.n_nonface == 2 and not res.sampled
    assert res.thumb_errors == 1  # vanished.jpg
    # nothing raw from the data reaches the markup
    assert "<img src=x" not in text and "<script>x" not in text and "<b>bad" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # the escaped title
    # no external resources
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    assert "<link" not in text
    data = payload_of(text)
    assert XSS in data["faces"]["p"] and "new\nline.jpg" in data["faces"]["p"]
    assert data["faces"]["q"] == sorted(
        data["faces"]["q"], key=lambda v: (v is None, v)
    )  # ascending, NaN last
    assert sum(data["hist"]) == 14  # every finite score
    assert data["mime"] == "image/webp" and all(
        len(x) > 100
        for x, p in zip(data["faces"]["t"], data["faces"]["p"], strict=True)
        if p != "vanished.jpg"
    )
    assert res.size_bytes == len(out.read_bytes())


def test_thumbnail_shows_the_face(faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "r.html"
    build_report(t, out, base=d, fmt="jpeg", thumb_size=64)
    data = payload_of(out.read_text())
    i = data["faces"]["p"].index("astro_0.jpg")
    import io

    im = Image.open(io.BytesIO(base64.b64decode(data["faces"]["t"][i])))
    assert im.format == "JPEG" and im.size == (64, 64)
    arr = np.asarray(im, np.float32)
    assert arr[24:40, 20:44].mean() > 60  # the face, not the black canvas outside the image


def test_sampling_past_max_faces(faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "r.html"
    res = build_report(t, out, base=d, max_faces=5)
    data = payload_of(out.read_text())
    assert res.sampled and res.n_shown == 5 and len(data["faces"]["p"]) == 5
    assert sum(data["hist"]) == 14 and any("sampled evenly" in n for n in data["notes"])


def test_sample_even_spreads_over_the_range():
    rng = np.random.default_rng(0)
    q = np.concatenate([rng.uniform(0.8, 1.0, 9000), rng.uniform(0.0, 0.2, 100), [np.nan] * 5])
    idx = sample_even(q, 1000)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000
    low = np.sum(q[idx] < 0.2)
    assert 90 <= low <= 100  # the rare low-quality tail is shown almost entirely
    assert np.nanmin(q[idx]) == np.nanmin(q) and np.nanmax(q[idx]) == np.nanmax(q)
    assert len(sample_even(q, 20000)) == len(q)
    h = quality_histogram(np.array([0.0, 0.3, 0.9995, 1.0, np.nan], np.float32))
    assert len(h) == 1001 and h[0] == 1 and h[300] == 1 and h[999] == 1 and h[1000] == 1


def test_link_mode_points_at_crops(faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "sub" / "r.html"
    out.parent.mkdir()
    res = build_report(t, out, base=d, link=True)
    data = payload_of(out.read_text())
    assert res.n_linked == 1
    (url,) = [u for u in data["faces"]["u"] if u]
    assert (out.parent / url).resolve() == (d / "crop_0.jpg").resolve()
    assert any("no crop on disk" in n for n in data["notes"])


def test_empty_and_all_nonface_inputs(tmp_path):
    fields = {f.name: f for f in schema.SCORE_FIELDS}
    empty = pa.table({n: pa.array([], f.type) for n, f in fields.items()})
    res = build_report(empty, tmp_path / "e.html")
    assert res.n_faces == 0 and payload_of((tmp_path / "e.html").read_text())["faces"]["p"] == []
    t = pa.table(
        {
            "path": ["a.jpg"],
            "face_index": pa.array([-1], pa.int32()),
            "status": ["no_face"],
            "quality": pa.array([None], pa.float32()),
        }
    )
    res = build_report(t, tmp_path / "n.html")
    assert res.n_faces == 0 and res.n_nonface == 1


def test_cli_report_refuses_to_overwrite(faces_dir, tmp_path):
    from facequal.cli import app

    d, _ = faces_dir
    out = tmp_path / "r.html"
    out.write_text("mine")
    r = CliRunner().invoke(app, ["report", str(d / "scores.parquet"), "-o", str(out), "--base", str(d)])
    assert r.exit_code != 0 and "already exists" in r.output and out.read_text() == "mine"
    r = CliRunner().invoke(
        app,
        [
            "report",
            str(d / "scores.parquet"),
            "-o",
            str(out),
            "--base",
            str(d),
            "--overwrite",
            "--group",
            "identity",
            "-j",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    with pytest.raises(OutputExistsError):
        build_report(d / "scores.parquet", out)
    r = CliRunner().invoke(
        app, ["report", str(d / "scores.parquet"), "-o", str(tmp_path / "x.html"), "--group", "nope"]
    )
    assert r.exit_code != 0 and "no column 'nope'" in r.output


# ---------------------------------------------------------------------------------------------
# the page in headless Chromium, over the DevTools protocol on a pipe
# ---------------------------------------------------------------------------------------------
def chromium_binary() -> str | None:
    env = os.environ.get("FACEQUAL_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Chrome:
    """A minimal DevTools-protocol client for one headless Chromium page."""

    def __init__(self, binary: str, width: int = 1280, height: int = 1600) -> None:
        self.profile = tempfile.mkdtemp(prefix="fq-chrome-")
        r_in, self._w = os.pipe()  # we write commands, chromium reads fd 3
        self._r, w_out = os.pipe()  # chromium writes replies on fd 4

        def child_fds() -> None:
            a, b = os.dup(r_in), os.dup(w_out)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--mute-audio",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_fds,
        )
        os.close(r_in)
        os.close(w_out)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(m, session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )

    def _read(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(
        self, method: str, params: dict | None = None, session: bool = False, timeout: float = 20
    ) -> dict:
        self._id += 1
        my_id = self._id
        msg: dict = {"id": my_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == my_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._event(m)

    def _event(self, m: dict) -> None:
        self.events.append(m)
        if m.get("method") == "Page.javascriptDialogOpening":  # never leave a dialog blocking the page
            self._id += 1
            os.write(
                self._w,
                json.dumps(
                    {
                        "id": self._id,
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": True},
                        "sessionId": self.session,
                    }
                ).encode()
                + b"\0",
            )

    def eval(self, expr: str):
        r = self.call(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str, timeout: float = 30) -> float:
        """Navigate and wait until the page says it is ready; returns the seconds it took."""
        t0 = time.monotonic()
        self.call("Page.navigate", {"url": url}, session=True)
        while time.monotonic() - t0 < timeout:
            if self.eval("document.body && document.body.dataset.ready === '1'"):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"{url} never became ready")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(str([a.get("value", a.get("description")) for a in p.get("args", [])]))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(p["entry"].get("text", ""))
            elif m == "Page.javascriptDialogOpening":
                out.append("dialog: " + p.get("message", ""))
        return out

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self.profile, ignore_errors=True)


def set_control(chrome: Chrome, el_id: str, prop: str, value: object, event: str) -> None:
    """Set an input's property and fire the event a user's action would."""
    chrome.eval(
        f"(() => {{ const el = document.getElementById({json.dumps(el_id)}); el[{json.dumps(prop)}] = "
        f"{json.dumps(value)}; el.dispatchEvent(new Event({json.dumps(event)})); }})()"
    )


def tile_paths(chrome: Chrome) -> list[str]:
    return chrome.eval(
        "Array.from(document.querySelectorAll('#sheet .tile')).map(e => e.title.split('\\n')[0])"
    )


# `chrome` (one headless Chromium per test module) is a fixture of conftest.py


def test_browser_tiles_threshold_filter(chrome, faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "r.html"
    build_report(t, out, base=d, threshold=0.5)
    chrome.events.clear()
    chrome.open(out.as_uri())
    assert chrome.errors() == []
    q = np.array([v for v in t.filter(pa.compute.equal(t["status"], "ok"))["quality"].to_pylist()], float)
    assert chrome.eval("document.querySelectorAll('#sheet .tile').length") == 15
    assert chrome.eval("document.querySelectorAll('#sheet .tile img').length") == 14  # one placeholder
    assert chrome.eval("document.getElementById('count').dataset.n") == "15"
    # the odd file name renders as text (in the tooltip), never as markup
    assert chrome.eval("document.querySelectorAll('#sheet img[src=x]').length") == 0
    titles = chrome.eval("Array.from(document.querySelectorAll('#sheet .tile')).map(e => e.title)")
    assert any(tt.startswith(XSS + "\n") for tt in titles)
    # the threshold control: move the slider as a user would
    for thr in (0.5, 0.3, 0.9, 0.0, 0.66, 1.0):  # 0.66 and 1.0 are scores of faces: boundaries
        set_control(chrome, "thr", "value", str(thr), "input")
        want = filter_scores(t, min_quality=thr).n_kept  # the page counts as `facequal filter` keeps
        f32 = pa.types.is_float32(t["quality"].type)           # compare at the column's precision
        assert want == int(np.sum(q[np.isfinite(q)] >= (np.float32(thr) if f32 else thr)))
        assert chrome.eval("document.getElementById('keeps').dataset.n") == str(want)
        assert chrome.eval("document.querySelectorAll('#sheet .tile:not(.rej)').length") == want
        assert chrome.eval("location.hash") == f"#t={thr:.3f}"
    set_control(chrome, "thr-num", "value", "0.4545", "input")  # typed: rounded to the histogram's 0.001
    assert chrome.eval("document.getElementById('keeps').dataset.n") == str(
        filter_scores(t, min_quality=0.455).n_kept
    )
    # hide the faces below 0.5, then type to filter
    set_control(chrome, "thr", "value", "0.5", "input")
    set_control(chrome, "hide", "checked", True, "change")
    assert chrome.eval("document.querySelectorAll('#sheet .tile').length") == int(np.sum(q >= 0.5))
    set_control(chrome, "q", "value", "ASTRO_1", "input")
    time.sleep(0.1)
    assert tile_paths(chrome) == ["astro_1.jpg"]  # face 1 of astro_1 has no score: hidden
    set_control(chrome, "hide", "checked", False, "change")
    assert tile_paths(chrome) == ["astro_1.jpg", "astro_1.jpg"]
    set_control(chrome, "q", "value", "", "input")
    time.sleep(0.1)
    assert chrome.eval("document.querySelectorAll('#sheet .tile').length") == 15
    assert chrome.errors() == []


def test_browser_hash_sets_threshold_and_groups(chrome, faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "g.html"
    build_report(t, out, base=d, group="identity")
    chrome.events.clear()
    chrome.open(out.as_uri() + "#t=0.700&order=desc")
    assert chrome.errors() == []
    assert chrome.eval("document.getElementById('thr').value") == "0.7"
    q = np.array(t.filter(pa.compute.equal(t["status"], "ok"))["quality"].to_pylist(), float)
    assert chrome.eval("document.getElementById('keeps').dataset.n") == str(int(np.sum(q >= 0.7)))
    heads = chrome.eval(
        "Array.from(document.querySelectorAll('#sheet .ghead')).map(e => e.firstChild.textContent)"
    )
    assert sorted(heads) == ["id0", "id1", "id2"]
    assert chrome.eval("document.querySelectorAll('#sheet .tile').length") == 15
    assert "nothing.jpg" in chrome.eval("document.getElementById('nonface').textContent")
    assert chrome.eval("document.querySelectorAll('#nonface script, #nonface b').length") == 0


def test_browser_large_report_renders_lazily(chrome, tmp_path, monkeypatch):
    """20,000 tiles: only the rows near the viewport exist in the DOM, and scrolling renders more."""
    import facequal.curate.report.build as rb

    tiny = Image.new("RGB", (80, 80), (180, 140, 120))
    import io

    buf = io.BytesIO()
    tiny.save(buf, format="WEBP", quality=50)
    b64 = base64.b64encode(buf.getvalue()).decode()
    monkeypatch.setattr(rb, "make_thumbnails", lambda items, **kw: {it[0]: (b64, None) for it in items})
    n = 20_000
    rng = np.random.default_rng(0)
    t = pa.table(
        {
            "path": [f"big/{i:05d}.jpg" for i in range(n)],
            "face_index": pa.array([0] * n, pa.int32()),
            "status": ["ok"] * n,
            "quality": pa.array(rng.uniform(size=n), pa.float32()),
        }
    )
    out = tmp_path / "big.html"
    build_report(t, out, max_faces=n)
    chrome.events.clear()
    took = chrome.open(out.as_uri())
    assert chrome.errors() == []
    assert took < 15
    assert chrome.eval("document.getElementById('count').dataset.n") == str(n)
    in_dom = chrome.eval("document.querySelectorAll('#sheet .tile').length")
    assert 0 < in_dom < 1000
    chrome.eval("window.scrollTo(0, document.body.scrollHeight / 2)")
    time.sleep(0.3)
    chrome.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    mid = chrome.eval("Array.from(document.querySelectorAll('#sheet .tile')).map(e => +e.dataset.i)")
    assert 0 < len(mid) < 1000 and min(mid) > 5000


def test_browser_link_mode_loads_crops_from_disk(chrome, faces_dir, tmp_path):
    d, t = faces_dir
    out = tmp_path / "l.html"
    build_report(t, out, base=d, link=True)
    chrome.events.clear()
    chrome.open(out.as_uri())
    time.sleep(0.3)
    widths = chrome.eval(
        "Array.from(document.querySelectorAll('#sheet img')).filter(i => !i.src.startsWith('data:'))"
        ".map(i => i.complete ? i.naturalWidth : -1)"
    )
    assert widths == [96]
    assert chrome.errors() == []
