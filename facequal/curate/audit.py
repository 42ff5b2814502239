"""Label-noise and duplicate audit of a face dataset (`facequal audit`).

``identity_outlier`` of a face (higher: less likely to belong to its labelled identity) is the
margin ``nearest_similarity - own_similarity`` plus a quarter of its identity's leave-one-out
tightness, ``TIGHTNESS_WEIGHT * (others - median others)``:

* ``own_similarity``: the weighted mean cosine between the face and the *other* faces of its
  identity (the face itself left out). Each other face j weighs ``q_j * a_j**2``: its quality
  (a blurred photo pulls little) times how well it agrees with its identity (``a_j``, its mean
  cosine to the identity's other faces, clipped at 0), so that a second intruder does not pull
  the centre either;
* ``nearest_similarity``: the highest weighted mean cosine between the face and the faces of
  one *other* identity (the same weights), i.e. the dot product with that identity's weighted
  mean vector (blocked matrix products, memory bounded by ``block``). An identity that
  :func:`identity_pairs` finds to be the same person can be left out (``same_person_threshold``
  of :func:`outlier_scores`, off in :func:`audit`): a face of a split person otherwise sits near
  margin 0 against its own other folder, but when intruders are look-alikes swapped both ways
  the two people's folders score as one person and the rule hides the intruders' true identity;
* ``others`` (:attr:`OutlierScores.others`, not an output column): the weighted mean cosine
  between two different faces of the face's identity *other than itself* (same weights;
  leave-one-out, O(N D) from the same sums), minus its median over the scored faces.
  Leaving an intruder out tightens its identity, leaving a true face out does not: the term
  raises the face whose identity-mates agree well with each other but not with it. This is
  what catches an *outsider* (a person absent from the dataset): its nearest other identity is
  a chance one, as far as its own, and the margin alone is noise there (bench, LFW outsiders at
  >= 2 photos: AP 0.952 -> 0.989; random 0.964 -> 0.972, look-alikes 0.955 -> 0.954). It needs
  two other faces: 0 in an identity of 2 (and when fewer than two of the others weigh anything).

Both terms are differences of (weighted mean) cosines, so under an affine rescaling of a
recogniser's similarities (s -> a + b s, b > 0) the score only scales by b and its sign, the
default threshold, stays (the agreement weights aside). ``TIGHTNESS_WEIGHT`` = 0.25 was chosen
on the LFW training people only (0.2-0.3 all stay within 0.005 AP of the better of the plain
margin and the plain centroid distance in every setting).

A face that looks more like another identity than like its own, in an identity of typical
tightness, gets a positive score; ``mislabel`` is ``identity_outlier > mislabel_threshold``
(default 0: closer to another identity than to its own, the own similarity credited or
debited by a quarter of how much tighter or looser its identity-mates are than the dataset's
typical identity). An identity of 2 faces has one similarity for both: the margin still tells
which of the two is closer to some other identity. A face alone in its identity has no own
similarity: its outlier score is null and it is never flagged.

Duplicates: see :mod:`facequal.curate.dedup` (exact pixels, or perceptual hash + pixel
correlation); faces of one identity whose embeddings agree above ``dup_embedding_cos`` are
added as candidates. Every face of a duplicate image gets ``duplicate_of`` = the path of the
first image of its group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal.errors import UserError
from facequal.options import IDENTITY_THRESHOLD, MISLABEL_THRESHOLD

DEFAULT_MISLABEL_THRESHOLD = MISLABEL_THRESHOLD  # the defaults live in facequal.options
DEFAULT_IDENTITY_THRESHOLD = IDENTITY_THRESHOLD
TIGHTNESS_WEIGHT = 0.25  # of the leave-one-out tightness term (module docstring)
DUP_EMBEDDING_COS = 0.9   # a loose gate: the pixels decide (dedup); only the 2 nearest are tried
DUP_NEIGHBOURS = 2
AUDIT_COLUMNS = ("identity_size", "identity_outlier", "own_similarity", "nearest_identity",
                 "nearest_similarity", "mislabel", "duplicate_of", "duplicate_kind", "dup_group")


@dataclass
class OutlierScores:
    """Per face (in input order): the audit figures of :func:`outlier_scores`; per identity its
    quality-weighted centre (unit norm) and weighted mean within-identity similarity."""

    outlier: np.ndarray      # float64, NaN for an identity of one face
    own: np.ndarray          # float64, NaN for an identity of one face
    nearest: np.ndarray      # index of the nearest other identity (-1: none)
    nearest_sim: np.ndarray  # float64
    size: np.ndarray         # faces in the face's identity
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (G, D)
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (G,) NaN for one face
    pairs: IdentityPairs | None = None  # the same-person identity pairs left out of ``nearest``
    others: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) leave-one-out spread, NaN: none


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 1e-12)


def _segment_sums(x: np.ndarray, order: np.ndarray, starts: np.ndarray, g: int, codes_sorted: np.ndarray) -> np.ndarray:
    """Per identity, the sum of the rows of ``x`` (rows sorted by identity: one reduceat)."""
    out = np.zeros((g,) + x.shape[1:], np.float64)
    if len(order):
        out[codes_sorted[starts]] = np.add.reduceat(x[order], starts, axis=0)
    return out


def outlier_scores(emb: np.ndarray, quality: np.ndarray, codes: np.ndarray, *,
                   block: int = 4096, same_person_threshold: float | None = None) -> OutlierScores:
    """Outlier score of each face (see the module docstring). ``emb`` (N, D), ``quality`` (N,)
    (NaN counts as 0.5), ``codes`` identity codes 0..G-1. ``same_person_threshold``: when
    given, identity pairs scoring at least this in :func:`identity_pairs` (two folders of one
    person) are not each other's nearest other identity, so a split person is not flagged
    (the pairs are returned in ``pairs``).

    Every weighted mean of cosines is a dot product with a weighted sum of unit vectors, so the
    leave-one-out figures need only per-identity sums (O(N D), whatever an identity's size) and
    the nearest other identity one (block, G) product at a time."""
    e = _unit(np.asarray(emb, np.float32))
    q = np.nan_to_num(np.asarray(quality, np.float64), nan=0.5)
    q = np.clip(q, 1e-3, None)  # a zero quality must not leave an identity without weights
    codes = np.asarray(codes, np.int64)
    n = len(codes)
    g = int(codes.max()) + 1 if n else 0
    cnt = np.bincount(codes, minlength=g)
    size = cnt[codes] if n else np.zeros(0, np.int64)
    order = np.argsort(codes, kind="stable")
    cs = codes[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if n else np.zeros(0, np.int64)
    multi = size >= 2
    # agreement a_j: mean cosine of j with the other faces of its identity (unweighted)
    s_plain = _segment_sums(e, order, starts, g, cs).astype(np.float32)
    agree = np.full(n, np.nan)
    dot = np.einsum("ij,ij->i", e, s_plain[codes]).astype(np.float64) if n else np.zeros(0)
    agree[multi] = (dot[multi] - 1.0) / (size[multi] - 1)
    w = q * np.clip(np.nan_to_num(agree, nan=1.0), 0.0, None) ** 2
    w_tot = np.bincount(codes, weights=w, minlength=g)
    lonely = w_tot[codes] - w <= 1e-9 * np.maximum(w_tot[codes], 1.0)  # the others weigh nothing
    fallback = (w_tot <= 1e-12)[codes]  # every face disagrees: quality alone
    w = np.where(fallback, q, w)
    w_tot = np.bincount(codes, weights=w, minlength=g)
    c_w = _segment_sums(e * w[:, None].astype(np.float32), order, starts, g, cs).astype(np.float32)
    own = np.full(n, np.nan)
    wdot = np.einsum("ij,ij->i", e, c_w[codes]).astype(np.float64) if n else np.zeros(0)
    loo = w_tot[codes] - w
    ok = multi & ~lonely
    own[ok] = (wdot[ok] - w[ok]) / loo[ok]
    plain = multi & lonely  # an identity of 2 where the other face weighs 0: its plain cosine
    own[plain] = agree[plain]
    # per identity: the weighted mean similarity between two different faces (its spread)
    w2 = np.bincount(codes, weights=w * w, minlength=g)
    norm2 = np.einsum("ij,ij->i", c_w, c_w).astype(np.float64) if g else np.zeros(0)
    spread = np.full(g, np.nan)
    many = (cnt >= 2) & (w_tot * w_tot - w2 > 1e-12)
    spread[many] = (norm2[many] - w2[many]) / (w_tot[many] ** 2 - w2[many])
    # per face: the same spread of its identity with the face left out (its identity-mates'
    # mutual similarity): |C - w_i e_i|^2 = |C|^2 - 2 w_i e_i.C + w_i^2, minus the others' squares
    others = np.full(n, np.nan)
    if n:
        sq = w2[codes] - w * w
        num = norm2[codes] - 2.0 * w * wdot + w * w - sq
        den = (w_tot[codes] - w) ** 2 - sq
        has = (size >= 3) & (den > 1e-9 * np.maximum((w_tot[codes] - w) ** 2, 1e-12))
        others[has] = num[has] / den[has]
    tight = np.zeros(n)
    if np.isfinite(others).any():
        tight = np.nan_to_num(others - float(np.nanmedian(others)), nan=0.0)
    centres = _unit(c_w).astype(np.float32)
    # the other identities' weighted *mean* vectors: e . mean is the weighted mean cosine with
    # their faces, the same kind of figure as own (a unit-norm centre would inflate it by 1/|mean|)
    means = (c_w / np.maximum(w_tot, 1e-12)[:, None]).astype(np.float32)
    pairs = None
    mask_face = mask_ident = np.zeros(0, np.int64)
    if same_person_threshold is not None:
        pairs = identity_pairs(centres, spread, cnt, threshold=same_person_threshold)
        # (face, identity) entries to skip: each face of a with b, each face of b with a
        first = np.zeros(g, np.int64)
        first[cs[starts]] = starts
        src = np.r_[pairs.a, pairs.b].astype(np.int64)
        dst = np.r_[pairs.b, pairs.a].astype(np.int64)
        if len(src):
            mask_face = np.concatenate([order[first[s_]:first[s_] + cnt[s_]] for s_ in src])
            mask_ident = np.repeat(dst, cnt[src])
            o = np.argsort(mask_face, kind="stable")
            mask_face, mask_ident = mask_face[o], mask_ident[o]
    nearest = np.full(n, -1, np.int64)
    nearest_sim = np.full(n, np.nan)
    if g >= 2:
        for a in range(0, n, block):  # (block, G) at a time: bounded memory
            sims = e[a:a + block] @ means.T
            sims[np.arange(len(sims)), codes[a:a + block]] = -np.inf
            lo_, hi_ = np.searchsorted(mask_face, [a, a + len(sims)])
            sims[mask_face[lo_:hi_] - a, mask_ident[lo_:hi_]] = -np.inf  # the same person's other folder
            j = np.argmax(sims, axis=1)
            best = sims[np.arange(len(sims)), j]
            left = np.isfinite(best)  # False: every other identity is this person's other folder
            nearest[a:a + block] = np.where(left, j, -1)
            nearest_sim[a:a + block] = np.where(left, best, np.nan)
    # no other identity to compare with: the distance to its own is all there is
    outlier = np.where(nearest >= 0, nearest_sim - own, 1.0 - own) + TIGHTNESS_WEIGHT * tight
    return OutlierScores(outlier=outlier, own=own, nearest=nearest, nearest_sim=nearest_sim, size=size,
                         centres=centres, spread=spread, pairs=pairs, others=others)


@dataclass
class IdentityPairs:
    """Identity pairs likely to be one person: index pairs ``a < b`` into the identities, the
    cosine of their centres and the same-person score (see :func:`identity_pairs`), best first."""

    a: np.ndarray
    b: np.ndarray
    centre_similarity: np.ndarray
    score: np.ndarray


def identity_pairs(centres: np.ndarray, spread: np.ndarray, sizes: np.ndarray, *,
                   threshold: float = DEFAULT_IDENTITY_THRESHOLD, block: int = 2048) -> IdentityPairs:
    """Identity pairs whose faces look as alike across the two as within each.

    ``score = cos(centre_a, centre_b) * |C_a| |C_b| / sqrt(spread_a * spread_b)``: the weighted
    mean similarity of a face of one identity with a face of the other, divided by the geometric
    mean of the two identities' own mean similarities between different faces (``spread``). It
    is about 1 for two folders of one person whatever their sizes (a plain centre cosine falls
    for small folders) and below 1 for two people. An identity of one face has no spread: the
    median spread of the dataset stands in. ``centres`` are unit norm; ``|C|`` is recovered from
    the spread (``|C|^2 = spread + (1 - spread) / n_eff``, uniform-weight approximation). Pairs
    with ``score >= threshold``, computed (block, G) at a time."""
    g = len(centres)
    med = float(np.nanmedian(spread)) if np.isfinite(spread).any() else 0.5
    sp = np.clip(np.where(np.isfinite(spread), spread, med), 1e-6, None)
    n = np.maximum(np.asarray(sizes, np.float64), 1.0)
    cnorm = np.sqrt(np.clip(sp + (1.0 - sp) / n, 1e-12, None))  # |mean of unit vectors|
    rel = cnorm / np.sqrt(sp)  # score = cos * rel_a * rel_b
    out_a, out_b, out_c, out_s = [], [], [], []
    c = np.asarray(centres, np.float32)
    for a0 in range(0, g, block):
        sims = c[a0:a0 + block] @ c.T
        score = sims * rel[a0:a0 + block, None] * rel[None, :]
        rows, cols = np.nonzero(score >= threshold)
        keep = cols > rows + a0  # each pair once, never an identity with itself
        rows, cols = rows[keep], cols[keep]
        out_a.append(rows + a0)
        out_b.append(cols)
        out_c.append(sims[rows, cols].astype(np.float64))
        out_s.append(score[rows, cols].astype(np.float64))
    if not out_a:
        z = np.zeros(0, np.int64)
        return IdentityPairs(z, z, np.zeros(0), np.zeros(0))
    a_, b_, c_, s_ = (np.concatenate(x) for x in (out_a, out_b, out_c, out_s))
    o = np.lexsort((b_, a_, -s_))
    return IdentityPairs(a_[o], b_[o], c_[o], s_[o])


def baseline_outlier(emb: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The plain leave-one-out centroid distance (``1 - cos(face, mean of the others)``), the
    baseline the bench compares with; NaN for identities of one face."""
    e = _unit(np.asarray(emb, np.float64))
    codes = np.asarray(codes, np.int64)
    out = np.full(len(codes), np.nan)
    sums = np.zeros((int(codes.max()) + 1, e.shape[1]))
    np.add.at(sums, codes, e)
    cnt = np.bincount(codes)
    for i in range(len(codes)):
        if cnt[codes[i]] > 1:
            c = sums[codes[i]] - e[i]
            out[i] = 1.0 - float(e[i] @ c) / max(float(np.linalg.norm(c)), 1e-12)
    return out


def _in_workers(func: Callable[[list], list], items: list, jobs: int, chunk: int) -> list:
    """``func`` over ``items`` in chunks, in ``jobs`` worker processes, results in input order."""
    from facequal.pipeline.executors import make_executor

    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    out: list = []
    for _, res in make_executor("local", jobs).map_ordered(func, chunks, lambda c: (c,)):
        out += res
    return out


def _identity_codes(faces, by: str) -> tuple[np.ndarray, pa.Array]:
    if by == "parent":
        names = pa.array([os.path.basename(os.path.dirname(k[0])) for k in faces.keys], pa.string())
    else:
        names = faces.groups
        if pa.types.is_dictionary(names.type):
            names = names.cast(names.type.value_type)
        names = pc.cast(names, pa.string())
    enc = pc.dictionary_encode(names)
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64), enc.dictionary


@dataclass
class AuditResult:
    """The audited table (the score rows plus the audit columns), the identity pairs likely to
    be one person (``identities``: ``identity_a``, ``identity_b``, ``size_a``, ``size_b``,
    ``centre_similarity``, ``score``, best first) and notes for the user."""

    table: pa.Table
    identities: pa.Table | None = None
    n_mislabel: int = 0
    n_duplicates: int = 0
    messages: list[str] = field(default_factory=list)
    report: object | None = None  # the ReportResult of ``report`` when one was written


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_outputs(inputs: list, outputs: dict[str, str | Path | None], overwrite: bool) -> None:
    """Every output before any work: not an input, not another output, writable."""
    from facequal._io import check_output_writable

    named = [(flag, o) for flag, o in outputs.items() if o is not None]
    for flag, out in named:
        for src in inputs:
            if not isinstance(src, pa.Table) and _same_file(src, out):
                raise UserError(f"{out}: is an input of the audit; choose another {flag}")
    for i, (flag, out) in enumerate(named):
        for flag2, out2 in named[:i]:
            if _same_file(out, out2):
                raise UserError(f"{out}: given as both {flag2} and {flag}")
    for flag, out in named:
        if flag == "--report" and (os.fspath(out).endswith(("/", os.sep)) or os.path.isdir(out)):
            raise UserError(f"{out}: --report writes one HTML file, not a folder")
        check_output_writable(out, overwrite)


def audit(
    scores: str | Path | pa.Table,
    embeddings: str | Path | pa.Table,
    *,
    by: str = "identity",
    mislabel_threshold: float = DEFAULT_MISLABEL_THRESHOLD,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    duplicates: bool = True,
    image_root: str | Path | None = None,
    embedding_column: str = "embedding",
    drop_invalid: bool = False,
    jobs: int = 1,
    output: str | Path | None = None,
    identities: str | Path | None = None,
    report: str | Path | None = None,
    overwrite: bool = False,
    warn: Callable[[str], None] | None = None,
) -> AuditResult:
    """Score every ``ok`` face for label noise, find duplicate images and identity pairs that
    are likely one person.

    ``by``: the identity column of the scores (or of the embeddings), or ``"parent"`` for the
    image's folder name. ``mislabel_threshold``: ``mislabel`` is ``identity_outlier`` above it.
    ``identity_threshold``: identity pairs with a same-person score at least this
    (:func:`identity_pairs`). ``duplicates``: decode the images (paths relative to
    ``image_root``, default the current folder) to find exact and near duplicates; an image that
    cannot be read is simply not checked. ``output``: the score table (every row, every column,
    same order) plus ``identity`` (when the scores have none), ``identity_size``,
    ``identity_outlier``, ``own_similarity``, ``nearest_identity``, ``nearest_similarity``,
    ``mislabel``, ``duplicate_of``, ``duplicate_kind`` and ``dup_group``; rows that were not
    audited (not ``ok``, no embedding) hold nulls. ``identities``: a Parquet file of the
    identity pairs. ``report``: an HTML page of the audit
    (:mod:`facequal.curate.report.audit_view`). Every output is checked before any work and
    written atomically; an existing one is replaced only with ``overwrite``.
    """
    from facequal._io import write_parquet_output
    from facequal.curate.pool import join_faces
    from facequal.options import check_float, check_int
    from facequal.schema import read_table

    check_float("--mislabel-threshold", mislabel_threshold)
    check_float("--identity-threshold", identity_threshold)
    check_int("--jobs", jobs, 1)
    if by == "":
        raise UserError("--by must name an identity column or be 'parent'", param="by")
    _check_outputs([scores, embeddings], {"--output": output, "--identities": identities, "--report": report},
                   overwrite)
    st = scores if isinstance(scores, pa.Table) else read_table(scores)
    et = embeddings if isinstance(embeddings, pa.Table) else read_table(embeddings)
    st = st.drop_columns([c for c in AUDIT_COLUMNS if c in st.column_names])  # a re-audit
    faces = join_faces(st, et, by="path" if by == "parent" else by, embedding_column=embedding_column,
                       needs_quality=False, drop_invalid=drop_invalid)
    messages = list(faces.messages)
    codes, labels = _identity_codes(faces, by)
    # same_person_threshold stays off: with look-alike intruders swapped both ways two people's
    # folders score as one person and the rule hides each intruder's true identity (bench: AP
    # 0.955 -> 0.723 with LFW look-alike intruders)
    sc = outlier_scores(faces.embeddings, faces.quality, codes)
    n_rows = st.num_rows
    row_of = {k: i for i, k in enumerate(zip(st["path"].to_pylist(), st["face_index"].to_pylist(), strict=True))}
    rows = np.array([row_of[k] for k in faces.keys], np.int64)

    def scatter(values: list, typ: pa.DataType) -> pa.Array:
        full: list = [None] * n_rows
        for r, v in zip(rows, values, strict=True):
            full[r] = v
        return pa.array(full, typ)

    def fin(x: np.ndarray) -> list:
        return [float(v) if np.isfinite(v) else None for v in x]

    label_list = labels.to_pylist()
    flag = [bool(np.isfinite(o) and o > mislabel_threshold) for o in sc.outlier]
    dup_of, dup_kind, dup_group = [None] * len(rows), [None] * len(rows), [None] * len(rows)
    if duplicates:
        lms = _landmarks(st, rows)
        dup_of, dup_kind, dup_group = _duplicate_columns(faces, codes, lms, image_root, jobs, messages)
    cols = {
        "identity_size": scatter([int(s) for s in sc.size], pa.int32()),
        "identity_outlier": scatter(fin(sc.outlier), pa.float32()),
        "own_similarity": scatter(fin(sc.own), pa.float32()),
        "nearest_identity": scatter([label_list[j] if j >= 0 else None for j in sc.nearest], pa.string()),
        "nearest_similarity": scatter(fin(sc.nearest_sim), pa.float32()),
        "mislabel": scatter(flag, pa.bool_()),
        "duplicate_of": scatter(dup_of, pa.string()),
        "duplicate_kind": scatter(dup_kind, pa.string()),
        "dup_group": scatter(dup_group, pa.int64()),
    }
    table = st
    if "identity" not in st.column_names:
        table = table.append_column("identity", scatter([label_list[c] for c in codes], pa.string()))
    for name, col in cols.items():
        table = table.append_column(name, col)
    sizes = np.bincount(codes, minlength=len(label_list))
    ip = sc.pairs if sc.pairs is not None else identity_pairs(sc.centres, sc.spread, sizes,
                                                             threshold=identity_threshold)
    id_table = pa.table({
        "identity_a": pa.array([label_list[i] for i in ip.a], pa.string()),
        "identity_b": pa.array([label_list[i] for i in ip.b], pa.string()),
        "size_a": pa.array(sizes[ip.a], pa.int32()),
        "size_b": pa.array(sizes[ip.b], pa.int32()),
        "centre_similarity": pa.array(ip.centre_similarity, pa.float32()),
        "score": pa.array(ip.score, pa.float32()),
    })
    if warn is not None:
        for m in messages:
            warn(m)
    res = AuditResult(table=table, identities=id_table, n_mislabel=int(sum(flag)),
                      n_duplicates=sum(d is not None for d in dup_of), messages=messages)
    if output is not None:
        write_parquet_output(table, output, overwrite=overwrite)
    if identities is not None:
        write_parquet_output(id_table, identities, overwrite=overwrite)
    if report is not None:
        from facequal.curate.report.audit_view import build_audit_report

        res.report = build_audit_report(table, report, identities=id_table, base=image_root,
                                        mislabel_threshold=mislabel_threshold, jobs=jobs, overwrite=overwrite,
                                        source=str(scores) if not isinstance(scores, pa.Table) else "")
    return res


def _landmarks(st: pa.Table, rows: np.ndarray) -> np.ndarray | None:
    """(F, 5, 2) landmarks of the audited faces, None when the score file has none for some."""
    if "landmarks" not in st.column_names or not len(rows):
        return None
    col = st["landmarks"].take(pa.array(rows, pa.int64())).combine_chunks()
    if col.null_count or not pa.types.is_list(col.type) and not pa.types.is_fixed_size_list(col.type):
        return None
    inner = col.flatten()
    if inner.null_count:
        return None
    flat = np.asarray(inner.flatten().to_numpy(zero_copy_only=False), np.float64)
    return flat.reshape(-1, 5, 2) if flat.size == len(rows) * 10 else None


def _embedding_neighbours(e: np.ndarray, codes: np.ndarray, k: int, min_cos: float,
                          block: int = 2048) -> np.ndarray:
    """(P, 2) face pairs: each face with its ``k`` most similar faces of its own identity (cosine
    at least ``min_cos``), in (block, identity size) products: O(N k) pairs, bounded memory."""
    order = np.argsort(codes, kind="stable")
    cs = codes[order]
    bounds = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1], True]) if len(cs) else np.zeros(1, np.int64)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a < 2:
            continue
        idx = order[a:b]
        kk = min(k, len(idx) - 1)
        for r in range(0, len(idx), block):
            s = e[idx[r:r + block]] @ e[idx].T
            s[np.arange(len(s)), np.arange(r, r + len(s))] = -np.inf  # never oneself
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            ok = np.take_along_axis(s, top, axis=1) >= min_cos
            i = np.repeat(idx[r:r + block], kk).reshape(-1, kk)[ok]
            out.append(np.stack([i, idx[top[ok]]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def _confirm_exact(exact: list[str | None], files: list[str], jobs: int) -> dict[int, str | None]:
    """Replace, in place, the keys of reduced JPEG decodes that two or more images share with
    their full-resolution pixel keys (:func:`facequal.curate.phash.exact_key`), so that "exact"
    means the same full-size pixels; returns the full keys computed (image index -> key)."""
    from collections import Counter

    from facequal.curate.phash import exact_keys_many

    shared = Counter(e for e in exact if e is not None and e.startswith("reduced:"))
    need = [i for i, e in enumerate(exact) if e is not None and shared.get(e, 0) > 1]
    keys = dict(zip(need, _in_workers(exact_keys_many, [files[i] for i in need], jobs, 64), strict=True))
    for i in need:  # an image that fails to decode now matches nothing
        exact[i] = keys[i] if keys[i] is not None else f"unconfirmed:{i}"
    return keys


def _exact_kinds(dups, exact: list[str | None], files: list[str], jobs: int,
                 keys: dict[int, str | None]) -> None:
    """Relabel as ``exact`` the near duplicates whose full-resolution pixels are the same (a PNG
    re-save of a JPEG's pixels: the JPEG was fingerprinted from a reduced decode)."""
    from facequal.curate.phash import exact_keys_many

    pairs = [(i, int(dups.original[i])) for i in np.flatnonzero(dups.original >= 0) if dups.kind[i] == "near"]
    pairs = [(i, j) for i, j in pairs if any((exact[k] or "").startswith("reduced:") for k in (i, j))]
    need = sorted({k for pair in pairs for k in pair} - set(keys))
    keys.update(zip(need, _in_workers(exact_keys_many, [files[k] for k in need], jobs, 64), strict=True))
    for i, j in pairs:
        if keys.get(i) is not None and keys.get(i) == keys.get(j):
            dups.kind[i] = "exact"


def _duplicate_columns(faces, codes: np.ndarray, lms: np.ndarray | None, image_root: str | Path | None,
                       jobs: int, messages: list[str]) -> tuple[list, list, list]:
    """duplicate_of / duplicate_kind / dup_group per joined face, from image fingerprints, with
    the landmark-registered check for crops (:mod:`facequal.curate.dedup`)."""
    from facequal.curate.dedup import find_duplicates, registered_many
    from facequal.curate.phash import THUMB, fingerprint_many
    from facequal.pipeline.sources import fs_path_of

    root = os.fspath(image_root) if image_root is not None else "."
    image_of: dict[str, int] = {}
    face_image = np.array([image_of.setdefault(k[0], len(image_of)) for k in faces.keys], np.int64)
    image_paths = list(image_of)
    files = [os.path.join(root, fs_path_of(p)) for p in image_paths]
    fps = _in_workers(fingerprint_many, files, jobs, 64)
    bad = sum(f is None for f in fps)
    if bad:
        messages.append(f"{bad} image(s) could not be decoded and were not checked for duplicates")
    exact = [f.exact if f is not None else None for f in fps]
    full_keys = _confirm_exact(exact, files, jobs)
    phash = np.array([f.phash if f is not None else 0 for f in fps], np.uint64)
    thumbs = np.stack([f.thumb if f is not None else np.zeros(THUMB * THUMB, np.float32) for f in fps]) \
        if fps else np.zeros((0, THUMB * THUMB), np.float32)
    # the nearest faces of one identity by embedding: candidates the hash bands miss (crops)
    nb = _embedding_neighbours(_unit(np.asarray(faces.embeddings, np.float32)), codes, DUP_NEIGHBOURS,
                               DUP_EMBEDDING_COS)
    face_of_pair = {}
    for fa, fb in nb:  # which faces' landmarks the registered check of an image pair uses
        ia, ib = int(face_image[fa]), int(face_image[fb])
        face_of_pair.setdefault((min(ia, ib), max(ia, ib)), (fa, fb) if ia <= ib else (fb, fa))
    first_face = {}
    for f, i in enumerate(face_image):
        first_face.setdefault(int(i), f)
    register = None
    if lms is not None:
        def register(pairs: np.ndarray) -> np.ndarray:
            items = []
            for i, j in pairs:
                fa, fb = face_of_pair.get((int(i), int(j)), (first_face[int(i)], first_face[int(j)]))
                items.append((files[int(i)], lms[fa], files[int(j)], lms[fb]))
            srt = sorted(range(len(items)), key=lambda t: items[t][0])  # each worker decodes an image once
            res = _in_workers(registered_many, [items[t] for t in srt], jobs, 256)
            out = np.empty(len(items))
            out[srt] = res
            return out
    dups = find_duplicates(exact, phash, thumbs, extra_pairs=face_image[nb] if len(nb) else None,
                           register=register)
    _exact_kinds(dups, exact, files, jobs, full_keys)
    dup_of = [image_paths[int(dups.original[i])] if dups.original[i] >= 0 else None for i in face_image]
    kind = [dups.kind[i] for i in face_image]
    group = [int(dups.group[i]) if dups.group[i] >= 0 else None for i in face_image]
    return dup_of, kind, group
