"""Select faces from a score file and materialise the selection (`facequal filter`).

Three layers, each testable alone:

* :func:`select` -- pure: a table and :class:`Criteria` in, a boolean keep-mask and the
  number of rows each stage dropped out;
* :func:`safe_relative_parts` / :func:`materialize` -- copy, symlink or hardlink files into a
  target directory without ever writing outside it;
* :func:`filter_scores` -- the API the CLI calls: read, select, write the outputs.

Selection stages run in this order, each on the rows the previous ones kept:
status -> face size -> has a finite quality (only when a quality criterion is given) ->
--min / --max -> --per-group -> --top-k -> --keep-fraction. Ties in quality are broken by row
order, so the result is deterministic.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal import _io, schema
from facequal.errors import OutputExistsError, UserError
from facequal.tables import read_table, require_columns, require_group_column

MODES: tuple[str, ...] = ("copy", "symlink", "hardlink")


# ---------------------------------------------------------------------------------------------
# Atomic outputs (shared by filter, report and pool)
# ---------------------------------------------------------------------------------------------
def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; refuse a missing parent directory."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected a file name")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{p}: already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{p}: directory {parent} does not exist")
    return p


def write_atomic(path: str | Path, data: bytes | str, overwrite: bool = False) -> Path:
    """Write ``data`` to a temp file next to ``path`` and rename it into place."""
    p = check_output(path, overwrite)
    _io.atomic_write_bytes(p, data)
    return p


def write_parquet_atomic(table: pa.Table, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``table`` as one Parquet file, atomically (temp file + os.replace)."""
    import pyarrow.parquet as pq

    p = check_output(path, overwrite)
    _io.atomic_write(p, lambda tmp: pq.write_table(table, tmp))
    return p


def _umask() -> int:
    return _io.umask()


def _replace_atomically(p: Path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp)`` on a temp file in ``p``'s directory, then rename it onto ``p``."""
    _io.atomic_write(p, lambda tmp: write(os.fspath(tmp)))


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Safe materialisation into a target directory
# ---------------------------------------------------------------------------------------------
_DRIVE = re.compile(r"^([A-Za-z]):")


def absolute(path: str, base: str | Path | None = None) -> str:
    """``path`` made absolute against ``base`` (default: the cwd), lexically (no symlink resolution)."""
    b = os.path.abspath(base) if base is not None else os.getcwd()
    return os.path.normpath(os.path.join(b, path))


def common_root(abs_paths: Iterable[str]) -> str:
    """The deepest directory containing every path (``/`` when they share nothing)."""
    dirs = {os.path.dirname(p) for p in abs_paths}
    if not dirs:
        return os.getcwd()
    return os.path.commonpath(sorted(dirs))


def safe_relative_parts(abs_path: str, root: str) -> tuple[str, ...]:
    """The components of ``abs_path`` relative to ``root``, neutralised so they stay inside a directory.

    ``..`` becomes ``__``, ``.`` and empty components vanish, and a leading drive letter ``C:``
    becomes ``C_``. Only the platform's separators (``os.sep``, ``os.altsep``) separate
    components: on POSIX a backslash is part of a file name. Raises ValueError when nothing is left.
    """
    rel = os.path.relpath(abs_path, root) if os.path.isabs(abs_path) else abs_path
    seps = re.escape(os.sep + (os.altsep or ""))
    parts: list[str] = []
    for comp in re.split(f"[{seps}]+", rel):
        if comp in ("", "."):
            continue
        if comp == "..":
            parts.append("__")
            continue
        parts.append(_DRIVE.sub(r"\1_", comp))
    if not parts:
        raise ValueError(f"{abs_path!r} has no file name relative to {root!r}")
    return tuple(parts)


# A destination that would lead outside the target directory (or is otherwise unusable).
UnsafeTarget = _io.UnsafePath


def _ensure_parent(target_real: str, parts: tuple[str, ...]) -> str:
    """Create the directories for ``parts`` under ``target_real``; return the real parent dir.

    A symlinked directory inside the target is followed only when it resolves inside the target
    (:func:`facequal._io.ensure_dirs_inside`, which saving crops uses too).
    """
    return _io.ensure_dirs_inside(target_real, parts[:-1])


@dataclass
class Materialized:
    """What :func:`materialize` did (or would do, in a dry run)."""

    mode: str
    target: str
    done: int = 0
    existing: int = 0  # destination already there (skipped, no --overwrite)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    # of ``existing``: destinations that are not what ``mode`` makes (a symlink where a copy was
    # asked, a file where a symlink was asked, a link to another file); --overwrite replaces them
    other_kind: int = 0


def plan_destinations(
    paths: Sequence[str], *, root: str | None = None, base: str | Path | None = None
) -> tuple[str, list[tuple[str, str, tuple[str, ...] | None]]]:
    """Map each score-file path to (path, absolute source, relative parts or None on error).

    The source is the real file name (:func:`facequal.sources.fs_path_of` undoes the ``\\xNN``
    escapes of non-UTF-8 names). ``root`` defaults to the common parent directory of the paths.
    """
    from facequal.sources import fs_path_of

    abs_paths = []
    for p in paths:
        try:
            abs_paths.append(absolute(fs_path_of(p), base))
        except ValueError:
            abs_paths.append("")
    root_abs = absolute(root, base) if root is not None else common_root(a for a in abs_paths if a)
    plan: list[tuple[str, str, tuple[str, ...] | None]] = []
    for p, a in zip(paths, abs_paths, strict=True):
        try:
            plan.append((p, a, safe_relative_parts(a, root_abs) if a else None))
        except ValueError:
            plan.append((p, a, None))
    return root_abs, plan


# What an existing destination is, for a given mode (see _classify).
_ABSENT, _SAME, _OTHER, _OTHER_KIND, _SOURCE = "absent", "same", "other", "other kind", "source"


def _classify(dest: str, src: str, mode: str) -> str:
    """What is at ``dest`` with respect to ``src`` and ``mode``.

    ``_SAME``: already what ``mode`` would make, never redone -- for copy / hardlink a regular
    file that is the source's inode (a hardlink, or the source itself), for symlink a link to
    the source. ``_SOURCE``: the source file itself (the target contains the sources), never
    replaced. ``_OTHER_KIND``: a symlink where a copy / hardlink was asked (the data would go
    with the source), or a file / another file's link where a symlink was asked. ``_OTHER``:
    some other regular file (replaced only with ``overwrite``).
    """
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return _ABSENT
    try:
        src_st = os.stat(src)
    except OSError:
        src_st = None
    is_link = os.path.islink(dest)
    if not is_link and src_st is not None and os.path.samestat(st, src_st):
        if mode != "symlink":
            return _SAME
        # the same inode, not a link: the source itself, or a hardlink of it
        same_path = os.path.realpath(dest) == os.path.realpath(src)
        return _SOURCE if same_path else _OTHER_KIND
    if mode == "symlink":
        if is_link and src_st is not None:
            try:
                if os.path.samestat(os.stat(dest), src_st):
                    return _SAME
            except OSError:
                pass  # a dangling link
        return _OTHER_KIND
    return _OTHER_KIND if is_link else _OTHER


def materialize(
    paths: Sequence[str],
    target: str | Path,
    *,
    mode: str = "copy",
    root: str | None = None,
    base: str | Path | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
) -> Materialized:
    """Copy, symlink or hardlink each file of ``paths`` into ``target``, preserving relative paths.

    The relative path is taken against ``root`` (default: the common parent of ``paths``) and
    neutralised by :func:`safe_relative_parts`; nothing is ever written outside ``target``.
    A destination already holding what ``mode`` makes (the same inode for copy / hardlink, a
    link to the source for symlink) is skipped; other existing destinations are skipped unless
    ``overwrite`` (a symlink is never taken for a copy: ``--mode copy --overwrite`` over an
    earlier ``--mode symlink`` replaces the links with real files). A file that fails is
    recorded in ``failed`` and the others go on. Symlinks point at the absolute source path.
    """
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r} (one of: {', '.join(MODES)})")
    target_p = Path(target)
    if target_p.exists() and not target_p.is_dir():
        raise UserError(f"{target}: exists and is not a directory")
    res = Materialized(mode=mode, target=str(target))
    _, plan = plan_destinations(paths, root=root, base=base)
    seen: dict[tuple[str, ...], str] = {}
    if not dry_run:
        try:
            target_p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(_io.os_error_message(e, f"{target}: cannot create directory")) from None
    target_real = os.path.realpath(target_p)
    for path, src, parts in plan:
        if parts is None:
            res.failed.append((path, "no usable file name"))
            continue
        if parts in seen:
            res.failed.append((path, f"same destination as {seen[parts]!r}"))
            continue
        seen[parts] = path
        try:
            if not os.path.isfile(src):
                res.failed.append(
                    (
                        path,
                        "source does not exist"
                        if not os.path.lexists(src)
                        else "source is not a regular file",
                    )
                )
                continue
            if dry_run:
                parent = os.path.join(target_real, *parts[:-1])
            else:
                parent = _ensure_parent(target_real, parts)
            dest = os.path.join(parent, parts[-1])
            kind = _classify(dest, src, mode)
            if kind in (_SAME, _SOURCE) or (kind != _ABSENT and not overwrite):
                res.existing += 1
                res.other_kind += kind == _OTHER_KIND
                continue
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise UnsafeTarget(f"{dest} is a directory")
            if not dry_run:
                _place(src, parent, dest, mode)
            res.done += 1
        except UnsafeTarget as e:
            res.failed.append((path, str(e)))
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            if mode == "hardlink" and getattr(e, "errno", None) == 18:
                reason = "cannot hardlink across file systems (use --mode copy or symlink)"
            res.failed.append((path, reason))
    return res


def _place(src: str, parent: str, dest: str, mode: str) -> None:
    """Create ``dest`` from ``src`` via a temp name in ``parent`` and an atomic rename.

    The temp entry is created exclusively (a copy goes into a file made with ``O_EXCL``; a link
    under a fresh random name, which ``symlink`` / ``link`` never follow), and os.replace swaps
    the directory entry itself, so an existing symlink at ``dest`` is replaced, never written
    through.
    """
    name = os.path.basename(dest)
    if mode == "copy":
        tmp = os.fspath(_io.make_temp_file(parent, name))
    else:
        tmp = os.path.join(parent, _io.temp_name(name))
    try:
        if mode == "copy":
            shutil.copy2(src, tmp)
        elif mode == "symlink":
            os.symlink(src, tmp)
        else:
            os.link(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------
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

    Each path is written as the file's real name (bytes, :func:`facequal.sources.fs_path_of`)."""
    if not null:
        bad = [p for p in paths if "\n" in p or "\r" in p]
        if bad:
            raise UserError(
                f"{len(bad)} path(s) contain a newline (e.g. {bad[0]!r}); use -0 to separate with NUL bytes"
            )
    from facequal.sources import fs_path_of

    sep = b"\0" if null else b"\n"
    # the real names' bytes (escaped non-UTF-8 names undone), so `xargs -0 ls` finds the files
    data = b"".join(os.fsencode(fs_path_of(p)) + sep for p in paths)
    if isinstance(out, (str, Path)):
        write_atomic(out, data, overwrite=overwrite)
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
    whose faces was kept). ``dry_run``: compute everything, write nothing.
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
    if output is not None:
        if not dry_run:
            write_parquet_atomic(table.filter(pa.array(rows_mask)), output, overwrite=overwrite)
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


def stdout_binary() -> IO[bytes]:
    """The process's stdout as a binary stream (for path lists)."""
    return sys.stdout.buffer
