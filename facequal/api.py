"""The Python API: the same operations as the command line, returning Arrow tables.

>>> import facequal
>>> table = facequal.score(["photos/"], output="scores.parquet")   # doctest: +SKIP
>>> for batch in facequal.iter_score(["photos/"]):                   # doctest: +SKIP
...     print(batch.num_rows)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from facequal import __version__, schema
from facequal.models.zoo import DEFAULT_EMBEDDING_MODEL, ModelSpec, resolve_model
from facequal.options import (
    BACKENDS,
    EMBED_BATCH_SIZE,
    EmbedKeywords,
    RunKeywords,
    RunOptions,
    default_batch_size,
    run_keywords,
)
from facequal.pipeline.run import WorkerConfig, prepare_crop_folder, rows_to_table, run_chunks
from facequal.pipeline.sources import ImageRef, Sources, collect, fs_path_of, in_shard, parse_shard
from facequal.pipeline.store import ORDINAL, RunStore, RunSummary, done_keys

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11; only type checkers read it


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class RefList(Sequence[ImageRef]):
    """A run's image references, held compactly: paths as Arrow strings (about their length in
    bytes each) instead of one Python object per input, so that the input list of a long run costs
    little memory. Indexing and iteration give :class:`~facequal.pipeline.sources.ImageRef` values back;
    carried columns and given faces are kept as they came, and only when some input has them.
    """

    _BLOCK = 8192

    def __init__(self, refs: Sequence[ImageRef]) -> None:
        self._paths = pa.array([r.path for r in refs], pa.string())
        same = all(r.fs_path == r.path for r in refs)
        # File names need not be UTF-8: keep them as bytes (os.fsencode), decoded back on use.
        self._fs = None if same else pa.array([os.fsencode(r.fs_path) for r in refs], pa.binary())
        self._carried = [r.carried for r in refs] if any(len(r.carried) for r in refs) else None
        self._faces = [r.faces for r in refs] if any(r.faces is not None for r in refs) else None

    def __len__(self) -> int:
        return len(self._paths)

    def _make(self, i: int, path: str, fs: str | None) -> ImageRef:
        return ImageRef(path=path, fs_path=path if fs is None else fs,
                        carried=self._carried[i] if self._carried is not None else None,
                        faces=self._faces[i] if self._faces is not None else None)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        path = self._paths[i].as_py()
        return self._make(i, path, None if self._fs is None else os.fsdecode(self._fs[i].as_py()))

    def __iter__(self) -> Iterator[ImageRef]:
        for start in range(0, len(self), self._BLOCK):
            paths = self._paths.slice(start, self._BLOCK).to_pylist()
            fs = ([os.fsdecode(b) for b in self._fs.slice(start, self._BLOCK).to_pylist()]
                  if self._fs is not None else [None] * len(paths))
            for k, (p, f) in enumerate(zip(paths, fs, strict=True)):
                yield self._make(start + k, p, f)


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
    from facequal.schema import read_table, require_columns

    table = read_table(path)
    require_columns(table, ["path", "face_index", "status", "landmarks", "det_score", "bbox"], path)
    known = set(schema.SCORE_COLUMNS)
    carried_names = [c for c in table.column_names if c not in known]
    fields = {c: table.schema.field(c) for c in carried_names}
    refs: dict[str, ImageRef] = {}
    for row in table.to_pylist():
        ref = refs.get(row["path"])
        if ref is None:
            ref = refs[row["path"]] = ImageRef(path=row["path"], fs_path=fs_path_of(row["path"]), faces=[],
                                               carried={c: row[c] for c in carried_names})
        if row["status"] == schema.OK and row["landmarks"] is not None:
            ref.faces.append((row["face_index"], row["det_score"], row["bbox"], row["landmarks"]))
    return Sources(refs=list(refs.values()), carried_fields=fields)


class Job:
    """One scoring or embedding run: inputs resolved, model loaded, options fixed."""

    def __init__(self, inputs: Sequence[str | os.PathLike[str]], *, task: str = "quality",
                 options: RunOptions | None = None, spec: ModelSpec | None = None, **keywords: Any) -> None:
        """``options`` (defaults: :class:`RunOptions`'s), with any of its fields overridden by
        ``keywords`` (``Job(paths, jobs=1)``)."""
        from facequal.errors import UserError
        from facequal.models.session import providers_for
        from facequal.options import check_job_options

        opts = replace(options or RunOptions(), **keywords)
        if opts.batch_size is None:
            opts = replace(opts, batch_size=default_batch_size(task, opts.device))
        self.run_options = opts
        faces, from_scores, save_crops, backend, scheduler = (
            opts.faces, opts.from_scores, opts.save_crops, opts.backend, opts.scheduler)
        if not inputs and not from_scores:
            raise UserError("give INPUT paths or --from-scores FILE", param="from_scores")
        check_job_options(faces=faces, det_size=opts.det_size, det_threshold=opts.det_threshold,
                          min_face=opts.min_face, pad=opts.pad, max_pixels=opts.max_pixels,
                          batch_size=opts.batch_size, jobs=opts.jobs, threads=opts.threads,
                          chunk_size=opts.chunk_size)
        if backend not in BACKENDS:
            raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}", param="backend")
        if backend == "dask":
            from facequal.pipeline.executors import check_dask

            check_dask(scheduler)
        elif scheduler:
            raise UserError("--scheduler is for --backend dask", param="scheduler")
        providers_for(opts.device)  # fail fast, with the reason, before any work
        self.backend = backend
        self.scheduler = scheduler
        self.spec = spec or resolve_model(opts.model, contract_file=opts.contract, task=task)
        if opts.flip_tta and task != "embedding":
            raise UserError("--flip-tta is for embedding models", param="flip_tta")
        # Flip test-time augmentation: on by default for the dlib recogniser (it helps on LFW).
        self.flip_tta = task == "embedding" and (
            self.spec.contract.name == DEFAULT_EMBEDDING_MODEL if opts.flip_tta is None else bool(opts.flip_tta))
        self.face_options = opts.face_options()
        if from_scores:
            self.sources = sources_from_scores(from_scores)
        else:
            self.sources = collect(inputs, path_column=opts.path_column, identity_from=opts.identity_from)
        self.n_found = len(self.sources.refs)  # inputs found, before --shard (for "none found")
        sh = parse_shard(opts.shard)
        self.shard = sh
        refs = self.sources.refs if sh is None else [r for r in self.sources.refs if in_shard(r.path, sh)]
        self.refs: Sequence[ImageRef] = RefList(refs)
        # The list of reference objects is not kept: the compact one replaces it.
        self.sources.refs = []
        del refs
        self.summary: RunSummary | None = None
        self.jobs = opts.jobs or default_jobs()
        self.chunk_size = opts.chunk_size
        if save_crops:  # checked before any work; absolute, so crop_path works from any folder
            save_crops = prepare_crop_folder(save_crops)
        self.config = WorkerConfig(model=self.spec, faces=self.face_options, batch_size=opts.batch_size,
                                   threads=opts.threads, device=opts.device, save_crops=save_crops,
                                   given_faces=bool(from_scores), flip_tta=self.flip_tta)
        self.schema = output_schema(self.spec, self.sources.carried_fields)
        self.options = {"task": task, "faces": asdict(self.face_options), "model": self.spec.name,
                        "model_sha256": self.spec.sha256, "contract": self.spec.contract.to_dict(),
                        "shard": opts.shard, "identity_from": opts.identity_from, "path_column": opts.path_column,
                        "save_crops": save_crops, "from_scores": from_scores}
        if task == "embedding":
            self.options["flip_tta"] = self.flip_tta
        # What an output may never be, nor lie inside (checked by Job.run before any work).
        self.input_paths = [os.fspath(p) for p in inputs] + ([os.fspath(from_scores)] if from_scores else [])

    def metadata(self) -> dict[str, str]:
        """File-level metadata of the output."""
        import json

        return {"facequal.version": __version__, "facequal.model": self.spec.name,
                "facequal.model_sha256": self.spec.sha256,
                "facequal.contract": self.spec.contract.to_json(),
                "facequal.thresholds": json.dumps({"det_threshold": self.face_options.det_threshold,
                                                   "min_face": self.face_options.min_face})}

    def iter_tables(self, skip: set | None = None, progress=None) -> Iterator[pa.Table]:
        """Run, yielding one table (with the ordinal column) per finished chunk, in input order.

        Chunks stream through the workers (local processes or a Dask cluster) with a bounded
        number in flight, so memory does not grow with the number of inputs.
        """
        from facequal.pipeline.faces import file_stat

        refs = self.refs
        skipped = np.zeros(len(refs), dtype=bool)
        if skip:
            for i, r in enumerate(refs):
                skipped[i] = (r.path, *file_stat(r.fs_path)) in skip
        n_skipped = int(skipped.sum())
        todo = ((i, r) for i, r in enumerate(refs) if not skipped[i])  # streamed, never a list
        if progress is not None:
            progress.start(total=len(refs), done=n_skipped)
        has_carried = bool(self.sources.carried_fields)
        for chunk, rows in run_chunks(todo, self.config, jobs=self.jobs, chunk_size=self.chunk_size,
                                      backend=self.backend, scheduler=self.scheduler):
            carried = {i: r.carried for i, r in chunk} if has_carried else {}
            t = rows_to_table(rows, self.schema, carried)
            if progress is not None:
                progress.advance(t, len(chunk))
            yield t

    def run(self, output: str | os.PathLike[str] | None = None, *, overwrite: bool = False, resume: bool = False,
            progress=None, collect: bool = True) -> pa.Table | None:
        """Run to completion; with ``output`` the result is also written there (atomically).

        Finished chunks are committed to the output's work directory as they come, and the final
        output is written row group by row group. With ``collect=False`` (and an ``output``) no
        table is built, so memory stays flat however many inputs there are: the method returns
        None and :attr:`summary` holds the counts (images, statuses, median quality).

        The output is checked (never an input, never a file or folder facequal did not write)
        and locked for the whole run before any work. With ``resume`` every row of the earlier
        output is kept in its order; inputs new to this run follow in input order, and an input
        whose size or mtime changed replaces its old rows in place (see :mod:`facequal.pipeline.store`).
        """
        if output is None:
            tables = list(self.iter_tables(progress=progress))
            t = pa.concat_tables(tables) if tables else self.schema.append(pa.field(ORDINAL, pa.int64())).empty_table()
            t = t.sort_by([(ORDINAL, "ascending"), ("face_index", "ascending")])
            self.summary = RunSummary()
            self.summary.add(t, t.column(ORDINAL).to_numpy())
            return t.drop_columns([ORDINAL])
        output = os.fspath(output)
        store = RunStore(output=output, schema=self.schema, fingerprint=self.options,
                         metadata=self.metadata(), shard=self.shard)
        try:
            # Every check of the output, then its lock, before any work (no model, no worker).
            done = store.prepare(overwrite=overwrite, resume=resume, inputs=getattr(self, "input_paths", []))
            # After a resume every earlier row keeps its place and new inputs follow (see
            # facequal.pipeline.store); parts carry output positions, so the merge needs no path lookups.
            positions = None
            if done is not None:
                paths = self.refs._paths if isinstance(self.refs, RefList) else pa.array(
                    [r.path for r in self.refs], pa.string())
                positions = store.positions(paths)
            skip = done_keys(done)
            del done
            for table in self.iter_tables(skip=skip, progress=progress):
                store.commit(table, positions)
            del skip, positions
            result = store.finish(None, collect=collect)
        finally:
            store.close()  # the lock, when the run ends early (finish releases it too)
        self.summary = store.summary
        return result


_RUN_DOC = """
    Keywords (those of the command line's flags, with its defaults, from :mod:`facequal.options`):
    ``model`` (a bundled name or an ONNX path), ``contract`` (a JSON contract for a bare ONNX
    file), ``faces`` (``"subject"``, ``"largest"`` or ``"all"``), ``det_size``, ``det_threshold``,
    ``min_face``, ``pad``, ``aligned`` (inputs are aligned crops), ``max_pixels``, ``path_column``
    and ``identity_from`` (manifests), ``shard`` (``"K/N"``), ``batch_size``, ``jobs`` (None or 0:
    all cores), ``threads``, ``device`` (``"cpu"`` or ``"cuda"``), ``save_crops`` (a folder),
    ``from_scores`` (exactly the faces of a scores file, no detection), ``backend`` (``"local"`` or
    ``"dask"``) and ``scheduler``; with ``output``: ``overwrite``, ``resume``; ``progress``: an
    object with ``start`` / ``advance`` (as the CLI's progress bar).

    Raises :class:`facequal.errors.UserError` (a ``ValueError``; ``InputNotFoundError`` for a
    missing input, ``OutputExistsError`` for an existing output) naming the parameter at fault.
"""


@run_keywords(leave_out=("flip_tta",))
def score(inputs: Sequence[str | os.PathLike[str]] = (), output: str | os.PathLike[str] | None = None, *,
          overwrite: bool = False, resume: bool = False, progress: Any = None,
          **options: Unpack[RunKeywords]) -> pa.Table:
    """Detect, align and score every face in ``inputs`` (files, folders, manifests); returns the
    score table, one row per face (and per image without one), as ``facequal score`` writes it.
    With ``output`` the table is also written to that Parquet file (or dataset directory).
    """
    job = Job(inputs, task="quality", options=RunOptions(**options))
    return job.run(output, overwrite=overwrite, resume=resume, progress=progress)


@run_keywords(leave_out=("flip_tta",))
def iter_score(inputs: Sequence[str | os.PathLike[str]] = (), *, progress: Any = None,
               **options: Unpack[RunKeywords]) -> Iterator[pa.Table]:
    """Streaming form of :func:`score` (same keywords, no output): yields tables of rows as
    chunks finish, in input order. The options are checked on the first ``next()``."""
    job = Job(inputs, task="quality", options=RunOptions(**options))
    for t in job.iter_tables(progress=progress):
        yield t.drop_columns([ORDINAL])


@run_keywords(batch_size=EMBED_BATCH_SIZE)
def embed(inputs: Sequence[str | os.PathLike[str]] = (), output: str | os.PathLike[str] | None = None, *,
          overwrite: bool = False, resume: bool = False, progress: Any = None,
          **options: Unpack[EmbedKeywords]) -> pa.Table:
    """Face embeddings (L2-normalised, with the raw norm) for every face in ``inputs``; returns
    the table ``facequal embed`` writes.

    The default recogniser is dlib's ResNet converted to ONNX (needs ``facequal[embed]``).
    ``from_scores="scores.parquet"`` embeds exactly the faces of a scores file, without detection.
    ``flip_tta`` averages each face's embedding with that of its mirror image (default: on for
    the dlib recogniser, off for other models).
    """
    job = Job(inputs, task="embedding", options=RunOptions(**options))
    return job.run(output, overwrite=overwrite, resume=resume, progress=progress)


score.__doc__ += _RUN_DOC
iter_score.__doc__ += _RUN_DOC
embed.__doc__ += _RUN_DOC


def filter(scores: str | os.PathLike[str] | pa.Table, *, min_quality: float | None = None,  # noqa: A001
           max_quality: float | None = None, top_k: int | None = None,
           keep_fraction: float | None = None, per_group: int | None = None, group: str | None = None,
           status: Sequence[str] | None = None, min_face: float | None = None, where: str | None = None,
           output: str | os.PathLike[str] | None = None, paths_out: str | os.PathLike[str] | None = None,
           null: bool = False, to: str | os.PathLike[str] | None = None, mode: str = "copy",
           root: str | None = None, base: str | os.PathLike[str] | None = None, rejected: bool = False,
           dry_run: bool = False, overwrite: bool = False) -> pa.Table:
    """The rows of a score file (a path or a table) that pass, as ``facequal filter`` keeps them;
    returns the kept table (the rejected rows with ``rejected=True``).

    Criteria left None are not applied: ``min_quality`` / ``max_quality`` (the CLI's ``--min`` /
    ``--max``), ``top_k``, ``keep_fraction``, ``per_group`` with ``group`` (a column), ``status``
    (the statuses kept; default ``ok``), ``min_face`` (pixels), ``where`` (an expression over the
    columns, e.g. ``"abs(yaw) <= 45 and eye_distance >= 40"``: :mod:`facequal.curate.where`).
    Outputs, as the CLI's: ``output`` (Parquet), ``paths_out`` (a path list; ``null``:
    NUL-separated), ``to`` (a folder the images are copied, symlinked or hardlinked into:
    ``mode``, with ``root`` / ``base``); ``dry_run`` writes nothing; ``overwrite`` replaces
    outputs. See :func:`facequal.curate.select.filter_scores` for the counts.
    """
    from facequal.curate.select import filter_scores

    res = filter_scores(scores, min_quality=min_quality, max_quality=max_quality, top_k=top_k,
                        keep_fraction=keep_fraction, per_group=per_group, group=group, status=status,
                        min_face=min_face, where=where, output=output, paths_out=paths_out, null=null, to=to,
                        mode=mode, root=root, base=base, rejected=rejected, dry_run=dry_run,
                        overwrite=overwrite)
    assert res.table is not None
    return res.table


# The verbs that read finished tables, imported on first use: a scoring run (the CLI's `score`,
# a one-image cold start) then never loads pyarrow.compute and the report / evaluation code.
_LAZY_VERBS = {"pool": ("facequal.curate.pool", "pool"),
               "report": ("facequal.curate.report.build", "build_report"),
               "calibrate": ("facequal.eval.calibrate", "calibrate"),
               "evaluate": ("facequal.eval.evaluate", "evaluate"),
               "audit": ("facequal.curate.audit", "audit")}


def __getattr__(name: str) -> Any:
    if name in _LAZY_VERBS:
        import importlib

        module, attr = _LAZY_VERBS[name]
        globals()[name] = verb = getattr(importlib.import_module(module), attr)
        return verb
    raise AttributeError(f"module 'facequal.api' has no attribute {name!r}")
