"""Writing results: part files committed as work finishes, resume, and the atomic final output.

A run writes into a work directory beside the output (``.<name>.facequal-work/``). Each finished
chunk becomes ``part-NNNNNN.parquet`` by an atomic rename, so a run killed at any moment keeps
every chunk it finished. At the end the parts are merged in input order into a temporary file
that is renamed onto the output (or into a Parquet dataset directory when the output ends
with a slash), and the work directory is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from facequal.errors import OutputExistsError, UserError

ORDINAL = "_ordinal"      # input position; only inside part files
RUN_FILE = "run.json"
ROWS_PER_DATASET_PART = 100_000


def is_dataset_output(output: str) -> bool:
    """An output path ending with a slash is written as a Parquet dataset directory."""
    return output.endswith(("/", os.sep))


def atomic_write_table(table: pa.Table, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same folder and a rename."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, row_group_size=65536, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class RunStore:
    """The output of one run and its work directory."""

    output: str
    schema: pa.Schema                       # output columns (without the ordinal)
    fingerprint: dict[str, Any]             # options that must match for --resume
    metadata: dict[str, str]                # written into the final file's schema metadata

    def __post_init__(self) -> None:
        self.dataset = is_dataset_output(self.output)
        out = Path(self.output.rstrip("/" + os.sep) or ".")
        self.out_path = out
        self.work = out.parent / f".{out.name}.facequal-work"
        self._next_part = 0

    # -- starting ------------------------------------------------------------------------------
    def prepare(self, *, overwrite: bool, resume: bool) -> pa.Table | None:
        """Check the output can be written; set up the work dir. Returns the rows already done
        (from committed parts, or from a finished output) when resuming, else None."""
        if overwrite and resume:
            raise UserError("--overwrite and --resume exclude each other")
        parent = self.out_path.parent
        if not parent.is_dir():
            raise UserError(f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise UserError(f"output folder {parent} is not writable")
        exists = self.out_path.exists()
        if exists and not (overwrite or resume):
            raise OutputExistsError(f"{self.output} exists; pass --overwrite to replace it or "
                                    "--resume to add what is missing")
        if self.work.exists() and not resume:
            if overwrite:
                shutil.rmtree(self.work)
            else:
                raise OutputExistsError(f"an unfinished run left {self.work}; pass --resume to continue "
                                        "it or --overwrite to start again")
        done: pa.Table | None = None
        if resume:
            done = self._load_for_resume(exists)
        self.work.mkdir(exist_ok=True)
        self._write_run_file()
        return done

    def _write_run_file(self) -> None:
        tmp = self.work / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.fingerprint, sort_keys=True, indent=1), encoding="utf-8")
        os.replace(tmp, self.work / RUN_FILE)

    def _load_for_resume(self, output_exists: bool) -> pa.Table | None:
        if self.work.exists():
            run_file = self.work / RUN_FILE
            if run_file.exists():
                before = json.loads(run_file.read_text(encoding="utf-8"))
                if before != json.loads(json.dumps(self.fingerprint, sort_keys=True)):
                    diff = sorted(k for k in set(before) | set(self.fingerprint)
                                  if before.get(k) != self.fingerprint.get(k))
                    raise UserError(f"--resume: the unfinished run in {self.work} used other options "
                                    f"({', '.join(diff)}); rerun with the same options or --overwrite")
            parts = self.part_files()
            self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
            if parts:
                return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
            return None
        if output_exists:
            # A finished output: its rows count as done; new inputs are added to it.
            from facequal.tables import read_table

            old = read_table(self.out_path)
            old_meta = (old.schema.metadata or {}).get(b"facequal.options")
            if old_meta is not None:
                before = json.loads(old_meta)
                mine = json.loads(json.dumps(self.fingerprint, sort_keys=True))
                if before != mine:
                    raise UserError(f"--resume: {self.output} was made with other options; "
                                    "rerun with the same options or --overwrite")
            self.work.mkdir(exist_ok=True)
            old = old.append_column(ORDINAL, pa.array([-1] * old.num_rows, pa.int64()))
            self.commit(old.select(self.schema.names + [ORDINAL]))
            return old
        return None

    # -- during the run ------------------------------------------------------------------------
    def part_files(self) -> list[Path]:
        """Committed part files, in commit order."""
        return sorted(self.work.glob("part-*.parquet"))

    def commit(self, table: pa.Table) -> Path:
        """Atomically add one finished chunk (with its ordinal column) as the next part file."""
        path = self.work / f"part-{self._next_part:06d}.parquet"
        self._next_part += 1
        atomic_write_table(table, path)
        return path

    # -- finishing -----------------------------------------------------------------------------
    def merged(self, order: dict[str, int]) -> pa.Table:
        """All committed rows in input order; for a path seen in several parts the newest wins.

        ``order`` maps each input path of this run to its position; rows of paths that are not
        inputs of this run any more are dropped.
        """
        import numpy as np

        parts = self.part_files()
        tables = []
        for seq, p in enumerate(parts):
            t = pq.read_table(p)
            tables.append(t.append_column("_seq", pa.array(np.full(t.num_rows, seq, np.int64))))
        if not tables:
            return self.schema.empty_table()
        t = pa.concat_tables(tables, promote_options="default")
        paths = t.column("path").to_pylist()
        ordinal = np.array([order.get(p, -1) for p in paths], dtype=np.int64)
        seq = t.column("_seq").to_numpy()
        # newest part per path
        newest: dict[str, int] = {}
        for p, s in zip(paths, seq, strict=True):
            if newest.get(p, -1) < s:
                newest[p] = int(s)
        keep = np.array([ordinal[i] >= 0 and newest[paths[i]] == seq[i] for i in range(len(paths))], bool)
        t = t.filter(pa.array(keep))
        ordinal = ordinal[keep]
        face = t.column("face_index").to_numpy()
        idx = np.lexsort((face, ordinal))
        t = t.take(pa.array(idx))
        return t.select(self.schema.names).cast(self.schema)

    def finish(self, order: dict[str, int]) -> pa.Table:
        """Merge the parts into the final output atomically and remove the work directory."""
        table = self.merged(order)
        meta = dict(self.metadata)
        meta["facequal.options"] = json.dumps(self.fingerprint, sort_keys=True)
        if self.dataset:
            self._finish_dataset(table, meta)
        else:
            if self.out_path.is_dir():
                shutil.rmtree(self.out_path)
            atomic_write_table(table, self.out_path, meta)
        shutil.rmtree(self.work, ignore_errors=True)
        return table

    def _finish_dataset(self, table: pa.Table, meta: dict[str, str]) -> None:
        tmp = Path(tempfile.mkdtemp(dir=self.out_path.parent, prefix=f".{self.out_path.name}."))
        try:
            n = max(1, -(-table.num_rows // ROWS_PER_DATASET_PART))
            for i in range(n):
                chunk = table.slice(i * ROWS_PER_DATASET_PART, ROWS_PER_DATASET_PART)
                atomic_write_table(chunk, tmp / f"part-{i:05d}.parquet", meta)
            if self.out_path.exists():
                old = self.out_path.with_name(f".{self.out_path.name}.old")
                os.replace(self.out_path, old)
                os.replace(tmp, self.out_path)
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
            else:
                os.replace(tmp, self.out_path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def done_keys(table: pa.Table | None) -> set[tuple[str, int | None, int | None]]:
    """(path, file_size, mtime_ns) of every input already processed in ``table``."""
    if table is None or table.num_rows == 0:
        return set()
    cols: Iterable = zip(table.column("path").to_pylist(), table.column("file_size").to_pylist(),
                         table.column("mtime_ns").to_pylist(), strict=True)
    return set(cols)
