"""The HTML view of `facequal audit --report`: the contact sheet of :mod:`.build`, laid out for
an audit.

One block per identity, the blocks with suspected intruders first (most suspects, then the
highest ``identity_outlier``); inside a block the suspects first, then the other faces by
decreasing ``identity_outlier``, the copies of one photo next to each other. A duplicate group
whose images sit in different identities gets a block of its own ("duplicates: ORIGINAL"),
so that the copies are side by side too. Suspects have an orange frame and say which identity
they look like; copies a blue label naming their original. The identity pairs likely to be
one person are listed as notes at the top. The same page, thumbnails and controls as
`facequal report` (the template's "list" sort keeps this order; the quality threshold, the
search box and the other sorts still work).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from facequal.curate.report.build import (
    DEFAULT_MAX_FACES,
    DEFAULT_THUMB_SIZE,
    ReportResult,
    common_payload,
    face_payload,
    nonface_payload,
    render_html,
    select_tiles,
    tile_images,
)
from facequal.errors import UserError
from facequal.schema import require_columns

MAX_PAIR_NOTES = 10
NEEDED = ("identity", "identity_outlier", "mislabel", "nearest_identity", "duplicate_of", "duplicate_kind",
          "dup_group")


def _image_thumbnail(path: str, size: int, fmt: str, quality: int) -> str | None:
    """The whole image as a square base64 thumbnail (faces without landmarks or crop)."""
    from PIL import ImageOps

    from facequal.curate.report.thumbs import encode
    from facequal.pipeline.decode import DecodeError, open_image

    try:
        im = ImageOps.pad(open_image(path).image, (size, size), color=(221, 221, 221))
        return base64.b64encode(encode(im, fmt, quality)).decode("ascii")
    except (DecodeError, OSError, ValueError):
        return None


def audit_order(faces: pa.Table, max_faces: int) -> tuple[np.ndarray, list[str], int]:
    """The tiles of the page: indices into ``faces`` (a face may appear twice: in its identity
    and in a cross-identity duplicate block), the block label of each, and the number of
    identities left out past ``max_faces``."""
    ident = [str(v) if v is not None else "(none)" for v in faces["identity"].to_pylist()]
    out = np.nan_to_num(np.asarray(faces["identity_outlier"].to_numpy(zero_copy_only=False), np.float64),
                        nan=-np.inf)
    flag = np.array([bool(v) for v in faces["mislabel"].to_pylist()])
    grp = np.array([-1 if v is None else int(v) for v in faces["dup_group"].to_pylist()], np.int64)
    copy = np.array([v is not None for v in faces["duplicate_of"].to_pylist()])
    n = faces.num_rows
    members: dict[str, list[int]] = {}
    for i, k in enumerate(ident):
        members.setdefault(k, []).append(i)
    # a duplicate group sorts as a unit, at its members' highest outlier; an original before its copies
    unit = np.where(grp >= 0, grp, -2 - np.arange(n))
    unit_max: dict[tuple[str, int], float] = {}
    for i in range(n):
        key = (ident[i], int(unit[i]))
        unit_max[key] = max(unit_max.get(key, -np.inf), out[i])
    blocks: list[tuple[tuple, str, list[int]]] = []
    for k, idx in members.items():
        idx.sort(key=lambda i: (not flag[i], -unit_max[(ident[i], int(unit[i]))], int(unit[i]), bool(copy[i]),
                                -out[i], i))
        n_flag = int(flag[idx].sum())
        has_dup = bool((grp[idx] >= 0).any())
        blocks.append(((0 if n_flag else 2 if has_dup else 3, -n_flag, -float(out[idx].max()), k), k, idx))
    by_group: dict[int, list[int]] = {}
    for i in np.flatnonzero(grp >= 0):
        by_group.setdefault(int(grp[i]), []).append(int(i))
    paths = faces["path"].to_pylist()
    for g, idx in sorted(by_group.items()):
        if len({ident[i] for i in idx}) > 1:
            idx.sort(key=lambda i: (bool(copy[i]), i))
            original = paths[idx[0]] if not copy[idx[0]] else str(faces["duplicate_of"][idx[0]])
            blocks.append(((1, 0, 0.0, f"{g:012d}"), f"duplicates: {original}", idx))
    blocks.sort(key=lambda b: b[0])
    order: list[int] = []
    labels: list[str] = []
    left_out = 0
    for _, label, idx in blocks:
        if order and len(order) + len(idx) > max_faces:
            left_out += 1
            continue
        order += idx
        labels += [label] * len(idx)
    return np.array(order, np.int64), labels, left_out


def build_audit_report(
    table: pa.Table,
    output: str | Path,
    *,
    identities: pa.Table | None = None,
    base: str | Path | None = None,
    mislabel_threshold: float = 0.0,
    max_faces: int = DEFAULT_MAX_FACES,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    fmt: str = "webp",
    thumb_quality: int = 70,
    jobs: int = 1,
    overwrite: bool = False,
    source: str = "",
    title: str | None = None,
) -> ReportResult:
    """Write the audit page of an audited table (:func:`facequal.curate.audit.audit`'s output)
    to the HTML file ``output``; ``identities`` (its identity pairs) become notes. Thumbnails
    are aligned from the landmarks (or taken from ``crop_path``); a face with neither shows its
    whole image. Image paths are relative to ``base`` (default: the current folder)."""
    from facequal._io import check_output_writable, write_output

    out = check_output_writable(output, overwrite)
    if not 1 <= max_faces:
        raise UserError(f"--max-faces must be >= 1, not {max_faces}", param="max_faces")
    require_columns(table, ["path", "face_index", "status", "quality", *NEEDED], "the audited table")
    sel = select_tiles(table, None)
    faces = sel.faces
    idx, labels, left_out = audit_order(faces, max_faces)
    shown = faces.take(pa.array(idx, pa.int64()))
    base_dir = os.path.abspath(base) if base is not None else os.getcwd()
    tiles = tile_images(shown, base_dir=base_dir, out_dir=os.path.dirname(os.path.abspath(out)), link=False,
                        size=thumb_size, fmt=fmt, quality=thumb_quality, jobs=jobs, progress=None)
    from facequal.pipeline.sources import fs_path_of

    for i, err in enumerate(tiles.errors):  # no landmarks and no crop: the whole image
        if err == "no crop and no landmarks":
            t = _image_thumbnail(os.path.join(base_dir, fs_path_of(tiles.paths[i])), thumb_size, fmt, thumb_quality)
            if t is not None:
                tiles.thumbs[i], tiles.errors[i] = t, ""
                tiles.n_errors -= 1
    sel.sampled = left_out > 0
    notes = []
    n_flag = sum(bool(v) for v in faces["mislabel"].to_pylist())
    n_copy = sum(v is not None for v in faces["duplicate_of"].to_pylist())
    notes.append(f"Audit: {n_flag:,} suspected intruders (identity_outlier > {mislabel_threshold:g}, orange "
                 f"frame) and {n_copy:,} duplicate faces (blue label); identities with suspects first.")
    if left_out:
        notes.append(f"{left_out:,} identities without suspects are not shown (--max-faces {max_faces:,}); "
                     "the counts cover every face.")
    if identities is not None and identities.num_rows:
        for r in identities.slice(0, MAX_PAIR_NOTES).to_pylist():
            notes.append(f"Possibly one person: {r['identity_a']} ({r['size_a']}) and {r['identity_b']} "
                         f"({r['size_b']}), score {r['score']:.3f}")
        if identities.num_rows > MAX_PAIR_NOTES:
            notes.append(f"... and {identities.num_rows - MAX_PAIR_NOTES:,} more identity pairs "
                         "(see the --identities file).")
    if tiles.n_errors:
        notes.append(f"{tiles.n_errors:,} faces have no thumbnail (image unreadable); hover a ✕ tile for the reason.")
    payload = common_payload(table, sel, src_name=source, group=None, order="asc", threshold=0.0,
                             thumb_size=thumb_size, fmt=fmt)
    fp = face_payload(sel, idx, tiles, None)
    outl = shown["identity_outlier"].to_pylist()
    own = shown["own_similarity"].to_pylist() if "own_similarity" in shown.column_names else [None] * len(idx)
    near = shown["nearest_identity"].to_pylist()
    flag = [bool(v) for v in shown["mislabel"].to_pylist()]
    dup_of, kind = shown["duplicate_of"].to_pylist(), shown["duplicate_kind"].to_pylist()
    ident = shown["identity"].to_pylist()

    def f3(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.3f}"

    fp.update(
        g=labels,
        k=list(range(len(idx))),
        f=[1 if fl else 2 if d is not None else 0 for fl, d in zip(flag, dup_of, strict=True)],
        b=[f"looks like {nr}" if fl else f"{kd} copy" if d is not None else ""
           for fl, nr, d, kd in zip(flag, near, dup_of, kind, strict=True)],
        cap=[f"out {f3(o)}" for o in outl],
        x=[[["identity", str(idn), False], ["identity outlier", f3(o), bool(fl)], ["own similarity", f3(ow), False],
            ["nearest identity", str(nr) if nr is not None else "n/a", bool(fl)]]
           + ([[f"duplicate ({kd}) of", d, True]] if d is not None else [])
           for idn, o, fl, ow, nr, d, kd in zip(ident, outl, flag, own, near, dup_of, kind, strict=True)],
    )
    payload.update(notes=notes, faces=fp, nonface=nonface_payload(sel.others), group="block", sort="list",
                   list_label="audit order (suspects first)")
    page = render_html(payload, title or (f"facequal audit: {source}" if source else "facequal audit"))
    write_output(out, page, overwrite=overwrite)
    return ReportResult(path=str(out), n_faces=sel.n_faces, n_shown=len(idx), sampled=left_out > 0,
                        n_nonface=sel.others.num_rows, size_bytes=len(page.encode("utf-8")), n_linked=0,
                        thumb_errors=tiles.n_errors, notes=notes)
