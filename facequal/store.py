"""Writing results: part files committed as work finishes, resume, and the streamed final output.

A run writes into a work directory beside the output (``.<name>.facequal-work/``). Each finished
chunk becomes ``part-NNNNNN.parquet`` by an atomic rename, so a run killed at any moment keeps
every chunk it finished. At the end the parts are merged in input order and written row group
by row group (memory does not grow with the run) into a temporary file that is renamed onto the
output, or into a Parquet dataset directory when the output ends with a slash, and the work
directory is removed.

Dataset directories and shards: ``-o out/`` writes ``out/part-00000.parquet``, ... A run with
``--shard I/N`` writes only its own files, ``out/shard-0000I-of-0000N.part-00000.parquet``, ...,
and keeps its work directory apart (``.out.shard-0000I-of-0000N.facequal-work``), so the N jobs
of a Slurm array can share one output directory, each finishing and resuming on its own.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facequal.errors import OutputExistsError, UserError

ORDINAL = "_ordinal"      # input position; only inside part files
RUN_FILE = "run.json"
ROWS_PER_DATASET_PART = 100_000
ROW_GROUP_ROWS = 8_192    # rows per Parquet row group of the final output (and per resumed part):
                          # the writer buffers one row group, so this bounds the merge's memory
KEY_COLUMNS = ["path", "file_size", "mtime_ns"]
_FACE_BITS = 21           # merge key: ordinal << _FACE_BITS | (face_index + 1)


def is_dataset_output(output: str) -> bool:
    """An output path ending with a slash is written as a Parquet dataset directory."""
    return output.endswith(("/", os.sep))


def shard_tag(shard: tuple[int, int] | None) -> str:
    """``shard-0000I-of-0000N`` for shard I of N; '' without a shard."""
    if shard is None:
        return ""
    return f"shard-{shard[0]:05d}-of-{shard[1]:05d}"


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (a part file is read several times in a merge: ParquetFile is cheaper
    than pq.read_table's dataset discovery)."""
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def _with_metadata(schema: pa.Schema, metadata: dict[str, str] | None) -> pa.Schema:
    if not metadata:
        return schema
    return schema.with_metadata({**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}})


def atomic_write_table(table: pa.Table, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same folder and a rename."""
    if metadata:
        table = table.replace_schema_metadata(_with_metadata(table.schema, metadata).metadata)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class RunSummary:
    """Counts over the rows of a finished output, gathered while it is written (no table kept)."""

    rows: int = 0
    images: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    quality_hist: np.ndarray | None = None      # 10,000 bins over [0, 1]
    _last_ordinal: int = -2

    _BINS = 10_000

    def add(self, table: pa.Table, ordinals: np.ndarray) -> None:
        """Count one block of output rows (``ordinals``: their input positions, in order)."""
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        # Rows come in input order, one input's rows together: count where the input changes.
        changes = int(np.count_nonzero(ordinals[1:] != ordinals[:-1])) + 1
        self.images += changes - (1 if int(ordinals[0]) == self._last_ordinal else 0)
        self._last_ordinal = int(ordinals[-1])
        vc = pc.value_counts(table.column("status"))
        for item in vc.to_pylist():
            self.status_counts[item["values"]] = self.status_counts.get(item["values"], 0) + item["counts"]
        if "quality" in table.column_names:
            q = table.column("quality").drop_null().to_numpy(zero_copy_only=False)
            if q.size:
                h, _ = np.histogram(np.clip(q, 0.0, 1.0), bins=self._BINS, range=(0.0, 1.0))
                self.quality_hist = h if self.quality_hist is None else self.quality_hist + h

    @property
    def median_quality(self) -> float | None:
        """Median of ``quality`` to within 1e-4 (the centre of the median's histogram bin)."""
        if self.quality_hist is None or not self.quality_hist.any():
            return None
        c = np.cumsum(self.quality_hist)
        i = int(np.searchsorted(c, c[-1] / 2.0))
        return (i + 0.5) / self._BINS


@dataclass
class _Block:
    """Rows of one part that survive the merge, sorted, with their merge keys."""

    keys: np.ndarray
    table: pa.Table


@dataclass
class RunStore:
    """The output of one run and its work directory."""

    output: str
    schema: pa.Schema                       # output columns (without the ordinal)
    fingerprint: dict[str, Any]             # options that must match for --resume
    metadata: dict[str, str]                # written into the final file's schema metadata
    shard: tuple[int, int] | None = None    # this run's shard, for dataset outputs

    def __post_init__(self) -> None:
        self.dataset = is_dataset_output(self.output)
        out = Path(self.output.rstrip("/" + os.sep) or ".")
        self.out_path = out
        tag = shard_tag(self.shard) if self.dataset else ""
        self.tag = tag
        self.work = out.parent / (f".{out.name}.{tag}.facequal-work" if tag else f".{out.name}.facequal-work")
        self.file_prefix = f"{tag}.part-" if tag else "part-"
        self._next_part = 0
        self.summary = RunSummary()

    # -- the dataset directory -------------------------------------------------------------------
    def own_files(self) -> list[Path]:
        """This run's finished files in a dataset directory (its shard's, or the unsharded parts)."""
        if not self.out_path.is_dir():
            return []
        return sorted(p for p in self.out_path.glob(f"{self.file_prefix}*.parquet") if p.is_file())

    def _options_without_shard(self, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k != "shard"}

    def conflicting_files(self) -> list[Path]:
        """Files in the dataset directory that cannot sit beside this run's output.

        An unsharded run owns the whole directory: every other Parquet file conflicts. A run
        with shard I/N shares it with the other shards of N made with the same options; files of
        another N, unsharded parts and shards made with other options conflict.
        """
        if not self.dataset or not self.out_path.is_dir():
            return []
        own = set(self.own_files())
        others = sorted(p for p in self.out_path.iterdir()
                        if p.suffix == ".parquet" and not p.name.startswith(".") and p not in own)
        if self.shard is None:
            return others
        n = self.shard[1]
        mine = json.loads(json.dumps(self._options_without_shard(self.fingerprint), sort_keys=True))
        bad = []
        for p in others:
            name = p.name
            if not (name.startswith("shard-") and name[6:].split(".", 1)[0].endswith(f"-of-{n:05d}")):
                bad.append(p)
                continue
            try:
                meta = pq.read_schema(p).metadata or {}
                theirs = json.loads(meta.get(b"facequal.options", b"{}"))
            except Exception:  # an unreadable sibling: a conflict, not a crash
                bad.append(p)
                continue
            if self._options_without_shard(theirs) != mine:
                bad.append(p)
        return bad

    def _output_exists(self) -> bool:
        if self.dataset:
            return self.out_path.is_file() or bool(self.own_files())
        return self.out_path.exists()

    # -- starting ------------------------------------------------------------------------------
    def prepare(self, *, overwrite: bool, resume: bool) -> pa.Table | None:
        """Check the output can be written; set up the work dir. Returns the key columns
        (path, file_size, mtime_ns) of the rows already done (from committed parts, or from a
        finished output) when resuming, else None."""
        if overwrite and resume:
            raise UserError("--overwrite and --resume exclude each other")
        parent = self.out_path.parent
        if not parent.is_dir():
            raise UserError(f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise UserError(f"output folder {parent} is not writable")
        exists = self._output_exists()
        if exists and not (overwrite or resume):
            raise OutputExistsError(f"{self.output} exists; pass --overwrite to replace it or "
                                    "--resume to add what is missing")
        if not overwrite:
            bad = self.conflicting_files()
            if bad:
                what = f"shard {self.shard[0]}/{self.shard[1]}" if self.shard else "an unsharded run"
                raise OutputExistsError(
                    f"{self.output} holds {len(bad)} file(s) that do not belong with {what} "
                    f"(e.g. {bad[0].name}: another shard count, other options or an unsharded run); "
                    "pass --overwrite to replace them")
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

    def _finished_files(self) -> list[Path]:
        if self.dataset:
            return self.own_files()
        return [self.out_path]

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
            return self._keys_of(parts)
        if output_exists and not (self.dataset and self.out_path.is_file()):
            # A finished output: its rows count as done; they are copied into parts (row group
            # by row group) and merged with the new ones at the end.
            files = self._finished_files()
            mine = json.loads(json.dumps(self.fingerprint, sort_keys=True))
            for f in files:
                try:
                    meta = pq.read_schema(f).metadata or {}
                except Exception as e:  # pyarrow raises several types for unreadable files
                    raise UserError(f"--resume: cannot read {f}: {e}") from None
                old_meta = meta.get(b"facequal.options")
                if old_meta is not None and json.loads(old_meta) != mine:
                    raise UserError(f"--resume: {self.output} was made with other options; "
                                    "rerun with the same options or --overwrite")
            self.work.mkdir(exist_ok=True)
            parts = []
            for f in files:
                pf = pq.ParquetFile(f)
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=self.schema.names):
                    t = pa.Table.from_batches([batch])
                    t = t.append_column(ORDINAL, pa.array(np.full(t.num_rows, -1, np.int64)))
                    parts.append(self.commit(t))
            return self._keys_of(parts)
        return None

    def _keys_of(self, parts: list[Path]) -> pa.Table | None:
        """The resume keys of the rows in ``parts`` (three small columns, not the rows)."""
        if not parts:
            return None
        return pa.concat_tables([_read(p, KEY_COLUMNS) for p in parts], promote_options="default")

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

    # -- merging -------------------------------------------------------------------------------
    @staticmethod
    def _ordinals(part: Path, order: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(input position of each row, or -1; face_index) for one part file.

        With ``order`` (path -> position) positions come from the paths, so parts of an earlier
        run with other inputs map correctly; without it, from the parts' own ordinal column.
        """
        if order is None:
            t = _read(part, [ORDINAL, "face_index"])
            ords = t.column(ORDINAL).to_numpy().astype(np.int64)
        else:
            t = _read(part, ["path", "face_index"])
            paths = t.column("path").to_pylist()
            ords = np.fromiter((order.get(p, -1) for p in paths), dtype=np.int64, count=len(paths))
        return ords, t.column("face_index").to_numpy().astype(np.int64)

    def _kept(self, seq: int, part: Path, order: dict[str, int] | None, newest: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """(row indices that survive, their merge keys) of part ``seq``: rows of inputs of this
        run whose newest rows are in this part."""
        ords, face = self._ordinals(part, order)
        ok = ords >= 0
        ok[ok] = newest[ords[ok]] == seq
        idx = np.nonzero(ok)[0]
        keys = (ords[idx] << _FACE_BITS) | (face[idx] + 1)
        return idx, keys

    def _block(self, seq: int, part: Path, order: dict[str, int] | None, newest: np.ndarray) -> _Block:
        idx, keys = self._kept(seq, part, order, newest)
        if keys.size > 1 and np.any(keys[1:] < keys[:-1]):
            o = np.argsort(keys, kind="stable")
            idx, keys = idx[o], keys[o]
        t = _read(part)
        if idx.size != t.num_rows or (idx.size and np.any(idx != np.arange(idx.size))):
            t = t.take(pa.array(idx))
        return _Block(keys=keys, table=t.select(self.schema.names).cast(self.schema))

    def iter_merged(self, order: dict[str, int] | None) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """All committed rows in input order, as (block of rows, their input positions).

        For a path seen in several parts the newest part wins; ``order`` maps each input path of
        this run to its position, and rows of paths that are not inputs of this run any more are
        dropped. ``order=None`` says that every part was committed by this run (no resume), whose
        ordinal column then gives the positions: no path lookups, no memory per input.

        Parts committed in input order (every uninterrupted run) are concatenated one part at a
        time; after a resume, the parts fall into a few runs of increasing position, which are
        merged block by block. Either way only a few parts are in memory at once.
        """
        parts = self.part_files()
        newest = np.full(0, -1, dtype=np.int64)
        for seq, p in enumerate(parts):      # pass 1: the newest part of every input
            ords, _ = self._ordinals(p, order)
            ords = ords[ords >= 0]
            if ords.size and ords.max() >= newest.size:
                grown = np.full(max(2 * newest.size, int(ords.max()) + 1), -1, dtype=np.int64)
                grown[:newest.size] = newest
                newest = grown
            newest[ords] = seq
        # pass 2: group the parts into runs whose keys increase from part to part
        runs: list[list[int]] = []
        run_last: list[int] = []
        for seq, p in enumerate(parts):
            _, keys = self._kept(seq, p, order, newest)
            if keys.size == 0:
                continue
            lo, hi = int(keys.min()), int(keys.max())
            for r, last in enumerate(run_last):
                if lo > last:
                    runs[r].append(seq)
                    run_last[r] = hi
                    break
            else:
                runs.append([seq])
                run_last.append(hi)

        def blocks(run: list[int]) -> Iterator[_Block]:
            for seq in run:
                yield self._block(seq, parts[seq], order, newest)

        iters = [blocks(r) for r in runs]
        heads: list[_Block | None] = [next(it, None) for it in iters]
        pos = [0] * len(iters)
        heap = [(int(b.keys[0]), r) for r, b in enumerate(heads) if b is not None]
        heapq.heapify(heap)
        while heap:
            _, r = heapq.heappop(heap)
            b = heads[r]
            assert b is not None
            start = pos[r]
            if heap:
                limit_key, limit_run = heap[0]
                end = int(np.searchsorted(b.keys, limit_key, side="right" if r < limit_run else "left"))
                end = max(end, start + 1)
            else:
                end = b.keys.size
            yield b.table.slice(start, end - start), b.keys[start:end] >> _FACE_BITS
            if end < b.keys.size:
                pos[r] = end
            else:
                heads[r] = b = next(iters[r], None)
                pos[r] = 0
                if b is None:
                    continue
            heapq.heappush(heap, (int(b.keys[pos[r]]), r))

    def merged(self, order: dict[str, int] | None) -> pa.Table:
        """All committed rows in input order, as one table (see :meth:`iter_merged`)."""
        tables = [t for t, _ in self.iter_merged(order)]
        if not tables:
            return self.schema.empty_table()
        return pa.concat_tables(tables)

    # -- finishing -----------------------------------------------------------------------------
    def finish(self, order: dict[str, int] | None, *, collect: bool = True) -> pa.Table | None:
        """Stream the merged parts into the final output, then remove the work directory.

        Rows are written in row groups as they are merged; with ``collect`` the whole table is
        also returned (its memory then grows with the output; without it nothing is kept and
        :attr:`summary` holds the counts).
        """
        meta = dict(self.metadata)
        meta["facequal.options"] = json.dumps(self.fingerprint, sort_keys=True)
        schema = _with_metadata(self.schema, meta)
        self.summary = RunSummary()
        kept: list[pa.Table] = []
        if self.dataset:
            self._finish_dataset(order, schema, kept if collect else None)
        else:
            self._finish_file(order, schema, kept if collect else None)
        shutil.rmtree(self.work, ignore_errors=True)
        if not collect:
            return None
        if not kept:
            return self.schema.empty_table()
        return pa.concat_tables(kept).combine_chunks()

    def _row_groups(self, order: dict[str, int] | None, kept: list[pa.Table] | None) -> Iterator[pa.Table]:
        """The merged rows regrouped into tables of ROW_GROUP_ROWS rows (the last one shorter)."""
        buf: list[pa.Table] = []
        n = 0
        for t, ords in self.iter_merged(order):
            self.summary.add(t, ords)
            if kept is not None:
                kept.append(t)
            buf.append(t)
            n += t.num_rows
            while n >= ROW_GROUP_ROWS:
                whole = pa.concat_tables(buf)
                yield whole.slice(0, ROW_GROUP_ROWS)
                rest = whole.slice(ROW_GROUP_ROWS)
                buf, n = ([rest] if rest.num_rows else []), rest.num_rows
        if n:
            yield pa.concat_tables(buf)

    def _finish_file(self, order: dict[str, int] | None, schema: pa.Schema, kept: list[pa.Table] | None) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.out_path.parent, prefix=f".{self.out_path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                for g in self._row_groups(order, kept):
                    w.write_table(g, row_group_size=ROW_GROUP_ROWS)
            if self.out_path.is_dir():
                shutil.rmtree(self.out_path)
            os.replace(tmp, self.out_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_parts(self, folder: Path, order: dict[str, int] | None, schema: pa.Schema,
                     kept: list[pa.Table] | None, hidden: bool) -> list[tuple[Path, str]]:
        """Write the merged rows as part files of at most ROWS_PER_DATASET_PART rows into
        ``folder``; returns (written file, final name) pairs. At least one file is written."""
        written: list[tuple[Path, str]] = []
        w: pq.ParquetWriter | None = None
        rows_in_file = 0

        def open_next() -> pq.ParquetWriter:
            name = f"{self.file_prefix}{len(written):05d}.parquet"
            path = folder / (f".{name}.tmp" if hidden else name)
            written.append((path, name))
            return pq.ParquetWriter(path, schema, compression="zstd")

        try:
            for g in self._row_groups(order, kept):
                while g.num_rows:
                    if w is None or rows_in_file >= ROWS_PER_DATASET_PART:
                        if w is not None:
                            w.close()
                        w, rows_in_file = open_next(), 0
                    take = min(g.num_rows, ROWS_PER_DATASET_PART - rows_in_file)
                    w.write_table(g.slice(0, take), row_group_size=ROW_GROUP_ROWS)
                    rows_in_file += take
                    g = g.slice(take)
            if w is None:
                w = open_next()
                w.write_table(schema.empty_table())
            w.close()
            w = None
        finally:
            if w is not None:
                w.close()
        return written

    def _finish_dataset(self, order: dict[str, int] | None, schema: pa.Schema, kept: list[pa.Table] | None) -> None:
        if self.shard is None:
            # An unsharded run owns the directory: build a new one and swap it in.
            tmp = Path(tempfile.mkdtemp(dir=self.out_path.parent, prefix=f".{self.out_path.name}."))
            try:
                self._write_parts(tmp, order, schema, kept, hidden=False)
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
            return
        # A shard shares the directory with the other shards: replace only its own files (and,
        # having been told --overwrite, files that conflict with it; prepare refused them otherwise).
        if self.out_path.is_file():
            self.out_path.unlink()
        self.out_path.mkdir(exist_ok=True)
        written: list[tuple[Path, str]] = []
        try:
            written = self._write_parts(self.out_path, order, schema, kept, hidden=True)
            new_names = {name for _, name in written}
            for p in self.own_files() + self.conflicting_files():
                if p.name not in new_names:
                    p.unlink(missing_ok=True)
            for path, name in written:
                os.replace(path, self.out_path / name)
        except BaseException:
            for path, _ in written:
                path.unlink(missing_ok=True)
            raise


def done_keys(table: pa.Table | None) -> set[tuple[str, int | None, int | None]]:
    """(path, file_size, mtime_ns) of every input already processed in ``table``."""
    if table is None or table.num_rows == 0:
        return set()
    cols: Iterable = zip(table.column("path").to_pylist(), table.column("file_size").to_pylist(),
                         table.column("mtime_ns").to_pylist(), strict=True)
    return set(cols)
