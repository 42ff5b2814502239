"""Verification pair lists: LFW's ``pairs.txt`` layout, CSV/Parquet tables of ``path_a, path_b,
mated``, LFW folds, the all-pairs protocol, and matching pair-list paths to stored paths.

A pair names two images; the face used in each is ``face_index`` 0 (the face chosen by ``--faces``) unless the
table names faces (``face_index_a``, ``face_index_b``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facequal.errors import InputNotFoundError, UserError

LFW_SUFFIX = 2          # LFW paths are `<name>/<name>_<NNNN>.jpg`: match the last two components

_TRUE = {"1", "true", "t", "yes", "y", "mated", "genuine", "same"}
_FALSE = {"0", "false", "f", "no", "n", "non-mated", "nonmated", "impostor", "different"}


@dataclass
class PairList:
    """Pairs of images, aligned arrays. ``fold`` is 0 where the list has no folds."""

    path_a: list[str]
    path_b: list[str]
    face_a: np.ndarray
    face_b: np.ndarray
    mated: np.ndarray
    fold: np.ndarray
    kind: str                              # "lfw", "table" or "all-pairs"
    source: str = ""
    identity_a: list[str] | None = None
    identity_b: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.path_a)

    @property
    def default_suffix(self) -> int | None:
        """How many trailing path components to match by default (None: as stored)."""
        return LFW_SUFFIX if self.kind == "lfw" else None

    @property
    def folds(self) -> list[int]:
        """The fold numbers present (empty when the list has none)."""
        return sorted(int(f) for f in np.unique(self.fold) if f > 0)

    def subset(self, mask: np.ndarray) -> PairList:
        """The pairs where ``mask`` is true, in the same order."""
        ids = np.flatnonzero(mask)

        def pick(xs: list[str] | None) -> list[str] | None:
            return None if xs is None else [xs[i] for i in ids]

        return PairList(pick(self.path_a) or [], pick(self.path_b) or [], self.face_a[ids],
                        self.face_b[ids], self.mated[ids], self.fold[ids], self.kind, self.source,
                        pick(self.identity_a), pick(self.identity_b), list(self.notes))


def lfw_path(name: str, number: int) -> str:
    """The LFW image path of a person's n-th photo: ``<name>/<name>_<NNNN>.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def _lfw_row(fields: list[str]) -> tuple[str, int, str, int] | None:
    """(name_a, n_a, name_b, n_b) of one pairs.txt row, or None when it is not a pair row."""
    try:
        if len(fields) == 3:
            return fields[0], int(fields[1]), fields[0], int(fields[2])
        if len(fields) == 4:
            return fields[0], int(fields[1]), fields[2], int(fields[3])
    except ValueError:
        return None
    return None


def read_lfw_pairs(path: str | Path) -> PairList:
    """Read LFW's ``pairs.txt`` layout (tab- or space-separated).

    A header line (``10 300`` or ``name nr name2 nr2``) is skipped; rows of three fields are mated
    (``name n1 n2``), rows of four non-mated (``name1 n1 name2 n2``). Each fold is a run of mated
    rows followed by a run of non-mated rows, so a mated row after a non-mated one starts the next
    fold (folds are numbered from 1).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the pair list: {e}") from None
    pa_, pb, mated, fold, ida, idb = [], [], [], [], [], []
    current, last_mated = 1, True
    for i, line in enumerate(lines):
        fields = line.split()
        if not fields:
            continue
        row = _lfw_row(fields)
        if row is None:
            if i == 0:
                continue                                   # the header
            raise UserError(f"{path}:{i + 1}: not an LFW pair row: {line.strip()!r}")
        is_mated = len(fields) == 3
        if is_mated and not last_mated:
            current += 1
        last_mated = is_mated
        pa_.append(lfw_path(row[0], row[1]))
        pb.append(lfw_path(row[2], row[3]))
        ida.append(row[0])
        idb.append(row[2])
        mated.append(is_mated)
        fold.append(current)
    if not pa_:
        raise UserError(f"{path}: no pairs in the pair list")
    n = len(pa_)
    zeros = np.zeros(n, dtype=np.int64)
    return PairList(pa_, pb, zeros, zeros.copy(), np.array(mated, dtype=bool),
                    np.array(fold, dtype=np.int64), "lfw", str(path), ida, idb)


def _as_mated(values: list, path: str | Path) -> np.ndarray:
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if isinstance(v, bool):
            out[i] = v
        elif isinstance(v, (int, float)) and v in (0, 1):
            out[i] = bool(v)
        elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            out[i] = v.strip().lower() in _TRUE
        else:
            raise UserError(f"{path}: row {i + 1}: 'mated' must be 1/0 or true/false, not {v!r}")
    return out


def read_pair_table(path: str | Path) -> PairList:
    """Read a CSV/TSV/Parquet pair list with columns ``path_a, path_b, mated`` (optional
    ``face_index_a``, ``face_index_b``, ``fold``)."""
    from facequal.schema import read_table, require_columns

    t = read_table(path)
    require_columns(t, ["path_a", "path_b", "mated"], f"pair list {path}")
    cols = {n: t.column(n).to_pylist() for n in t.column_names}
    for name in ("path_a", "path_b"):
        if any(v is None for v in cols[name]):
            raise UserError(f"{path}: column {name!r} has empty values")
    n = t.num_rows

    def ints(name: str) -> np.ndarray:
        if name not in cols:
            return np.zeros(n, dtype=np.int64)
        try:
            return np.array([0 if v is None else int(v) for v in cols[name]], dtype=np.int64)
        except (TypeError, ValueError):
            raise UserError(f"{path}: column {name!r} must hold integers") from None

    face_a, face_b, fold = ints("face_index_a"), ints("face_index_b"), ints("fold")
    if (face_a < 0).any() or (face_b < 0).any():
        raise UserError(f"{path}: face indices must be >= 0")
    return PairList([str(v) for v in cols["path_a"]], [str(v) for v in cols["path_b"]], face_a, face_b,
                    _as_mated(cols["mated"], path), fold, "table", str(path))


def is_lfw_layout(path: str | Path) -> bool:
    """True when ``path`` is a text file in LFW's pairs.txt layout rather than a table."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".parquet", ".csv"):
        return False
    try:
        with open(p, encoding="utf-8") as f:
            head = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return "path_a" not in head


def read_pairs(path: str | Path) -> PairList:
    """Read a pair list in any supported layout (LFW pairs.txt / .tsv, or a CSV/Parquet table)."""
    if not Path(path).exists():
        raise InputNotFoundError(f"{path}: no such file or directory")
    return read_lfw_pairs(path) if is_lfw_layout(path) else read_pair_table(path)


def parse_folds(spec: str) -> list[int]:
    """``"6-10"``, ``"4,5"`` or ``"1-3,7"`` -> sorted fold numbers."""
    out: set[int] = set()
    try:
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise UserError(f"--folds: cannot read {spec!r} (use e.g. 6-10 or 4,5)") from None
    if not out or min(out) < 1:
        raise UserError(f"--folds: cannot read {spec!r} (folds are numbered from 1)")
    return sorted(out)


def people_of_folds(pairs: PairList, folds: Sequence[int]) -> set[str]:
    """The identities named in the pairs of the given folds (LFW's protocol splits people by
    fold: the test people are those of folds 6-10)."""
    if pairs.identity_a is None or pairs.identity_b is None:
        raise UserError(f"{pairs.source}: this pair list names no identities")
    keep = np.isin(pairs.fold, list(folds))
    return {n for n, k in zip(pairs.identity_a, keep, strict=True) if k} | \
        {n for n, k in zip(pairs.identity_b, keep, strict=True) if k}


def select_folds(pairs: PairList, folds: Sequence[int]) -> PairList:
    """Keep the pairs of the given folds."""
    have = pairs.folds
    if not have:
        raise UserError(f"{pairs.source}: this pair list has no folds (add a 'fold' column)")
    missing = [f for f in folds if f not in have]
    if missing:
        raise UserError(f"{pairs.source}: no fold {missing[0]} (folds: {have[0]}-{have[-1]})")
    return pairs.subset(np.isin(pairs.fold, list(folds)))


# --------------------------------------------------------------------------------------------
# Path matching


def path_key(path: str, suffix: int | None) -> str:
    """The matching key of a path: as stored, or its last ``suffix`` components ('/' or '\\')."""
    if not suffix:
        return path
    parts = [c for c in path.replace("\\", "/").split("/") if c and c != "."]
    return "/".join(parts[-suffix:])


class PathIndex:
    """Finds the stored path that a pair-list path names, as stored or by trailing components.

    Two different stored paths with the same key make that key ambiguous: looking it up is an
    error that suggests a larger ``--match-suffix``.
    """

    def __init__(self, stored: Iterable[str], suffix: int | None, what: str) -> None:
        self.suffix = suffix
        self.what = what
        self._map: dict[str, str] = {}
        self._ambiguous: dict[str, tuple[str, str]] = {}
        for p in stored:
            k = path_key(p, suffix)
            prev = self._map.setdefault(k, p)
            if prev != p and k not in self._ambiguous:
                self._ambiguous[k] = (prev, p)

    def __len__(self) -> int:
        return len(self._map)

    def lookup(self, path: str) -> str | None:
        """The stored path for ``path``, or None when the table does not name it."""
        k = path_key(path, self.suffix)
        if k in self._ambiguous:
            a, b = self._ambiguous[k]
            hint = f"--match-suffix {self.suffix + 1}" if self.suffix else "--match-suffix N"
            raise UserError(f"{self.what}: {path!r} matches both {a!r} and {b!r}; use {hint}")
        return self._map.get(k)

    def example(self) -> str | None:
        """One stored path, for error messages."""
        return next(iter(self._map.values()), None)


# --------------------------------------------------------------------------------------------
# The all-pairs protocol


def _sample_combinations(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct index pairs (i < j) of ``n`` items, uniformly; all of them if fewer."""
    total = n * (n - 1) // 2
    if total <= count:
        return np.stack(np.triu_indices(n, 1), axis=1)
    if total <= 2_000_000:
        ii, jj = np.triu_indices(n, 1)
        pick = np.sort(rng.choice(total, size=count, replace=False))
        return np.stack((ii[pick], jj[pick]), axis=1)
    seen: dict[tuple[int, int], None] = {}
    while len(seen) < count:
        i, j = rng.integers(0, n, 2)
        if i != j:
            seen.setdefault((int(min(i, j)), int(max(i, j))), None)
    return np.array(sorted(seen), dtype=np.int64)


def all_pairs(paths: Sequence[str], identities: Sequence[str], per_identity: int = 50,
              non_mated: int = 20_000, seed: int = 0, faces: Sequence[int] | None = None) -> PairList:
    """The all-pairs protocol over images with known identities.

    Mated: every pair of two images of one identity, at most ``per_identity`` per identity (a
    seeded uniform sample where an identity has more). Non-mated: a seeded uniform sample of
    ``non_mated`` distinct pairs of images of different identities (all of them if fewer exist).
    Images are ordered by (identity, path) first, so the result does not depend on input order.
    """
    if len(paths) != len(identities):
        raise ValueError("paths and identities differ in length")
    face = list(faces) if faces is not None else [0] * len(paths)
    order = sorted(range(len(paths)), key=lambda i: (identities[i], paths[i], face[i]))
    p = [paths[i] for i in order]
    ident = np.array([identities[i] for i in order], dtype=object)
    fc = np.array([face[i] for i in order], dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5EED])
    _, starts, counts = np.unique(ident, return_index=True, return_counts=True)
    mated_pairs = [s + _sample_combinations(int(c), per_identity, rng)
                   for s, c in zip(starts, counts, strict=True) if c >= 2]
    mp = np.concatenate(mated_pairs) if mated_pairs else np.zeros((0, 2), np.int64)
    # Non-mated: draw random pairs, keep those of different identities, first `non_mated` distinct.
    n = len(p)
    same = int(np.sum(counts * (counts - 1) // 2))
    possible = n * (n - 1) // 2 - same
    if possible <= non_mated:
        ii, jj = np.triu_indices(n, 1)
        keep = ident[ii] != ident[jj]
        nmp = np.stack((ii[keep], jj[keep]), axis=1)
    else:
        found: dict[int, None] = {}
        while len(found) < non_mated:
            i = rng.integers(0, n, 4 * non_mated)
            j = rng.integers(0, n, 4 * non_mated)
            ok = ident[i] != ident[j]
            lo, hi = np.minimum(i, j)[ok], np.maximum(i, j)[ok]
            for key in (lo * n + hi).tolist():
                found.setdefault(key, None)
                if len(found) == non_mated:
                    break
        keys = np.sort(np.fromiter(found, dtype=np.int64))
        nmp = np.stack((keys // n, keys % n), axis=1)
    pairs = np.concatenate((mp, nmp)).astype(np.int64)
    mated = np.concatenate((np.ones(len(mp), bool), np.zeros(len(nmp), bool)))
    ia, ib = pairs[:, 0], pairs[:, 1]
    notes = [f"all-pairs: {len(mp):,} mated pairs (at most {per_identity} per identity) from "
             f"{int((counts >= 2).sum()):,} identities with 2+ images, {len(nmp):,} non-mated pairs "
             f"sampled from {possible:,} (seed {seed})"]
    return PairList([p[i] for i in ia], [p[i] for i in ib], fc[ia], fc[ib], mated,
                    np.zeros(len(pairs), np.int64), "all-pairs", "all-pairs",
                    ident[ia].tolist(), ident[ib].tolist(), notes)
