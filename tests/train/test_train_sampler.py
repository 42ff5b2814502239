"""P x K batches: shape, identity grouping, source balance, fewer-than-K identities, seeding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from facequal.train.sampler import PKSampler


def _rows(spec: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """spec: (identity, source, n_photos, n_variants per photo) -> identity, source, image per row."""
    ident, src, img = [], [], []
    photo = 0
    for i, s, n, v in spec:
        for _ in range(n):
            ident += [i] * v
            src += [s] * v
            img += [photo] * v
            photo += 1
    return np.array(ident), np.array(src), np.array(img)


def test_batches_group_identities_and_use_distinct_photos() -> None:
    spec = [(i, 0, 10, 2) for i in range(20)]
    ident, src, img = _rows(spec)
    s = PKSampler(ident, src, img, p=4, k=8, seed=1)
    b = s.batch(0)
    assert b.size == 32 == s.batch_size
    ids = ident[b]
    assert len(set(ids.tolist())) == 4
    assert all(c == 8 for c in Counter(ids.tolist()).values())
    for i in set(ids.tolist()):
        assert len(set(img[b[ids == i]].tolist())) == 8  # 8 distinct photos when it has >= 8


def test_seeded_per_step() -> None:
    ident, src, img = _rows([(i, 0, 5, 1) for i in range(30)])
    a = PKSampler(ident, src, img, p=4, k=4, seed=3)
    b = PKSampler(ident, src, img, p=4, k=4, seed=3)
    assert np.array_equal(a.batch(17), b.batch(17))
    assert not np.array_equal(a.batch(17), a.batch(18))
    assert not np.array_equal(a.batch(17), PKSampler(ident, src, img, p=4, k=4, seed=4).batch(17))


def test_sources_are_balanced_whatever_their_size() -> None:
    # source 0: 200 identities, source 1: 10 identities
    spec = [(i, 0, 20, 1) for i in range(200)] + [(1000 + i, 1, 3, 1) for i in range(10)]
    ident, src, img = _rows(spec)
    s = PKSampler(ident, src, img, p=8, k=4, seed=0)
    per_source = Counter()
    for step in range(200):
        b = s.batch(step)
        for i in set(ident[b].tolist()):
            per_source[int(src[ident == i][0])] += 1
    share = per_source[1] / sum(per_source.values())
    assert 0.4 < share < 0.6
    w = PKSampler(ident, src, img, p=8, k=4, seed=0, source_weights={0: 3.0, 1: 1.0})
    ids = np.concatenate([np.unique(ident[w.batch(step)]) for step in range(200)])
    assert 0.18 < np.isin(ids, np.arange(1000, 1010)).mean() < 0.32


def test_fewer_than_k_photos_fill_with_variants_or_not() -> None:
    ident, src, img = _rows([(0, 0, 3, 4), (1, 0, 2, 1)])
    s = PKSampler(ident, src, img, p=2, k=8, seed=0, fill="variants")
    b = s.batch(0)
    b0 = b[ident[b] == 0]
    assert b0.size == 8 and len(set(b0.tolist())) == 8          # no row twice
    assert set(img[b0].tolist()) == {0, 1, 2}                   # every photo at least once
    assert b[ident[b] == 1].size == 2                           # has only 2 rows in all
    n = PKSampler(ident, src, img, p=2, k=8, seed=0, fill="none").batch(0)
    assert Counter(ident[n].tolist()) == {0: 3, 1: 2}


def test_single_photo_identities_are_not_drawn_but_usable() -> None:
    ident, src, img = _rows([(0, 0, 4, 1), (1, 0, 4, 1), (2, 0, 1, 3), (3, 1, 1, 1)])
    s = PKSampler(ident, src, img, p=5, k=2, seed=0)
    assert set(s.singleton_ids.tolist()) == {2, 3}
    for step in range(20):
        assert set(ident[s.batch(step)].tolist()) <= {0, 1}   # P larger than the eligible: smaller batch
    s2 = PKSampler(ident, src, img, p=2, k=2, seed=0, singletons=2)
    b = s2.batch(0)
    assert b.size == 6 and set(ident[b[-2:]].tolist()) == {2, 3}


def test_rejects_bad_input() -> None:
    ident, src, img = _rows([(0, 0, 1, 1), (1, 0, 1, 1)])
    with pytest.raises(ValueError, match="no identity"):
        PKSampler(ident, src, img)
    ident, src, img = _rows([(0, 0, 2, 1)])
    src[0] = 1
    with pytest.raises(ValueError, match="several sources"):
        PKSampler(ident, src, img)
