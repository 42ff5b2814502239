"""Build the self-contained HTML contact sheet of `facequal report`.

The page is one file: the template (HTML, CSS, JS) plus one JSON blob with the faces and their
thumbnails (base64 WebP or JPEG). The JS renders only the rows near the viewport, so 50,000
faces scroll smoothly; counts at a threshold come from a 1000-bin histogram of *every* scored
face, so they stay exact when the tiles are a sample.

Size: about 1.4 KB per face with 80 px WebP thumbnails (base64), so 50,000 faces make a
68 MB page that Chromium opens in a few seconds (measured with ``bench/report_size.py``;
JPEG thumbnails are about 60 % larger). Past ``max_faces`` (default 30,000) the tiles are an
even sample across the quality range.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import re
import shlex
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal import schema
from facequal.errors import UserError
from facequal.schema import read_table, require_columns, require_group_column

DEFAULT_MAX_FACES = 30_000
DEFAULT_THUMB_SIZE = 80
HIST_BINS = 1000
MAX_NONFACE_LISTED = 2000
ORDERS = ("asc", "desc")


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    path: str
    n_faces: int  # rows with status ok (faces)
    n_shown: int  # tiles in the page
    sampled: bool
    n_nonface: int
    size_bytes: int
    n_linked: int = 0  # tiles pointing at crops on disk (--link)
    thumb_errors: int = 0  # tiles without a picture (unreadable image or crop)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
def _waterfill(counts: np.ndarray, m: int) -> np.ndarray:
    """Integer allocation of ``m`` picks over strata of sizes ``counts``: as equal as the sizes allow."""
    counts = np.asarray(counts, dtype=np.int64)
    alloc = np.zeros_like(counts)
    left, open_ = m, counts > 0
    while left > 0 and open_.any():
        share = left // int(open_.sum())
        if share == 0:  # fewer picks than open strata: one each to the largest, then stop
            order = np.flatnonzero(open_)[np.argsort(-(counts - alloc)[open_], kind="stable")][:left]
            alloc[order] += 1
            break
        add = np.where(open_, np.minimum(share, counts - alloc), 0)
        alloc += add
        left -= int(add.sum())
        open_ = alloc < counts
    return alloc


def sample_even(q: np.ndarray, m: int, bins: int = 100) -> np.ndarray:
    """At most ``m`` indices spread evenly across the quality range.

    The range of finite qualities is cut into ``bins`` equal-width bins (NaN is one more); every
    bin gets an equal share of the picks (bins with fewer faces give all they have and the rest
    goes to the others); inside a bin the picks are evenly spaced by rank. Sorted indices.
    """
    q = np.asarray(q, dtype=np.float64)
    n = len(q)
    if n <= m:
        return np.arange(n)
    fin = np.isfinite(q)
    lo, hi = (float(q[fin].min()), float(q[fin].max())) if fin.any() else (0.0, 1.0)
    width = (hi - lo) or 1.0
    b = np.full(n, bins, dtype=np.int64)
    b[fin] = np.clip(((q[fin] - lo) / width * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(b, minlength=bins + 1)
    alloc = _waterfill(counts, m)
    picks = []
    order = np.lexsort((np.arange(n), np.nan_to_num(q, nan=np.inf), b))
    starts = np.concatenate([[0], np.cumsum(counts)])
    for s in np.flatnonzero(alloc):
        members = order[starts[s] : starts[s + 1]]
        a, c = int(alloc[s]), len(members)
        pos = np.array([c // 2]) if a == 1 else np.rint(np.linspace(0, c - 1, a)).astype(np.int64)
        picks.append(members[pos])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def quality_histogram(q: np.ndarray, bins: int = HIST_BINS, f32: bool = True) -> list[int]:
    """Counts of finite qualities in ``bins`` equal bins over [0, 1), plus one bin for q >= 1.

    Bin ``j`` starts at ``j / bins`` rounded to the data's precision (float32 for score files),
    so "faces in bins >= j" is exactly what ``facequal filter --min j/bins`` keeps. Values
    below 0 count in bin 0.
    """
    q = np.asarray(q, dtype=np.float64)
    q = q[np.isfinite(q)]
    edges = np.arange(bins + 1) / bins
    if f32:
        edges = edges.astype(np.float32).astype(np.float64)
    idx = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, bins)
    return np.bincount(idx, minlength=bins + 1).astype(int).tolist()


# ---------------------------------------------------------------------------------------------
# thumbnails
# ---------------------------------------------------------------------------------------------
def _thumb_job(
    items: Sequence[tuple[int, str, str | None, list | None]], size: int, fmt: str, quality: int
) -> list[tuple[int, str | None, str | None]]:
    """Make base64 thumbnails for (index, image path, crop path, landmarks); errors as values."""
    from facequal.curate.report.thumbs import encode, face_thumbnail, load_crop_thumbnail
    from facequal.pipeline.decode import Decoded, DecodeError, open_image

    out: list[tuple[int, str | None, str | None]] = []
    cache: tuple[str, object] | None = None  # the last decoded image (items come sorted by path)
    for i, path, crop, lms in items:
        try:
            im = None
            if crop is not None and os.path.isfile(crop):
                try:
                    im = load_crop_thumbnail(crop, size)
                except (OSError, ValueError):
                    if lms is None:
                        raise
            if im is None:
                if lms is None:
                    raise ValueError("no crop and no landmarks")
                if cache is None or cache[0] != path:
                    try:
                        cache = (path, open_image(path))  # large JPEGs are decoded at a reduced scale
                    except DecodeError as e:
                        cache = (path, e)
                img = cache[1]
                if isinstance(img, DecodeError):
                    raise ValueError(f"{img.status}: {img.message}")
                assert isinstance(img, Decoded)
                pts = (np.asarray(lms, dtype=np.float64) + 0.5) * img.scale - 0.5
                im = face_thumbnail(img.image, pts, size)
            out.append((i, base64.b64encode(encode(im, fmt, quality)).decode("ascii"), None))
        except Exception as e:  # one bad face never stops the report
            out.append((i, None, str(e) or type(e).__name__))
    return out


def make_thumbnails(
    items: list[tuple[int, str, str | None, list | None]], *, size: int, fmt: str, quality: int, jobs: int = 1
) -> dict[int, tuple[str | None, str | None]]:
    """Thumbnails for many faces, decoding each image once, in ``jobs`` processes."""
    items = sorted(items, key=lambda it: (it[1], it[0]))
    if jobs == 1 or len(items) < 256:
        res = _thumb_job(items, size, fmt, quality)
    else:
        from joblib import Parallel, delayed

        n_jobs = jobs if jobs > 0 else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        n_chunks = max(1, min(len(items) // 32, n_jobs * 8))
        bounds = np.linspace(0, len(items), n_chunks + 1).astype(int)
        parts = Parallel(n_jobs=n_jobs)(
            delayed(_thumb_job)(items[a:b], size, fmt, quality)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )
        res = [r for part in parts for r in part]
    return {i: (t, e) for i, t, e in res}


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
def _json_for_script(obj: object) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survive, so nothing can close the element."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(payload: dict, title: str) -> str:
    """Fill the template with an HTML-escaped title and the JSON payload."""
    template = resources.files("facequal.curate.report").joinpath("template.html").read_text(encoding="utf-8")
    values = {"TITLE": html.escape(title, quote=True), "DATA": _json_for_script(payload)}
    # One pass, so text inserted for one placeholder is never scanned for another.
    return re.sub(r"\{\{(TITLE|DATA)\}\}", lambda m: values[m.group(1)], template)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return np.asarray(pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _num(x: float, f32: bool) -> float | None:
    """A JSON number: the shortest text that reads back as the same float32 (or float64)."""
    if not math.isfinite(x):
        return None
    return float(str(np.float32(x))) if f32 else float(x)


def _check_report_options(*, order: str, max_faces: int, thumb_size: int, fmt: str, threshold: float,
                          jobs: int, thumb_quality: int) -> None:
    from facequal.curate.report.thumbs import FORMATS
    from facequal.options import check_int

    if order not in ORDERS:
        raise UserError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")
    if max_faces < 1:
        raise UserError(f"--max-faces must be >= 1, not {max_faces}")
    if not 16 <= thumb_size <= 256:
        raise UserError(f"--thumb-size must be between 16 and 256 pixels, not {thumb_size}")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise UserError(f"--threshold must be in [0, 1], not {threshold}")
    check_int("--jobs", jobs, 0, note=" (0: all cores)")
    check_int("thumb_quality", thumb_quality, 1, 100)


@dataclass
class _Selection:
    """The faces of a score table and the tiles shown: every face's quality (``q_all``, for the
    histogram), the shown faces sorted by quality (``shown``, ``q``), the rows without a face."""

    q_all: np.ndarray
    f32: bool
    n_faces: int
    shown: pa.Table
    q: np.ndarray
    others: pa.Table
    status_counts: dict[str, int]
    sampled: bool
    notes: list[str]


def _select_tiles(table: pa.Table, max_faces: int) -> _Selection:
    status = np.asarray(pc.fill_null(table["status"], "").to_numpy(zero_copy_only=False), dtype=object)
    fidx = np.asarray(pc.fill_null(table["face_index"], -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    is_face = (status == schema.OK) & (fidx >= 0)
    faces = table.filter(pa.array(is_face))
    others = table.filter(pa.array(~is_face))
    q_all = _floats(faces, "quality")
    n_faces = faces.num_rows
    notes: list[str] = []
    pick = sample_even(q_all, max_faces)
    sampled = len(pick) < n_faces
    if sampled:
        notes.append(
            f"Showing {len(pick):,} of {n_faces:,} faces, sampled evenly across the quality range "
            f"(--max-faces {max_faces:,}); the histogram and the counts cover all {n_faces:,}."
        )
    shown = faces.take(pa.array(pick, pa.int64()))
    q = q_all[pick]
    # Send the tiles sorted by quality (NaN last); the page re-sorts only when asked.
    srt = np.lexsort((np.arange(len(q)), np.nan_to_num(q, nan=np.inf)))
    status_counts: dict[str, int] = {}
    for s in list(status[is_face]) + [s if s is not None else "" for s in others["status"].to_pylist()]:
        status_counts[str(s)] = status_counts.get(str(s), 0) + 1
    return _Selection(q_all=q_all, f32=pa.types.is_float32(table["quality"].type),  # compare as `filter` does
                      n_faces=n_faces, shown=shown.take(pa.array(srt, pa.int64())), q=q[srt], others=others,
                      status_counts=status_counts, sampled=sampled, notes=notes)


@dataclass
class _Tiles:
    """Each shown face's image: an embedded thumbnail (``thumbs``), a link to its crop on disk
    (``urls``, with ``link``), or why there is none (``errors``)."""

    paths: list[str]
    thumbs: list[str]
    urls: list[str]
    errors: list[str]
    n_linked: int
    n_errors: int
    notes: list[str]


def _tile_images(shown: pa.Table, *, base_dir: str, out_dir: str, link: bool, size: int, fmt: str, quality: int,
                 jobs: int, progress: Callable[[str], None] | None) -> _Tiles:
    from facequal.pipeline.sources import fs_path_of  # the real name of an escaped non-UTF-8 path

    paths = [p if p is not None else "" for p in shown["path"].to_pylist()]
    crops = shown["crop_path"].to_pylist() if "crop_path" in shown.column_names else [None] * len(paths)
    lms = shown["landmarks"].to_pylist() if "landmarks" in shown.column_names else [None] * len(paths)

    def absolute(p: str | None) -> str | None:
        return None if not p else os.path.normpath(os.path.join(base_dir, fs_path_of(p)))

    tiles = _Tiles(paths=paths, thumbs=[""] * len(paths), urls=[""] * len(paths), errors=[""] * len(paths),
                   n_linked=0, n_errors=0, notes=[])
    todo = []
    for i, (p, c, lm) in enumerate(zip(paths, crops, lms, strict=True)):
        ca = absolute(c)
        if link and ca is not None and os.path.isfile(ca):
            tiles.urls[i] = urllib.parse.quote(os.path.relpath(ca, out_dir).replace(os.sep, "/"), safe="/",
                                               errors="surrogateescape")
            tiles.n_linked += 1
        else:
            todo.append((i, absolute(p) or "", ca, lm))
    if link and tiles.n_linked < len(paths):
        tiles.notes.append(
            f"--link: {len(paths) - tiles.n_linked:,} faces have no crop on disk; their thumbnails are embedded."
        )
    if progress is not None and todo:
        progress(f"making {len(todo):,} thumbnails")
    for i, (t, e) in make_thumbnails(todo, size=size, fmt=fmt, quality=quality, jobs=jobs).items():
        if t is None:
            tiles.n_errors += 1
            tiles.errors[i] = e or "failed"
        else:
            tiles.thumbs[i] = t
    if tiles.n_errors:
        tiles.notes.append(
            f"{tiles.n_errors:,} faces have no thumbnail (image or crop unreadable); hover a ✕ tile for the reason."
        )
    return tiles


def _face_payload(sel: _Selection, tiles: _Tiles, group: str | None) -> dict[str, Any]:
    """The shown faces as the page's script reads them: one list per field."""
    shown, f32 = sel.shown, sel.f32
    raw = _floats(shown, "quality_raw") if "quality_raw" in shown.column_names else None
    return {
        "p": tiles.paths,
        "i": [int(v) for v in shown["face_index"].to_pylist()],
        "q": [_num(v, f32) for v in sel.q],
        "r": [_num(v, f32) for v in raw] if raw is not None else None,
        "s": [s or "" for s in shown["status"].to_pylist()],
        "g": [None if v is None else str(v) for v in shown[group].to_pylist()] if group is not None else None,
        "t": tiles.thumbs,
        "u": tiles.urls if tiles.n_linked else None,
        "e": tiles.errors if tiles.n_errors else None,
    }


def _nonface_payload(others: pa.Table) -> dict[str, Any]:
    """The first rows without a face (no face, unreadable, ...), with their errors."""
    lim = min(others.num_rows, MAX_NONFACE_LISTED)
    return {
        "p": [p or "" for p in others["path"].slice(0, lim).to_pylist()],
        "s": [s if s is not None else "" for s in others["status"].slice(0, lim).to_pylist()],
        "e": others["error"].slice(0, lim).to_pylist() if "error" in others.column_names else [None] * lim,
    }


def build_report(
    scores: str | Path | pa.Table,
    output: str | Path,
    *,
    group: str | None = None,
    order: str = "asc",
    max_faces: int = DEFAULT_MAX_FACES,
    link: bool = False,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    fmt: str = "webp",
    thumb_quality: int = 70,
    base: str | Path | None = None,
    title: str | None = None,
    threshold: float = 0.5,
    jobs: int = 1,
    overwrite: bool = False,
    source: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write a self-contained HTML contact sheet of the faces in a score file.

    Tiles are ranked by quality (``order="asc"``: lowest first), optionally grouped by a column
    (one block per value). Past ``max_faces`` faces the tiles are a sample spread evenly across
    the quality range (:func:`sample_even`) and the page says so; the histogram and the
    "keeps N" count always cover every face. Thumbnails come from ``crop_path`` when it exists,
    else are aligned from the image and its landmarks; ``link`` points tiles at the crops on disk
    instead of embedding them. Relative paths in the score file are taken against ``base``.
    """
    from facequal._io import check_output_writable, write_output
    from facequal.curate.report.thumbs import MIME

    out = check_output_writable(output, overwrite)  # before any thumbnail is made
    _check_report_options(order=order, max_faces=max_faces, thumb_size=thumb_size, fmt=fmt,
                          threshold=threshold, jobs=jobs, thumb_quality=thumb_quality)
    src_name = source if source is not None else (str(scores) if not isinstance(scores, pa.Table) else "")
    table = scores if isinstance(scores, pa.Table) else read_table(scores)
    require_columns(table, ["path", "face_index", "status", "quality"], "the score file")
    if group is not None:
        require_group_column(table, group, "the score file")
    base_dir = os.path.abspath(base) if base is not None else os.getcwd()
    sel = _select_tiles(table, max_faces)
    notes = list(sel.notes)
    tiles = _tile_images(sel.shown, base_dir=base_dir, out_dir=os.path.dirname(os.path.abspath(out)), link=link,
                         size=thumb_size, fmt=fmt, quality=thumb_quality, jobs=jobs, progress=progress)
    notes += tiles.notes
    n_linked, n_err = tiles.n_linked, tiles.n_errors
    paths = tiles.paths
    payload = {
        "source": src_name,
        "source_arg": shlex.quote(src_name) if src_name else "SCORES",
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M"),
        "n_faces": sel.n_faces,
        "n_images": len(set(table["path"].to_pylist())),
        "n_nonface": sel.others.num_rows,
        "status_counts": sel.status_counts,
        "hist": quality_histogram(sel.q_all, f32=sel.f32),
        "f32": sel.f32,
        "group": group,
        "order": order,
        "threshold": threshold,
        "thumb_size": thumb_size,
        "mime": MIME[fmt],
        "notes": notes,
        "faces": _face_payload(sel, tiles, group),
        "nonface": _nonface_payload(sel.others),
    }
    page = render_html(payload, title or (f"facequal report: {src_name}" if src_name else "facequal report"))
    write_output(out, page, overwrite=overwrite)
    n_faces, others, sampled = sel.n_faces, sel.others, sel.sampled
    return ReportResult(
        path=str(out),
        n_faces=n_faces,
        n_shown=len(paths),
        sampled=sampled,
        n_nonface=others.num_rows,
        size_bytes=len(page.encode("utf-8")),
        n_linked=n_linked,
        thumb_errors=n_err,
        notes=notes,
    )
