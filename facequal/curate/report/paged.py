"""The paged report for big datasets: ``facequal report scores.parquet -o report/``.

Layout of the folder (built beside the output and swapped into place, :mod:`.folder`)::

    report/index.html                 summary, histogram, threshold, one row per page
    report/pages/00001.html ...       at most ``page_size`` tiles each, the one-file page's controls
    report/thumbs/0000/0000000.webp   one small thumbnail file per face, 1000 per sub-folder
    report/.facequal-report.json      facequal's marker

Every face is shown (no sampling). Pages follow the report's order: by quality (``order``,
NaN last), or, with ``group``, whole groups by name (a group larger than a page gets pages of its
own), faces by quality inside a group. Sorting by a diagnostic, the path filter and "hide" work
within a page; across pages the index lists each page's quality range and how many of its faces
below the threshold have each likely cause, and sorts the pages by any of these columns. Every
page carries the histogram of all faces, so the threshold's counts are those of the whole
dataset, and the links between pages keep the threshold, sort and order (the URL's ``#...``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facequal._io import os_error_message
from facequal.curate.report.build import (
    ReportResult,
    Selection,
    Tiles,
    common_payload,
    face_payload,
    nonface_payload,
    page_title,
    render_html,
    select_tiles,
    tile_images,
)
from facequal.curate.report.folder import (
    INDEX,
    PAGES,
    THUMBS,
    discard_build_folder,
    new_build_folder,
    swap_into_place,
)
from facequal.errors import UserError

THUMBS_PER_FOLDER = 1000
BATCH_FACES = 20_000  # thumbnails made per batch of pages: bounds the memory of a 1 M-face build


def page_plan(q: np.ndarray, groups: list[str | None] | None, order: str, page_size: int) -> list[np.ndarray]:
    """The faces of each page (indices into ``q``), in page order.

    Without groups: all faces by quality (``order``: "asc" lowest first, "desc"), NaN last, ties
    in row order, cut into pages of ``page_size``. With groups: groups by name (no group last),
    faces by quality inside each, whole groups packed into pages of at most ``page_size``; a
    bigger group is cut into pages of its own.
    """
    q = np.asarray(q, dtype=np.float64)
    n = len(q)
    key = np.nan_to_num(q if order == "asc" else -q, nan=0.0)
    ranked = np.lexsort((np.arange(n), key, np.isnan(q)))
    if groups is None:
        return [ranked[a:a + page_size] for a in range(0, n, page_size)]
    members: dict[str | None, list[int]] = {}
    for i in ranked.tolist():
        members.setdefault(groups[i], []).append(i)
    names = sorted(g for g in members if g is not None) + ([None] if None in members else [])
    pages: list[np.ndarray] = []
    cur: list[int] = []
    for g in names:
        m = members[g]
        if len(m) > page_size:
            if cur:
                pages.append(np.array(cur, np.int64))
                cur = []
            pages += [np.array(m[a:a + page_size], np.int64) for a in range(0, len(m), page_size)]
            continue
        if len(cur) + len(m) > page_size:
            pages.append(np.array(cur, np.int64))
            cur = []
        cur += m
    if cur:
        pages.append(np.array(cur, np.int64))
    return pages


def _page_name(p: int) -> str:
    return f"{p + 1:05d}.html"


def _thumb_rel(k: int, ext: str) -> str:
    """The thumbnail file of the face at position ``k`` of the report, relative to the folder."""
    return f"{THUMBS}/{k // THUMBS_PER_FOLDER:04d}/{k:07d}{ext}"


def _batches(pages: list[np.ndarray]) -> Iterator[list[int]]:
    """Consecutive page numbers, about ``BATCH_FACES`` faces at a time."""
    batch: list[int] = []
    n = 0
    for p, idx in enumerate(pages):
        batch.append(p)
        n += len(idx)
        if n >= BATCH_FACES:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def _slice(tiles: Tiles, a: int, b: int) -> Tiles:
    errs = tiles.errors[a:b]
    return Tiles(paths=tiles.paths[a:b], thumbs=tiles.thumbs[a:b], urls=tiles.urls[a:b], errors=errs,
                 n_linked=0, n_errors=sum(1 for e in errs if e), notes=[])


def _page_row(sel: Selection, idx: np.ndarray, href: str, group: str | None, threshold: float) -> dict[str, Any]:
    """A page's row in the index: its size, quality range, groups and likely causes of its faces
    below the threshold (counted as `facequal filter --min` keeps)."""
    q = sel.q_all[idx]
    fin = q[np.isfinite(q)]
    thr = np.float32(threshold) if sel.f32 else threshold
    low = ~(np.isfinite(q) & (q >= thr))
    causes = sel.diag.cause[idx][low]
    counts = np.bincount(causes[causes >= 0], minlength=0)
    row: dict[str, Any] = {
        "href": href, "n": len(idx), "n_low": int(low.sum()),
        "q0": float(fin.min()) if len(fin) else None, "q1": float(fin.max()) if len(fin) else None,
        "c": {str(c): int(v) for c, v in enumerate(counts) if v},
    }
    if group is not None:
        gs = sel.faces[group].take(pa.array(idx[[0, -1]], pa.int64())).to_pylist()
        row["g0"], row["g1"] = (None if g is None else str(g) for g in gs)
    return row


def _write_text(path: Path, text: str) -> int:
    data = text.encode("utf-8")
    with open(path, "xb") as fh:  # inside the private build folder
        fh.write(data)
    return len(data)


def _folder_bytes(folder: Path) -> int:
    """Bytes in every file under ``folder`` (their lengths, not the blocks they use)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_size
    return total


def write_paged(table: pa.Table, out: Path, *, shown: str, src_name: str, group: str | None, order: str,
                link: bool, thumb_size: int, fmt: str, thumb_quality: int, base_dir: str, title: str | None,
                threshold: float, jobs: int, overwrite: bool, page_size: int,
                progress: Callable[[str], None] | None) -> ReportResult:
    """Build the paged report of ``table`` in a temp folder and swap it onto ``out`` (checked by
    :func:`.folder.check_report_folder` before)."""
    from facequal.curate.report.thumbs import EXTENSIONS

    sel = select_tiles(table, None)
    groups = [None if g is None else str(g) for g in sel.faces[group].to_pylist()] if group is not None else None
    pages = page_plan(sel.q_all, groups, order, page_size)
    ext = EXTENSIONS[fmt]
    name = page_title(title, src_name)
    common = common_payload(table, sel, src_name=src_name, group=group, order=order, threshold=threshold,
                            thumb_size=thumb_size, fmt=fmt)
    empty_nonface: dict[str, list] = {"p": [], "s": [], "e": []}
    starts = np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(int)
    tmp = new_build_folder(out)
    n_linked = n_errors = n_thumbs = 0
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        for batch in _batches(pages):
            idx = np.concatenate([pages[p] for p in batch])
            k0 = int(starts[batch[0]])
            ks = range(k0, k0 + len(idx))
            for d in sorted({k // THUMBS_PER_FOLDER for k in ks}):
                os.makedirs(tmp / THUMBS / f"{d:04d}", exist_ok=True)
            files = ([str(tmp / _thumb_rel(k, ext)) for k in ks], ["../" + _thumb_rel(k, ext) for k in ks])
            tiles = tile_images(sel.faces.take(pa.array(idx, pa.int64())), base_dir=base_dir,
                                out_dir=str(out.absolute() / PAGES), link=link, size=thumb_size, fmt=fmt,
                                quality=thumb_quality, jobs=jobs, progress=None, files=files)
            n_linked += tiles.n_linked
            n_errors += tiles.n_errors
            n_thumbs += tiles.n_files
            a = 0
            for p in batch:
                b = a + len(pages[p])
                nav = {"page": p + 1, "n_pages": len(pages), "index": f"../{INDEX}",
                       "prev": _page_name(p - 1) if p > 0 else None,
                       "next": _page_name(p + 1) if p + 1 < len(pages) else None,
                       "first": k0 + a + 1}
                payload = {**common, "notes": [], "nav": nav, "nonface": empty_nonface, "gorder": "name",
                           "faces": face_payload(sel, pages[p], _slice(tiles, a, b), group)}
                _write_text(tmp / PAGES / _page_name(p),
                            render_html(payload, f"{name} — page {p + 1} of {len(pages)}"))
                rows.append(_page_row(sel, pages[p], f"{PAGES}/{_page_name(p)}", group, threshold))
                a = b
            if progress is not None:
                progress(f"pages {batch[-1] + 1:,} of {len(pages):,} ({k0 + len(idx):,} of {sel.n_faces:,} faces)")
        if link and n_linked < sel.n_faces:
            notes.append(f"--link: {sel.n_faces - n_linked:,} faces have no crop on disk; their thumbnails are "
                         "written as files.")
        if n_errors:
            notes.append(f"{n_errors:,} faces have no thumbnail (image or crop unreadable); hover a ✕ tile for "
                         "the reason.")
        index = {**common, "notes": notes, "faces": None, "nonface": nonface_payload(sel.others),
                 "nav": {"page": 0, "n_pages": len(pages), "index": None, "prev": None,
                         "next": _page_name(0) if pages else None},
                 "pages": rows}
        _write_text(tmp / INDEX, render_html(index, name))
        size = _folder_bytes(tmp)
        n_files = len(pages) + n_thumbs + 2  # pages, thumbnails, the index and the marker
        left = swap_into_place(tmp, out, shown, overwrite)
        if left is not None:
            notes.append(left)
    except OSError as e:
        discard_build_folder(tmp)
        raise UserError(os_error_message(e, shown) + " (any earlier report there is unchanged)") from None
    except BaseException:
        discard_build_folder(tmp)
        raise
    return ReportResult(path=str(out), n_faces=sel.n_faces, n_shown=sel.n_faces, sampled=False,
                        n_nonface=sel.others.num_rows, size_bytes=size, n_linked=n_linked, thumb_errors=n_errors,
                        notes=notes, n_pages=len(pages), n_files=n_files)
