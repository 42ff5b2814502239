"""Calibration (isotonic map, reliability table, acceptance targets) and the label parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facequal.contract import Contract
from facequal.train import calibrate as cal
from facequal.train import labels as lab
from facequal.train.framing import student_contract


def test_pava_known_answer() -> None:
    assert cal.pava([1, 3, 2, 4]).tolist() == [1, 2.5, 2.5, 4]
    assert cal.pava([3, 2, 1]).tolist() == [2, 2, 2]
    assert cal.pava([1, 3, 2], w=[1, 1, 3]).tolist() == pytest.approx([1, 2.25, 2.25])
    y = np.random.default_rng(0).normal(size=200)
    assert np.all(np.diff(cal.pava(y)) >= -1e-12)


def test_fit_calibration_recovers_a_monotone_probability() -> None:
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.3, 0.8, size=4000)
    p_true = 1 / (1 + np.exp(-20 * (raw - 0.55)))
    outcome = (rng.random(raw.size) < p_true).astype(float)
    m = cal.fit_calibration(raw, outcome, max_knots=24)
    x, y = np.array(m["x"]), np.array(m["y"])
    assert m["space"] == "logit"
    assert 4 <= x.size <= 26 and np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)
    grid = np.linspace(0.35, 0.75, 9)
    assert np.abs(cal.apply_calibration(grid, m) - 1 / (1 + np.exp(-20 * (grid - 0.55)))).max() < 0.12
    # it is a valid contract calibration and maps the same way there
    c = student_contract(calibration=m)
    assert isinstance(c, Contract)
    assert np.allclose(c.calibrate(grid), cal.apply_calibration(grid, m), atol=1e-6)
    table = cal.reliability_table(cal.apply_calibration(raw, m), outcome, n_bins=10)
    assert sum(r["n"] for r in table) == raw.size
    assert cal.expected_calibration_error(table) < 0.03


def test_the_map_is_strictly_increasing_with_no_floor_or_ceiling() -> None:
    # Outcomes that saturate: the old isotonic map was flat below and above the data (every
    # hopeless face at one floor value, the best faces tied at one ceiling value).
    rng = np.random.default_rng(2)
    raw = rng.uniform(0.4, 0.7, size=3000)
    outcome = (rng.random(raw.size) < np.clip((raw - 0.4) * 4, 0, 1)).astype(float)
    m = cal.fit_calibration(raw, outcome)
    grid = np.linspace(1e-4, 1 - 1e-4, 20_001)
    q = cal.apply_calibration(grid, m)
    assert np.all(np.diff(q) > 0)                       # strictly increasing, in float64
    # Faces far below anything seen go towards 0, far above towards 1.
    assert q[0] < 0.01 and q[-1] > 0.99
    # Stored as float32 (the score file's type), distinct raw outputs stay distinct and in order.
    raw32 = np.sort(rng.uniform(0.05, 0.95, size=5000).astype(np.float32))
    q32 = Contract.calibrate(student_contract(calibration=m), raw32)
    assert np.all(np.diff(q32) >= 0)
    assert np.unique(q32).size >= 0.98 * np.unique(raw32).size


def test_maps_written_before_keep_their_meaning() -> None:
    old = {"x": [0.2, 0.5, 0.8], "y": [0.1, 0.4, 0.9]}       # probability space, clamped ends
    np.testing.assert_allclose(cal.apply_calibration([0.0, 0.35, 0.5, 1.0], old), [0.1, 0.25, 0.4, 0.9])
    c = student_contract(calibration=old)
    np.testing.assert_allclose(c.calibrate(np.array([0.35])), [0.25], atol=1e-7)


def test_fit_calibration_degenerate_inputs() -> None:
    m = cal.fit_calibration([0.5, 0.5, 0.5], [1, 0, 1])
    assert np.all(np.diff(m["x"]) > 0) and np.all(np.diff(m["y"]) > 0)
    # One raw value: the map passes through the (shrunk) observed rate there, 2/3.
    assert cal.apply_calibration([0.5], m)[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        cal.fit_calibration([np.nan], [1.0])


def test_reliability_table_by_hand() -> None:
    t = cal.reliability_table([0.05, 0.15, 0.12, 0.95], [0, 1, 0, 1], n_bins=10)
    assert [(r["n"], r["observed"]) for r in t] == [(1, 0.0), (2, 0.5), (1, 1.0)]
    assert t[1]["mean_pred"] == pytest.approx(0.135)
    q = cal.reliability_table(np.linspace(0, 1, 100), np.zeros(100), n_bins=4, strategy="quantile")
    assert [r["n"] for r in q] == [25, 25, 25, 25]


def test_acceptance_targets_use_the_most_typical_other_photo() -> None:
    def unit(deg: float) -> list[float]:
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    # person 0: photos at 0, 10 and 60 degrees; person 1 has one photo
    emb = np.array([unit(0), unit(10), unit(60), unit(90)])
    ident = np.array([0, 0, 0, 1])
    target, valid = cal.acceptance_targets(emb, ident, threshold=math.cos(math.radians(30)))
    assert valid.tolist() == [True, True, True, False]
    # typicality: photo 0 (mean cos to others of 10 and 60 deg) and photo 1 (10, 50) -> photo 1 is the
    # reference of 0 and 2, photo 0 the reference of 1
    assert target.tolist()[:3] == [1.0, 1.0, 0.0]
    # variants of the same photo are not references for each other
    t2, v2 = cal.acceptance_targets(emb[:2], [0, 0], 0.5, image=np.array([5, 5]))
    assert not v2.any()


def test_label_parameters_from_teacher_scores() -> None:
    rng = np.random.default_rng(0)
    imp = rng.normal(0.83, 0.03, size=200_000)
    gen = rng.normal(0.95, 0.02, size=20_000)
    p = lab.choose_label_params(gen, imp, fmr=1e-3)
    assert p["m"] == pytest.approx(np.quantile(imp, 1 - 1e-3), abs=2e-3)
    assert p["s"] == pytest.approx(2 * math.log(9) / (2 * 1.2816 * 0.02), rel=0.05)
    t = lab.soft_labels(gen, p["m"], p["s"])
    assert 0.0 < p["share_below_half_soft"] < 0.5 and t.min() < 0.2 and t.max() > 0.95
    assert lab.threshold_at_fmr(np.arange(1000) / 1000, 0.01) == pytest.approx(0.99)
    lo, hi = lab.cosine_range(gen)
    assert lo < 0.95 < hi


def test_genuine_and_impostor_cosines() -> None:
    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=float)
    ident = np.array([0, 0, 1, 1])
    g = lab.genuine_cosines(emb, ident)
    assert g.size == 2 and np.all(g > 0.99)
    assert lab.genuine_cosines(emb, ident, image=np.array([0, 0, 1, 2])).size == 1
    imp = lab.impostor_cosines(emb, ident, n_pairs=500)
    assert imp.size == 500 and np.all(imp < 0.2)
