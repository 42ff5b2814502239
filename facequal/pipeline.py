"""Compose the stages: references in chunks -> (decode, detect, align, model) in workers -> tables.

Chunks are processed in parallel with joblib (local worker processes) or on a Dask cluster
(:mod:`facequal.backends`) and come back in input order, so the rows are the same whatever the
number of workers or the backend. Each worker loads the detector and the model once and runs
them with one onnxruntime thread by default (no oversubscription, identical floats). Only
paths go to the workers and only rows come back: images are decoded where they are used.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facequal import schema
from facequal.faces import FaceOptions, ImageResult, process_image
from facequal.models import DEFAULT_BATCH
from facequal.models.zoo import ModelSpec, OnnxModel
from facequal.sources import ImageRef
from facequal.store import ORDINAL

DEFAULT_CHUNK = 64


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs; small and picklable."""

    model: ModelSpec
    faces: FaceOptions
    batch_size: int = DEFAULT_BATCH
    threads: int = 1
    device: str = "cpu"
    save_crops: str | None = None
    given_faces: bool = False       # faces come with the inputs: no detector needed
    flip_tta: bool = False          # embeddings: average with the mirrored crop's


# Per-process cache of loaded detector and model: workers are reused across chunks.
# A lock, because a Dask worker may run several tasks at once in threads.
_LOADED: dict[Any, tuple[Any, OnnxModel]] = {}
_LOAD_LOCK = threading.Lock()


def _load(cfg: WorkerConfig) -> tuple[Any, OnnxModel]:
    key = (cfg.model.path, cfg.model.sha256, cfg.model.contract.to_json(), cfg.faces, cfg.threads,
           cfg.device, cfg.batch_size, cfg.given_faces, cfg.flip_tta)
    with _LOAD_LOCK:
        return _load_locked(key, cfg)


def _load_locked(key: Any, cfg: WorkerConfig) -> tuple[Any, OnnxModel]:
    if key not in _LOADED:
        from facequal.detect import RetinaFace
        from facequal.models.retinaface import retinaface_session

        det = None
        if not cfg.faces.aligned and not cfg.given_faces:
            det = RetinaFace(retinaface_session(cfg.threads, cfg.device), det_size=cfg.faces.det_size,
                             threshold=cfg.faces.det_threshold, min_face=cfg.faces.min_face,
                             pad=cfg.faces.pad,
                             fixed_session=functools.partial(retinaface_session, cfg.threads, cfg.device))
        _LOADED.clear()
        _LOADED[key] = (det, OnnxModel(cfg.model, threads=cfg.threads, device=cfg.device,
                                       batch_size=cfg.batch_size, flip_tta=cfg.flip_tta))
    return _LOADED[key]


def crop_file_name(path: str, face_index: int) -> str:
    """A relative file name for a saved crop, mirroring the input path but never escaping
    the crop folder (no absolute part, no '..')."""
    parts = [p for p in Path(path.replace("\\", "/")).parts if p not in ("/", "..", ".", "")]
    parts = [p.replace(":", "_") for p in parts] or ["image"]
    stem = os.path.splitext(parts[-1])[0]
    return os.path.join(*parts[:-1], f"{stem}_face{face_index}.png")


def _save_crop(root: str, path: str, face_index: int, crop: np.ndarray) -> str:
    from PIL import Image

    rel = crop_file_name(path, face_index)
    dest = os.path.join(root, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".tmp"
    Image.fromarray(crop).save(tmp, format="PNG")
    os.replace(tmp, dest)
    return dest


def process_chunk(items: Sequence[tuple[int, str, str, Any]], cfg: WorkerConfig) -> list[dict[str, Any]]:
    """Process (ordinal, output path, file path, given faces) items; returns rows with model
    outputs filled in."""
    detector, model = _load(cfg)
    task = cfg.model.contract.task
    results: list[tuple[int, str, ImageResult]] = []
    for ordinal, out_path, fs_path, given in items:
        try:
            res = process_image(fs_path, cfg.model.contract, cfg.faces, detector, given)
        except Exception as e:  # a bug or an odd input must not take the batch down
            res = ImageResult(rows=[{"face_index": schema.NO_FACE_INDEX, "n_faces": 0,
                                     "status": schema.ERROR, "error": f"{type(e).__name__}: {e}"}])
        results.append((ordinal, out_path, res))
    crops = [c for _, _, r in results for c in r.crops]
    outputs: dict[str, Any] = {}
    if crops:
        batch = np.stack(crops)
        if task == "quality":
            outputs["quality"], outputs["quality_raw"] = model.quality(batch)
        else:
            outputs["embedding"], outputs["embedding_norm"] = model.embed(batch)
    rows: list[dict[str, Any]] = []
    k = 0
    for ordinal, out_path, res in results:
        j = 0  # the ok rows of an image match its crops, in order
        for row in res.rows:
            row = dict(row, path=out_path)
            row[ORDINAL] = ordinal
            if row["status"] == schema.OK:
                for name, values in outputs.items():
                    v = values[k]
                    row[name] = v.tolist() if isinstance(v, np.ndarray) else float(v)
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


def chunked(refs: Iterable[tuple[int, ImageRef]], size: int) -> Iterator[list[tuple[int, ImageRef]]]:
    """Consecutive chunks of at most ``size`` references (``refs`` may be a generator)."""
    it = iter(refs)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def chunk_items(chunk: Sequence[tuple[int, ImageRef]]) -> list[tuple[int, str, str, Any]]:
    """What a worker gets for a chunk: (ordinal, output path, file path, given faces) - no pixels."""
    return [(o, r.path, r.fs_path, r.faces) for o, r in chunk]


def run_chunks(todo: Iterable[tuple[int, ImageRef]], cfg: WorkerConfig, *, jobs: int,
               chunk_size: int = DEFAULT_CHUNK, backend: str = "local", scheduler: str | None = None
               ) -> Iterator[tuple[list[tuple[int, ImageRef]], list[dict[str, Any]]]]:
    """Process every chunk (in parallel when ``jobs`` > 1 or on Dask); yields (chunk, rows) in
    input order.

    At most ``2 * jobs`` chunks (with Dask: twice the cluster's threads) are in flight, so
    memory does not grow with the input count.
    """
    chunks = chunked(todo, chunk_size)
    if backend == "dask":
        from facequal.backends import dask_map_ordered

        if scheduler is None:
            raise ValueError("the dask backend needs a scheduler address")
        yield from dask_map_ordered(chunks, lambda ch: (process_chunk, chunk_items(ch), cfg), scheduler)
        return
    if jobs <= 1:
        for ch in chunks:
            yield ch, process_chunk(chunk_items(ch), cfg)
        return
    from joblib import Parallel, delayed

    pending: list[list[tuple[int, ImageRef]]] = []

    def tasks():
        for ch in chunks:
            pending.append(ch)
            yield delayed(process_chunk)(chunk_items(ch), cfg)

    par = Parallel(n_jobs=jobs, return_as="generator", prefer="processes", pre_dispatch="2*n_jobs")
    for rows in par(tasks()):
        yield pending.pop(0), rows
