"""The pure parts of bench/calibration_shift.py: the clean-reference target rule, the AUC, the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "calibration_shift.py"
_spec = importlib.util.spec_from_file_location("calibration_shift", _PATH)
cs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cs)


def _unit(deg: float) -> list[float]:
    r = np.deg2rad(deg)
    return [float(np.cos(r)), float(np.sin(r)), 0.0]


def test_reference_is_the_most_typical_clean_photo_of_another_source():
    # Person A: clean photos a1, a2, a3 at 0, 10, 22 degrees: a2 is the most typical (highest mean
    # cosine to the others), then a1. Degraded copies: of a2 at 14 degrees (4 from a2, which would
    # accept it, but it must be compared with another photo: a1, 14 degrees, rejected) and of a1
    # at 50 degrees (compared with a2: 40 degrees, rejected).
    emb = [_unit(0), _unit(10), _unit(22), _unit(14), _unit(50), _unit(90), _unit(95)]
    person = ["A", "A", "A", "A", "A", "B", "B"]
    source = ["a1", "a2", "a3", "a2", "a1", "b1", "b2"]
    clean = np.array([True, True, True, False, False, True, True])
    thr = float(np.cos(np.deg2rad(11)))
    target, valid, ref = cs.clean_reference_targets(np.array(emb) * 3.0, person, source, clean, thr)
    assert valid.all()
    assert list(ref) == [1, 0, 1, 0, 1, 6, 5]
    assert list(target) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_faces_without_a_clean_photo_of_another_source_are_left_out():
    emb = np.array([_unit(0), _unit(5), _unit(0), _unit(3)])
    person = ["A", "A", "B", "B"]
    source = ["a1", "a1", "b1", "b2"]
    clean = np.array([True, False, True, False])  # A: one clean photo only; B: b2 not clean
    target, valid, ref = cs.clean_reference_targets(emb, person, source, clean, 0.9)
    assert list(valid) == [False, False, False, True]
    assert ref[3] == 2 and target[3] == 1.0 and ref[0] == -1 and target[0] == 0.0


def test_ranking_auc_counts_ties_half():
    assert cs.ranking_auc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert cs.ranking_auc([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]) == 0.0
    assert cs.ranking_auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5
    # positives 0.3 and 0.5; negatives 0.3 and 0.1: pairs (0.3,0.3) half, others wins -> 3.5 / 4
    assert cs.ranking_auc([0.3, 0.5, 0.3, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert np.isnan(cs.ranking_auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 200).astype(float), rng.integers(0, 2, 200)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert cs.ranking_auc(s, y) == pytest.approx(brute)


def test_min_removal():
    m = cs.min_removal(np.array([0.1, 0.3, 0.5, 0.9]), np.array([0, 1, 1, 1]), 0.4)
    assert m["removed"] == 2 and m["removed_share"] == 0.5
    assert m["removed_observed"] == 0.5 and m["kept_observed"] == 1.0


def test_select_people_is_seeded_and_bounded():
    photos = {f"P{i}": [f"P{i}_{k:04d}.jpg" for k in range(1 + i % 7)] for i in range(40)}
    a = cs.select_people(photos, 30, 4, seed=1)
    assert a == cs.select_people(photos, 30, 4, seed=1)
    assert sum(map(len, a.values())) <= 30
    assert all(2 <= len(p) <= 4 for p in a.values())
    assert all(len(photos[n]) >= 2 for n in a)
    full = cs.select_people(photos, 0, 0, seed=1)
    assert full == {n: p for n, p in photos.items() if len(p) >= 2}


def test_degradations_are_deterministic_and_change_the_image():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, ops in cs.VARIANTS.items():
        seed = cs.variant_seed(0, name, "X/X_0001.jpg")
        a = cs.degrade(img, ops, np.random.default_rng(seed))
        b = cs.degrade(img, ops, np.random.default_rng(seed))
        assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        assert np.array_equal(a, img) == (not ops), name
