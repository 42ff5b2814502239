"""Set-level, quality-weighted feature pooling (`facequal pool`).

A template is one embedding for a set of faces (an identity, a video track, an album): the
weighted mean of its members' L2-normalised embeddings, L2-normalised again. Weights:

* ``mean``     -- w_i = 1 / n;
* ``quality``  -- w_i = q_i / sum_j q_j (the paper's IJB-B protocol); uniform when every q is 0;
* ``softmax``  -- w_i = exp(q_i / tau) / sum_j exp(q_j / tau);
* ``topk``     -- the plain mean of the k best faces.

``min_quality`` first discards members below a threshold. A group whose weighted mean is zero
(members that cancel out) gets no template rather than a zero or made-up one.
:func:`pool_arrays` is the numpy core (used by the benchmark); :func:`pool` reads and joins the
files and writes the templates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facequal import schema
from facequal.errors import UserError
from facequal.schema import read_table, require_columns, require_group_column

METHODS = ("mean", "quality", "softmax", "topk")
IF_EMPTY = ("drop", "best", "error")


# ---------------------------------------------------------------------------------------------
# numpy core
# ---------------------------------------------------------------------------------------------
def member_weights(q: np.ndarray, method: str, *, tau: float = 0.1, k: int = 3) -> np.ndarray:
    """Weights (summing to 1) of one template's members with qualities ``q``."""
    n = len(q)
    if n == 0:
        return np.zeros(0)
    if method == "mean":
        return np.full(n, 1.0 / n)
    if method == "quality":
        w = np.clip(np.asarray(q, dtype=np.float64), 0.0, None)
        s = w.sum()
        return w / s if s > 0 else np.full(n, 1.0 / n)
    if method == "softmax":
        z = np.asarray(q, dtype=np.float64) / tau
        w = np.exp(z - z.max())
        return w / w.sum()
    if method == "topk":
        order = np.lexsort((np.arange(n), -np.asarray(q, dtype=np.float64)))[:k]
        w = np.zeros(n)
        w[order] = 1.0 / len(order)
        return w
    raise UserError(f"unknown pooling method {method!r} (one of: {', '.join(METHODS)})")


@dataclass
class Pooled:
    """Templates of :func:`pool_arrays`, one per group code ``0 .. n_groups-1`` (kept ones only)."""

    groups: np.ndarray  # group codes that got a template
    templates: np.ndarray  # (G, D) float32, L2-normalised
    n_members: np.ndarray  # faces in the group
    n_used: np.ndarray  # faces with a non-zero weight
    q_mean: np.ndarray  # quality over the used faces
    q_min: np.ndarray
    q_max: np.ndarray
    empty: list[int] = field(default_factory=list)  # codes of groups left empty by min_quality
    # codes of groups whose weighted mean is (numerically) zero or not finite: members that
    # cancel out (e and -e) have no direction, so they get no template (see DEGENERATE_NORM)
    degenerate: list[int] = field(default_factory=list)


# Below this norm of the weighted mean of unit vectors a template has no direction: what is left
# is rounding noise of float32 embeddings (about 1e-7), and normalising it would make it up.
DEGENERATE_NORM = 1e-6


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 1e-12)


def pool_arrays(
    emb: np.ndarray,
    q: np.ndarray,
    codes: np.ndarray,
    *,
    method: str = "quality",
    tau: float = 0.1,
    k: int = 3,
    min_quality: float | None = None,
    if_empty: str = "drop",
) -> Pooled:
    """Pool (N, D) embeddings into one template per group code.

    ``q`` may hold NaN only with ``method="mean"`` and no ``min_quality``. Groups whose members
    all fall below ``min_quality`` are dropped (``if_empty="drop"``), keep their single best face
    (``"best"``), or raise (``"error"``). A group whose weighted mean has a norm below
    :data:`DEGENERATE_NORM` (or is not finite) gets no template and is listed in
    ``Pooled.degenerate``: normalising it would turn rounding noise into a unit vector.
    """
    if method not in METHODS:
        raise UserError(f"unknown pooling method {method!r} (one of: {', '.join(METHODS)})")
    if if_empty not in IF_EMPTY:
        raise UserError(f"unknown --if-empty {if_empty!r} (one of: {', '.join(IF_EMPTY)})")
    if method == "softmax" and not (math.isfinite(tau) and tau > 0):
        raise UserError(f"--tau must be a positive number, not {tau}")
    if method == "topk" and k < 1:
        raise UserError(f"--k must be >= 1, not {k}")
    emb = l2_normalise(emb)
    q = np.asarray(q, dtype=np.float64)
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    c = codes[order]
    bounds = np.flatnonzero(np.r_[True, c[1:] != c[:-1], True]) if len(c) else np.array([0])
    out_g, out_t, n_mem, n_used, qm, qmin, qmax, empty = [], [], [], [], [], [], [], []
    degenerate: list[int] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        idx = order[a:b]
        qg = q[idx]
        if min_quality is not None:
            ok = qg >= min_quality
            if not ok.any():
                empty.append(int(c[a]))
                if if_empty == "drop":
                    continue
                if if_empty == "error":
                    continue  # reported below, once, with every empty group
                ok = np.zeros(len(idx), bool)
                ok[int(np.lexsort((np.arange(len(qg)), -qg))[0])] = True
            idx, qg = idx[ok], qg[ok]
        w = member_weights(qg, method, tau=tau, k=k)
        t = w @ emb[idx]
        norm = float(np.linalg.norm(t))
        if not (math.isfinite(norm) and norm >= DEGENERATE_NORM):
            degenerate.append(int(c[a]))
            continue
        used = w > 0
        out_g.append(int(c[a]))
        out_t.append(t)
        n_mem.append(b - a)
        n_used.append(int(used.sum()))
        qu = qg[used]
        fin = qu[np.isfinite(qu)]
        qm.append(fin.mean() if len(fin) else np.nan)
        qmin.append(fin.min() if len(fin) else np.nan)
        qmax.append(fin.max() if len(fin) else np.nan)
    if empty and if_empty == "error":
        raise UserError(f"{len(empty)} group(s) have no face with quality >= {min_quality}")
    d = emb.shape[1] if emb.ndim == 2 else 0
    templates = l2_normalise(np.asarray(out_t).reshape(-1, d)).astype(np.float32)
    return Pooled(
        groups=np.asarray(out_g, dtype=np.int64),
        templates=templates,
        n_members=np.asarray(n_mem, dtype=np.int64),
        n_used=np.asarray(n_used, dtype=np.int64),
        q_mean=np.asarray(qm),
        q_min=np.asarray(qmin),
        q_max=np.asarray(qmax),
        empty=empty,
        degenerate=degenerate,
    )


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def embedding_matrix(
    col: pa.ChunkedArray | pa.Array, name: str = "embedding"
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list or list column -> ((N, D) float64 with NaN rows where invalid, valid mask)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    t = arr.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise UserError(f"column {name!r} is not a list of numbers (type {t})")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise UserError(f"column {name!r} holds {t.value_type}, not numbers")
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool) if n else np.zeros(0, bool)
    if not valid.any():  # no vector at all (an all-null column): every row is invalid
        return np.full((n, 0), np.nan), valid
    present = arr.filter(pa.array(valid))
    lengths = np.asarray(pc.list_value_length(present).to_numpy(zero_copy_only=False))
    dims = np.unique(lengths)
    if len(dims) > 1:
        raise UserError(
            f"column {name!r} holds vectors of different lengths ({', '.join(map(str, dims[:5]))})"
        )
    d = int(dims[0]) if len(dims) else 0
    if d == 0 and valid.any():
        raise UserError(f"column {name!r} holds empty vectors")
    flat = pc.cast(pc.list_flatten(present), pa.float64()).to_numpy(zero_copy_only=False)
    out = np.full((n, d), np.nan)
    out[valid] = np.asarray(flat, dtype=np.float64).reshape(-1, d)
    good = valid & np.isfinite(out).all(axis=1) & (np.linalg.norm(np.nan_to_num(out), axis=1) > 0)
    return out, good


def _ok_rows(table: pa.Table) -> np.ndarray:
    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    if "status" in table.column_names:
        ok &= np.asarray(
            pc.fill_null(pc.equal(table["status"], schema.OK), False).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
    if "face_index" in table.column_names:
        fi = pc.fill_null(table["face_index"], -1).to_numpy(zero_copy_only=False)
        ok &= np.asarray(fi) >= 0
    return ok


def _keys(table: pa.Table) -> list[tuple[str, int]]:
    paths = table["path"].to_pylist()
    fi = table["face_index"].to_pylist() if "face_index" in table.column_names else [0] * table.num_rows
    return [(p, int(i) if i is not None else -1) for p, i in zip(paths, fi, strict=True)]


def _show(key: tuple[str, int]) -> str:
    return f"{key[0]!r} face {key[1]}"


def _check_pool_options(*, method: str, if_empty: str, tau: float, k: int, min_quality: float | None) -> None:
    from facequal.options import check_float, check_int

    if method not in METHODS:
        raise UserError(f"unknown pooling method {method!r} (one of: {', '.join(METHODS)})")
    if if_empty not in IF_EMPTY:
        raise UserError(f"unknown --if-empty {if_empty!r} (one of: {', '.join(IF_EMPTY)})")
    check_float("--tau", tau, 0.0, lo_open=True)
    check_int("--k", k, 1)
    if min_quality is not None:  # any finite value: above every quality empties every group
        check_float("--min-quality", min_quality)


@dataclass
class JoinedFaces:
    """The ``ok`` faces present in both a score table and an embeddings table, aligned: their
    keys ``(path, face_index)``, ``quality``, (N, D) ``embeddings`` (float64, not normalised),
    the group column (``groups``), and what was left out (``messages``)."""

    keys: list[tuple[str, int]]
    quality: np.ndarray
    embeddings: np.ndarray
    groups: pa.Array
    messages: list[str]


def _group_source(st: pa.Table, et: pa.Table, by: str) -> pa.Table:
    """The table that holds the group column ``by`` (the scores first), checked."""
    if by in st.column_names:
        src, what = st, "the score file"
    elif by in et.column_names:
        src, what = et, "the embeddings file"
    else:
        raise UserError(
            f"neither the score file nor the embeddings file has a column {by!r} to group by "
            f"(score columns: {', '.join(st.column_names)})"
        )
    require_group_column(src, by, what, "--by")
    return src


def _match_keys(skeys: list[tuple[str, int]], ekeys: list[tuple[str, int]],
                drop_invalid: bool, messages: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the scores and of the embeddings that are the same faces, in score order."""
    for what, keys in (("score file", skeys), ("embeddings file", ekeys)):
        seen: set[tuple[str, int]] = set()
        for key in keys:
            if key in seen:
                raise UserError(
                    f"the {what} lists {_show(key)} twice: keys (path, face_index) must be unique"
                )
            seen.add(key)
    epos = {key: i for i, key in enumerate(ekeys)}
    srows = np.array([i for i, key in enumerate(skeys) if key in epos], dtype=np.int64)
    erows = np.array([epos[skeys[i]] for i in srows], dtype=np.int64)
    n_no_emb = len(skeys) - len(srows)
    n_no_score = len(ekeys) - len(erows)
    if len(srows) == 0:
        raise UserError(
            f"no face of the score file has an embedding: keys (path, face_index) do not match "
            f"(e.g. scores have {_show(skeys[0])}, embeddings have {_show(ekeys[0])}); were both "
            "files made from the same paths, run from the same directory?"
        )
    if n_no_emb or n_no_score:
        example = next((key for key in skeys if key not in epos), None) or next(
            key for key in ekeys if key not in set(skeys)
        )
        msg = (
            f"{n_no_emb} face(s) of the score file have no embedding and {n_no_score} embedding(s) have "
            f"no score (e.g. {_show(example)})"
        )
        if not drop_invalid:
            raise UserError(msg + "; pass --drop-invalid to pool only the faces in both")
        messages.append(msg + ": left out")
    return srows, erows


def join_faces(st: pa.Table, et: pa.Table, *, by: str, embedding_column: str = "embedding",
               needs_quality: bool = True, drop_invalid: bool = False) -> JoinedFaces:
    """Match the ``ok`` faces of a score table and an embeddings table on ``(path, face_index)``
    (an embeddings table without ``face_index`` means face 0 of each image), with the group column
    ``by`` from either table (the scores first).

    Unmatched faces, non-finite qualities (``needs_quality``), faces without a group and invalid
    vectors stop with a message naming an example, unless ``drop_invalid``, which leaves them out
    and says how many (``messages``).
    """
    require_columns(st, ["path", "face_index", "quality"], "the score file")
    require_columns(et, ["path", embedding_column], "the embeddings file")
    group_src = _group_source(st, et, by)
    from_scores = group_src is st
    messages: list[str] = []
    st = st.filter(pa.array(_ok_rows(st)))
    et = et.filter(pa.array(_ok_rows(et)))
    if st.num_rows == 0:
        raise UserError("the score file has no face with status 'ok': nothing to pool")
    if et.num_rows == 0:
        raise UserError("the embeddings file has no face with status 'ok': nothing to pool")
    skeys = _keys(st)
    srows, erows = _match_keys(skeys, _keys(et), drop_invalid, messages)
    q = np.asarray(pc.cast(st["quality"], pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)[srows]
    emb, emb_ok = embedding_matrix(et[embedding_column], embedding_column)
    emb, emb_ok = emb[erows], emb_ok[erows]
    gcol = (st if from_scores else et)[by].combine_chunks().take(pa.array(srows if from_scores else erows))
    g_ok = np.asarray(gcol.is_valid().to_numpy(zero_copy_only=False), dtype=bool) if len(gcol) else np.zeros(0, bool)
    checks = [
        ("have no finite quality", ~np.isfinite(q) if needs_quality else np.zeros(len(q), bool)),
        (f"have no {by!r} value", ~g_ok),
        (f"have a missing, empty or non-finite {embedding_column!r} vector", ~emb_ok),
    ]
    bad_any = np.zeros(len(q), dtype=bool)
    keys = [skeys[i] for i in srows]
    for what, bad in checks:
        if bad.any():
            first = keys[int(np.flatnonzero(bad)[0])]
            msg = f"{int(bad.sum())} face(s) {what} (e.g. {_show(first)})"
            if not drop_invalid:
                raise UserError(msg + "; pass --drop-invalid to leave them out")
            messages.append(msg + ": left out")
            bad_any |= bad
    keep = ~bad_any
    if not keep.any():
        raise UserError("no face is left to pool")
    return JoinedFaces(keys=[k for k, good in zip(keys, keep, strict=True) if good], quality=q[keep],
                       embeddings=emb[keep], groups=gcol.filter(pa.array(keep)), messages=messages)


def _some(labels: pa.Array, codes: list[int]) -> str:
    names = [str(labels[int(c)].as_py()) for c in codes[:5]]
    return ", ".join(names) + (f" and {len(codes) - 5} more" if len(codes) > 5 else "")


def _group_notes(pooled: Pooled, labels: pa.Array, *, method: str, min_quality: float | None,
                 if_empty: str) -> list[str]:
    """What to tell the user about groups left empty or degenerate; an error when none is left."""
    notes = []
    if pooled.empty:
        verb = "are left out" if if_empty == "drop" else "keep only their best face"
        notes.append(f"{len(pooled.empty)} group(s) have no face with quality >= {min_quality} and {verb}: "
                     f"{_some(labels, pooled.empty)}")
    if pooled.degenerate:
        notes.append(
            f"{len(pooled.degenerate)} group(s) get no template: the {method}-weighted mean of their "
            f"embeddings is zero (they cancel out), so it has no direction: {_some(labels, pooled.degenerate)}"
        )
    if len(pooled.groups) == 0:
        if pooled.degenerate:
            raise UserError(notes[-1] + "; no template to write")
        raise UserError(f"every group is empty after --min-quality {min_quality}: no template to write")
    return notes


def _template_table(pooled: Pooled, labels: pa.Array, params: dict[str, Any]) -> pa.Table:
    """The output table: one row per template, the pooling parameters in its metadata."""
    d = pooled.templates.shape[1]
    table = pa.table(
        {
            params["by"]: labels.take(pa.array(pooled.groups)),
            "n_members": pa.array(pooled.n_members, pa.int32()),
            "n_used": pa.array(pooled.n_used, pa.int32()),
            "quality_mean": pa.array(pooled.q_mean, pa.float32(), from_pandas=True),
            "quality_min": pa.array(pooled.q_min, pa.float32(), from_pandas=True),
            "quality_max": pa.array(pooled.q_max, pa.float32(), from_pandas=True),
            "method": pa.array([params["method"]] * len(pooled.groups), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(pooled.templates.reshape(-1), pa.float32()), d
            ),
        }
    )
    return table.replace_schema_metadata({"facequal.pool": json.dumps(params)})


@dataclass
class PoolResult:
    """The template table and the notes worth telling the user."""

    table: pa.Table
    messages: list[str] = field(default_factory=list)


def pool(
    scores: str | Path | pa.Table,
    embeddings: str | Path | pa.Table,
    *,
    by: str = "identity",
    method: str = "quality",
    tau: float = 0.1,
    k: int = 3,
    min_quality: float | None = None,
    if_empty: str = "drop",
    embedding_column: str = "embedding",
    drop_invalid: bool = False,
    output: str | Path | None = None,
    overwrite: bool = False,
    warn: Callable[[str], None] | None = None,
) -> PoolResult:
    """Pool the embeddings of each group (column ``by``) into one quality-weighted template.

    Faces are matched on ``(path, face_index)`` between the ``ok`` rows of the score file and of
    the embeddings file (an embeddings file without ``face_index`` means face 0 of each image).
    Unmatched faces, NaN qualities (when the method uses quality), faces without a group and
    invalid vectors stop the run with a message naming an example, unless ``drop_invalid``, which
    leaves them out and says how many. Output columns: ``by``, ``n_members``, ``n_used``,
    ``quality_mean``, ``quality_min``, ``quality_max``, ``method``, ``embedding`` (L2-normalised).

    Every template written is a unit vector: a group whose members cancel out (the weighted mean
    of their embeddings is zero, e.g. ``e`` and ``-e`` with ``mean``) gets no row, and a warning
    names it (``messages``); when no group is left that is an error.
    """
    from facequal._io import check_output_writable, write_parquet_output

    _check_pool_options(method=method, if_empty=if_empty, tau=tau, k=k, min_quality=min_quality)
    if output is not None:  # before reading anything
        check_output_writable(output, overwrite)
    st = scores if isinstance(scores, pa.Table) else read_table(scores)
    et = embeddings if isinstance(embeddings, pa.Table) else read_table(embeddings)
    faces = join_faces(st, et, by=by, embedding_column=embedding_column,
                       needs_quality=method != "mean" or min_quality is not None, drop_invalid=drop_invalid)
    messages = list(faces.messages)
    gcol = faces.groups
    if pa.types.is_dictionary(gcol.type):
        gcol = gcol.cast(gcol.type.value_type)
    enc = pc.dictionary_encode(gcol)
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    labels = enc.dictionary
    pooled = pool_arrays(
        faces.embeddings, faces.quality, codes, method=method, tau=tau, k=k, min_quality=min_quality,
        if_empty=if_empty,
    )
    messages += _group_notes(pooled, labels, method=method, min_quality=min_quality, if_empty=if_empty)
    params = {"method": method, "tau": tau, "k": k, "min_quality": min_quality, "by": by, "if_empty": if_empty}
    table = _template_table(pooled, labels, params)
    if warn is not None:
        for m in messages:
            warn(m)
    if output is not None:
        write_parquet_output(table, output, overwrite=overwrite)
    return PoolResult(table=table, messages=messages)
