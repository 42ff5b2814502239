"""Compose the stages: references in chunks -> (decode, detect, align, model) in workers -> tables.

Chunks are processed by an executor (:mod:`facequal.pipeline.executors`: this process, local
worker processes, or a Dask cluster) and come back in input order, so the rows are the same
whatever the number of workers or the backend. Each worker loads the detector and the model once and runs
them with one onnxruntime thread by default (no oversubscription, identical floats). Only
paths go to the workers and only rows come back: images are decoded where they are used.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from facequal import schema
from facequal.models.zoo import ModelSpec
from facequal.options import BATCH_SIZE, CHUNK_SIZE, DEVICE, THREADS, FaceOptions
from facequal.pipeline.executors import Executor, SerialExecutor, make_executor
from facequal.pipeline.scorer import Embedder, Scorer, _FaceModel
from facequal.pipeline.sources import ImageRef, printable_path
from facequal.pipeline.store import ORDINAL

TAIL_MIN = 8  # images: the smallest chunk at the end of a run (see chunked)


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs; small and picklable."""

    model: ModelSpec
    faces: FaceOptions
    batch_size: int = BATCH_SIZE
    threads: int = THREADS
    device: str = DEVICE
    save_crops: str | None = None
    given_faces: bool = False       # faces come with the inputs: no detector needed
    flip_tta: bool = False          # embeddings: average with the mirrored crop's


# Per-process cache of the loaded detector and model (a Scorer / Embedder): workers are reused
# across chunks. A lock, because a Dask worker may run several tasks at once in threads.
_LOADED: dict[Any, _FaceModel] = {}
_LOAD_LOCK = threading.Lock()


def _load(cfg: WorkerConfig) -> _FaceModel:
    key = (cfg.model.path, cfg.model.sha256, cfg.model.contract.to_json(), cfg.faces, cfg.threads,
           cfg.device, cfg.batch_size, cfg.given_faces, cfg.flip_tta)
    with _LOAD_LOCK:
        if key not in _LOADED:
            cls = Scorer if cfg.model.contract.task == "quality" else Embedder
            _LOADED.clear()
            _LOADED[key] = cls._from_parts(cfg.model, cfg.faces, threads=cfg.threads, device=cfg.device,
                                           batch_size=cfg.batch_size, flip_tta=cfg.flip_tta,
                                           given_faces=cfg.given_faces)
        return _LOADED[key]


# Bytes a crop's file name may use: most file systems allow 255 per name.
_NAME_MAX = 255
# Characters a crop name never holds: separators, ':' (drives, NTFS streams), control characters
# (a backslash also keeps ``\xNN`` escapes of non-UTF-8 names out of crop names).
_UNSAFE_IN_NAME = re.compile(r'[\\/:\x00-\x1f\x7f]')


def _fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def crop_file_name(path: str, face_index: int) -> str:
    """The crop's file name relative to the crop folder: ``<image's folder name>/<image file
    name>_face<N>_<hash>.png``.

    ``path`` is the row's ``path`` value; ``<hash>`` is the first 10 hex digits of its SHA-256,
    so every (image, face) has its own file whatever the names have in common (``p.jpg`` and
    ``p.png``; names that differ only in case, or in the characters replaced by ``_``:
    backslashes, ``:``, control characters; long names cut to fit). Only the image's folder
    name is kept (``x`` for ``/data/lfw/x/1.jpg``), nothing above it: an absolute input path does
    not recreate itself under the crop folder, and the name does not depend on the working
    directory. The file name fits in 255 bytes; the result never leaves the crop folder.
    """
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    seps = re.escape(os.sep + (os.altsep or ""))
    comps = [c for c in re.split(f"[{seps}]+", path) if c]  # a POSIX name may hold a backslash
    name = comps[-1] if comps else "image"
    folder = comps[-2] if len(comps) > 1 else ""
    suffix = f"_face{face_index}_{digest}.png"
    name = _fit(_UNSAFE_IN_NAME.sub("_", name), _NAME_MAX - len(suffix)) + suffix
    folder = _fit(_UNSAFE_IN_NAME.sub("_", folder), _NAME_MAX)
    if folder in ("", ".", ".."):
        return name
    return os.path.join(folder, name)


def prepare_crop_folder(folder: str | os.PathLike[str]) -> str:
    """Check ``--save-crops FOLDER`` before any work (create it, make sure a file can be written
    there); returns its absolute path, which ``crop_path`` values start with.

    Raises a one-line UserError for a file in the way, a read-only file system, a folder one
    cannot write to."""
    from facequal import _io
    from facequal.errors import UserError

    d = os.path.abspath(folder)
    shown = f"--save-crops {printable_path(os.fspath(folder))}"
    if os.path.lexists(d) and not os.path.isdir(d):
        raise UserError(f"{shown}: exists and is not a folder")
    try:
        os.makedirs(d, exist_ok=True)
        os.unlink(_io.make_temp_file(d, "facequal-write-test"))
    except OSError as e:
        raise UserError(_io.os_error_message(e, shown)) from None
    return d


def _save_crop(root: str, path: str, face_index: int, crop: np.ndarray) -> str:
    """Write one crop as PNG under ``root`` (absolute, from :func:`prepare_crop_folder`); returns
    its absolute path, for ``crop_path``.

    The PNG goes to an exclusively created temp file (random name) in the crop's folder and is
    renamed into place: nothing is written through a symlink, and a symlinked folder inside the
    crop folder is followed only when it stays inside. Anything else (a folder pointing outside,
    disk full, a read-only file system) stops the run with a one-line UserError: every later crop
    would fail the same way, and the earlier output, if any, is left as it was.
    """
    from PIL import Image

    from facequal import _io
    from facequal.errors import UserError

    root = os.path.abspath(root)
    rel = crop_file_name(path, face_index)
    dest = os.path.join(root, rel)
    shown = printable_path(dest)
    tmp = None
    try:
        folders = os.path.dirname(rel).split(os.sep) if os.sep in rel else []
        parent = _io.ensure_dirs_inside(root, folders, what=f"the crop folder {printable_path(root)}")
        name = os.path.basename(rel)
        tmp = _io.make_temp_file(parent, name)
        Image.fromarray(crop).save(tmp, format="PNG")
        os.replace(tmp, os.path.join(parent, name))
    except _io.UnsafePath as e:
        raise UserError(f"--save-crops: {printable_path(str(e))}") from None
    except OSError as e:
        raise UserError(_io.os_error_message(e, f"saving crop {shown}") + "; the run stopped") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    return shown


def process_chunk(items: Sequence[tuple[int, str, str, Any]], cfg: WorkerConfig) -> list[dict[str, Any]]:
    """Process (ordinal, output path, file path, given faces) items; returns rows with model
    outputs filled in."""
    scorer = _load(cfg)
    # An unexpected exception (a bug, an odd input) becomes that image's error row, not the chunk's end.
    analysed = scorer.analyse_files([(fs_path, given) for _, _, fs_path, given in items])
    results = [(ordinal, out_path, res) for (ordinal, out_path, _, _), res in zip(items, analysed, strict=True)]
    outputs = scorer.outputs([c for _, _, r in results for c in r.crops])
    rows: list[dict[str, Any]] = []
    k = 0
    for ordinal, out_path, res in results:
        j = 0  # the ok rows of an image match its crops, in order
        for row in res.rows:
            row = dict(row, path=out_path)
            row[ORDINAL] = ordinal
            if row["status"] == schema.OK:
                scorer.fill(row, outputs, k)
                if cfg.save_crops:
                    row["crop_path"] = _save_crop(cfg.save_crops, out_path, row["face_index"], res.crops[j])
                k += 1
                j += 1
            rows.append(row)
    return rows


def rows_to_table(rows: list[dict[str, Any]], out_schema: pa.Schema,
                  carried: dict[int, dict[str, Any]]) -> pa.Table:
    """Rows from a worker (+ carried columns by ordinal) -> an Arrow table with the ordinal."""
    cols: dict[str, list[Any]] = {f.name: [] for f in out_schema}
    cols[ORDINAL] = []
    for row in rows:
        extra = carried.get(row[ORDINAL], {})
        for name in cols:
            cols[name].append(row.get(name, extra.get(name)))
    arrays = [pa.array(cols[f.name], type=f.type) for f in out_schema]
    arrays.append(pa.array(cols[ORDINAL], type=pa.int64()))
    return pa.Table.from_arrays(arrays, schema=out_schema.append(pa.field(ORDINAL, pa.int64())))


def chunked(refs: Iterable[tuple[int, ImageRef]], size: int, workers: int = 1
            ) -> Iterator[list[tuple[int, ImageRef]]]:
    """Consecutive chunks of at most ``size`` references (``refs`` may be a generator).

    With ``workers`` > 1 the last chunks shrink (each ``1 / (2 * workers)`` of what is left, not
    under TAIL_MIN), so that the workers finish at about the same time: with whole chunks to the
    end, one worker sits idle for up to a chunk's time while the others finish. Only
    ``2 * workers * size`` references are read ahead to see where the end is. Inputs that fit in
    one chunk stay one chunk. Chunk boundaries do not change any row: every image is processed on
    its own.
    """
    it = iter(refs)
    if workers <= 1:
        while chunk := list(itertools.islice(it, size)):
            yield chunk
        return
    ahead = 2 * workers * size
    buf: collections.deque[tuple[int, ImageRef]] = collections.deque(itertools.islice(it, ahead))
    if len(buf) <= size:  # all of it fits in one chunk, which then runs in this process (run_chunks)
        if buf:
            yield list(buf)
        return
    while buf:
        buf.extend(itertools.islice(it, ahead - len(buf)))
        if len(buf) < ahead:  # the end is in sight
            n = min(size, max(TAIL_MIN, -(-len(buf) // (2 * workers))))
        else:
            n = size
        yield [buf.popleft() for _ in range(min(n, len(buf)))]


def chunk_items(chunk: Sequence[tuple[int, ImageRef]]) -> list[tuple[int, str, str, Any]]:
    """What a worker gets for a chunk: (ordinal, output path, file path, given faces) - no pixels."""
    return [(o, r.path, r.fs_path, r.faces) for o, r in chunk]


def run_chunks(todo: Iterable[tuple[int, ImageRef]], cfg: WorkerConfig, *, jobs: int,
               chunk_size: int = CHUNK_SIZE, backend: str = "local", scheduler: str | None = None
               ) -> Iterator[tuple[list[tuple[int, ImageRef]], list[dict[str, Any]]]]:
    """Process every chunk (in parallel when ``jobs`` > 1 or on Dask); yields (chunk, rows) in
    input order.

    At most ``2 * jobs`` chunks (with Dask: twice the cluster's threads) are in flight, so
    memory does not grow with the input count. A run of one chunk (fewer inputs than
    ``chunk_size``) runs in this process, as with ``jobs=1``: no pool is started for one image.
    """
    chunks = chunked(todo, chunk_size, jobs if backend == "local" else 1)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None and backend != "dask":  # one chunk (one image, say): no pool of processes for it
        executor: Executor = SerialExecutor()
        todo_chunks: Iterable[list[tuple[int, ImageRef]]] = [first]
    else:
        executor = make_executor(backend, jobs, scheduler)
        todo_chunks = itertools.chain([first] if second is None else [first, second], chunks)
    yield from executor.map_ordered(process_chunk, todo_chunks, lambda ch: (chunk_items(ch), cfg))
