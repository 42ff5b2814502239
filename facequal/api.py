"""The Python API: the same operations as the command line, returning Arrow tables.

>>> import facequal
>>> table = facequal.score(["photos/"], output="scores.parquet")   # doctest: +SKIP
>>> for batch in facequal.iter_score(["photos/"]):                   # doctest: +SKIP
...     print(batch.num_rows)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from facequal import __version__, schema
from facequal.faces import FaceOptions
from facequal.models.zoo import ModelSpec, resolve_model
from facequal.pipeline import DEFAULT_CHUNK, WorkerConfig, rows_to_table, run_chunks
from facequal.sources import ImageRef, Sources, collect, in_shard, parse_shard
from facequal.store import ORDINAL, RunStore, done_keys


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def output_schema(spec: ModelSpec, carried_fields: dict[str, pa.Field], dim: int | None = None) -> pa.Schema:
    """The columns of a score (or embedding) file, then the carried manifest columns."""
    if spec.contract.task == "quality":
        fields = list(schema.SCORE_FIELDS)
    else:
        fields = schema.embed_fields(dim or int(spec.metadata.get("facequal.embedding_dim", 128)))
    names = {f.name for f in fields}
    fields += [f.with_name(n) for n, f in carried_fields.items() if n not in names]
    return pa.schema(fields)


def sources_from_scores(path: str) -> Sources:
    """The images and faces of an existing scores file, in its order, with its carried columns.

    Another model then sees exactly the faces that were scored (same landmarks, same keys).
    """
    from facequal.tables import read_table, require_columns

    table = read_table(path)
    require_columns(table, ["path", "face_index", "status", "landmarks", "det_score", "bbox"], path)
    known = set(schema.SCORE_COLUMNS)
    carried_names = [c for c in table.column_names if c not in known]
    fields = {c: table.schema.field(c) for c in carried_names}
    refs: dict[str, ImageRef] = {}
    for row in table.to_pylist():
        ref = refs.get(row["path"])
        if ref is None:
            ref = refs[row["path"]] = ImageRef(path=row["path"], fs_path=row["path"], faces=[],
                                               carried={c: row[c] for c in carried_names})
        if row["status"] == schema.OK and row["landmarks"] is not None:
            ref.faces.append((row["face_index"], row["det_score"], row["bbox"], row["landmarks"]))
    return Sources(refs=list(refs.values()), carried_fields=fields)


class Job:
    """One scoring or embedding run: inputs resolved, model loaded, options fixed."""

    def __init__(self, inputs: Sequence[str | os.PathLike[str]], *, task: str = "quality",
                 model: str | None = None, contract: str | None = None,
                 faces: str = "largest", det_size: int = 640, det_threshold: float = 0.6,
                 min_face: float = 0.0, pad: float = 0.0, aligned: bool = False,
                 max_pixels: int | None = None, path_column: str = "path",
                 identity_from: str | None = None, shard: str | None = None,
                 batch_size: int = 64, jobs: int | None = None, threads: int = 1,
                 device: str = "cpu", save_crops: str | None = None,
                 chunk_size: int = DEFAULT_CHUNK, spec: ModelSpec | None = None,
                 from_scores: str | None = None) -> None:
        from facequal.decode import DEFAULT_MAX_PIXELS
        from facequal.errors import UserError

        if faces not in ("largest", "all"):
            raise UserError(f"--faces must be 'largest' or 'all', not {faces!r}")
        if batch_size < 1 or chunk_size < 1:
            raise UserError("--batch-size must be at least 1")
        self.spec = spec or resolve_model(model, contract_file=contract, task=task)
        self.face_options = FaceOptions(
            faces=faces, det_size=det_size, det_threshold=det_threshold, min_face=min_face, pad=pad,
            aligned=aligned, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        if from_scores:
            self.sources = sources_from_scores(from_scores)
        else:
            self.sources = collect(inputs, path_column=path_column, identity_from=identity_from)
        sh = parse_shard(shard)
        self.refs = [r for r in self.sources.refs if in_shard(r.path, sh)]
        self.jobs = jobs or default_jobs()
        self.chunk_size = chunk_size
        if save_crops:
            os.makedirs(save_crops, exist_ok=True)
        self.config = WorkerConfig(model=self.spec, faces=self.face_options, batch_size=batch_size,
                                   threads=threads, device=device, save_crops=save_crops,
                                   given_faces=bool(from_scores))
        self.schema = output_schema(self.spec, self.sources.carried_fields)
        self.options = {"task": task, "faces": asdict(self.face_options), "model": self.spec.name,
                        "model_sha256": self.spec.sha256, "contract": self.spec.contract.to_dict(),
                        "shard": shard, "identity_from": identity_from, "path_column": path_column,
                        "save_crops": save_crops, "from_scores": from_scores}

    def metadata(self) -> dict[str, str]:
        """File-level metadata of the output."""
        import json

        return {"facequal.version": __version__, "facequal.model": self.spec.name,
                "facequal.model_sha256": self.spec.sha256,
                "facequal.contract": self.spec.contract.to_json(),
                "facequal.thresholds": json.dumps({"det_threshold": self.face_options.det_threshold,
                                                   "min_face": self.face_options.min_face})}

    def iter_tables(self, skip: set | None = None, progress=None) -> Iterator[pa.Table]:
        """Run, yielding one table (with the ordinal column) per finished chunk, in input order."""
        from facequal.faces import file_stat

        todo = []
        for i, r in enumerate(self.refs):
            if skip and (r.path, *file_stat(r.fs_path)) in skip:
                continue
            todo.append((i, r))
        if progress is not None:
            progress.start(total=len(self.refs), done=len(self.refs) - len(todo))
        carried = {i: r.carried for i, r in todo} if self.sources.carried_fields else {}
        for chunk, rows in run_chunks(todo, self.config, jobs=self.jobs, chunk_size=self.chunk_size):
            t = rows_to_table(rows, self.schema, carried)
            if progress is not None:
                progress.advance(t, len(chunk))
            yield t

    def run(self, output: str | None = None, *, overwrite: bool = False, resume: bool = False,
            progress=None) -> pa.Table:
        """Run to completion; with ``output`` the result is also written there (atomically)."""
        order = {r.path: i for i, r in enumerate(self.refs)}
        if output is None:
            tables = list(self.iter_tables(progress=progress))
            if not tables:
                return self.schema.empty_table()
            t = pa.concat_tables(tables)
            return t.sort_by([(ORDINAL, "ascending"), ("face_index", "ascending")]).drop_columns([ORDINAL])
        store = RunStore(output=output, schema=self.schema, fingerprint=self.options,
                         metadata=self.metadata())
        done = store.prepare(overwrite=overwrite, resume=resume)
        for table in self.iter_tables(skip=done_keys(done), progress=progress):
            store.commit(table)
        return store.finish(order)


def score(inputs: Sequence[str | os.PathLike[str]], output: str | None = None, *,
          overwrite: bool = False, resume: bool = False, progress: Any = None, **options: Any) -> pa.Table:
    """Detect, align and score every face in ``inputs``; returns the score table.

    ``options`` are those of ``facequal score`` (``model``, ``contract``, ``faces``, ``det_size``,
    ``det_threshold``, ``min_face``, ``pad``, ``aligned``, ``jobs``, ``batch_size``, ...).
    With ``output`` the table is also written to that Parquet file (or dataset directory).
    """
    return Job(inputs, task="quality", **options).run(output, overwrite=overwrite, resume=resume,
                                                       progress=progress)


def iter_score(inputs: Sequence[str | os.PathLike[str]], **options: Any) -> Iterator[pa.Table]:
    """Streaming form of :func:`score`: yields tables of rows as chunks finish, in input order."""
    job = Job(inputs, task="quality", **options)
    for t in job.iter_tables():
        yield t.drop_columns([ORDINAL])


def embed(inputs: Sequence[str | os.PathLike[str]], output: str | None = None, *,
          overwrite: bool = False, resume: bool = False, progress: Any = None, **options: Any) -> pa.Table:
    """Face embeddings (L2-normalised, with the raw norm) for every face in ``inputs``.

    The default recogniser is dlib's ResNet converted to ONNX (needs ``facequal[embed]``).
    ``from_scores="scores.parquet"`` embeds exactly the faces of a scores file, without detection.
    """
    return Job(inputs, task="embedding", **options).run(output, overwrite=overwrite, resume=resume,
                                                         progress=progress)
