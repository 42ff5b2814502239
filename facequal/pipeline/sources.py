"""Inputs -> an ordered list of image references: files, folders (walked) and Parquet manifests.

The order is deterministic (inputs in the order given; folders walked in sorted order), and
each reference keeps the path as the user gave it, which becomes the output's ``path``.
"""

from __future__ import annotations

import gc
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facequal.errors import InputNotFoundError, UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_EXTENSIONS = frozenset({".parquet", ".pq"})


class ImageRef:
    """One input image: ``path`` as it appears in the output, ``fs_path`` to open it with.

    ``carried`` holds the manifest columns of the image (a mapping; for manifest rows a light
    view into the manifest's Arrow columns). ``faces`` are faces already located (e.g. from a
    scores file): [(face_index, det_score, bbox, landmarks)]. Slotted: a run may hold a million.
    """

    __slots__ = ("path", "fs_path", "carried", "faces")

    def __init__(self, path: str, fs_path: str, carried: Mapping[str, Any] | None = None,
                 faces: list[tuple[int, float, list[float], list[list[float]]]] | None = None) -> None:
        self.path = path
        self.fs_path = fs_path
        self.carried: Mapping[str, Any] = {} if carried is None else carried
        self.faces = faces

    def __repr__(self) -> str:
        return (f"ImageRef(path={self.path!r}, fs_path={self.fs_path!r}, carried={dict(self.carried)!r}, "
                f"faces={self.faces!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return ((self.path, self.fs_path, dict(self.carried), self.faces)
                == (other.path, other.fs_path, dict(other.carried), other.faces))

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


# Output columns (and internal ones) a manifest column may not shadow: such manifest columns are
# not carried (and counted as ``ignored_columns``), or their values would leak into the output.
RESERVED_COLUMNS = frozenset({
    "path", "face_index", "n_faces", "status", "error", "quality", "quality_raw", "det_score", "bbox",
    "landmarks", "eye_distance", "yaw", "pitch", "roll", "sharpness", "brightness", "contrast", "inter_eye",
    "width", "height", "file_size", "mtime_ns", "crop_path", "embedding",
    "embedding_norm", "_ordinal", "_seq"})

# What Sources.stats counts (all start at 0).
STAT_NAMES = ("duplicates", "empty_paths", "outside_manifest", "escaped_names", "ignored_columns",
              "non_image_files")


# File names are bytes; Parquet strings are UTF-8. A byte that is not UTF-8 (Python's surrogate
# escape U+DC80..U+DCFF) is written as ``\xNN`` (NN in 80..ff, lower case), and a run of
# backslashes just before such a sequence, or before a text ``\xNN`` with NN in 80..ff, is
# doubled. A ``\xNN`` preceded by an odd number of backslashes is thus a byte, by an even
# number literal text: every file name has one ``path`` and :func:`fs_path_of` gives it back.
_RUN_BEFORE_ESCAPE = re.compile(r"(\\+)(?=x[89a-f][0-9a-f]|[\udc80-\udcff])")
_SURROGATE = re.compile(r"[\udc80-\udcff]")
_ESCAPE = re.compile(r"(\\+)x([89a-f][0-9a-f])")


def printable_path(path: str) -> str:
    """``path`` as valid UTF-8 text (what Parquet stores), reversibly (see :func:`fs_path_of`).

    Bytes of a file name that are not UTF-8 become ``\\xNN``; backslashes right before such an
    escape, or before a literal ``\\x`` and two hex digits 80-ff, are doubled. Every other path
    (nearly all of them) is returned unchanged."""
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    s = _RUN_BEFORE_ESCAPE.sub(lambda m: m.group(1) * 2, path)
    s = _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", s)
    # Other lone surrogates cannot come from a file name (only from a caller's odd string).
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def fs_path_of(path: str) -> str:
    """The file-system path (a ``str`` whose non-UTF-8 bytes are surrogate escapes, as
    ``os.fsdecode`` makes) of a ``path`` column value: the inverse of :func:`printable_path`.

    ``os.fsencode(fs_path_of(v))`` is the real name's bytes; text without a backslash is
    returned as is."""
    if "\\" not in path:
        return path

    def unescape(m: re.Match[str]) -> str:
        run = len(m.group(1))
        if run % 2 == 0:
            return "\\" * (run // 2) + "x" + m.group(2)
        return "\\" * (run // 2) + chr(0xDC00 + int(m.group(2), 16))

    s = _ESCAPE.sub(unescape, path)
    try:
        return os.fsdecode(os.fsencode(s))  # escaped bytes that form UTF-8 read as that text
    except UnicodeError:
        return s


def same_file_key(path: str) -> str:
    """``path`` with ``.`` components and repeated separators removed, for duplicate detection:
    ``imgs/x.jpg``, ``imgs/./x.jpg`` and ``imgs//x.jpg`` name the same file. Lexical (no link is
    resolved), and ``..`` is kept: ``a/../x.jpg`` is not ``x.jpg`` when ``a`` is a symbolic link.
    Returns ``path`` itself when there is nothing to remove."""
    sep = os.sep
    if (sep * 2 not in path and f"{sep}.{sep}" not in path and not path.startswith(f".{sep}")
            and not path.endswith(f"{sep}.")):
        return path
    comps = [c for c in path.split(sep) if c not in ("", ".")]
    if not comps:
        return path
    lead = sep if path.startswith(sep) else ""
    trail = sep if path.endswith(sep) else ""  # 'x.jpg/' fails to open: not the file x.jpg
    return lead + sep.join(comps) + trail


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_folder(folder: str, stats: dict[str, int] | None = None) -> Iterator[str]:
    """Image files under ``folder``, recursively, in sorted order, as paths joined to ``folder``.

    Hidden files and folders (names starting with '.') are skipped. Symbolic links to folders
    are followed once: a folder already visited (same device and inode) is not entered again,
    so a link loop cannot hang the walk. Folders that cannot be listed are skipped. Other files
    (not hidden, without an image extension) are skipped too and counted in
    ``stats["non_image_files"]`` when ``stats`` is given, for the run's summary.
    """
    seen: set[tuple[int, int]] = set()

    def visit(d: str) -> Iterator[str]:
        try:
            st = os.stat(d)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            full = os.path.join(d, e.name)
            try:
                if e.is_dir(follow_symlinks=True):
                    yield from visit(full)
                elif is_image_name(e.name):
                    yield full
                elif stats is not None:
                    stats["non_image_files"] = stats.get("non_image_files", 0) + 1
            except OSError:
                # a dangling link with an image name is still an input: it becomes a "missing" row
                if is_image_name(e.name):
                    yield full

    yield from visit(folder)


class _ManifestColumns:
    """The carried columns of one manifest, shared by all of its rows: Arrow arrays, values
    computed by :func:`collect` (``lists``), and names that read as None for every row."""

    __slots__ = ("arrays", "lists", "nulls", "names")

    def __init__(self, arrays: dict[str, Any]) -> None:
        self.arrays = arrays                      # name -> pa.Array
        self.lists: dict[str, list[Any]] = {}     # name -> one value per manifest row
        self.nulls: list[str] = []                # names of other inputs' columns
        self.names: list[str] = list(arrays)

    def add_nulls(self, name: str) -> None:
        if name not in self.arrays and name not in self.lists and name not in self.nulls:
            self.nulls.append(name)
            self.names.append(name)

    def add_list(self, name: str, values: list[Any]) -> None:
        if name in self.nulls:
            self.nulls.remove(name)
            self.names.remove(name)
        self.lists[name] = values
        if name not in self.names:
            self.names.append(name)


_MISSING = object()


class ManifestRow(Mapping[str, Any]):
    """The carried columns of one manifest row, read from the manifest's Arrow columns on access
    (a million rows do not hold a million dicts)."""

    __slots__ = ("_cols", "_i")

    def __init__(self, cols: _ManifestColumns, index: int) -> None:
        self._cols = cols
        self._i = index

    def get(self, key: str, default: Any = None) -> Any:
        c = self._cols
        a = c.arrays.get(key, _MISSING)
        if a is not _MISSING:
            return a[self._i].as_py()
        values = c.lists.get(key, _MISSING)
        if values is not _MISSING:
            return values[self._i]
        if key in c.nulls:
            return None
        return default

    def __getitem__(self, key: str) -> Any:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        return key in self._cols.names

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols.names)

    def __len__(self) -> int:
        return len(self._cols.names)

    def __repr__(self) -> str:
        return repr(dict(self))


def _manifest_path_column(table: Any, manifest: str, path_column: str) -> Any:
    import pyarrow as pa

    names = table.column_names
    if path_column not in names:
        raise UserError(f"manifest {manifest} has no path column {path_column!r} "
                        f"(columns: {', '.join(names)}; choose one with --path-column)")
    if names.count(path_column) > 1:
        raise UserError(f"manifest {manifest} has {names.count(path_column)} columns named {path_column!r}")
    col = table.column(path_column)
    t = col.type
    if pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        col = col.cast(t.value_type)
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)
              or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))):
        raise UserError(f"manifest {manifest}: path column {path_column!r} holds {t}, not strings")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.large_string())       # string views: the compute kernels want offsets
    return col.combine_chunks()


def _outside(paths: Any, is_abs: Any, base: str) -> int:
    """How many of ``paths`` (an Arrow string array, joined to ``base``) lie outside ``base``,
    lexically ('..' resolved, symbolic links not followed)."""
    import pyarrow.compute as pc

    root = printable_path(os.path.abspath(fs_path_of(base or os.curdir)))
    prefix = root if root.endswith(os.sep) else root + os.sep
    dots = pc.match_substring_regex(paths, r"(^|/)\.\.(/|$)")
    plain_abs_out = pc.and_(pc.and_(is_abs, pc.invert(dots)), pc.invert(pc.starts_with(paths, prefix)))
    n = pc.sum(plain_abs_out).as_py() or 0
    for p in paths.filter(dots).to_pylist():
        full = os.path.normpath(os.path.join(root, p))
        if full != root and not full.startswith(prefix):
            n += 1
    return n


def _manifest_paths(col: Any, base: str) -> tuple[list[str], list[int] | None, int, int, list[int]]:
    """The path column joined to the manifest's folder ``base`` (a :func:`printable_path`),
    vectorised: (paths, their row numbers or None when no row was skipped, null or empty paths
    skipped, paths outside base, positions in paths of those holding a backslash)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = pc.fill_null(pc.and_(pc.is_valid(col), pc.not_equal(col, "")), False)
    n_empty = len(col) - (pc.sum(valid).as_py() or 0)
    if n_empty:
        rows: list[int] | None = pc.indices_nonzero(valid).to_pylist()
        col = col.filter(valid)
    else:
        rows = None
    if os.sep == "/":
        is_abs = pc.starts_with(col, "/")
        if base:
            prefix = pa.scalar(base if base.endswith("/") else base + "/", col.type)
            joined = pc.if_else(is_abs, col, pc.binary_join_element_wise(prefix, col, pa.scalar("", col.type)))
        else:
            joined = col
    else:  # other path conventions: let os.path decide
        values = col.to_pylist()
        is_abs = pa.array([os.path.isabs(v) for v in values], pa.bool_())
        joined = pa.array([v if os.path.isabs(v) else os.path.join(base, v) for v in values], col.type)
    n_out = _outside(col, is_abs, base)
    # only these may hold escapes (see printable_path): the rest are file names as they are
    escaped = pc.indices_nonzero(pc.fill_null(pc.match_substring(joined, "\\"), False)).to_pylist()
    return joined.to_pylist(), rows, n_empty, n_out, escaped


def read_manifest(manifest: str, path_column: str = "path", fields: dict[str, Any] | None = None,
                  stats: dict[str, int] | None = None) -> Iterator[ImageRef]:
    """Image references from a Parquet manifest; every other column is carried through.

    Relative paths are resolved against the manifest's folder. Path values are read as facequal
    writes its ``path`` column (:func:`fs_path_of`), so a score file is a manifest of its images,
    non-UTF-8 names included. The Arrow fields of the carried columns are added to ``fields``
    (name -> pa.Field) so that the output keeps their types.
    Rows with a null or empty path are skipped; ``stats`` (when given) counts them
    (``empty_paths``), the paths that lie outside the manifest's folder (``outside_manifest``,
    still read), and the columns not carried because they would shadow an output column
    (``ignored_columns``, see :data:`RESERVED_COLUMNS`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats = {} if stats is None else stats
    try:
        table = pq.ParquetFile(manifest).read()
    except Exception as e:  # pyarrow raises several types for unreadable files
        why = " ".join(str(e).split())
        raise UserError(f"manifest {printable_path(manifest)}: cannot read as Parquet: {why}") from None
    col = _manifest_path_column(table, printable_path(manifest), path_column)
    base = os.path.dirname(manifest)
    carried_names: list[str] = []
    for c in table.column_names:
        if c == path_column:
            continue
        if c in RESERVED_COLUMNS or c in carried_names:
            stats["ignored_columns"] = stats.get("ignored_columns", 0) + 1
            continue
        carried_names.append(c)
    if fields is not None:
        for c in carried_names:
            f = table.schema.field(table.column_names.index(c))
            old = fields.get(c)
            if old is None:
                fields[c] = f
            elif not old.type.equals(f.type):
                try:
                    fields[c] = pa.unify_schemas([pa.schema([old]), pa.schema([f])],
                                                 promote_options="permissive").field(c)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    raise UserError(f"manifest {printable_path(manifest)}: column {c!r} holds {f.type}, but another "
                                    f"input's {c!r} holds {old.type}") from None
    paths, rows, n_empty, n_out, escaped = _manifest_paths(col, printable_path(base))
    del col
    if n_empty:
        stats["empty_paths"] = stats.get("empty_paths", 0) + n_empty
    if n_out:
        stats["outside_manifest"] = stats.get("outside_manifest", 0) + n_out
    cols = _ManifestColumns({c: table.column(table.column_names.index(c)).combine_chunks()
                             for c in carried_names})
    del table  # the path column's buffers go now; the carried columns stay, shared by the rows
    pa.default_memory_pool().release_unused()   # and mimalloc / jemalloc give them back
    index = range(len(paths)) if rows is None else rows
    if not escaped:
        for i, p in zip(index, paths, strict=True):
            yield ImageRef(p, p, ManifestRow(cols, i))
        return
    marked = set(escaped)
    for k, (i, p) in enumerate(zip(index, paths, strict=True)):
        if k in marked:
            fs = fs_path_of(p)
            yield ImageRef(printable_path(fs), fs, ManifestRow(cols, i))
        else:
            yield ImageRef(p, p, ManifestRow(cols, i))


@dataclass
class Sources:
    """The references of a run, in order, the Arrow fields of their carried columns, and counts
    of what :func:`collect` noticed on the way (see :data:`STAT_NAMES`)."""

    refs: list[ImageRef]
    carried_fields: dict[str, Any]
    stats: dict[str, int] = field(default_factory=dict)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a million new reference objects (none of them in a
    cycle) would otherwise trigger full collections over and over, doubling the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def collect(inputs: Sequence[str | os.PathLike[str]], *, path_column: str = "path",
            identity_from: str | None = None) -> Sources:
    """All image references from ``inputs`` in a deterministic order.

    ``identity_from="parent"`` adds an ``identity`` column from each image's parent folder name
    when the input does not already carry one.

    ``(path, face_index)`` is the key of every output row, so a file that occurs again (twice in
    a manifest, or in two inputs; ``imgs/./x.jpg`` and ``imgs//x.jpg`` are ``imgs/x.jpg``, see
    :func:`same_file_key`) is read once: the first occurrence wins, with its carried columns and
    its spelling of the path, and ``stats["duplicates"]`` counts the others. File names that are
    not valid UTF-8 are written with ``\\xNN`` escapes in ``path`` (``stats["escaped_names"]``;
    :func:`printable_path`, undone by :func:`fs_path_of`); ``fs_path`` keeps the real name.
    Manifest rows are counted as :func:`read_manifest` says.
    """
    with _gc_paused():
        return _collect(inputs, path_column, identity_from)


class _Collector:
    """The inputs found so far: image references in input order, each file once (``seen``), the
    manifests' carried columns and the counts of what was skipped or escaped (``stats``)."""

    def __init__(self, path_column: str) -> None:
        self.path_column = path_column
        self.fields: dict[str, Any] = {}
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.refs: list[ImageRef] = []
        self.seen: set[str] = set()
        self.manifests: list[tuple[_ManifestColumns, int, int]] = []     # columns, first ref, end

    def _first_time(self, fs_path: str) -> bool:
        key = same_file_key(fs_path)
        if key in self.seen:
            self.stats["duplicates"] += 1
            return False
        self.seen.add(key)
        return True

    def add_files(self, paths: Iterator[str] | list[str]) -> None:
        for p in paths:
            if not self._first_time(p):
                continue
            shown = printable_path(p)
            if shown != p:
                self.stats["escaped_names"] += 1
            self.refs.append(ImageRef(shown, p, {}))

    def add_manifest(self, path: str) -> None:
        if not os.path.isfile(path):
            raise InputNotFoundError(f"manifest {printable_path(path)}: no such file")
        first = len(self.refs)
        cols = None
        for r in read_manifest(path, self.path_column, self.fields, self.stats):
            cols = r.carried._cols  # type: ignore[attr-defined]
            if self._first_time(r.fs_path):
                self.refs.append(r)
        if cols is not None:
            self.manifests.append((cols, first, len(self.refs)))

    def add(self, inp: str) -> None:
        """One input: a folder (walked), a manifest (read) or an image file."""
        if os.path.isdir(inp):
            self.add_files(walk_folder(inp, self.stats))
        elif os.path.splitext(inp)[1].lower() in MANIFEST_EXTENSIONS:
            self.add_manifest(inp)
        elif os.path.lexists(inp):
            self.add_files([inp])
        else:
            raise InputNotFoundError(f"input {printable_path(inp)}: no such file or directory")

    def add_parent_identity(self) -> None:
        """``--identity-from parent``: the image's folder name as ``identity`` where no manifest gives one."""
        import pyarrow as pa

        old = self.fields.get("identity")
        if old is not None and not (pa.types.is_string(old.type) or pa.types.is_large_string(old.type)):
            raise UserError(f"--identity-from parent: the manifest's identity column holds {old.type}, "
                            "not strings")
        self.fields.setdefault("identity", pa.field("identity", pa.string()))
        for cols, a, b in self.manifests:
            if "identity" not in cols.arrays and b > a:
                size = max(r.carried._i for r in self.refs[a:b]) + 1  # type: ignore[attr-defined]
                values: list[Any] = [None] * size
                for r in self.refs[a:b]:
                    values[r.carried._i] = Path(r.path).parent.name  # type: ignore[attr-defined]
                cols.add_list("identity", values)
        for r in self.refs:
            if isinstance(r.carried, dict):
                r.carried.setdefault("identity", Path(r.path).parent.name)

    def fill_carried(self) -> None:
        """Inputs of different kinds: every row gets every carried column (null where it has none)."""
        for cols, _, _ in self.manifests:
            for name in self.fields:
                cols.add_nulls(name)
        for r in self.refs:
            if isinstance(r.carried, dict):
                for name in self.fields:
                    r.carried.setdefault(name, None)

    def sources(self) -> Sources:
        return Sources(refs=self.refs, carried_fields=self.fields,
                       stats={k: v for k, v in self.stats.items() if v})


def _collect(inputs: Sequence[str | os.PathLike[str]], path_column: str, identity_from: str | None) -> Sources:
    if identity_from not in (None, "parent"):
        raise UserError(f"--identity-from must be 'parent', not {identity_from!r}")
    found = _Collector(path_column)
    for raw in inputs:
        found.add(os.fspath(raw))
    if identity_from == "parent":
        found.add_parent_identity()
    if found.fields:
        found.fill_carried()
    return found.sources()


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N; None passes through."""
    if spec is None:
        return None
    try:
        i_s, n_s = spec.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise UserError(f"--shard must look like I/N (e.g. 0/4), not {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {spec}: need 0 <= I < N")
    return i, n


def in_shard(path: str, shard: tuple[int, int] | None) -> bool:
    """Stable hash partition: each path falls in exactly one of the N shards."""
    if shard is None:
        return True
    i, n = shard
    return zlib.crc32(path.encode("utf-8", "surrogateescape")) % n == i
