"""The columns of the files facequal writes, the closed set of row statuses, and reading any
score / embedding table with its column types checked against them.

``(path, face_index)`` is the key of a face in every file. Rows that describe an image
without a usable face (no face found, unreadable, ...) have ``face_index = -1``.

Reading (:func:`read_table`): one Parquet file, a Parquet dataset directory (part files), or CSV.
Every verb that reads scores or embeddings goes through here. The columns facequal knows
(``path``, ``status``, ``quality``, ``bbox``, ``embedding``, ...) are checked for their type when a
table is read, so a crafted or foreign file (an integer ``status``, a text ``quality`` in a CSV, a
float ``error``) stops the run with one line naming the file, the column, the type expected and
the type found, instead of a traceback somewhere later.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from facequal.errors import InputNotFoundError, UserError

# Row statuses. Only "ok" rows carry a face (and a quality or an embedding).
OK = "ok"
NO_FACE = "no_face"          # decoded, but the detector found no face (above --min-face / --det-threshold)
UNREADABLE = "unreadable"    # not an image, truncated, corrupt, unsupported mode
TOO_LARGE = "too_large"      # more pixels than --max-pixels (decompression-bomb guard)
MISSING = "missing"          # the file does not exist or cannot be opened (permissions, vanished)
ERROR = "error"              # anything else that went wrong for this one input
STATUSES = (OK, NO_FACE, UNREADABLE, TOO_LARGE, MISSING, ERROR)

NO_FACE_INDEX = -1

POINT = pa.list_(pa.float32(), 2)

# Columns every score file has, in this order; carried manifest columns follow them.
SCORE_FIELDS: list[pa.Field] = [
    pa.field("path", pa.string(), nullable=False),
    pa.field("face_index", pa.int32(), nullable=False),
    pa.field("n_faces", pa.int32()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("quality", pa.float64()),   # float64: a float32 would tie faces near 1
    pa.field("quality_raw", pa.float32()),
    pa.field("det_score", pa.float32()),
    pa.field("bbox", pa.list_(pa.float32(), 4)),          # x1, y1, x2, y2 in image pixels
    pa.field("landmarks", pa.list_(POINT, 5)),            # le, re, nose, lm, rm as (x, y)
    pa.field("eye_distance", pa.float32()),               # pixels between the eye landmarks
    # Diagnostics (facequal.pipeline.diagnostics): head pose in degrees, focus, light.
    pa.field("yaw", pa.float32()),
    pa.field("pitch", pa.float32()),
    pa.field("roll", pa.float32()),
    pa.field("sharpness", pa.float32()),
    pa.field("brightness", pa.float32()),
    pa.field("contrast", pa.float32()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("file_size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("crop_path", pa.string()),
]

# Columns of an embeddings file (`facequal embed`).
EMBED_FIELDS_HEAD: list[pa.Field] = [f for f in SCORE_FIELDS if f.name not in ("quality", "quality_raw")]


def embed_fields(dim: int) -> list[pa.Field]:
    """Embedding-file columns for a recogniser of ``dim`` dimensions."""
    return EMBED_FIELDS_HEAD + [
        pa.field("embedding", pa.list_(pa.float32(), dim)),   # L2-normalised
        pa.field("embedding_norm", pa.float32()),              # the raw vector's norm
    ]


SCORE_COLUMNS = [f.name for f in SCORE_FIELDS]


# ---------------------------------------------------------------------------------------------
# Reading tables: known columns checked for their type
# ---------------------------------------------------------------------------------------------
# The known columns and their types as facequal writes them; a file may hold any type of the
# same kind (int64 for int32, float32 for float64, a list for a fixed-size list, dictionary-
# encoded text for text; a column of nulls only is fine anywhere).
KNOWN_TYPES: dict[str, pa.DataType] = {
    **{f.name: f.type for f in SCORE_FIELDS},
    "embedding": pa.list_(pa.float32()),
    "embedding_norm": pa.float32(),
}
# Read as text from CSV whatever they look like (a path "2024" is not a number).
_CSV_TEXT = [n for n, t in KNOWN_TYPES.items() if pa.types.is_string(t)]
# Integer columns nothing computes with: a pandas round trip turns them into floats (NaN for a
# null), which is accepted. face_index, a key, must stay whole numbers.
_FLOAT_OK = frozenset({"n_faces", "width", "height", "file_size", "mtime_ns"})


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def type_fits(expected: pa.DataType, found: pa.DataType) -> bool:
    """Whether a column of type ``found`` can stand for one of type ``expected`` (same kind)."""
    if pa.types.is_null(found):
        return True
    if pa.types.is_dictionary(found):
        found = found.value_type
    if _is_text(expected):
        return _is_text(found)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(found)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(found) or pa.types.is_integer(found)
    if _is_list(expected):
        return _is_list(found) and type_fits(expected.value_type, found.value_type)
    return found == expected


def describe_type(t: pa.DataType) -> str:
    """The kind of a known column's type in words (for messages)."""
    if _is_text(t):
        return "text (string)"
    if pa.types.is_integer(t):
        return "whole numbers (integer)"
    if pa.types.is_floating(t):
        return "numbers (float)"
    if _is_list(t):
        inner = describe_type(t.value_type)
        n = f"{t.list_size} " if pa.types.is_fixed_size_list(t) else ""
        return f"lists of {n}{inner}"
    return str(t)


def _first_non_number(col: pa.ChunkedArray) -> str | None:
    for v in col.to_pylist():
        if v is None:
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            return repr(v)
    return None


def check_column_types(table: pa.Table, what: str, names: list[str] | None = None) -> None:
    """Raise UserError when a known column (of ``names``, default all) has the wrong kind of type.

    The message names ``what`` (the file), the column, the kind expected and the type found,
    with an example value when text stands where numbers belong (a CSV quality of "n/a")."""
    for name in names if names is not None else table.column_names:
        expected = KNOWN_TYPES.get(name)
        if expected is None or name not in table.column_names:
            continue
        found = table.schema.field(name).type
        if type_fits(expected, found) or (name in _FLOAT_OK and pa.types.is_floating(found)):
            continue
        example = ""
        if _is_text(found) and (pa.types.is_integer(expected) or pa.types.is_floating(expected)):
            bad = _first_non_number(table[name])
            example = f" (e.g. {bad})" if bad else ""
        raise UserError(f"{what}: column {name!r} must hold {describe_type(expected)}, "
                        f"found {found}{example}")


def _concat_parts(path: str | Path, parts: list[Path], tables: list[pa.Table]) -> pa.Table:
    """One table from the part files of a dataset folder; parts whose columns disagree (a text
    ``quality`` in one, numbers in the other) are refused, naming the column and both parts.
    Types of one kind are unified (float32 and float64 parts, written by different versions)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        first = {f.name: (parts[0].name, f.type) for f in tables[0].schema}
        for part, t in zip(parts[1:], tables[1:], strict=True):
            for f in t.schema:
                seen = first.setdefault(f.name, (part.name, f.type))
                if seen[1] != f.type and not (pa.types.is_null(seen[1]) or pa.types.is_null(f.type)):
                    raise UserError(f"{path}: its part files disagree on column {f.name!r}: {seen[0]} "
                                    f"holds {seen[1]}, {part.name} holds {f.type}") from None
        raise UserError(f"{path}: its part files have incompatible columns") from None


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, a directory of Parquet part files, or a CSV file into one table.

    Part files of a directory are read in sorted name order, so the row order is stable.
    Raises :class:`UserError` with one clear line when the input is missing or unreadable, when
    part files disagree on a column's type, or when a known column has the wrong type
    (:func:`check_column_types`).
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{path}: no such file or directory")
    try:
        if p.is_dir():
            parts = sorted(q for q in p.iterdir() if q.suffix == ".parquet" and not q.name.startswith("."))
            if not parts:
                raise UserError(f"{path}: directory holds no .parquet files")
            t = _concat_parts(path, parts, [pq.read_table(q, columns=columns) for q in parts])
        elif p.suffix.lower() in (".csv", ".tsv"):
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
            conv = pcsv.ConvertOptions(column_types={n: pa.string() for n in _CSV_TEXT})
            t = pcsv.read_csv(p, parse_options=opts, convert_options=conv)
            t = t.select(columns) if columns else t
        else:
            t = pq.read_table(p, columns=columns)
    except UserError:
        raise
    except (pa.ArrowException, OSError, KeyError, ValueError) as e:
        reason = " ".join(str(e).split())  # pyarrow's messages may span lines
        raise UserError(f"{path}: cannot read as a table: {reason}") from None
    check_column_types(t, str(path))
    return t


def require_columns(table: pa.Table, names: list[str], what: str) -> None:
    """Raise UserError naming the first missing column, or a known column of the wrong type."""
    for n in names:
        if n not in table.column_names:
            raise UserError(f"{what} has no column {n!r} (columns: {', '.join(table.column_names)})")
    check_column_types(table, what, names)


def require_group_column(table: pa.Table, name: str, what: str, flag: str = "--group") -> None:
    """Raise UserError unless ``name`` is a column whose values can define groups: text,
    numbers, booleans, dates (not lists, structs or maps, which cannot be compared as keys)."""
    require_columns(table, [name], what)
    t = table.schema.field(name).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_nested(t):
        raise UserError(f"{flag} {name}: {what} column {name!r} holds {t}; groups need text or numbers")
