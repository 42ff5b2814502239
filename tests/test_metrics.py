"""ERC, EDC, threshold and bootstrap on small hand-made cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facequal.eval import metrics as M

# A worked case: 10 pairs, 5 mated (M) and 5 non-mated (N).
#
#   pair  kind  score  pair quality
#    0     M    0.90   0.80
#    1     M    0.20   0.10    false non-match
#    2     N    0.10   0.30
#    3     M    0.35   0.50    a match only because T is fixed (see test_threshold_stays_fixed)
#    4     N    0.30   0.05
#    5     M    0.25   0.60    false non-match
#    6     N    0.45   0.90
#    7     N    0.20   0.70
#    8     M    0.70   0.20
#    9     N    0.00   0.40
#
# FMR 0.2: k = floor(0.2 * 5) = 1 non-mated pair may be accepted; the 2nd highest non-mated score
# is 0.30, so T = nextafter(0.30, +inf): only 0.45 is accepted. Mated below T: pairs 1 and 5, so
# FNMR(0) = 2/5 = 0.4.
SCORES = np.array([0.90, 0.20, 0.10, 0.35, 0.30, 0.25, 0.45, 0.20, 0.70, 0.00])
MATED = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
QUALITY = np.array([0.80, 0.10, 0.30, 0.50, 0.05, 0.60, 0.90, 0.70, 0.20, 0.40])
GRID = np.arange(10) / 10


def test_threshold_accepts_floor_fmr_n():
    t = M.fmr_threshold(SCORES[~MATED], 0.2)
    assert 0.30 < t <= 0.45
    assert t == np.nextafter(0.30, 1)
    assert (SCORES[~MATED] >= t).sum() == 1
    # k = floor(0.1 * 5) = 0: nothing accepted, T just above the highest non-mated score.
    assert M.fmr_threshold(SCORES[~MATED], 0.1) == np.nextafter(0.45, 1)


def test_threshold_ties_at_the_boundary_accept_fewer():
    nm = np.array([0.5, 0.5, 0.1, 0.2])
    # k = 1, but the two top scores tie: accepting one means accepting both, so accept none.
    t = M.fmr_threshold(nm, 0.25)
    assert (nm >= t).sum() == 0
    # k = 2: the 3rd highest is 0.2, both 0.5 are accepted.
    assert (nm >= M.fmr_threshold(nm, 0.5)).sum() == 2


def test_accepted_count_is_robust_to_float_error():
    assert M.accepted_count(1e-3, 3000) == 3
    assert M.accepted_count(0.29, 100) == 29


def test_paper_erc_by_hand():
    t = M.fmr_threshold(SCORES[~MATED], 0.2)
    # Rejection order by pair quality: 4(N) 1(M,err) 8(M) 2(N) 9(N) 3(M) 5(M,err) 7(N) 0(M) 6(N).
    # r=0.1 drops 1 pair (4): 2/5; r=0.2 drops pair 1 too: 1/4; r=0.3 drops the good mated pair 8:
    # 1/3 (FNMR rises); r=0.4, 0.5 drop non-mated pairs: 1/3; r=0.6 drops pair 3: 1/2;
    # r=0.7 drops pair 5, the last error: 0; from then on no error remains.
    fnmr = M.erc(SCORES, MATED, QUALITY, t, GRID)
    expected = [0.4, 0.4, 0.25, 1 / 3, 1 / 3, 1 / 3, 0.5, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(fnmr, expected)
    # Trapezoid area with step 0.1: 0.1 * (0.4/2 + 0.4 + 0.25 + 3 * 1/3 + 0.5 + 0 + 0 + 0 + 0/2) = 0.235;
    # minus FNMR(0)^2 / 2 = 0.08.
    assert M.erc_auc(GRID, fnmr) == pytest.approx(0.235 - 0.08)


def test_threshold_stays_fixed():
    t = M.fmr_threshold(SCORES[~MATED], 0.2)
    fnmr = M.erc(SCORES, MATED, QUALITY, t, [0.1])
    # Rejecting 10 % drops pair 4, the non-mated pair scored 0.30. Re-deriving T from the 4 that
    # remain (k = floor(0.2 * 4) = 0) would put it above 0.45 and make pair 3 (0.35) a false
    # non-match: 3/5 = 0.6. With T fixed before rejection pair 3 stays a match: 2/5.
    assert fnmr[0] == pytest.approx(0.4)
    t_rederived = M.fmr_threshold(np.array([0.10, 0.45, 0.20, 0.00]), 0.2)
    assert M.erc(SCORES, MATED, QUALITY, t_rederived, [0.1])[0] == pytest.approx(0.6)
    # The vectorised figures hold T fixed too.
    f = M.point_figures(SCORES, MATED, QUALITY, fmrs=[0.2], fractions=GRID, report=[0.1])
    assert f.values["erc_fnmr@0.1"][0, 0, 0] == pytest.approx(0.4)
    assert f.threshold[0, 0] == t


def test_perfect_order_is_not_zero_for_the_paper_erc():
    t = M.fmr_threshold(SCORES[~MATED], 0.2)
    # Oracle quality: the two false non-matches first, then everything else.
    oracle = np.where(MATED & (SCORES < t), 0.0, 1.0) + np.arange(10) * 1e-3
    fnmr = M.erc(SCORES, MATED, oracle, t, GRID)
    np.testing.assert_allclose(fnmr, [0.4, 0.25, 0, 0, 0, 0, 0, 0, 0, 0])
    # r counts ALL pairs, and the two errors are 2 of 10 pairs: the oracle reaches 0 at r = 0.2, while
    # the "perfect" line max(0.4 - r, 0) reaches it at r = 0.4. So the AUC is not 0 but negative:
    # 0.1 * (0.4 + 0.25) / 2 + 0.1 * (0.25 + 0) / 2 - 0.4^2 / 2 = 0.045 - 0.08.
    assert M.erc_auc(GRID, fnmr) == pytest.approx(-0.035)


def test_edc_by_hand():
    t = M.fmr_threshold(SCORES[~MATED], 0.2)
    c = M.edc(SCORES[MATED], QUALITY[MATED], t)
    # Mated pairs by quality: 1 (0.1, err), 8 (0.2), 3 (0.5), 5 (0.6, err), 0 (0.8): distinct values,
    # so one step per pair: FNMR 2/5, 1/4, 1/3, 1/2, 0/1 at discard 0, .2, .4, .6, .8.
    np.testing.assert_allclose(c.discard, [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(c.fnmr, [0.4, 0.25, 1 / 3, 0.5, 0.0])
    assert M.edc_pauc(c, 0.2) == pytest.approx(0.4 * 0.2)
    assert M.edc_pauc(c, 0.5) == pytest.approx(0.4 * 0.2 + 0.25 * 0.2 + 1 / 3 * 0.1)
    assert M.edc_pauc(c, 1.0) == pytest.approx(0.08 + 0.05 + 0.2 / 3 + 0.1 + 0)
    # Theoretical best up to 0.2: 0.4^2/2 - (0.4 - 0.2)^2/2 = 0.06; up to 0.5: 0.08.
    assert M.edc_best_area(0.4, 0.2) == pytest.approx(0.06)
    assert M.edc_best_area(0.4, 0.5) == pytest.approx(0.08)
    f = M.point_figures(SCORES, MATED, QUALITY, fmrs=[0.2], fractions=GRID, limit=0.2)
    assert f.values["edc_pauc"][0, 0, 0] == pytest.approx(0.08)
    assert f.values["edc_pauc_minus_best"][0, 0, 0] == pytest.approx(0.02)


def test_edc_discards_tied_qualities_together():
    scores = np.array([0.1, 0.9, 0.1, 0.9, 0.9, 0.9])        # errors at T = 0.5: pairs 0 and 2
    quality = np.array([0.1, 0.1, 0.5, 0.5, 0.5, 0.9])
    c = M.edc(scores, quality, 0.5)
    # Groups start at 0, 2, 5: discard 0, 2/6, 5/6 with FNMR 2/6, 1/4, 0/1 - never 1/5 (that would
    # need half of a tie group discarded).
    np.testing.assert_allclose(c.discard, [0, 1 / 3, 5 / 6])
    np.testing.assert_allclose(c.fnmr, [1 / 3, 0.25, 0.0])
    assert M.edc_pauc(c, 0.2) == pytest.approx(0.2 / 3)
    assert M.edc_pauc(c, 0.5) == pytest.approx(1 / 9 + 0.25 / 6)
    np.testing.assert_allclose(M.edc_step_at(c, [0, 0.3, 1 / 3, 0.9]), [1 / 3, 1 / 3, 0.25, 0.0])


def test_erc_keeps_tied_pairs_together_whatever_the_pair_order():
    # Equal pair quality everywhere: the authors' rule keeps risk <= percentile(risk, (1 - r) * 100),
    # which is every pair, so no rejection fraction removes the false non-match (pair 0): 1/3.
    scores = np.array([0.1, 0.9, 0.2, 0.9])
    mated = np.array([1, 1, 0, 1], dtype=bool)
    q = np.zeros(4)
    assert M.erc(scores, mated, q, 0.5, [0.25])[0] == pytest.approx(1 / 3)
    order = [1, 0, 2, 3]
    assert M.erc(scores[order], mated[order], q, 0.5, [0.25])[0] == pytest.approx(1 / 3)
    # Two tie groups: {0, 1} at 0.1 and {2, 3} at 0.7. At r = 0.25 the kept risk limit is the
    # 75th percentile of (-0.7, -0.7, -0.1, -0.1), i.e. -0.1: nothing goes (1/3). At r = 0.5 it is
    # -0.4: the low group goes whole, false non-match included (0/2). Never half a group.
    q2 = np.array([0.1, 0.1, 0.7, 0.7])
    np.testing.assert_allclose(M.erc(scores, mated, q2, 0.5, [0.25, 0.5]), [1 / 3, 0.0])


def test_erc_figures_do_not_depend_on_the_pair_order():
    rng = np.random.default_rng(3)
    n = 400
    mated = rng.random(n) < 0.5
    scores = np.where(mated, rng.normal(0.6, 0.3, n), rng.normal(0.1, 0.2, n))
    q = np.round(rng.random((2, n)) * 10) / 10          # an integer-like scale: massive ties
    perm = rng.permutation(n)
    a = M.point_figures(scores, mated, q, fmrs=[0.01, 0.1])
    b = M.point_figures(scores[perm], mated[perm], q[:, perm], fmrs=[0.01, 0.1])
    for name in a.values:
        np.testing.assert_allclose(a.values[name], b.values[name], err_msg=name)
    t = M.fmr_threshold(scores[~mated], 0.1)
    np.testing.assert_allclose(M.erc(scores, mated, q[0], t), M.erc(scores[perm], mated[perm], q[0, perm], t))
    ba = M.bootstrap_figures(scores, mated, q, 20, seed=1)
    # The bootstrap resamples by position, so compare each replicate's ERC with a direct computation.
    assert np.isfinite(ba.values["erc_auc"]).all()


def test_vectorised_erc_matches_the_curve_function_with_ties():
    rng = np.random.default_rng(5)
    n = 300
    mated = rng.random(n) < 0.4
    scores = np.where(mated, rng.normal(0.6, 0.3, n), rng.normal(0.1, 0.2, n))
    q = np.round(rng.random(n) * 20)
    f = M.point_figures(scores, mated, q[None, :], fmrs=[0.05], report=[0.1, 0.2])
    t = float(f.threshold[0, 0])
    curve = M.erc(scores, mated, q, t)
    assert f.values["erc_auc"][0, 0, 0] == pytest.approx(M.erc_auc(M.REJECT_FRACTIONS, curve))
    assert f.values["erc_fnmr@0.1"][0, 0, 0] == pytest.approx(M.erc(scores, mated, q, t, [0.1])[0])


def test_no_errors_at_all():
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.95, 0.0])
    mated = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    q = np.array([0.3, 0.1, 0.5, 0.2, 0.9, 0.4])
    t = M.fmr_threshold(scores[~mated], 0.34)
    fnmr = M.erc(scores, mated, q, t)
    assert not fnmr.any()
    assert M.erc_auc(M.REJECT_FRACTIONS, fnmr) == 0
    c = M.edc(scores[mated], q[mated], t)
    assert M.edc_pauc(c) == 0 and M.edc_best_area(c.fnmr0) == 0
    f = M.point_figures(scores, mated, q, fmrs=[0.34])
    assert all(not v.any() for v in f.values.values())


def test_everything_mated():
    scores = np.array([0.2, 0.9, 0.3, 0.8, 0.7])
    mated = np.ones(5, dtype=bool)
    q = np.array([0.5, 0.1, 0.2, 0.9, 0.3])
    # With all pairs mated, rejecting a fraction r of all pairs is discarding the lowest-quality
    # mated pairs: the ERC at r = j/5 equals the EDC's j-th point (distinct qualities).
    fnmr = M.erc(scores, mated, q, 0.5, np.arange(5) / 5)
    c = M.edc(scores, q, 0.5)
    np.testing.assert_allclose(fnmr, c.fnmr)
    np.testing.assert_allclose(fnmr, [2 / 5, 2 / 4, 1 / 3, 1 / 2, 0])
    with pytest.raises(ValueError, match="non-mated"):
        M.point_figures(scores, mated, q)


def test_no_mated_pair_left_counts_as_no_error():
    scores = np.array([0.1, 0.2, 0.3])
    mated = np.array([1, 0, 0], dtype=bool)
    assert list(M.erc(scores, mated, [0.0, 1.0, 2.0], 0.5, [0.0, 0.34])) == [1.0, 0.0]


def test_perfect_ordering_edc_minus_best_by_hand():
    # 4 mated pairs, one false non-match given the lowest quality (a perfect ordering).
    scores = np.array([0.1, 0.9, 0.8, 0.7])
    q = np.array([0.0, 0.5, 0.6, 0.7])
    c = M.edc(scores, q, 0.5)
    np.testing.assert_allclose(c.fnmr, [0.25, 0, 0, 0])
    # pAUC up to 0.2 = 0.25 * 0.2 = 0.05; best = 0.25^2/2 - 0.05^2/2 = 0.03. The FNMR is a rate among
    # the pairs that remain, and discarding is stepwise, so even this ordering is 0.02 above.
    assert M.edc_pauc(c, 0.2) - M.edc_best_area(c.fnmr0, 0.2) == pytest.approx(0.02)


# --------------------------------------------------------------------------------------------
# Properties


@st.composite
def pair_sets(draw, n_max: int = 40):
    n_m = draw(st.integers(1, n_max))
    n_n = draw(st.integers(1, n_max))
    levels = draw(st.integers(2, 8))              # few quality levels: plenty of ties
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores = np.concatenate((rng.normal(0.6, 0.2, n_m), rng.normal(0.1, 0.15, n_n)))
    mated = np.concatenate((np.ones(n_m, bool), np.zeros(n_n, bool)))
    perm = rng.permutation(n_m + n_n)
    q = rng.integers(0, levels, (2, n_m + n_n)) / levels
    return scores[perm], mated[perm], q[:, perm]


@settings(max_examples=60, deadline=None)
@given(pair_sets(), st.sampled_from([0.05, 0.1, 0.3]), st.sampled_from([0.1, 0.2, 0.5]))
def test_vectorised_figures_match_the_reference(data, fmr, limit):
    scores, mated, q = data
    f = M.point_figures(scores, mated, q, fmrs=[fmr], limit=limit)
    t = M.fmr_threshold(scores[~mated], fmr)
    assert f.threshold[0, 0] == t
    for k in range(2):
        curve = M.erc(scores, mated, q[k], t)
        assert f.values["erc_auc"][0, k, 0] == pytest.approx(M.erc_auc(M.REJECT_FRACTIONS, curve), abs=1e-12)
        assert f.values["erc_fnmr@0.2"][0, k, 0] == pytest.approx(M.erc(scores, mated, q[k], t, [0.2])[0])
        c = M.edc(scores[mated], q[k][mated], t)
        assert f.values["edc_pauc"][0, k, 0] == pytest.approx(M.edc_pauc(c, limit), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(pair_sets(), st.sampled_from([0.1, 0.2, 0.5, 1.0]))
def test_edc_never_beats_the_theoretical_best(data, limit):
    scores, mated, q = data
    t = M.fmr_threshold(scores[~mated], 0.1)
    c = M.edc(scores[mated], q[0][mated], t)
    assert M.edc_pauc(c, limit) - M.edc_best_area(c.fnmr0, limit) >= -1e-12


@settings(max_examples=60, deadline=None)
@given(pair_sets())
def test_figures_depend_only_on_the_quality_ranking(data):
    scores, mated, q = data
    t = M.fmr_threshold(scores[~mated], 0.1)
    warped = np.exp(3 * q[0]) - 7                      # strictly increasing
    np.testing.assert_array_equal(M.erc(scores, mated, q[0], t), M.erc(scores, mated, warped, t))
    a = M.edc(scores[mated], q[0][mated], t)
    b = M.edc(scores[mated], warped[mated], t)
    np.testing.assert_array_equal(a.fnmr, b.fnmr)
    np.testing.assert_array_equal(a.discard, b.discard)


@settings(max_examples=60, deadline=None)
@given(pair_sets())
def test_oracle_ordering_curves_never_rise(data):
    scores, mated, _ = data
    t = M.fmr_threshold(scores[~mated], 0.1)
    # Quality = score for mated pairs (false non-matches lowest), non-mated pairs rejected last.
    # Distinct values, so the EDC reaches 0 exactly where the theoretical best does.
    q = np.where(mated, scores, 10 + scores) + np.arange(scores.size) * 1e-9
    erc = M.erc(scores, mated, q, t)
    assert (np.diff(erc) <= 1e-12).all()
    c = M.edc(scores[mated], q[mated], t)
    assert (np.diff(c.fnmr) <= 1e-12).all()
    if c.fnmr0 < 1:                                    # (all mated pairs wrong: nothing left at 1)
        assert M.edc_step_at(c, [c.fnmr0])[0] == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from([1e-3, 0.01, 0.1, 0.5]))
def test_threshold_never_exceeds_the_fmr(nm, fmr):
    nm = np.array(nm)
    t = M.fmr_threshold(nm, fmr)
    k = M.accepted_count(fmr, nm.size)
    accepted = int((nm >= t).sum())
    assert accepted <= k
    if np.unique(nm).size == nm.size:
        assert accepted == k


# --------------------------------------------------------------------------------------------
# Bootstrap


def _data(n: int = 600, seed: int = 3):
    rng = np.random.default_rng(seed)
    mated = np.arange(n) % 2 == 0
    scores = np.where(mated, rng.normal(0.6, 0.2, n), rng.normal(0.0, 0.1, n))
    good = np.where(mated, scores, 1) + rng.normal(0, 0.1, n)
    return scores, mated, np.stack((good, rng.random(n)))


def test_bootstrap_is_seeded_and_paired():
    scores, mated, q = _data()
    q3 = np.stack((q[0], q[1], q[0]))                      # source 2 = source 0
    a = M.bootstrap_figures(scores, mated, q3, 200, seed=5, fmrs=[0.01], max_elements=50_000)
    b = M.bootstrap_figures(scores, mated, q3, 200, seed=5, fmrs=[0.01])
    for name in a.values:
        assert a.values[name].shape == (1, 3, 200)
        np.testing.assert_array_equal(a.values[name], b.values[name])     # chunking does not matter
        np.testing.assert_array_equal(a.values[name][0, 0], a.values[name][0, 2])   # paired
    c = M.bootstrap_figures(scores, mated, q3, 200, seed=6, fmrs=[0.01])
    assert not np.array_equal(a.values["erc_auc"], c.values["erc_auc"])
    # The threshold is re-derived in each replicate.
    assert np.unique(a.threshold).size > 3


def test_bootstrap_interval_brackets_the_estimate():
    scores, mated, q = _data()
    point = M.point_figures(scores, mated, q, fmrs=[0.01])
    boot = M.bootstrap_figures(scores, mated, q, 300, seed=1, fmrs=[0.01])
    lo, hi = M.percentile_interval(boot.values["erc_auc"])
    assert (lo <= point.values["erc_auc"][..., 0]).all() and (point.values["erc_auc"][..., 0] <= hi).all()
    # The informative source beats the random one on every replicate here.
    assert (boot.values["erc_auc"][0, 0] < boot.values["erc_auc"][0, 1]).mean() > 0.95
