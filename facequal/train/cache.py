"""The training cache: aligned crops and precomputed teacher outputs, so training never runs the teacher.

A cache is a directory of ``.npy`` arrays, one row per *variant* of a photo (clean, flipped,
degraded, ...), and a ``meta.json`` written last (a cache without it is incomplete):

============================ ============================ ==============================================
file                         dtype, shape                 meaning
============================ ============================ ==============================================
``crops_student.npy``        uint8 [N, S, S, 3]           the student's input crops (RGB, its framing)
``identity.npy``             int32 [N]                    identity id (``meta["identities"][id]``)
``source.npy``               int16 [N]                    data source id (``meta["sources"][id]``)
``image.npy``                int32 [N]                    source photo id (``meta["paths"][id]``);
                                                          the variants of one photo share it
``variant.npy``              int16 [N]                    variant kind (``meta["variants"][id]``);
                                                          0 is the clean crop
``emb.npy``                  float32 [N, D]               the teacher's embedding, L2-normalised
``feat.npy``                 float16 [N, C] or [N,C,H,W]  the teacher's features for the branch
``crops_teacher.npy``        uint8 [N, T, T, 3]           optional: the teacher's input crops
============================ ============================ ==============================================

Arrays may be longer than ``meta["n"]`` (a writer sized for the worst case, some photos without
a face): readers use the first ``n`` rows. Everything is read with ``mmap_mode="r"``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "facequal.train.cache"
FORMAT_VERSION = 1
META_FILE = "meta.json"
# name -> dtype; shapes are given per cache
ARRAYS: dict[str, np.dtype] = {
    "crops_student": np.dtype(np.uint8),
    "identity": np.dtype(np.int32),
    "source": np.dtype(np.int16),
    "image": np.dtype(np.int32),
    "variant": np.dtype(np.int16),
    "emb": np.dtype(np.float32),
    "feat": np.dtype(np.float16),
}
OPTIONAL = {"crops_teacher": np.dtype(np.uint8)}
REQUIRED_META = ("sources", "identities", "variants")


class CacheError(ValueError):
    """A training cache is missing, incomplete or inconsistent."""


def _write_json_atomic(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CacheWriter:
    """Fill a cache row block by row block (preallocated ``.npy`` memmaps), then :meth:`close`.

    ``capacity`` is the most rows it will hold; :meth:`append` adds rows at the end. ``shapes``
    gives the per-row shape of each array (``crops_student``, ``emb`` and ``feat`` are required;
    ``crops_teacher`` is optional).
    """

    def __init__(self, root: str | Path, capacity: int, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / META_FILE).unlink(missing_ok=True)  # incomplete until close()
        self.capacity = int(capacity)
        self.n = 0
        row_shapes = {"identity": (), "source": (), "image": (), "variant": (), **dict(shapes)}
        for name in ("crops_student", "emb", "feat"):
            if name not in row_shapes:
                raise CacheError(f"CacheWriter needs the row shape of {name!r}")
        self._arrays: dict[str, np.ndarray] = {}
        for name, shape in row_shapes.items():
            dtype = ARRAYS.get(name, OPTIONAL.get(name))
            if dtype is None:
                raise CacheError(f"unknown cache array {name!r}")
            self._arrays[name] = np.lib.format.open_memmap(
                self.root / f"{name}.npy", mode="w+", dtype=dtype, shape=(self.capacity, *tuple(shape)))

    def append(self, **rows: np.ndarray) -> None:
        """Append a block of rows; every array of the cache must be given, with equal lengths."""
        missing = set(self._arrays) - set(rows)
        extra = set(rows) - set(self._arrays)
        if missing or extra:
            raise CacheError(f"append needs exactly {sorted(self._arrays)}; missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        lengths = {len(np.asarray(v)) for v in rows.values()}
        if len(lengths) != 1:
            raise CacheError(f"append: blocks of different lengths {sorted(lengths)}")
        k = lengths.pop()
        if self.n + k > self.capacity:
            raise CacheError(f"cache capacity {self.capacity} exceeded")
        for name, value in rows.items():
            self._arrays[name][self.n:self.n + k] = value
        self.n += k

    def close(self, meta: Mapping[str, Any]) -> Path:
        """Flush the arrays and write ``meta.json`` (with ``n`` and the format); returns the root."""
        for name in REQUIRED_META:
            if name not in meta:
                raise CacheError(f"cache meta needs {name!r}")
        for arr in self._arrays.values():
            arr.flush()
        shapes = {name: list(arr.shape[1:]) for name, arr in self._arrays.items()}
        full = {**dict(meta), "format": FORMAT, "format_version": FORMAT_VERSION, "n": self.n,
                "row_shapes": shapes}
        self._arrays.clear()
        _write_json_atomic(self.root / META_FILE, full)
        return self.root


def write_cache(root: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write a whole cache at once (small caches, tests)."""
    n = len(arrays["identity"])
    shapes = {k: tuple(np.asarray(v).shape[1:]) for k, v in arrays.items()
              if k not in ("identity", "source", "image", "variant")}
    writer = CacheWriter(root, n, shapes)
    writer.append(**{k: np.asarray(v) for k, v in arrays.items()})
    return writer.close(meta)


class TrainingCache:
    """A cache opened read-only (memory-mapped). Arrays are attributes; ``meta`` is the JSON."""

    def __init__(self, root: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.root = Path(root)
        self.meta = meta
        self.arrays = arrays
        self.n = int(meta["n"])

    @classmethod
    def open(cls, root: str | Path) -> TrainingCache:
        """Open the cache at ``root``; raises :class:`CacheError` if it is incomplete or inconsistent."""
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise CacheError(f"{root}: no {META_FILE} (not a training cache, or still being written)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise CacheError(f"{root}: unknown cache format {meta.get('format')!r} "
                             f"v{meta.get('format_version')}")
        n = int(meta["n"])
        arrays: dict[str, np.ndarray] = {}
        for name in list(ARRAYS) + list(OPTIONAL):
            path = root / f"{name}.npy"
            if not path.is_file():
                if name in ARRAYS:
                    raise CacheError(f"{root}: missing {path.name}")
                continue
            arr = np.load(path, mmap_mode="r")
            if arr.shape[0] < n:
                raise CacheError(f"{root}: {path.name} has {arr.shape[0]} rows, meta says {n}")
            arrays[name] = arr[:n]
        emb_rows = arrays["emb"].shape
        if arrays["crops_student"].ndim != 4 or len(emb_rows) != 2:
            raise CacheError(f"{root}: crops_student must be [N,S,S,3] and emb [N,D]")
        for name in ("identity", "source", "image", "variant"):
            if arrays[name].ndim != 1:
                raise CacheError(f"{root}: {name}.npy must be one-dimensional")
        return cls(root, meta, arrays)

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def __len__(self) -> int:
        return self.n

    @property
    def student_size(self) -> int:
        return int(self.arrays["crops_student"].shape[1])

    def source_id(self, name: str) -> int:
        """The id of a source by name (``meta["sources"]``)."""
        return list(self.meta["sources"]).index(name)


def filter_cache(src: str | Path, dst: str | Path, keep: np.ndarray,
                 meta_update: Mapping[str, Any] | None = None, block: int = 4096) -> Path:
    """Copy the rows ``keep`` (boolean mask or indices) of cache ``src`` into a new cache ``dst``."""
    cache = TrainingCache.open(src)
    keep = np.asarray(keep)
    idx = np.flatnonzero(keep) if keep.dtype == bool else np.sort(keep.astype(np.int64))
    shapes = {k: tuple(v.shape[1:]) for k, v in cache.arrays.items()
              if k not in ("identity", "source", "image", "variant")}
    writer = CacheWriter(dst, idx.size, shapes)
    for start in range(0, idx.size, block):
        sel = idx[start:start + block]
        writer.append(**{k: np.asarray(v[sel]) for k, v in cache.arrays.items()})
    meta = {k: v for k, v in cache.meta.items() if k not in ("n", "format", "format_version", "row_shapes")}
    meta.update(meta_update or {})
    return writer.close(meta)


def merge_caches(srcs: list[str | Path], dst: str | Path, meta_update: Mapping[str, Any] | None = None,
                 block: int = 4096) -> Path:
    """Concatenate caches built with the same variants into one (ids remapped by name).

    Identities and sources are matched by their names; photo ids are offset so that every
    cache's photos stay distinct. Used to add a data source without rebuilding the others.
    """
    caches = [TrainingCache.open(s) for s in srcs]
    variants = caches[0].meta["variants"]
    if any(c.meta["variants"] != variants for c in caches):
        raise CacheError("caches to merge must have the same variants")
    identities = sorted({i for c in caches for i in c.meta["identities"]})
    sources: list[str] = []
    for c in caches:
        sources += [s for s in c.meta["sources"] if s not in sources]
    shapes = {k: tuple(v.shape[1:]) for k, v in caches[0].arrays.items()
              if k not in ("identity", "source", "image", "variant")}
    writer = CacheWriter(dst, sum(c.n for c in caches), shapes)
    paths: list[str] = []
    for c in caches:
        id_map = np.array([identities.index(i) for i in c.meta["identities"]], dtype=np.int32)
        src_map = np.array([sources.index(s) for s in c.meta["sources"]], dtype=np.int16)
        offset = len(paths)
        for start in range(0, c.n, block):
            rows = {k: np.asarray(v[start:min(start + block, c.n)]) for k, v in c.arrays.items()}
            rows["identity"] = id_map[rows["identity"]]
            rows["source"] = src_map[rows["source"]]
            rows["image"] = rows["image"] + offset
            writer.append(**rows)
        paths += list(c.meta.get("paths", []))
    meta = {k: v for k, v in caches[0].meta.items() if k not in ("n", "format", "format_version", "row_shapes")}
    meta.update({"identities": identities, "sources": sources, "paths": paths,
                 "merged_from": [str(s) for s in srcs]})
    meta.update(meta_update or {})
    return writer.close(meta)
