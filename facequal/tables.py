"""Reading the tables facequal and other tools write: one Parquet file, a Parquet dataset
directory (part files), or CSV. Every verb that reads scores or embeddings goes through here."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from facequal.errors import UserError


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, a directory of Parquet part files, or a CSV file into one table.

    Part files of a directory are read in sorted name order, so the row order is stable.
    Raises :class:`UserError` with one clear line when the input is missing or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file or directory")
    try:
        if p.is_dir():
            parts = sorted(q for q in p.iterdir() if q.suffix == ".parquet" and not q.name.startswith("."))
            if not parts:
                raise UserError(f"{path}: directory holds no .parquet files")
            tables = [pq.read_table(q, columns=columns) for q in parts]
            return pa.concat_tables(tables, promote_options="default")
        if p.suffix.lower() in (".csv", ".tsv"):
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
            t = pcsv.read_csv(p, parse_options=opts)
            return t.select(columns) if columns else t
        return pq.read_table(p, columns=columns)
    except UserError:
        raise
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, KeyError) as e:
        raise UserError(f"{path}: cannot read as a table: {e}") from None


def require_columns(table: pa.Table, names: list[str], what: str) -> None:
    """Raise UserError naming the first missing column."""
    for n in names:
        if n not in table.column_names:
            raise UserError(f"{what} has no column {n!r} (columns: {', '.join(table.column_names)})")
