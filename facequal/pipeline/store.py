"""Writing results: part files committed as work finishes, resume, the run lock, and the streamed
final output.

A run writes into a work folder beside the output (``.<name>.facequal-work/``; a name too long
for the file system is shortened and keyed by a hash). Each finished chunk becomes
``part-NNNNNN.parquet`` by an atomic rename, so a run killed at any moment keeps every chunk it
finished. At the end the parts are merged in output order and written row group by row group
(memory does not grow with the run) into a temporary file that is renamed onto the output, or
into a Parquet dataset folder when the output ends with a slash, and the work folder is removed.
Every file and folder gets the permissions of a plain ``open()`` / ``mkdir`` under the umask.

What facequal may replace (see README, "What facequal will never do"): a file output only when
it is a Parquet file facequal wrote (its schema metadata has ``facequal.version`` and
``facequal.options``); never a folder, a link or an input. A dataset folder is used only when it
is new, empty, or carries facequal's marker ``.facequal-dataset.json``, which lists the part files
facequal wrote there. ``--overwrite`` and a re-finish replace or delete only listed files (a
shard only its own, and, with ``--overwrite``, listed files that conflict with it); anything else
in the folder stays, and the folder itself is never removed. A folder an older facequal made
(nothing but its part files) is adopted. Every check is made before any work, and again once the
lock is held.

The lock: one run per output at a time. The work folder holds ``lock``, locked with ``flock`` for
the whole run (the merge included) and naming the run (pid, host, start time) in a small JSON; a
second run on the same output fails at once with that name. A killed run's lock goes with its
process. On a file system without locks runs are not serialised.

Resume (``--resume``) never drops a committed row. Every part carries each row's position in the
output (``_ordinal``): the rows of the earlier output (or of the unfinished run's parts) keep
their order and come first; inputs new to this run follow in input order; an input whose size or
mtime changed is processed again and its new rows replace the old ones in place. Rows of earlier
inputs that are not inputs of this run are kept. A resume with other row-changing options than
the earlier run is refused, naming them.

Dataset folders and shards: ``-o out/`` writes ``out/part-00000.parquet``, ... A run with
``--shard I/N`` writes only its own files, ``out/shard-0000I-of-0000N.part-00000.parquet``, ...,
and keeps its work folder (and lock) apart (``.out.shard-0000I-of-0000N.facequal-work``), so the
N jobs of a Slurm array can share one output folder, each finishing and resuming on its own.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import json
import os
import re
import socket
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facequal import __version__
from facequal._io import atomic_write, atomic_write_bytes, is_inside, make_temp_dir, make_temp_file, os_error_message
from facequal.errors import OutputExistsError, UserError

try:
    import fcntl
except ImportError:  # not a POSIX system: runs are not locked
    fcntl = None  # type: ignore[assignment]

ORDINAL = "_ordinal"      # the row's position in the output; only inside part files
RUN_FILE = "run.json"
LOCK_FILE = "lock"
MARKER = ".facequal-dataset.json"
WORK_FORMAT = 2           # run.json layout (1: the bare options, before positions and locks)
ROWS_PER_DATASET_PART = 100_000
ROW_GROUP_ROWS = 8_192    # rows per Parquet row group of the final output (and per resumed part):
                          # the writer buffers one row group, so this bounds the merge's memory
KEY_COLUMNS = ["path", "file_size", "mtime_ns"]
FILE_SUFFIXES = (".parquet", ".pq")
_FACE_BITS = 21           # merge key: ordinal << _FACE_BITS | (face_index + 1)
_NAME_MAX = 255           # bytes in one file name on common file systems
_SYSTEM_DIRS = ("/proc", "/sys")
_PART_NAME = re.compile(r"(shard-\d{5,}-of-\d{5,}\.)?part-\d{5,}\.parquet")
_WORK_PART = re.compile(r"part-\d{6,}\.parquet")
# run options -> the command-line option that sets them (for "other options" messages)
_OPTION_FLAGS = {"task": "the task (score / embed)", "model": "--model", "model_sha256": "--model",
                 "contract": "--contract", "shard": "--shard", "identity_from": "--identity-from",
                 "path_column": "--path-column", "save_crops": "--save-crops",
                 "from_scores": "--from-scores", "flip_tta": "--flip-tta"}


class OutputBusyError(UserError):
    """Another run holds the output's lock."""


def is_dataset_output(output: str) -> bool:
    """An output path ending with a slash is written as a Parquet dataset directory."""
    return output.endswith(("/", os.sep))


def shard_tag(shard: tuple[int, int] | None) -> str:
    """``shard-0000I-of-0000N`` for shard I of N; '' without a shard."""
    if shard is None:
        return ""
    return f"shard-{shard[0]:05d}-of-{shard[1]:05d}"


def work_folder_name(name: str, tag: str = "") -> str:
    """``.<name>[.<tag>].facequal-work``. A name that would not fit in one file name (255 bytes)
    is cut and keyed by a hash of the whole, so every output keeps a work folder of its own."""
    middle = f"{name}.{tag}" if tag else name
    full = f".{middle}.facequal-work"
    if len(os.fsencode(full)) <= _NAME_MAX:
        return full
    digest = hashlib.sha256(os.fsencode(middle)).hexdigest()[:16]
    return f".{os.fsdecode(os.fsencode(name)[:120])}~{digest}.facequal-work"


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
    """Write ``table`` to ``path`` through an exclusively created temp file and a rename
    (:func:`facequal._io.atomic_write`: a failure leaves the old file, and no temp file)."""
    if metadata:
        table = table.replace_schema_metadata(_with_metadata(table.schema, metadata).metadata)

    def write(tmp: Path) -> None:
        # A part lives until the merge: encoding it (zstd, dictionaries) took half of its write
        # time in the main process for a few percent of its size.
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="none", use_dictionary=False)

    atomic_write(path, write)


def _normalised(options: dict[str, Any]) -> Any:
    """Options as they read back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(options, sort_keys=True))


def _option_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The command-line options whose values differ, with both values when they are short."""
    diffs: list[tuple[str, Any, Any]] = []
    for k in sorted(set(before) | set(now)):
        a, b = before.get(k), now.get(k)
        if a == b:
            continue
        if k == "faces" and isinstance(a, dict) and isinstance(b, dict):
            diffs += [(f"--{s.replace('_', '-')}", a.get(s), b.get(s))
                      for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        else:
            diffs.append((_OPTION_FLAGS.get(k, f"--{k.replace('_', '-')}"), a, b))
    out: list[str] = []
    seen: set[str] = set()
    for flag, a, b in diffs:
        if flag in seen:
            continue
        seen.add(flag)
        scalar = all(v is None or isinstance(v, str | int | float | bool) for v in (a, b))
        if scalar and len(repr(a)) + len(repr(b)) < 80:
            out.append(f"{flag}: {'unset' if a is None else repr(a)} then, {'unset' if b is None else repr(b)} now")
        else:
            out.append(flag)
    return out


def _written_by_facequal(path: Path) -> bool:
    """Whether ``path`` is a regular Parquet file with facequal's metadata."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException, ValueError):
        return False
    return b"facequal.version" in meta and b"facequal.options" in meta


# -- locks and the dataset marker ------------------------------------------------------------------

def _flock(fd: int, *, blocking: bool = False) -> bool | None:
    """Lock ``fd`` exclusively: True when locked, False when another process holds the lock, None
    when the file system has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock on a file that was removed or
    replaced meanwhile locks nothing)."""
    a = os.fstat(fd)
    try:
        b = os.lstat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_fd(fd: int, limit: int = 1 << 20) -> bytes:
    return os.pread(fd, limit, 0)


def _marker_doc(files: Iterable[str]) -> bytes:
    doc = {"facequal_dataset": 1, "facequal_version": __version__, "files": sorted(set(files))}
    return json.dumps(doc, indent=1).encode("utf-8")


def _parse_marker(data: bytes, path: Path) -> list[str]:
    """The part files a marker lists (only part-file names: a listed name is never a path)."""
    if not data.strip():
        return []  # created this instant by another run, which has not written it yet
    try:
        files = json.loads(data)["files"]
        ok = isinstance(files, list) and all(isinstance(f, str) for f in files)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{path} is not a valid facequal marker; move it away (or the folder) first")
    return sorted(f for f in files if _PART_NAME.fullmatch(f))


def _read_marker(path: Path) -> list[str]:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path} is not a regular file, so not facequal's marker; move it away first")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(os_error_message(e, path)) from None
    try:
        return _parse_marker(_read_fd(fd), path)
    finally:
        os.close(fd)


def _create_marker(folder: Path, files: list[str]) -> None:
    """Create the marker of a dataset folder, exclusively (another shard may make it meanwhile)."""
    try:
        fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(_marker_doc(files))


def _update_marker(folder: Path, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
    """Add and remove names in a dataset folder's marker, under a lock on the marker itself (the
    shards sharing the folder update it one at a time; it is replaced atomically, so a waiting
    shard finds a new file and locks that one)."""
    path = folder / MARKER
    for _ in range(1000):
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _flock(fd, blocking=True)
            if not _same_file(fd, path):
                continue
            files = (set(_parse_marker(_read_fd(fd), path)) | set(add)) - set(remove)
            atomic_write_bytes(path, _marker_doc(files))
            return
        finally:
            os.close(fd)
    raise UserError(f"{path}: could not update facequal's marker")


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
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        # Rows come in input order, one input's rows together: count where the input changes.
        changes = int(np.count_nonzero(ordinals[1:] != ordinals[:-1])) + 1
        self.images += changes - (1 if int(ordinals[0]) == self._last_ordinal else 0)
        self._last_ordinal = int(ordinals[-1])
        # counted in Python: value_counts would import pyarrow.compute, 50 ms of a one-image run
        for status, n in Counter(table.column("status").to_pylist()).items():
            self.status_counts[status] = self.status_counts.get(status, 0) + n
        if "quality" in table.column_names:
            q = np.asarray(table.column("quality").to_numpy(zero_copy_only=False), dtype=np.float64)
            q = q[~np.isnan(q)]  # nulls (faceless rows) come out as NaN
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
class _Block:
    """Rows of one part that survive the merge, sorted, with their merge keys."""

    keys: np.ndarray
    table: pa.Table


@dataclass
class RunStore:
    """The output of one run, its checks, its lock and its work folder.

    Call :meth:`prepare` (checks, lock, resume state), then :meth:`commit` per finished chunk,
    then :meth:`finish`; :meth:`close` releases the lock of a run that ends early.
    """

    output: str
    schema: pa.Schema                       # output columns (without the ordinal)
    fingerprint: dict[str, Any]             # options that must match for --resume
    metadata: dict[str, str]                # written into the final file's schema metadata
    shard: tuple[int, int] | None = None    # this run's shard, for dataset outputs

    def __post_init__(self) -> None:
        self.dataset = is_dataset_output(self.output)
        stripped = self.output.rstrip("/" + os.sep)
        out = Path(stripped or self.output[:1] or ".")  # '/' stays the root (refused), '' is '.'
        if out.name in ("", ".", ".."):  # '-o ./': the folder's own name (its work folder goes beside it)
            out = Path(os.path.abspath(out))
        self.out_path = out
        tag = shard_tag(self.shard) if self.dataset else ""
        self.tag = tag
        self.work = out.parent / work_folder_name(out.name, tag)
        self.file_prefix = f"{tag}.part-" if tag else "part-"
        self._next_part = 0
        self._lock_fd: int | None = None
        self._overwrite = False
        # after a resume: the earlier rows' paths and positions, and the next free position
        self._earlier_paths: pa.Array | None = None
        self._earlier_pos = np.zeros(0, dtype=np.int64)
        self._next_pos = 0
        self.summary = RunSummary()

    # -- the dataset folder --------------------------------------------------------------------
    def _listed(self) -> list[str]:
        """Names of the part files facequal wrote into the dataset folder: those its marker lists,
        or, in a folder an older facequal made (nothing but its part files), those files. [] for a
        folder that is not there or is empty. Raises UserError for a folder facequal must not use:
        not a folder, not empty and not facequal's, or holding Parquet files it did not write."""
        folder = self.out_path
        try:
            if not stat.S_ISDIR(os.stat(folder).st_mode):  # follows a symlinked folder the user named
                raise UserError(f"{self.output} exists and is not a folder; a dataset output must be a folder")
            entries = os.listdir(folder)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UserError(os_error_message(e, self.output)) from None
        if MARKER in entries:
            listed = _read_marker(folder / MARKER)
            foreign = sorted(e for e in entries if e.endswith(".parquet") and not e.startswith(".")
                             and e not in set(listed))
            if foreign:
                raise UserError(f"{self.output} holds {foreign[0]}, which facequal did not write and which would be "
                                "read as part of the dataset; move it away first")
            return listed
        legacy = sorted(e for e in entries if _PART_NAME.fullmatch(e) and _written_by_facequal(folder / e))
        if len(legacy) < len(entries):
            other = sorted(set(entries) - set(legacy))
            more = f" and {len(other) - 1} more" if len(other) > 1 else ""
            raise UserError(f"{self.output} is not empty and facequal did not make it (it holds {other[0]!r}{more}); "
                            "facequal writes a dataset only into a new or empty folder, or one it made: "
                            "choose another output")
        return legacy

    def _is_own(self, name: str) -> bool:
        return name.startswith(self.file_prefix)  # 'part-' never matches a shard's 'shard-...' name

    def own_files(self) -> list[Path]:
        """This run's finished files in the dataset folder (its shard's, or the unsharded parts):
        only files facequal lists as its own."""
        if not self.dataset:
            return []
        return sorted(self.out_path / n for n in self._listed()
                      if self._is_own(n) and (self.out_path / n).is_file())

    def _options_without_shard(self, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k != "shard"}

    def conflicting_files(self) -> list[Path]:
        """facequal's files in the dataset folder that cannot sit beside this run's output.

        An unsharded run owns the dataset: every other part file of facequal's conflicts. A run
        with shard I/N shares it with the other shards of N made with the same options; files of
        another N, unsharded parts and shards made with other options conflict. Files facequal
        did not write are never counted here (they are never touched).
        """
        if not self.dataset:
            return []
        own = {p.name for p in self.own_files()}
        others = sorted(self.out_path / n for n in self._listed()
                        if n not in own and (self.out_path / n).is_file())
        if self.shard is None:
            return others
        n = self.shard[1]
        mine = _normalised(self._options_without_shard(self.fingerprint))
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

    # -- checks --------------------------------------------------------------------------------
    def check(self, *, overwrite: bool = False, resume: bool = False, inputs: Sequence[str] = ()) -> None:
        """Every check of the output that needs no write, in one go (``prepare`` runs it first):
        the name, the folder, the inputs (``inputs``: the run's input paths, manifests and scores
        files; an output that is one of them or inside one is refused), and what is there now.
        Raises :class:`UserError` with one line."""
        if overwrite and resume:
            raise UserError("--overwrite and --resume exclude each other")
        self._check_place(inputs)
        self._check_contents(overwrite=overwrite, resume=resume)

    def _check_place(self, inputs: Sequence[str]) -> None:
        out = self.out_path
        if not out.name:
            raise UserError(f"-o {self.output}: the root folder cannot be an output")
        for inp in inputs:
            if inp and is_inside(out, inp):
                same = os.path.realpath(out) == os.path.realpath(inp)
                where = "one of the inputs" if same else f"inside the input {inp}"
                raise UserError(f"-o {self.output} is {where}; facequal never writes into its inputs: "
                                "choose an output outside them")
        if not self.dataset and out.suffix.lower() not in FILE_SUFFIXES:
            raise UserError(f"-o {self.output}: facequal writes Parquet; name the file "
                            f"{out.stem or out.name}.parquet, or end the output with '/' for a folder of part files")
        for d in _SYSTEM_DIRS:
            if is_inside(out, d):
                raise UserError(f"-o {self.output}: {d} is not a place for output files")
        parent = out.parent
        if not parent.is_dir():
            raise UserError(f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"output folder {parent} is not writable")

    def _check_contents(self, *, overwrite: bool, resume: bool) -> None:
        if self.dataset:
            own = self.own_files()         # reads the marker: refuses a folder facequal must not use
            if own and not (overwrite or resume):
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
            if resume and own:
                self._check_finished(own, resume=True)
            return
        out = self.out_path
        if not os.path.lexists(out):
            return
        if out.is_symlink():
            raise UserError(f"{self.output} is a symlink; facequal replaces only files it wrote, never a link: "
                            "give the real path")
        if out.is_dir():
            raise UserError(f"{self.output} is a folder, and a file output replaces a file only; for a dataset "
                            "folder end the output with '/'")
        if not (overwrite or resume):
            raise OutputExistsError(f"{self.output} exists; pass --overwrite to replace it or "
                                    "--resume to add what is missing")
        self._check_finished([out], resume=resume)

    def _check_finished(self, files: list[Path], *, resume: bool) -> None:
        """Refuse to replace or resume files facequal did not write; for a resume, also files made
        with other options or other columns."""
        verb = "resume into" if resume else "replace"
        for f in files:
            try:
                if not stat.S_ISREG(os.stat(f).st_mode):
                    raise ValueError("not a regular file")
                sch = pq.read_schema(f)
            except (OSError, pa.ArrowException, ValueError):
                raise UserError(f"{f} is not a Parquet file facequal wrote; refusing to {verb} it "
                                "(move it away or choose another output)") from None
            meta = sch.metadata or {}
            if b"facequal.version" not in meta or b"facequal.options" not in meta:
                raise UserError(f"{f} was not written by facequal (it has no facequal metadata); refusing to "
                                f"{verb} it (move it away or choose another output)")
            if not resume:
                continue
            missing = [c for c in [*KEY_COLUMNS, "face_index", "status"] if c not in sch.names]
            if missing:
                raise UserError(f"--resume: {f} lacks facequal's column(s) {', '.join(missing)}; "
                                "pass --overwrite to start again")
            try:
                before = json.loads(meta[b"facequal.options"])
            except ValueError:
                raise UserError(f"--resume: {f} has unreadable facequal metadata; "
                                "pass --overwrite to start again") from None
            self._check_options(before, f"{f} was made with")
            self._check_columns(sch, str(f))

    def _check_options(self, before: Any, what: str) -> None:
        now = _normalised(self.fingerprint)
        if before == now:
            return
        diff = _option_differences(before, now) if isinstance(before, dict) else []
        raise UserError(f"--resume: {what} other options ({'; '.join(diff) or 'unknown'}); rerun with the same "
                        "options, or pass --overwrite to start again")

    def _check_columns(self, sch: pa.Schema, what: str) -> None:
        names = [n for n in sch.names if n != ORDINAL]
        missing = [n for n in self.schema.names if n not in names]
        extra = [n for n in names if n not in self.schema.names]
        typed = [n for n in self.schema.names if n in names and sch.field(n).type != self.schema.field(n).type]
        if missing or extra or typed:
            said = ([f"without {', '.join(missing)}"] if missing else []) + \
                   ([f"with {', '.join(extra)}"] if extra else []) + \
                   ([f"{', '.join(typed)} of another type"] if typed else [])
            raise UserError(f"--resume: {what} has other columns than this run writes ({'; '.join(said)}): "
                            "written by another facequal version, or with other manifest columns; pass --overwrite "
                            "to start again")

    # -- starting ------------------------------------------------------------------------------
    def prepare(self, *, overwrite: bool, resume: bool, inputs: Sequence[str] = ()) -> pa.Table | None:
        """Check the output (:meth:`check`), take the run lock and set up the work folder.

        Returns the key columns (path, file_size, mtime_ns) of the rows already done (from
        committed parts, or from a finished output) when resuming, else None. A failed check
        creates nothing; a work folder this call made is removed again when a later step fails.
        """
        self.check(overwrite=overwrite, resume=resume, inputs=inputs)
        try:
            created = self._lock()
        except OSError as e:
            raise UserError(os_error_message(e, self.work)) from None
        try:
            # Again, now that no other run can change the output (one may have finished meanwhile).
            self._check_contents(overwrite=overwrite, resume=resume)
            if not created and not (resume or overwrite):
                raise OutputExistsError(f"an unfinished run left {self.work}; pass --resume to continue "
                                        "it or --overwrite to start again")
            self._overwrite = overwrite
            if overwrite and not created:
                self._clear_work()
            if resume:
                return self._load_for_resume(work_existed=not created)
            self._write_run_file()
            return None
        except OSError as e:
            self._abandon(created)
            raise UserError(os_error_message(e, self.work)) from None
        except BaseException:
            self._abandon(created)
            raise

    def _lock(self) -> bool:
        """Take this output's run lock, in its work folder; True when this call made the folder
        (born locked: it appears under its name only with the lock held). Raises
        :class:`OutputBusyError` naming the run that holds it."""
        for _ in range(100):
            if not os.path.lexists(self.work):
                if self._make_locked_work():
                    return True
                continue  # another run made it meanwhile: try its lock
            if self.work.is_symlink() or not self.work.is_dir():
                raise UserError(f"{self.work} is in the way: it is not a facequal work folder; move it away")
            lock = self.work / LOCK_FILE
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:
                continue  # the run that held it finished and removed its work folder
            got = _flock(fd)
            if got is False:
                who = self._holder(fd)
                os.close(fd)
                raise OutputBusyError(f"{self.output} is being written by another facequal run ({who}); wait for "
                                      "it to end, or stop it, before starting another run on this output")
            if not _same_file(fd, lock):
                os.close(fd)
                continue
            self._lock_fd = fd
            self._say_who(fd)
            return False
        raise UserError(f"{self.work}: could not take the run lock")

    def _make_locked_work(self) -> bool:
        """Make the work folder under a temp name with its lock taken, then rename it into place;
        False when another run's work folder got there first."""
        tmp = make_temp_dir(self.work.parent, self.work.name)
        fd: int | None = None
        try:
            fd = os.open(tmp / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            _flock(fd)
            self._say_who(fd)
            os.rename(tmp, self.work)  # fails when another run's (never empty) work folder is there
        except BaseException as e:
            if fd is not None:
                os.close(fd)
            (tmp / LOCK_FILE).unlink(missing_ok=True)
            os.rmdir(tmp)
            if isinstance(e, OSError) and e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
        self._lock_fd = fd
        return True

    @staticmethod
    def _say_who(fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        data = json.dumps(info).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(_read_fd(fd, 4096))
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "it has not said who it is yet"

    def close(self) -> None:
        """Release the run lock (a finished or failed run; a killed one releases it by dying)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _abandon(self, created: bool) -> None:
        if created:
            self._remove_work()
        self.close()

    def _clear_work(self) -> None:
        """Remove the work folder's own files (parts, run file, temp files), keeping the lock."""
        if not self.work.is_dir():
            return
        for e in os.listdir(self.work):
            if e == RUN_FILE or _WORK_PART.fullmatch(e) or (e.startswith(".") and e.endswith(".tmp")):
                (self.work / e).unlink(missing_ok=True)

    def _remove_work(self) -> None:
        """Remove the work folder: its own files, then the lock, then the folder (left in place if
        something else was put in it)."""
        self._clear_work()
        try:
            (self.work / LOCK_FILE).unlink(missing_ok=True)
            os.rmdir(self.work)
        except OSError:
            pass

    def _write_run_file(self, base: str | None = None) -> None:
        doc: dict[str, Any] = {"format": WORK_FORMAT, "facequal_version": __version__, "options": self.fingerprint}
        if base:
            doc["base"] = base
        atomic_write_bytes(self.work / RUN_FILE, json.dumps(doc, sort_keys=True, indent=1))

    def _read_run_file(self) -> dict[str, Any]:
        path = self.work / RUN_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"--resume: {self.work} holds no {RUN_FILE}; it was not left by a facequal run that "
                            "can be resumed: pass --overwrite to start again") from None
        except (OSError, ValueError) as e:
            raise UserError(f"--resume: {path} is unreadable ({e}); pass --overwrite to start again") from None
        if not isinstance(doc, dict) or doc.get("format") != WORK_FORMAT or not isinstance(doc.get("options"), dict):
            raise UserError(f"--resume: the unfinished run in {self.work} was left by another version of facequal; "
                            "pass --overwrite to start again")
        return doc

    def _finished_files(self) -> list[Path]:
        if self.dataset:
            return self.own_files()
        return [self.out_path] if os.path.lexists(self.out_path) else []

    def _load_for_resume(self, work_existed: bool) -> pa.Table | None:
        if work_existed:
            doc = self._read_run_file()
            self._check_options(doc["options"], f"the unfinished run in {self.work} used")
            if doc.get("base") != "copying":
                parts = self.part_files()
                self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
                return self._keys_of(parts)
            self._clear_work()  # copying the finished output was cut short: copy it again
        return self._adopt_finished()

    def _adopt_finished(self) -> pa.Table | None:
        """Copy a finished output's rows into parts (row group by row group), each with its
        position: the earlier rows keep their order. The run file says "copying" until the copy
        is whole, so a copy cut short is redone, never taken for all the earlier rows."""
        files = self._finished_files()
        if not files:
            self._write_run_file()
            return None
        self._check_finished(files, resume=True)
        self._write_run_file(base="copying")
        paths = pa.concat_arrays([c for f in files for c in _read(f, ["path"]).column("path").chunks])
        positions = paths.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
        offset = 0
        for f in files:
            with pq.ParquetFile(f) as pf:
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=self.schema.names):
                    t = pa.Table.from_batches([batch])
                    t = t.append_column(ORDINAL, pa.array(positions[offset:offset + t.num_rows], pa.int64()))
                    offset += t.num_rows
                    self.commit(t)
        self._write_run_file()
        return self._keys_of(self.part_files())

    def _keys_of(self, parts: list[Path]) -> pa.Table | None:
        """The resume keys of the rows in ``parts`` (a few small columns, not the rows), and the
        positions of the earlier rows' paths for :meth:`positions`."""
        if not parts:
            return None
        tables = []
        for p in parts:
            with pq.ParquetFile(p) as pf:
                self._check_columns(pf.schema_arrow, f"the unfinished run in {self.work}")
                tables.append(pf.read(columns=[*KEY_COLUMNS, ORDINAL]))
        keys = pa.concat_tables(tables, promote_options="default")
        by = keys.group_by("path").aggregate([(ORDINAL, "min")])
        self._earlier_paths = by.column("path").combine_chunks()
        self._earlier_pos = by.column(f"{ORDINAL}_min").to_numpy().astype(np.int64)
        self._next_pos = int(np.max(keys.column(ORDINAL).to_numpy())) + 1 if keys.num_rows else 0
        return keys.select(KEY_COLUMNS)

    def positions(self, paths: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
        """Output positions of this run's inputs (``paths``, in input order) after a resume: an
        input already in the output keeps its place, new ones follow in input order. None when
        nothing was done before (the input order is the output order)."""
        if self._earlier_paths is None:
            return None
        import pyarrow.compute as pc

        idx = pc.index_in(paths, value_set=self._earlier_paths).fill_null(-1).to_numpy()
        idx = np.asarray(idx, dtype=np.int64)
        pos = np.empty(idx.size, dtype=np.int64)
        known = idx >= 0
        pos[known] = self._earlier_pos[idx[known]]
        pos[~known] = self._next_pos + np.arange(int((~known).sum()), dtype=np.int64)
        return pos

    # -- during the run ------------------------------------------------------------------------
    def part_files(self) -> list[Path]:
        """Committed part files, in commit order."""
        return sorted(self.work.glob("part-*.parquet"))

    def commit(self, table: pa.Table, positions: np.ndarray | None = None) -> Path:
        """Atomically add one finished chunk (with its ordinal column) as the next part file.
        ``positions`` (from :meth:`positions`) maps the chunk's input ordinals to output positions."""
        if positions is not None:
            i = table.schema.get_field_index(ORDINAL)
            where = positions[table.column(ORDINAL).to_numpy()]
            table = table.set_column(i, ORDINAL, pa.array(where, pa.int64()))
        path = self.work / f"part-{self._next_part:06d}.parquet"
        self._next_part += 1
        try:
            atomic_write_table(table, path)
        except UserError as e:
            raise UserError(f"{e}; {self.output} is unchanged and the parts finished so far are kept: fix that "
                            "and rerun with --resume") from None
        return path


    # -- merging -------------------------------------------------------------------------------
    @staticmethod
    def _ordinals(t: pa.Table, order: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(input position of each row, or -1; face_index) of a part's rows ``t``.

        With ``order`` (path -> position) positions come from the paths, so parts of an earlier
        run with other inputs map correctly; without it, from the parts' own ordinal column.
        """
        if order is None:
            ords = t.column(ORDINAL).to_numpy().astype(np.int64)
        else:
            paths = t.column("path").to_pylist()
            ords = np.fromiter((order.get(p, -1) for p in paths), dtype=np.int64, count=len(paths))
        return ords, t.column("face_index").to_numpy().astype(np.int64)

    @classmethod
    def _read_ordinals(cls, part: Path, order: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_ordinals` of one part file, reading only the columns they need."""
        return cls._ordinals(_read(part, [ORDINAL if order is None else "path", "face_index"]), order)

    @staticmethod
    def _keys(ords: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Merge keys: input position, then face_index (-1, a row without a face, first)."""
        return (ords << _FACE_BITS) | (face + 1)

    @classmethod
    def _kept(cls, seq: int, ords: np.ndarray, face: np.ndarray, newest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row indices that survive, their merge keys) of part ``seq`` with rows (``ords``,
        ``face``): rows of inputs of this run whose newest rows are in this part."""
        ok = ords >= 0
        ok[ok] = newest[ords[ok]] == seq
        idx = np.nonzero(ok)[0]
        return idx, cls._keys(ords[idx], face[idx])

    def _block(self, seq: int, part: Path, order: dict[str, int] | None, newest: np.ndarray) -> _Block:
        t = _read(part)   # one read: the merge keys come from the rows themselves
        idx, keys = self._kept(seq, *self._ordinals(t, order), newest)
        if keys.size > 1 and np.any(keys[1:] < keys[:-1]):
            o = np.argsort(keys, kind="stable")
            idx, keys = idx[o], keys[o]
        if idx.size != t.num_rows or (idx.size and np.any(idx != np.arange(idx.size))):
            t = t.take(pa.array(idx))
        t = t.select(self.schema.names)
        if not t.schema.equals(self.schema):  # a cast imports pyarrow.compute: 50 ms of a one-image run
            t = t.cast(self.schema)
        return _Block(keys=keys, table=t)

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
        # Key range of each part while every row so far is kept (no input in two parts, no input
        # that left the run: every uninterrupted run); None once that is not so.
        spans: list[tuple[int, int] | None] | None = []
        for seq, p in enumerate(parts):      # pass 1: the newest part of every input
            ords, face = self._read_ordinals(p, order)
            if spans is not None:
                if not ords.size:
                    spans.append(None)   # an empty part: nothing to place
                elif ords.min() < 0:
                    spans = None         # an input that left the run: its rows are dropped
                else:
                    keys = self._keys(ords, face)
                    spans.append((int(keys.min()), int(keys.max())))
            ords = ords[ords >= 0]
            if ords.size and ords.max() >= newest.size:
                grown = np.full(max(2 * newest.size, int(ords.max()) + 1), -1, dtype=np.int64)
                grown[:newest.size] = newest
                newest = grown
            if spans is not None and ords.size and np.any(newest[ords] >= 0):
                spans = None             # an input in an earlier part too: that part loses rows
            newest[ords] = seq
        # pass 2: group the parts into runs whose keys increase from part to part
        runs: list[list[int]] = []
        run_last: list[int] = []
        for seq, p in enumerate(parts):
            if spans is not None:        # every row kept: the key range is pass 1's
                span = spans[seq]
                if span is None:
                    continue
                lo, hi = span
            else:
                _, keys = self._kept(seq, *self._read_ordinals(p, order), newest)
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
        """Stream the merged parts into the final output, then remove the work folder and release
        the lock.

        Rows are written in row groups as they are merged; with ``collect`` the whole table is
        also returned (its memory then grows with the output; without it nothing is kept and
        :attr:`summary` holds the counts). A failure (a full disk) leaves the previous output as
        it was and the parts in place, for ``--resume``.
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
        self._remove_work()
        self.close()
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

    def _kept_note(self) -> str:
        return f"the finished parts are kept in {self.work}: fix that and rerun with --resume"

    def _finish_file(self, order: dict[str, int] | None, schema: pa.Schema, kept: list[pa.Table] | None) -> None:
        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                for g in self._row_groups(order, kept):
                    w.write_table(g, row_group_size=ROW_GROUP_ROWS)

        if os.path.islink(self.out_path) or os.path.isdir(self.out_path):  # put there during the run
            raise UserError(f"{self.output} became a link or a folder during the run; facequal does not replace "
                            f"it: {self._kept_note()}")
        try:
            atomic_write(self.out_path, write)
        except UserError as e:
            raise UserError(f"{e}; {self._kept_note()}") from None

    def _write_parts(self, folder: Path, order: dict[str, int] | None, schema: pa.Schema,
                     kept: list[pa.Table] | None, written: list[tuple[Path, str]]) -> None:
        """Write the merged rows as part files of at most ROWS_PER_DATASET_PART rows into temp
        files in ``folder``, appending (temp file, final name) to ``written`` as each is made. At
        least one file is written."""
        w: pq.ParquetWriter | None = None
        rows_in_file = 0

        def open_next() -> pq.ParquetWriter:
            name = f"{self.file_prefix}{len(written):05d}.parquet"
            tmp = make_temp_file(folder, name)
            written.append((tmp, name))
            return pq.ParquetWriter(tmp, schema, compression="zstd")

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

    def _finish_dataset(self, order: dict[str, int] | None, schema: pa.Schema, kept: list[pa.Table] | None) -> None:
        """Write this run's part files into the dataset folder and list them in its marker; then
        remove the files they replace (listed ones only: this run's own, and, with --overwrite,
        listed files that conflict with it). Nothing else in the folder is touched."""
        folder = self.out_path
        try:
            try:
                os.mkdir(folder)  # 0777 less the umask, like `mkdir`
            except FileExistsError:
                pass
            listed = self._listed()  # checked again: the folder may have changed during the run
            if not os.path.lexists(folder / MARKER):
                _create_marker(folder, listed)  # a new or empty folder, or one an older facequal made
            own = self.own_files()
            conflicts = self.conflicting_files()
        except OSError as e:
            raise UserError(f"{os_error_message(e, self.output)}; {self._kept_note()}") from None
        if conflicts and not self._overwrite:
            raise OutputExistsError(f"{self.output} now holds files that do not belong with this run "
                                    f"(e.g. {conflicts[0].name}); pass --overwrite to replace them")
        written: list[tuple[Path, str]] = []
        renamed = 0
        try:
            self._write_parts(folder, order, schema, kept, written)
            # Listed before they appear under their names, so a crash never leaves a file of
            # facequal's that its marker does not know.
            _update_marker(folder, add=[name for _, name in written])
            for tmp, name in written:
                os.replace(tmp, folder / name)
                renamed += 1
        except (OSError, UserError) as e:
            why = os_error_message(e, self.output) if isinstance(e, OSError) else str(e)
            state = "is partly replaced" if renamed else "is unchanged"
            raise UserError(f"{why}; {self.output} {state} and {self._kept_note()}") from None
        finally:
            if renamed < len(written):
                for tmp, _ in written[renamed:]:
                    tmp.unlink(missing_ok=True)
        new_names = {name for _, name in written}
        stale = [p for p in own + conflicts if p.name not in new_names]
        try:
            for p in stale:
                p.unlink(missing_ok=True)
            if stale:
                _update_marker(folder, remove=[p.name for p in stale])
        except OSError as e:
            raise UserError(os_error_message(e, self.output)) from None


def done_keys(table: pa.Table | None) -> set[tuple[str, int | None, int | None]]:
    """(path, file_size, mtime_ns) of every input already processed in ``table``."""
    if table is None or table.num_rows == 0:
        return set()
    cols: Iterable = zip(table.column("path").to_pylist(), table.column("file_size").to_pylist(),
                         table.column("mtime_ns").to_pylist(), strict=True)
    return set(cols)
