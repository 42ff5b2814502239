"""The evaluation API behind ``facequal eval``; ``facequal calibrate`` (:mod:`facequal.eval.calibrate`)
loads its inputs through here too.

Both load the same inputs: quality sources (facequal score files, or any CSV/Parquet table with a
path column and a score column), one embeddings table, and a pair list (or the all-pairs
protocol). They resolve each pair's two faces in every table, drop the pairs that cannot be used
-- the same pairs for every source -- and hand the rest to :mod:`facequal.eval.metrics`.

Missing faces. A pair is unusable when either image has no embedding (not in the embeddings
table, or no face there). With ``missing="drop"`` (the default) a pair is also dropped when any
quality source lacks a quality for either image, so every source is scored on exactly the same
pairs; with ``missing="worst"`` such an image gets quality ``-inf`` in that source instead (it is
rejected first). Both are counted per reason in :class:`PairAccounting`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facequal.errors import UserError
from facequal.eval import metrics
from facequal.eval.pairs import PairList, PathIndex, all_pairs, read_pairs, select_folds

PATH_COLUMNS = ("path", "image", "file", "filename")
QUALITY_COLUMNS = ("quality", "score")
EMBEDDING_COLUMN = "embedding"
# Numeric columns of facequal files that are never a quality score.
_NOT_SCORES = {"face_index", "n_faces", "det_score", "inter_eye", "eye_distance", "yaw", "pitch", "roll",
               "sharpness", "brightness", "contrast", "width", "height", "file_size",
               "mtime_ns", "embedding_norm", "fold", "split", "identity"}
MISSING_POLICIES = ("drop", "worst")
NOT_FOUND, NO_FACE = "not found", "no face"


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class QualitySource:
    """One quality source: a table, its score column (None: pick it) and a label."""

    path: str
    column: str | None = None
    label: str = ""
    negate: bool = False                 # lower is better in this column ("-COLUMN")


def parse_quality_spec(spec: str) -> list[QualitySource]:
    """``[LABEL=]PATH[:COLUMN[,COLUMN...]]`` -> sources. ``-COLUMN`` means lower is better.

    ``samples.csv:dm100,dm050`` gives two sources from one file.
    """
    label = ""
    rest = spec
    if not Path(spec).exists() and "=" in spec.split(":")[0]:
        label, rest = spec.split("=", 1)
    if Path(rest).exists() or ":" not in rest:
        return [QualitySource(rest, None, label or Path(rest).stem)]
    path, cols = rest.rsplit(":", 1)
    out = []
    names = [c.strip() for c in cols.split(",") if c.strip()]
    if not names:
        raise UserError(f"{spec}: no column after ':'")
    for c in names:
        neg = c.startswith("-")
        col = c[1:] if neg else c
        if label and len(names) == 1:
            lab = label
        else:
            lab = f"{label or Path(path).stem}:{c}"
        out.append(QualitySource(path, col, lab, neg))
    return out


def _unique_labels(sources: list[QualitySource]) -> list[QualitySource]:
    seen: dict[str, int] = {}
    out = []
    for s in sources:
        n = seen.get(s.label, 0)
        seen[s.label] = n + 1
        out.append(s if n == 0 else QualitySource(s.path, s.column, f"{s.label}#{n + 1}", s.negate))
    return out


def as_sources(quality: Sequence[str | QualitySource]) -> list[QualitySource]:
    """Specs or sources -> sources with unique labels."""
    out: list[QualitySource] = []
    for q in quality:
        out.extend([q] if isinstance(q, QualitySource) else parse_quality_spec(str(q)))
    if not out:
        raise UserError("give at least one quality source")
    return _unique_labels(out)


@dataclass
class FaceTable:
    """The values (qualities or embeddings) of one table, per (stored path, face_index)."""

    label: str
    source: str
    index: PathIndex
    rows: dict[tuple[str, int], int]
    values: np.ndarray
    column: str
    extra: dict[str, list[Any]] = field(default_factory=dict)   # carried columns of the ok rows

    def find(self, path: str, face: int) -> tuple[str, int]:
        """(status, row): status is "ok", NOT_FOUND (path absent) or NO_FACE (no usable face)."""
        stored = self.index.lookup(path)
        if stored is None:
            return NOT_FOUND, -1
        row = self.rows.get((stored, face))
        return ("ok", row) if row is not None else (NO_FACE, -1)


def _path_column(table: Any, what: str) -> str:
    for c in PATH_COLUMNS:
        if c in table.column_names:
            return c
    raise UserError(f"{what} has no column 'path' (columns: {', '.join(table.column_names)})")


def _pick_quality_column(table: Any, src: QualitySource, path_col: str) -> str:
    import pyarrow as pa

    what = f"quality source {src.path}"
    if src.column is not None:
        if src.column not in table.column_names:
            raise UserError(f"{what} has no column {src.column!r} (columns: {', '.join(table.column_names)})")
        return src.column
    for c in QUALITY_COLUMNS:
        if c in table.column_names:
            return c
    numeric = [f.name for f in table.schema if f.name != path_col and f.name not in _NOT_SCORES
               and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))]
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise UserError(f"{what} has no score column: name one as {src.path}:COLUMN "
                        f"(columns: {', '.join(table.column_names)})")
    raise UserError(f"{what} has several score columns ({', '.join(numeric)}): name one or more as "
                    f"{src.path}:{numeric[0]} or {src.path}:{','.join(numeric)}")


def _ok_rows(table: Any, what: str, path_col: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All stored paths, and the face_index and a mask of the rows that carry a usable face."""
    import pyarrow.compute as pc

    from facequal import schema

    paths = table.column(path_col).to_pylist()
    if any(p is None for p in paths):
        raise UserError(f"{what}: column {path_col!r} has empty values")
    n = table.num_rows
    if "face_index" in table.column_names:
        fi = table.column("face_index").fill_null(schema.NO_FACE_INDEX).to_numpy().astype(np.int64)
    else:
        fi = np.zeros(n, dtype=np.int64)
    ok = fi >= 0
    if "status" in table.column_names:
        ok &= pc.fill_null(pc.equal(table.column("status"), schema.OK), False).to_numpy(zero_copy_only=False)
    return [str(p) for p in paths], fi, ok


def _index_rows(paths: list[str], fi: np.ndarray, ok: np.ndarray, what: str) -> dict[tuple[str, int], int]:
    rows: dict[tuple[str, int], int] = {}
    for i in np.flatnonzero(ok):
        key = (paths[i], int(fi[i]))
        if key in rows:
            raise UserError(f"{what}: {paths[i]!r} face {fi[i]} appears twice")
        rows[key] = int(i)
    return rows


def load_quality(src: QualitySource, suffix: int | None) -> FaceTable:
    """Read a quality source: rows with a finite score in the chosen column are faces."""
    import pyarrow as pa

    from facequal.schema import read_table

    t = read_table(src.path)
    what = f"quality source {src.path}"
    path_col = _path_column(t, what)
    col = _pick_quality_column(t, src, path_col)
    try:
        q = t.column(col).cast("float64").fill_null(np.nan).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        raise UserError(f"{what}: column {col!r} is not numeric") from None
    if src.negate:
        q = -q
    paths, fi, ok = _ok_rows(t, what, path_col)
    ok &= np.isfinite(q)
    extra = {c: t.column(c).to_pylist() for c in ("identity",) if c in t.column_names}
    return FaceTable(src.label, src.path, PathIndex(paths, suffix, what), _index_rows(paths, fi, ok, what),
                     q, col, extra)


def load_embeddings(path: str | Path, suffix: int | None, column: str = EMBEDDING_COLUMN) -> FaceTable:
    """Read an embeddings table (from ``facequal embed`` or any recogniser): rows L2-normalised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from facequal.schema import read_table

    t = read_table(path)
    what = f"embeddings {path}"
    path_col = _path_column(t, what)
    if column not in t.column_names:
        raise UserError(f"{what} has no column {column!r} (columns: {', '.join(t.column_names)})")
    col = t.column(column)
    if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
            or pa.types.is_large_list(col.type)):
        raise UserError(f"{what}: column {column!r} must be a list of numbers, not {col.type}")
    paths, fi, ok = _ok_rows(t, what, path_col)
    ok &= col.is_valid().to_numpy(zero_copy_only=False)
    sel = pa.array(ok)
    kept = col.filter(sel).combine_chunks() if ok.any() else None
    dim = 0
    vecs = np.zeros((t.num_rows, 0))
    if kept is not None and len(kept):
        lengths = pc.list_value_length(kept).to_numpy()
        if (lengths != lengths[0]).any():
            raise UserError(f"{what}: embeddings differ in length ({lengths.min()} to {lengths.max()})")
        dim = int(lengths[0])
        try:
            flat = pc.list_flatten(kept).cast("float64").to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            raise UserError(f"{what}: column {column!r} does not hold numbers") from None
        vecs = np.full((t.num_rows, dim), np.nan)
        vecs[ok] = flat.reshape(-1, dim)
        norms = np.linalg.norm(vecs, axis=1)
        good = np.isfinite(norms) & (norms > 0)
        ok &= good
        vecs[good] /= norms[good, None]
    extra = {c: t.column(c).to_pylist() for c in ("identity",) if c in t.column_names}
    return FaceTable("embeddings", str(path), PathIndex(paths, suffix, what),
                     _index_rows(paths, fi, ok, what), vecs, column, extra)


# --------------------------------------------------------------------------------------------
# Pairs -> usable pairs


@dataclass
class PairAccounting:
    """What happened to the listed pairs: how many were used, and why the others were not."""

    listed: int
    used: int
    mated: int
    non_mated: int
    dropped: int
    reasons: dict[str, int]                      # reason -> pairs (a pair may have several)
    images: dict[str, int]                       # reason -> distinct images
    examples: dict[str, list[str]]               # reason -> a few image paths
    worst: dict[str, int] = field(default_factory=dict)   # missing="worst": pairs given -inf

    def to_dict(self) -> dict[str, Any]:
        return {"listed": self.listed, "used": self.used, "mated": self.mated,
                "non_mated": self.non_mated, "dropped": self.dropped, "reasons": self.reasons,
                "images": self.images, "examples": self.examples, "set_to_worst": self.worst}


@dataclass
class PreparedPairs:
    """The usable pairs: comparison scores and the pair quality of every source."""

    pairs: PairList
    scores: np.ndarray
    mated: np.ndarray
    quality_a: np.ndarray              # (K, N) per source
    quality_b: np.ndarray
    image_a: np.ndarray                # image ids (for per-image figures)
    image_b: np.ndarray
    sources: list[QualitySource]
    accounting: PairAccounting
    match_suffix: int | None
    notes: list[str]

    @property
    def pair_quality(self) -> np.ndarray:
        return metrics.pair_quality(self.quality_a, self.quality_b)


def _identities(images: list[tuple[str, int]], by: str, emb: FaceTable, tables: list[FaceTable],
                identities: str | Path | None, suffix: int | None) -> list[str | None]:
    """The identity of each embeddings image for the all-pairs protocol."""
    if by == "parent":
        return [Path(p.replace("\\", "/")).parent.name or None for p, _ in images]
    if identities is not None:
        from facequal.schema import read_table

        t = read_table(identities)
        what = f"identities {identities}"
        path_col = _path_column(t, what)
        if by not in t.column_names:
            raise UserError(f"{what} has no column {by!r} (columns: {', '.join(t.column_names)})")
        idx = PathIndex([str(p) for p in t.column(path_col).to_pylist()], suffix, what)
        value = dict(zip((str(p) for p in t.column(path_col).to_pylist()),
                         t.column(by).to_pylist(), strict=True))
        out: list[str | None] = []
        for p, _ in images:
            stored = idx.lookup(p)
            v = value.get(stored) if stored is not None else None
            out.append(None if v is None else str(v))
        return out
    for table in (emb, *tables):
        if by in table.extra:
            col = table.extra[by]
            if table is emb:
                return [None if col[emb.rows[k]] is None else str(col[emb.rows[k]]) for k in images]
            res: list[str | None] = []
            for p, f in images:
                status, row = table.find(p, f)
                res.append(str(col[row]) if status == "ok" and col[row] is not None else None)
            return res
    raise UserError(f"--by {by}: no {by!r} column in the embeddings or quality files; use --by parent "
                    "(the parent folder's name), or --identities TABLE with path and identity columns")


def build_all_pairs(emb: FaceTable, tables: list[FaceTable], *, by: str = "identity",
                    identities: str | Path | None = None, restrict: set[str] | None = None,
                    per_identity: int = 50, non_mated: int = 20_000, seed: int = 0,
                    suffix: int | None = None) -> PairList:
    """All-pairs protocol over the faces with embeddings (face_index 0 of each image)."""
    images = sorted(k for k in emb.rows if k[1] == 0)
    ident = _identities(images, by, emb, tables, identities, suffix)
    keep = [i for i, v in enumerate(ident) if v is not None and (restrict is None or v in restrict)]
    if not keep:
        raise UserError("--all-pairs: no image with a face and a known identity"
                        + (" among the selected folds' people" if restrict is not None else ""))
    return all_pairs([images[i][0] for i in keep], [str(ident[i]) for i in keep], per_identity,
                     non_mated, seed)


def prepare_pairs(sources: Sequence[str | QualitySource], embeddings: str | Path,
                  pairs: str | Path | None = None, *, folds: Sequence[int] | None = None,
                  all_pairs_by: str | None = None, identities: str | Path | None = None,
                  per_identity: int = 50, non_mated: int = 20_000, match_suffix: int | None = None,
                  missing: str = "drop", seed: int = 0, embedding_column: str = EMBEDDING_COLUMN
                  ) -> PreparedPairs:
    """Load every input and resolve the pairs (see the module docstring for the missing-face rule).

    ``all_pairs_by`` switches to the all-pairs protocol, with identities from that column
    (``"parent"``: the parent folder's name); with an LFW ``pairs`` file and ``folds`` it is
    restricted to the people of those folds.
    """
    if missing not in MISSING_POLICIES:
        raise UserError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    srcs = as_sources(sources)
    notes: list[str] = []
    plist = read_pairs(pairs) if pairs is not None else None
    if plist is None and all_pairs_by is None:
        raise UserError("give a pair list (--pairs) or --all-pairs")
    if folds:
        if plist is None:
            raise UserError("--folds needs a pair list with folds (--pairs)")
        plist = select_folds(plist, folds)
    suffix = match_suffix if match_suffix is not None else (plist.default_suffix if plist else None)
    suffix = suffix or None
    emb = load_embeddings(embeddings, suffix, embedding_column)
    tables = [load_quality(s, suffix) for s in srcs]
    if all_pairs_by is not None:
        restrict = None
        if plist is not None:
            if plist.identity_a is None:
                raise UserError("--all-pairs with --pairs needs an LFW pair list (it selects the people)")
            restrict = set(plist.identity_a) | set(plist.identity_b or [])
        # In all-pairs mode the pairs name embeddings' stored paths: match those exactly there.
        plist = build_all_pairs(emb, tables, by=all_pairs_by, identities=identities, restrict=restrict,
                                per_identity=per_identity, non_mated=non_mated, seed=seed, suffix=suffix)
        emb.index = PathIndex([p for p, _ in emb.rows], None, emb.index.what)
    assert plist is not None
    notes.extend(plist.notes)
    if len(plist) == 0:
        raise UserError("the pair list is empty")
    return _resolve(plist, emb, tables, srcs, missing, suffix, notes)


def _resolve(plist: PairList, emb: FaceTable, tables: list[FaceTable], srcs: list[QualitySource],
             missing: str, suffix: int | None, notes: list[str]) -> PreparedPairs:
    n = len(plist)
    usable = np.ones(n, dtype=bool)
    reasons: dict[str, np.ndarray] = {}
    bad_images: dict[str, dict[str, None]] = {}
    worst: dict[str, int] = {}
    found_any: dict[str, bool] = {}

    def note(reason: str, i: int, path: str) -> None:
        reasons.setdefault(reason, np.zeros(n, dtype=bool))[i] = True
        bad_images.setdefault(reason, {})[path] = None

    def lookup(table: FaceTable, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.full((2, n), -1, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        found = False
        for side, (paths, faces) in enumerate(((plist.path_a, plist.face_a), (plist.path_b, plist.face_b))):
            for i, (p, f) in enumerate(zip(paths, faces, strict=True)):
                status, row = table.find(p, int(f))
                found |= status != NOT_FOUND
                if status == "ok":
                    rows[side, i] = row
                else:
                    bad[i] = True
                    note(f"{status} in {what}", i, p)
        found_any[what] = found
        return rows[0], rows[1], bad

    ea, eb, bad = lookup(emb, "embeddings")
    usable &= ~bad
    qa = np.full((len(tables), n), np.nan)
    qb = np.full((len(tables), n), np.nan)
    for k, table in enumerate(tables):
        ra, rb, bad = lookup(table, table.label)
        qa[k] = np.where(ra >= 0, table.values[np.maximum(ra, 0)], -np.inf)
        qb[k] = np.where(rb >= 0, table.values[np.maximum(rb, 0)], -np.inf)
        if missing == "drop":
            usable &= ~bad
        else:
            worst[table.label] = int((bad & usable).sum())
    for what, found in found_any.items():
        if not found:
            table = emb if what == "embeddings" else next(t for t in tables if t.label == what)
            hint = (f"pair-list path {plist.path_a[0]!r}, stored paths like {table.index.example()!r}"
                    if table.index.example() else "the table has no rows")
            fix = "" if suffix else "; match by trailing components with --match-suffix N"
            raise UserError(f"no image of the pair list is in {table.source} ({hint}){fix}")
    # Image ids: the embeddings row (one stored path and face).
    ids: dict[int, int] = {}
    img_a = np.array([ids.setdefault(int(r), len(ids)) for r in ea], dtype=np.int64)
    img_b = np.array([ids.setdefault(int(r), len(ids)) for r in eb], dtype=np.int64)
    keep = np.flatnonzero(usable)
    va, vb = emb.values[np.maximum(ea[keep], 0)], emb.values[np.maximum(eb[keep], 0)]
    scores = np.einsum("ij,ij->i", va, vb) if len(keep) else np.zeros(0)
    mated = plist.mated[keep]
    acc = PairAccounting(
        listed=n, used=len(keep), mated=int(mated.sum()), non_mated=int((~mated).sum()),
        dropped=n - len(keep), reasons={r: int(m.sum()) for r, m in reasons.items()},
        images={r: len(v) for r, v in bad_images.items()},
        examples={r: list(v)[:3] for r, v in bad_images.items()}, worst=worst)
    if acc.mated == 0 or acc.non_mated == 0:
        kind = "mated" if acc.mated == 0 else "non-mated"
        raise UserError(f"no usable {kind} pair ({acc.used:,} of {n:,} pairs usable): "
                        + "; ".join(f"{r}: {c:,}" for r, c in acc.reasons.items()) if acc.reasons
                        else f"the pair list has no {kind} pair")
    return PreparedPairs(plist.subset(usable), scores, mated, qa[:, keep], qb[:, keep], img_a[keep],
                         img_b[keep], srcs, acc, suffix, notes)


# --------------------------------------------------------------------------------------------
# evaluate


@dataclass
class Estimate:
    """A figure with its bootstrap percentile interval (None without bootstrap)."""

    value: float
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        ci = None if self.low is None else [_num(self.low), _num(self.high)]
        return {"value": _num(self.value), "ci": ci}


@dataclass
class SourceResult:
    """One quality source at one FMR."""

    label: str
    figures: dict[str, Estimate]
    erc: np.ndarray                       # FNMR per reject fraction
    edc: metrics.EdcCurve


@dataclass
class Difference:
    """``b`` minus ``a`` for each figure, on the same bootstrap replicates (paired)."""

    a: str
    b: str
    figures: dict[str, Estimate]


@dataclass
class FmrResult:
    """Everything at one target FMR."""

    fmr: float
    threshold: Estimate
    accepted_non_mated: int
    fnmr0: Estimate
    edc_best: float
    sources: list[SourceResult]
    differences: list[Difference]
    warnings: list[str]


@dataclass
class EvalResult:
    """The result of :func:`evaluate`; :meth:`to_dict` gives the JSON document."""

    sources: list[QualitySource]
    accounting: PairAccounting
    results: list[FmrResult]
    settings: dict[str, Any]
    reject_fractions: np.ndarray
    warnings: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "sources": [{"label": s.label, "path": s.path, "column": s.column, "lower_is_better": s.negate}
                        for s in self.sources],
            "pairs": self.accounting.to_dict(),
            "warnings": self.warnings,
            "notes": self.notes,
            "results": [{
                "fmr": r.fmr,
                "threshold": r.threshold.to_dict(),
                "accepted_non_mated": r.accepted_non_mated,
                "fnmr0": r.fnmr0.to_dict(),
                "edc_best_area": r.edc_best,
                "warnings": r.warnings,
                "sources": {s.label: {
                    **{k: v.to_dict() for k, v in s.figures.items()},
                    "erc_curve": {"reject": _nums(self.reject_fractions), "fnmr": _nums(s.erc)},
                    "edc_curve": {"discard": _nums(s.edc.discard), "fnmr": _nums(s.edc.fnmr)},
                } for s in r.sources},
                "differences": [{"a": d.a, "b": d.b,
                                 "b_minus_a": {k: v.to_dict() for k, v in d.figures.items()}}
                                for d in r.differences],
            } for r in self.results],
        }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _nums(xs: np.ndarray) -> list[float | None]:
    return [_num(float(x)) for x in np.asarray(xs, dtype=np.float64)]


def threshold_warnings(fmr: float, n_non_mated: int, n_errors: int) -> list[str]:
    """Warnings about the statistical footing at one FMR."""
    out = []
    k = metrics.accepted_count(fmr, n_non_mated)
    if k < metrics.MIN_ACCEPTED_NON_MATED:
        need = math.ceil(metrics.MIN_ACCEPTED_NON_MATED / fmr)
        out.append(f"FMR {fmr:g} with {n_non_mated:,} non-mated pairs: the threshold rests on the top "
                   f"{k + 1} non-mated score(s) (floor(FMR x N) = {k}); use at least {need:,} non-mated "
                   f"pairs (--all-pairs, --non-mated) or a larger FMR")
    if n_errors < 10:
        out.append(f"FMR {fmr:g}: only {n_errors} false non-match(es) before rejection; "
                   "the curves and their areas rest on very few pairs")
    return out


def _estimate(point: float, samples: np.ndarray | None, level: float) -> Estimate:
    if samples is None or samples.size == 0:
        return Estimate(float(point))
    lo, hi = metrics.percentile_interval(samples, level)
    return Estimate(float(point), float(lo), float(hi))


def evaluate(quality: Sequence[str | QualitySource], embeddings: str | Path,
             pairs: str | Path | None = None, *, folds: Sequence[int] | None = None,
             all_pairs_by: str | None = None, identities: str | Path | None = None,
             per_identity: int = 50, non_mated: int = 20_000, match_suffix: int | None = None,
             fmrs: Sequence[float] = metrics.DEFAULT_FMRS, edc_limit: float = metrics.DEFAULT_EDC_LIMIT,
             bootstrap: int = 1000, seed: int = 0, level: float = 0.95, missing: str = "drop",
             embedding_column: str = EMBEDDING_COLUMN, prepared: PreparedPairs | None = None) -> EvalResult:
    """Paper ERC and EDC figures of every quality source on the same pairs, with bootstrap intervals.

    See :mod:`facequal.eval.metrics` for the exact definitions. ``prepared`` skips loading (tests, reuse).
    """
    fmrs = [float(f) for f in fmrs]
    for f in fmrs:
        if not 0 < f < 1:
            raise UserError(f"--fmr must lie in (0, 1), not {f:g}")
    if not 0 < edc_limit <= 1:
        raise UserError(f"--edc-limit must lie in (0, 1], not {edc_limit:g}")
    if bootstrap < 0:
        raise UserError("--bootstrap must be >= 0")
    if not 0 < level < 1:
        raise UserError("the confidence level must lie in (0, 1)")
    prep = prepared or prepare_pairs(quality, embeddings, pairs, folds=folds, all_pairs_by=all_pairs_by,
                                     identities=identities, per_identity=per_identity, non_mated=non_mated,
                                     match_suffix=match_suffix, missing=missing, seed=seed,
                                     embedding_column=embedding_column)
    fractions = metrics.REJECT_FRACTIONS
    pq = prep.pair_quality
    point = metrics.point_figures(prep.scores, prep.mated, pq, fmrs, fractions, metrics.REPORT_FRACTIONS,
                                  edc_limit)
    boot = (metrics.bootstrap_figures(prep.scores, prep.mated, pq, bootstrap, seed, fmrs, fractions,
                                      metrics.REPORT_FRACTIONS, edc_limit) if bootstrap else None)
    labels = [s.label for s in prep.sources]
    results: list[FmrResult] = []
    all_warnings: list[str] = []
    ms, mq = prep.scores[prep.mated], pq[:, prep.mated]
    for fi, fmr in enumerate(fmrs):
        t = float(point.threshold[fi, 0])
        srcs = []
        for k, label in enumerate(labels):
            figs = {name: _estimate(v[fi, k, 0], None if boot is None else boot.values[name][fi, k], level)
                    for name, v in point.values.items()}
            srcs.append(SourceResult(label, figs,
                                     metrics.erc(prep.scores, prep.mated, pq[k], t, fractions),
                                     metrics.edc(ms, mq[k], t)))
        diffs = []
        for a in range(len(labels)):
            for b in range(a + 1, len(labels)):
                figs = {}
                for name, v in point.values.items():
                    samples = None if boot is None else boot.values[name][fi, b] - boot.values[name][fi, a]
                    figs[name] = _estimate(v[fi, b, 0] - v[fi, a, 0], samples, level)
                diffs.append(Difference(labels[a], labels[b], figs))
        fnmr0 = float(point.fnmr0[fi, 0])
        warns = threshold_warnings(fmr, prep.accounting.non_mated, int(round(fnmr0 * prep.accounting.mated)))
        all_warnings.extend(warns)
        results.append(FmrResult(
            fmr, _estimate(t, None if boot is None else boot.threshold[fi], level),
            metrics.accepted_count(fmr, prep.accounting.non_mated),
            _estimate(fnmr0, None if boot is None else boot.fnmr0[fi], level),
            float(point.edc_best[fi, 0]), srcs, diffs, warns))
    if prep.accounting.dropped:
        all_warnings.insert(0, f"{prep.accounting.dropped:,} of {prep.accounting.listed:,} pairs dropped "
                               "(same pairs for every source): " + reasons_text(prep.accounting))
    settings = {
        "pairs": str(pairs) if pairs is not None else None, "pair_kind": prep.pairs.kind,
        "folds": list(folds) if folds else None, "all_pairs_by": all_pairs_by,
        "per_identity": per_identity if all_pairs_by else None,
        "non_mated": non_mated if all_pairs_by else None,
        "embeddings": str(embeddings), "match_suffix": prep.match_suffix, "missing": missing,
        "fmrs": fmrs, "edc_limit": edc_limit, "bootstrap": bootstrap, "seed": seed, "level": level,
        "comparison": "cosine similarity; match iff score >= T",
        "pair_quality": "min of the two images' qualities",
        "erc": "keep pairs whose risk (minus pair quality) is <= np.percentile(risk, (1 - r) * 100); ties together",
        "edc": "mated pairs, discard at distinct pair-quality values, step pAUC",
    }
    return EvalResult(prep.sources, prep.accounting, results, settings, fractions, all_warnings, prep.notes)


def reasons_text(acc: PairAccounting) -> str:
    """Why pairs were dropped, in one line: each reason with its images and pairs."""
    return "; ".join(f"{r} ({acc.images[r]:,} images, {c:,} pairs)" for r, c in acc.reasons.items())


# --------------------------------------------------------------------------------------------
# Output


def to_json(doc: dict[str, Any]) -> str:
    """Strict JSON (no NaN), indented."""
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def write_json(doc: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """Write the JSON document atomically; refuse an existing file unless ``overwrite``."""
    from facequal._io import write_output

    return write_output(path, to_json(doc), overwrite=overwrite)
