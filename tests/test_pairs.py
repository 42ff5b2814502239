"""Pair lists: LFW layout and folds, CSV/Parquet tables, path matching, the all-pairs protocol."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_or_skip

from facequal.errors import UserError
from facequal.eval.pairs import (
    PathIndex,
    all_pairs,
    lfw_path,
    parse_folds,
    path_key,
    read_pairs,
    select_folds,
)

LFW_TEXT = """name\tnr\tname2\tnr2
Ann_A\t1\t2
Bob_B\t1\t3
Ann_A\t1\tBob_B\t2
Cid_C\t4\tDee_D\t12
Eve_E\t1\t2
Eve_E\t3\tFay_F\t1
Gus_G\t1\tHal_H\t1
"""


def test_lfw_layout(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text(LFW_TEXT)
    p = read_pairs(f)
    assert p.kind == "lfw" and len(p) == 7 and p.default_suffix == 2
    assert p.path_a[0] == "Ann_A/Ann_A_0001.jpg" and p.path_b[0] == "Ann_A/Ann_A_0002.jpg"
    assert p.path_b[3] == "Dee_D/Dee_D_0012.jpg"
    assert list(p.mated) == [True, True, False, False, True, False, False]
    # A mated row after non-mated ones starts the next fold.
    assert list(p.fold) == [1, 1, 1, 1, 2, 2, 2]
    assert p.identity_a[2] == "Ann_A" and p.identity_b[2] == "Bob_B"
    assert list(p.face_a) == [0] * 7
    two = select_folds(p, [2])
    assert len(two) == 3 and two.path_a[0] == "Eve_E/Eve_E_0001.jpg"
    with pytest.raises(UserError, match="no fold 3"):
        select_folds(p, [3])


def test_original_pairs_txt_header_and_spaces(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("2 1\nA 1 2\nA 1 B 1\nC 1 2\nC 2 D 3\n")
    p = read_pairs(f)
    assert list(p.fold) == [1, 1, 2, 2] and list(p.mated) == [True, False, True, False]


def test_lfw_bad_row(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("10\t300\nA\t1\t2\nA\tx\n")
    with pytest.raises(UserError, match=r"pairs.txt:3: not an LFW pair row"):
        read_pairs(f)


def test_lfw_path_padding():
    assert lfw_path("Zico", 7) == "Zico/Zico_0007.jpg"


def test_parse_folds():
    assert parse_folds("6-10") == [6, 7, 8, 9, 10]
    assert parse_folds("4,5") == [4, 5]
    assert parse_folds("1-2,7") == [1, 2, 7]
    for bad in ("x", "0", "5-3", ""):
        with pytest.raises(UserError, match="--folds"):
            parse_folds(bad)


def test_csv_table(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("path_a,path_b,mated,face_index_b\n152/frontal/04.jpg,152/profile/03.jpg,1,\n"
                 "a.jpg,b.jpg,no,1\nc.jpg,d.jpg,TRUE,0\n")
    p = read_pairs(f)
    assert p.kind == "table" and p.default_suffix is None
    assert list(p.mated) == [True, False, True]
    assert list(p.face_b) == [0, 1, 0] and list(p.face_a) == [0, 0, 0]
    assert p.folds == []
    with pytest.raises(UserError, match="no folds"):
        select_folds(p, [1])


def test_parquet_table_with_folds(tmp_path):
    f = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"path_a": ["a", "b"], "path_b": ["c", "d"], "mated": [True, False],
                             "fold": [1, 2]}), f)
    p = read_pairs(f)
    assert select_folds(p, [2]).path_a == ["b"]


def test_table_errors(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("path_a,path_b\na,b\n")
    with pytest.raises(UserError, match="no column 'mated'"):
        read_pairs(f)
    f.write_text("path_a,path_b,mated\na,b,maybe\n")
    with pytest.raises(UserError, match="'mated' must be"):
        read_pairs(f)
    with pytest.raises(UserError, match="no such file"):
        read_pairs(tmp_path / "absent.csv")


def test_path_key_and_index():
    assert path_key("/data/lfw/Ann_A/Ann_A_0001.jpg", 2) == "Ann_A/Ann_A_0001.jpg"
    assert path_key("C:\\x\\Ann_A\\Ann_A_0001.jpg", 2) == "Ann_A/Ann_A_0001.jpg"
    assert path_key("./a/b.jpg", None) == "./a/b.jpg"             # as stored
    idx = PathIndex(["/data/lfw/A/A_0001.jpg", "/data/lfw/B/B_0001.jpg"], 2, "scores")
    assert idx.lookup("A/A_0001.jpg") == "/data/lfw/A/A_0001.jpg"
    assert idx.lookup("elsewhere/B/B_0001.jpg") == "/data/lfw/B/B_0001.jpg"
    assert idx.lookup("C/C_0001.jpg") is None
    exact = PathIndex(["a/b.jpg"], None, "scores")
    assert exact.lookup("a/b.jpg") == "a/b.jpg" and exact.lookup("x/a/b.jpg") is None


def test_ambiguous_suffix_is_an_error():
    idx = PathIndex(["/one/A/x.jpg", "/two/A/x.jpg", "/one/B/y.jpg"], 2, "scores s.parquet")
    assert idx.lookup("B/y.jpg") == "/one/B/y.jpg"
    with pytest.raises(UserError, match="matches both.*--match-suffix 3"):
        idx.lookup("A/x.jpg")


def _people(n_people: int, per: int) -> tuple[list[str], list[str]]:
    paths = [f"P{i}/P{i}_{j:04d}.jpg" for i in range(n_people) for j in range(per)]
    return paths, [p.split("/")[0] for p in paths]


def test_all_pairs_protocol():
    paths, ident = _people(6, 4)
    ident[-1] = "lonely"                                           # one identity with one image
    p = all_pairs(paths, ident, per_identity=3, non_mated=40, seed=1)
    assert p.kind == "all-pairs"
    ia, ib = np.array(p.identity_a), np.array(p.identity_b)
    # Mated: C(4,2) = 6 per identity capped at 3, for 5 identities; P5 has 3 images: C(3,2) = 3.
    assert p.mated.sum() == 6 * 3
    assert (ia[p.mated] == ib[p.mated]).all() and (ia[~p.mated] != ib[~p.mated]).all()
    assert (~p.mated).sum() == 40
    keys = {tuple(sorted(x)) for x in zip(p.path_a, p.path_b, strict=True)}
    assert len(keys) == len(p)                                     # no pair twice
    assert all(a != b for a, b in zip(p.path_a, p.path_b, strict=True))
    # Seeded, and independent of the input order.
    q = all_pairs(paths[::-1], ident[::-1], per_identity=3, non_mated=40, seed=1)
    assert (q.path_a, q.path_b) == (p.path_a, p.path_b)
    r = all_pairs(paths, ident, per_identity=3, non_mated=40, seed=2)
    assert (r.path_a, r.path_b) != (p.path_a, p.path_b)


def test_all_pairs_takes_everything_when_small():
    paths, ident = _people(3, 2)
    p = all_pairs(paths, ident, per_identity=50, non_mated=1000)
    assert p.mated.sum() == 3 and (~p.mated).sum() == 15 - 3


@pytest.mark.shared
def test_real_lfw_pairs_file():
    p = read_pairs(shared_or_skip("data", "lfw-pairs.tsv"))
    assert len(p) == 6000 and p.folds == list(range(1, 11))
    for f in range(1, 11):
        in_fold = p.fold == f
        assert in_fold.sum() == 600 and p.mated[in_fold].sum() == 300
    test = select_folds(p, parse_folds("6-10"))
    assert len(test) == 3000 and test.mated.sum() == 1500
    assert p.path_a[0].endswith(".jpg") and p.path_a[0].count("/") == 1


@pytest.mark.shared
def test_real_cfp_pairs_file():
    p = read_pairs(shared_or_skip("data", "cfp", "pairs-fp-validation.csv"))
    assert len(p) == 919 and p.mated.sum() == 532
