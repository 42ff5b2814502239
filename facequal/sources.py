"""Inputs -> an ordered list of image references: files, folders (walked) and Parquet manifests.

The order is deterministic (inputs in the order given; folders walked in sorted order), and
each reference keeps the path as the user gave it, which becomes the output's ``path``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facequal.errors import UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_EXTENSIONS = frozenset({".parquet", ".pq"})


@dataclass
class ImageRef:
    """One input image: ``path`` as it appears in the output, ``fs_path`` to open it with."""

    path: str
    fs_path: str
    carried: dict[str, Any] = field(default_factory=dict)
    # Faces already located (e.g. from a scores file): [(face_index, det_score, bbox, landmarks)].
    faces: list[tuple[int, float, list[float], list[list[float]]]] | None = None


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_folder(folder: str) -> Iterator[str]:
    """Image files under ``folder``, recursively, in sorted order, as paths joined to ``folder``.

    Hidden files and folders (names starting with '.') are skipped. Symbolic links to folders
    are followed once: a folder already visited (same device and inode) is not entered again,
    so a link loop cannot hang the walk.
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
            entries = sorted(os.scandir(d), key=lambda e: e.name)
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
            except OSError:
                # a dangling link with an image name is still an input: it becomes a "missing" row
                if is_image_name(e.name):
                    yield full

    yield from visit(folder)


def read_manifest(manifest: str, path_column: str = "path",
                  fields: dict[str, Any] | None = None) -> Iterator[ImageRef]:
    """Image references from a Parquet manifest; every other column is carried through.

    The Arrow fields of the carried columns are added to ``fields`` (name -> pa.Field) so that
    the output keeps their types.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(manifest)
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise UserError(f"manifest {manifest}: cannot read as Parquet: {e}") from None
    if path_column not in table.column_names:
        raise UserError(f"manifest {manifest} has no path column {path_column!r} "
                        f"(columns: {', '.join(table.column_names)}; choose one with --path-column)")
    import pyarrow as pa

    col = table.column(path_column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise UserError(f"manifest {manifest}: path column {path_column!r} holds {col.type}, not strings")
    base = os.path.dirname(manifest)
    others = [c for c in table.column_names if c != path_column]
    if fields is not None:
        for c in others:
            fields.setdefault(c, table.schema.field(c))
    carried = {c: table.column(c).to_pylist() for c in others}
    for i, value in enumerate(col.to_pylist()):
        if value is None or value == "":
            value = ""
        p = value if os.path.isabs(value) or not value else os.path.join(base, value)
        yield ImageRef(path=p, fs_path=p, carried={c: carried[c][i] for c in others})


@dataclass
class Sources:
    """The references of a run, in order, and the Arrow fields of their carried columns."""

    refs: list[ImageRef]
    carried_fields: dict[str, Any]


def collect(inputs: Sequence[str | os.PathLike[str]], *, path_column: str = "path",
            identity_from: str | None = None) -> Sources:
    """All image references from ``inputs`` in a deterministic order.

    ``identity_from="parent"`` adds an ``identity`` column from each image's parent folder name
    when the input does not already carry one.
    """
    import pyarrow as pa

    fields: dict[str, Any] = {}
    if identity_from not in (None, "parent"):
        raise UserError(f"--identity-from must be 'parent', not {identity_from!r}")
    refs: list[ImageRef] = []
    for raw in inputs:
        inp = os.fspath(raw)
        if os.path.isdir(inp):
            refs.extend(ImageRef(path=p, fs_path=p) for p in walk_folder(inp))
        elif os.path.splitext(inp)[1].lower() in MANIFEST_EXTENSIONS:
            if not os.path.isfile(inp):
                raise UserError(f"manifest {inp}: no such file")
            refs.extend(read_manifest(inp, path_column, fields))
        elif os.path.lexists(inp):
            refs.append(ImageRef(path=inp, fs_path=inp))
        else:
            raise UserError(f"input {inp}: no such file or directory")
    if identity_from == "parent":
        fields.setdefault("identity", pa.field("identity", pa.string()))
        for r in refs:
            r.carried.setdefault("identity", Path(r.path).parent.name)
    if fields:
        for r in refs:  # inputs of different kinds: every row gets every carried column
            for name in fields:
                r.carried.setdefault(name, None)
    return Sources(refs=refs, carried_fields=fields)


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
