"""Select faces from a score file and write the selection (`facequal filter`).

Two layers, each testable alone:

* :func:`select` -- pure: a table and :class:`Criteria` in, a boolean keep-mask and the
  number of rows each stage dropped out;
* :func:`filter_scores` -- the API the CLI calls: read, select, write the outputs (rows, a path
  list, or copies / links into a target directory through :mod:`facequal.curate.materialize`).

Selection stages run in this order, each on the rows the previous ones kept:
status -> face size -> --where -> has a finite quality (only when a quality criterion is given) ->
--min / --max -> --per-group -> --top-k -> --keep-fraction. Ties in quality are broken by row
order, so the result is deterministic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal import schema
from facequal._io import check_output, write_output, write_parquet_output
from facequal.curate.materialize import MODES, Materialized, materialize
from facequal.curate.where import parse_where
from facequal.errors import UserError
from facequal.schema import read_table, require_columns, require_group_column


@dataclass(frozen=True)
class Criteria:
    """What to keep. Every criterion left as None is not applied."""

    min_quality: float | None = None  # keep quality >= min
    max_quality: float | None = None  # keep quality <= max
    top_k: int | None = None  # keep the k best faces overall
    keep_fraction: float | None = None  # keep the best ceil(f * n) of the remaining faces
    per_group: int | None = None  # keep the best N faces of each group ...
    group: str | None = None  # ... where groups are the values of this column
    status: tuple[str, ...] | None = None  # keep rows with one of these statuses
    min_face: float | None = None  # keep faces whose box's shorter side is >= this (pixels)
    where: str | None = None  # keep rows for which this expression holds (facequal.curate.where)

    def uses_quality(self) -> bool:
        """Whether any criterion ranks or thresholds on quality."""
        return any(
            v is not None
            for v in (self.min_quality, self.max_quality, self.top_k, self.keep_fraction, self.per_group)
        )

    def validate(self) -> None:
        """Raise UserError for values that make no sense."""
        for name, v in (("--min", self.min_quality), ("--max", self.max_quality)):
            if v is not None and not math.isfinite(v):
                raise UserError(f"{name} must be a finite number, not {v}")
        if (
            self.min_quality is not None
            and self.max_quality is not None
            and self.min_quality > self.max_quality
        ):
            raise UserError(f"--min {self.min_quality} is above --max {self.max_quality}: nothing can pass")
        if self.top_k is not None and self.top_k < 0:
            raise UserError(f"--top-k must be >= 0, not {self.top_k}")
        if self.keep_fraction is not None and not 0.0 <= self.keep_fraction <= 1.0:
            raise UserError(f"--keep-fraction must be in [0, 1], not {self.keep_fraction}")
        if self.per_group is not None:
            if self.per_group < 0:
                raise UserError(f"--per-group must be >= 0, not {self.per_group}")
            if not self.group:
                raise UserError("--per-group needs --group COLUMN (e.g. --group identity)")
        elif self.group:
            raise UserError("--group only makes sense with --per-group N")
        if self.status:
            bad = [s for s in self.status if s not in schema.STATUSES]
            if bad:
                raise UserError(f"unknown status {bad[0]!r} (one of: {', '.join(schema.STATUSES)})")
        if self.min_face is not None and not (math.isfinite(self.min_face) and self.min_face >= 0):
            raise UserError(f"--min-face must be a number of pixels >= 0, not {self.min_face}")
        if self.where is not None:
            parse_where(self.where)  # a syntax error stops here, before any file is read


@dataclass
class Selection:
    """The outcome of :func:`select`: a keep-mask over the rows and what each stage dropped."""

    mask: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_kept(self) -> int:
        return int(self.mask.sum())


def column_as_float(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with nulls (and NaN) as NaN."""
    col = table[name]
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
        raise UserError(f"column {name!r} is not numeric (type {col.type})")
    arr = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(arr, dtype=np.float64)


def face_size(table: pa.Table) -> np.ndarray:
    """The shorter side of each face box (``bbox``), NaN where a row has none."""
    n = table.num_rows
    if "bbox" not in table.column_names:
        raise UserError("--min-face needs the 'bbox' column, which this score file lacks")
    col = table["bbox"].combine_chunks() if n else pa.array([], pa.list_(pa.float32(), 4))
    out = np.full(n, np.nan)
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool) if n else np.zeros(0, bool)
    if valid.any():
        flat = np.asarray(
            pc.list_flatten(col.filter(pa.array(valid))).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        boxes = flat.reshape(-1, 4)
        out[valid] = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return out


def group_codes(table: pa.Table, name: str) -> np.ndarray:
    """Integer codes of a column's values (equal values, equal codes; null is its own group)."""
    col = table[name].combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    enc = pc.dictionary_encode(col)
    return np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def rank_order(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted best quality first; ties keep row order."""
    return rows[np.lexsort((rows, -q[rows]))]


def select(table: pa.Table, criteria: Criteria) -> Selection:
    """Apply ``criteria`` to ``table``; return the keep-mask and per-stage drop counts."""
    criteria.validate()
    n = table.num_rows
    keep = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}

    def stage(name: str, ok: np.ndarray) -> None:
        nonlocal keep
        new = keep & ok
        dropped[name] = int(keep.sum() - new.sum())
        keep = new

    if criteria.status:
        require_columns(table, ["status"], "the score file")
        status = np.asarray(table["status"].to_pylist(), dtype=object)
        stage("status", np.isin(status, list(criteria.status)))
    if criteria.min_face is not None:
        size = face_size(table)
        with np.errstate(invalid="ignore"):
            stage("min_face", size >= criteria.min_face)
    if criteria.where is not None:
        stage("where", parse_where(criteria.where).mask(table))
    if criteria.uses_quality():
        require_columns(table, ["quality"], "the score file")
        q = column_as_float(table, "quality")
        stage("no_quality", np.isfinite(q))
        # Compare at the column's precision, so that --max 0.3 keeps a stored float32 0.3.
        prec = np.float32 if pa.types.is_float32(table["quality"].type) else np.float64
        with np.errstate(invalid="ignore"):
            if criteria.min_quality is not None:
                stage("min", q >= float(prec(criteria.min_quality)))
            if criteria.max_quality is not None:
                stage("max", q <= float(prec(criteria.max_quality)))
        if criteria.per_group is not None:
            assert criteria.group is not None
            require_group_column(table, criteria.group, "the score file")
            codes = group_codes(table, criteria.group)
            rows = np.flatnonzero(keep)
            order = rows[np.lexsort((rows, -q[rows], codes[rows]))]
            g = codes[order]
            starts = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
            first = np.maximum.accumulate(np.where(starts, np.arange(len(g)), 0)) if len(g) else g
            pos = np.arange(len(g)) - first
            ok = np.zeros(n, dtype=bool)
            ok[order[pos < criteria.per_group]] = True
            stage("per_group", ok)
        if criteria.top_k is not None:
            ok = np.zeros(n, dtype=bool)
            ok[rank_order(q, np.flatnonzero(keep))[: criteria.top_k]] = True
            stage("top_k", ok)
        if criteria.keep_fraction is not None:
            rows = np.flatnonzero(keep)
            k = math.ceil(criteria.keep_fraction * len(rows) - 1e-9)
            ok = np.zeros(n, dtype=bool)
            ok[rank_order(q, rows)[:k]] = True
            stage("keep_fraction", ok)
    return Selection(mask=keep, dropped=dropped)


def image_paths(paths: Sequence[str], mask: np.ndarray, rejected: bool = False) -> list[str]:
    """Distinct image paths in table order: those with a kept face, or (``rejected``) none kept."""
    kept: dict[str, None] = {}
    for p, m in zip(paths, mask, strict=True):
        if m and p:
            kept[p] = None
    if not rejected:
        return list(kept)
    out: dict[str, None] = {}
    for p in paths:
        if p and p not in kept:
            out[p] = None
    return list(out)


@dataclass
class FilterResult:
    """Counts and outputs of :func:`filter_scores`."""

    n_rows: int
    n_kept: int  # rows kept (faces, or rows of other statuses with --status)
    n_images: int  # distinct image paths in the input
    kept_images: list[str]
    rejected_images: list[str]
    dropped: dict[str, int]
    rejected: bool = False  # whether the outputs hold the rejected side
    written: list[str] = field(default_factory=list)
    materialized: Materialized | None = None
    dry_run: bool = False
    table: pa.Table | None = None  # the rows selected (kept, or rejected with rejected=True)

    def summary(self) -> str:
        """One line of counts."""
        side = "rejected" if self.rejected else "kept"
        out = len(self.rejected_images if self.rejected else self.kept_images)
        drops = ", ".join(f"{k.replace('_', '-')}: -{v}" for k, v in self.dropped.items() if v)
        return (
            f"kept {self.n_kept} of {self.n_rows} rows; {len(self.kept_images)} of {self.n_images} images "
            f"have a kept face; output holds the {side} side ({out} images)"
            + (f" [dropped by {drops}]" if drops else "")
        )


def write_path_list(
    paths: Sequence[str], out: str | Path | IO[bytes], *, null: bool = False, overwrite: bool = False
) -> None:
    """Write one path per line (or NUL-terminated with ``null``) to a file, or to a binary stream.

    Each path is written as the file's real name (bytes, :func:`facequal.pipeline.sources.fs_path_of`)."""
    if not null:
        bad = [p for p in paths if "\n" in p or "\r" in p]
        if bad:
            raise UserError(
                f"{len(bad)} path(s) contain a newline (e.g. {bad[0]!r}); use -0 to separate with NUL bytes"
            )
    from facequal.pipeline.sources import fs_path_of

    sep = b"\0" if null else b"\n"
    # the real names' bytes (escaped non-UTF-8 names undone), so `xargs -0 ls` finds the files
    data = b"".join(os.fsencode(fs_path_of(p)) + sep for p in paths)
    if isinstance(out, (str, Path)):
        write_output(out, data, overwrite=overwrite)
    else:
        out.write(data)
        out.flush()


def filter_scores(
    scores: str | Path | pa.Table,
    *,
    min_quality: float | None = None,
    max_quality: float | None = None,
    top_k: int | None = None,
    keep_fraction: float | None = None,
    per_group: int | None = None,
    group: str | None = None,
    status: Sequence[str] | None = None,
    min_face: float | None = None,
    where: str | None = None,
    output: str | Path | None = None,
    paths_out: str | Path | IO[bytes] | None = None,
    null: bool = False,
    to: str | Path | None = None,
    mode: str = "copy",
    root: str | None = None,
    base: str | Path | None = None,
    rejected: bool = False,
    dry_run: bool = False,
    overwrite: bool = False,
) -> FilterResult:
    """Select faces of a score file and write the selection.

    ``output``: a Parquet file with the selected rows (all columns, input order).
    ``paths_out``: the distinct image paths, one per line or NUL-separated (``null``); a file
    name or a binary stream (the CLI passes stdout for ``-``).
    ``to``: a directory receiving copies / symlinks / hardlinks (``mode``) of the images, at
    their paths relative to ``root``; relative paths in the score file are taken against ``base``.
    ``rejected``: every output holds the rejected side instead (rows not kept; images none of
    whose faces was kept). ``dry_run``: compute everything, write nothing. ``where``: keep rows
    for which the expression holds (:mod:`facequal.curate.where`), checked before any output.
    """
    crit = Criteria(
        min_quality=min_quality,
        max_quality=max_quality,
        top_k=top_k,
        keep_fraction=keep_fraction,
        per_group=per_group,
        group=group,
        status=tuple(status) if status else None,
        min_face=min_face,
        where=where,
    )
    crit.validate()
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r} (one of: {', '.join(MODES)})")
    if not dry_run:  # fail before any work when an output file is in the way
        if output is not None:
            check_output(output, overwrite)
        if isinstance(paths_out, (str, Path)):
            check_output(paths_out, overwrite)
    table = scores if isinstance(scores, pa.Table) else read_table(scores)
    require_columns(table, ["path"], "the score file")
    sel = select(table, crit)
    paths = [p if p is not None else "" for p in table["path"].to_pylist()]
    kept_images = image_paths(paths, sel.mask)
    rejected_images = image_paths(paths, sel.mask, rejected=True)
    res = FilterResult(
        n_rows=table.num_rows,
        n_kept=sel.n_kept,
        n_images=len(set(paths)),
        kept_images=kept_images,
        rejected_images=rejected_images,
        dropped=sel.dropped,
        rejected=rejected,
        dry_run=dry_run,
    )
    rows_mask = ~sel.mask if rejected else sel.mask
    out_images = rejected_images if rejected else kept_images
    res.table = table.filter(pa.array(rows_mask))
    if output is not None:
        if not dry_run:
            write_parquet_output(res.table, output, overwrite=overwrite)
        res.written.append(str(output))
    if paths_out is not None:
        if not dry_run:
            write_path_list(out_images, paths_out, null=null, overwrite=overwrite)
        res.written.append(str(paths_out) if isinstance(paths_out, (str, Path)) else "-")
    if to is not None:
        res.materialized = materialize(
            out_images, to, mode=mode, root=root, base=base, overwrite=overwrite, dry_run=dry_run
        )
    return res
