"""Build the HTML contact sheet of `facequal report`: checks, loading, the tiles and their
payload, and the one-file page (the paged form for big datasets is :mod:`.paged`).

The one-file page is the template (HTML, CSS, JS) plus one JSON blob with the faces and their
thumbnails (base64 WebP or JPEG). The JS renders only the rows near the viewport, so 50,000
faces scroll smoothly; counts at a threshold come from a 1000-bin histogram of *every* scored
face, so they stay exact when the tiles are a sample.

Size: about 1.4 KB per face with 80 px WebP thumbnails (base64), so 50,000 faces make a
68 MB page that Chromium opens in a few seconds (measured with ``bench/report_size.py``;
JPEG thumbnails are about 60 % larger). Past ``max_faces`` (default 30,000) the tiles are an
even sample across the quality range.

``build_report`` runs in four steps: validate (the output, then the options), load (the score
table, its columns), compute (faces, diagnostics, tiles, thumbnails, payload), write.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
import shlex
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal import schema
from facequal.curate.report.diagnostics import (
    CAUSES,
    Diagnostics,
    diagnostics_payload,
    diagnostics_spec,
    read_diagnostics,
)
from facequal.curate.report.thumbs import make_thumbnails
from facequal.errors import UserError
from facequal.schema import read_table, require_columns, require_group_column

DEFAULT_MAX_FACES = 30_000
DEFAULT_THUMB_SIZE = 80
HIST_BINS = 1000
MAX_NONFACE_LISTED = 2000
ORDERS = ("asc", "desc")
DEFAULT_PAGE_SIZE = 2000  # tiles per page of a paged report
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 1, 20_000


@dataclass
class ReportResult:
    """What :func:`build_report` wrote (``size_bytes``: of every file written)."""

    path: str
    n_faces: int  # rows with status ok (faces)
    n_shown: int  # tiles in the page
    sampled: bool
    n_nonface: int
    size_bytes: int
    n_linked: int = 0  # tiles pointing at crops on disk (--link)
    thumb_errors: int = 0  # tiles without a picture (unreadable image or crop)
    notes: list[str] = field(default_factory=list)
    n_pages: int = 1  # pages of tiles (a paged report; the index not counted)
    n_files: int = 1  # files written (a paged report: pages, index, thumbnails, marker)


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
# the page
# ---------------------------------------------------------------------------------------------
def _json_for_script(obj: object) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survive, so nothing can close the element."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=1)
def _template() -> str:
    return resources.files("facequal.curate.report").joinpath("template.html").read_text(encoding="utf-8")


def render_html(payload: dict, title: str) -> str:
    """Fill the template with an HTML-escaped title and the JSON payload."""
    template = _template()
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



# ---------------------------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------------------------
def _check_report_options(*, order: str, max_faces: int, thumb_size: int, fmt: str, threshold: float,
                          jobs: int, thumb_quality: int, page_size: int) -> None:
    from facequal.curate.report.thumbs import FORMATS
    from facequal.options import check_int

    if order not in ORDERS:
        raise UserError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}", param="order")
    if max_faces < 1:
        raise UserError(f"--max-faces must be >= 1, not {max_faces}", param="max_faces")
    if not 16 <= thumb_size <= 256:
        raise UserError(f"--thumb-size must be between 16 and 256 pixels, not {thumb_size}", param="thumb_size")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise UserError(f"--threshold must be in [0, 1], not {threshold}", param="threshold")
    if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
        raise UserError(f"--page-size must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE:,} tiles, not {page_size}",
                        param="page_size")
    check_int("--jobs", jobs, 0, note=" (0: all cores)")
    check_int("thumb_quality", thumb_quality, 1, 100)


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------
def _load_scores(scores: str | Path | pa.Table, group: str | None, source: str | None) -> tuple[pa.Table, str]:
    """The score table (columns checked) and the name the page shows for it."""
    src_name = source if source is not None else (str(scores) if not isinstance(scores, pa.Table) else "")
    table = scores if isinstance(scores, pa.Table) else read_table(scores)
    require_columns(table, ["path", "face_index", "status", "quality"], "the score file")
    if group is not None:
        require_group_column(table, group, "the score file")
    return table, src_name


# ---------------------------------------------------------------------------------------------
# compute
# ---------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """The faces of a score table and the tiles shown: every face (``faces``, their qualities
    ``q_all`` for the histogram, their diagnostics), the shown ones as indices into ``faces``
    sorted by quality (``idx``), and the rows without a face."""

    faces: pa.Table
    q_all: np.ndarray
    diag: Diagnostics
    f32: bool
    idx: np.ndarray
    others: pa.Table
    status_counts: dict[str, int]
    sampled: bool
    notes: list[str]

    @property
    def n_faces(self) -> int:
        return self.faces.num_rows


def select_tiles(table: pa.Table, max_faces: int | None) -> Selection:
    """Split the rows into faces and the rest, and pick the tiles: every face (``max_faces``
    None) or an even sample across the quality range, sorted by quality (NaN last)."""
    status = np.asarray(pc.fill_null(table["status"], "").to_numpy(zero_copy_only=False), dtype=object)
    fidx = np.asarray(pc.fill_null(table["face_index"], -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    is_face = (status == schema.OK) & (fidx >= 0)
    faces = table.filter(pa.array(is_face))
    others = table.filter(pa.array(~is_face))
    q_all = _floats(faces, "quality")
    n_faces = faces.num_rows
    notes: list[str] = []
    pick = sample_even(q_all, max_faces) if max_faces is not None else np.arange(n_faces)
    sampled = len(pick) < n_faces
    if sampled:
        notes.append(
            f"Showing {len(pick):,} of {n_faces:,} faces, sampled evenly across the quality range "
            f"(--max-faces {max_faces:,}); the histogram and the counts cover all {n_faces:,}."
        )
    # The tiles go to the page sorted by quality (NaN last); the page re-sorts only when asked.
    q = q_all[pick]
    idx = pick[np.lexsort((np.arange(len(q)), np.nan_to_num(q, nan=np.inf)))]
    status_counts: dict[str, int] = {}
    for s in list(status[is_face]) + [s if s is not None else "" for s in others["status"].to_pylist()]:
        status_counts[str(s)] = status_counts.get(str(s), 0) + 1
    return Selection(faces=faces, q_all=q_all, diag=read_diagnostics(faces),
                     f32=pa.types.is_float32(table["quality"].type),  # compare as `filter` does
                     idx=idx, others=others, status_counts=status_counts, sampled=sampled, notes=notes)


@dataclass
class Tiles:
    """Each shown face's image: an embedded thumbnail (``thumbs``), a URL (``urls``: a crop on
    disk with ``link``, or a thumbnail file of a paged report), or why there is none (``errors``)."""

    paths: list[str]
    thumbs: list[str]
    urls: list[str]
    errors: list[str]
    n_linked: int
    n_errors: int
    notes: list[str]
    n_files: int = 0


def tile_images(shown: pa.Table, *, base_dir: str, out_dir: str, link: bool, size: int, fmt: str, quality: int,
                jobs: int, progress: Callable[[str], None] | None,
                files: tuple[list[str], list[str]] | None = None) -> Tiles:
    """Thumbnails of the faces of ``shown``: embedded as base64, or, with ``files`` (per face
    the file to write and its URL from the page), written as files. ``out_dir`` is the folder
    the page will be in (URLs of ``link``ed crops are relative to it)."""
    from facequal.pipeline.sources import fs_path_of  # the real name of an escaped non-UTF-8 path

    paths = [p if p is not None else "" for p in shown["path"].to_pylist()]
    crops = shown["crop_path"].to_pylist() if "crop_path" in shown.column_names else [None] * len(paths)
    lms = shown["landmarks"].to_pylist() if "landmarks" in shown.column_names else [None] * len(paths)

    def absolute(p: str | None) -> str | None:
        return None if not p else os.path.normpath(os.path.join(base_dir, fs_path_of(p)))

    tiles = Tiles(paths=paths, thumbs=[""] * len(paths), urls=[""] * len(paths), errors=[""] * len(paths),
                  n_linked=0, n_errors=0, notes=[])
    todo = []
    for i, (p, c, lm) in enumerate(zip(paths, crops, lms, strict=True)):
        ca = absolute(c)
        if link and ca is not None and os.path.isfile(ca):
            tiles.urls[i] = urllib.parse.quote(os.path.relpath(ca, out_dir).replace(os.sep, "/"), safe="/",
                                               errors="surrogateescape")
            tiles.n_linked += 1
        else:
            todo.append((i, absolute(p) or "", ca, lm, files[0][i] if files is not None else None))
    if link and tiles.n_linked < len(paths):
        how = "written as files" if files is not None else "embedded"
        tiles.notes.append(f"--link: {len(paths) - tiles.n_linked:,} faces have no crop on disk; "
                           f"their thumbnails are {how}.")
    if progress is not None and todo and files is None:
        progress(f"making {len(todo):,} thumbnails")
    for i, (t, e) in make_thumbnails(todo, size=size, fmt=fmt, quality=quality, jobs=jobs).items():
        if t is None:
            tiles.n_errors += 1
            tiles.errors[i] = e or "failed"
        elif files is not None:
            tiles.urls[i] = files[1][i]
            tiles.n_files += 1
        else:
            tiles.thumbs[i] = t
    if tiles.n_errors:
        tiles.notes.append(
            f"{tiles.n_errors:,} faces have no thumbnail (image or crop unreadable); hover a ✕ tile for the reason."
        )
    return tiles


def face_payload(sel: Selection, idx: np.ndarray, tiles: Tiles, group: str | None) -> dict[str, Any]:
    """The faces ``idx`` (indices into ``sel.faces``) as the page's script reads them: one list
    per field, the diagnostics (``d``) and likely causes (``c``, indices into ``causes``) included."""
    shown, f32 = sel.faces.take(pa.array(idx, pa.int64())), sel.f32
    raw = _floats(shown, "quality_raw") if "quality_raw" in shown.column_names else None
    diag = sel.diag.take(idx)
    return {
        "p": tiles.paths,
        "i": [int(v) for v in shown["face_index"].to_pylist()],
        "q": [_num(v, f32) for v in sel.q_all[idx]],
        "r": [_num(v, f32) for v in raw] if raw is not None else None,
        "s": [s or "" for s in shown["status"].to_pylist()],
        "g": [None if v is None else str(v) for v in shown[group].to_pylist()] if group is not None else None,
        "t": tiles.thumbs if any(tiles.thumbs) else None,
        "u": tiles.urls if any(tiles.urls) else None,
        "e": tiles.errors if tiles.n_errors else None,
        "d": diagnostics_payload(diag),
        "c": [int(c) if c >= 0 else None for c in diag.cause] if diag.specs else None,
    }


def nonface_payload(others: pa.Table) -> dict[str, Any]:
    """The first rows without a face (no face, unreadable, ...), with their errors."""
    lim = min(others.num_rows, MAX_NONFACE_LISTED)
    return {
        "p": [p or "" for p in others["path"].slice(0, lim).to_pylist()],
        "s": [s if s is not None else "" for s in others["status"].slice(0, lim).to_pylist()],
        "e": others["error"].slice(0, lim).to_pylist() if "error" in others.column_names else [None] * lim,
    }


def common_payload(table: pa.Table, sel: Selection, *, src_name: str, group: str | None, order: str,
                   threshold: float, thumb_size: int, fmt: str) -> dict[str, Any]:
    """What every page of a report says about the whole score file: counts, the histogram of
    every face, the diagnostics present, the controls' starting values."""
    from facequal.curate.report.thumbs import MIME

    return {
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
        "diag": diagnostics_spec(sel.diag),
        "causes": list(CAUSES),
    }


def page_title(title: str | None, src_name: str) -> str:
    """The report's title: ``title``, or one naming the score file."""
    return title or (f"facequal report: {src_name}" if src_name else "facequal report")


# ---------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------
def _write_single(table: pa.Table, out: Path, *, src_name: str, group: str | None, order: str, max_faces: int,
                  link: bool, thumb_size: int, fmt: str, thumb_quality: int, base_dir: str, title: str | None,
                  threshold: float, jobs: int, overwrite: bool,
                  progress: Callable[[str], None] | None) -> ReportResult:
    """The self-contained one-file report: tiles (a sample past ``max_faces``) with base64 thumbnails."""
    from facequal._io import write_output

    sel = select_tiles(table, max_faces)
    shown = sel.faces.take(pa.array(sel.idx, pa.int64()))
    tiles = tile_images(shown, base_dir=base_dir, out_dir=os.path.dirname(os.path.abspath(out)), link=link,
                        size=thumb_size, fmt=fmt, quality=thumb_quality, jobs=jobs, progress=progress)
    notes = sel.notes + tiles.notes
    payload = common_payload(table, sel, src_name=src_name, group=group, order=order, threshold=threshold,
                             thumb_size=thumb_size, fmt=fmt)
    payload.update(notes=notes, faces=face_payload(sel, sel.idx, tiles, group), nonface=nonface_payload(sel.others))
    page = render_html(payload, page_title(title, src_name))
    write_output(out, page, overwrite=overwrite)
    return ReportResult(path=str(out), n_faces=sel.n_faces, n_shown=len(tiles.paths), sampled=sel.sampled,
                        n_nonface=sel.others.num_rows, size_bytes=len(page.encode("utf-8")),
                        n_linked=tiles.n_linked, thumb_errors=tiles.n_errors, notes=notes)


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
    page_size: int = DEFAULT_PAGE_SIZE,
    source: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write an HTML contact sheet of the faces in a score file.

    ``output`` naming a file (``report.html``) writes one self-contained page; ``output`` ending
    with a slash, or naming an existing folder, writes a paged report there
    (:mod:`facequal.curate.report.paged`: an index, pages of at most ``page_size`` tiles and the
    thumbnails as small files) that shows every face.

    Tiles are ranked by quality (``order="asc"``: lowest first), optionally grouped by a column
    (one block per value). In the one-file form, past ``max_faces`` faces the tiles are a sample
    spread evenly across the quality range (:func:`sample_even`) and the page says so; the
    histogram and the "keeps N" count always cover every face. Each tile's details hold the
    diagnostics the score file has (pose, eye distance, sharpness, brightness, contrast), the page
    sorts by any of them, and tiles below the threshold are labelled with their likely cause
    (:mod:`facequal.curate.report.diagnostics`). Thumbnails come from ``crop_path`` when it
    exists, else are aligned from the image and its landmarks; ``link`` points tiles at the crops
    on disk instead. Relative paths in the score file are taken against ``base``.
    """
    from facequal._io import check_output_writable
    from facequal.curate.report.folder import check_report_folder, is_folder_output

    paged = is_folder_output(output)
    # every check before any thumbnail is made: the output first, then the options
    out = check_report_folder(output, overwrite) if paged else check_output_writable(output, overwrite)
    _check_report_options(order=order, max_faces=max_faces, thumb_size=thumb_size, fmt=fmt, threshold=threshold,
                          jobs=jobs, thumb_quality=thumb_quality, page_size=page_size)
    table, src_name = _load_scores(scores, group, source)
    base_dir = os.path.abspath(base) if base is not None else os.getcwd()
    if paged:
        from facequal.curate.report.paged import write_paged

        return write_paged(table, out, shown=os.fspath(output), src_name=src_name, group=group, order=order,
                           link=link, thumb_size=thumb_size, fmt=fmt, thumb_quality=thumb_quality,
                           base_dir=base_dir, title=title, threshold=threshold, jobs=jobs, overwrite=overwrite,
                           page_size=page_size, progress=progress)
    return _write_single(table, out, src_name=src_name, group=group, order=order, max_faces=max_faces, link=link,
                         thumb_size=thumb_size, fmt=fmt, thumb_quality=thumb_quality, base_dir=base_dir,
                         title=title, threshold=threshold, jobs=jobs, overwrite=overwrite, progress=progress)
