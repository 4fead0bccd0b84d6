import math

import numpy as np
import pytest

from inpo.judges import SyntheticPreferenceOracle, SyntheticRewardOracle, make_judge, sigmoid
from inpo.task import FEATURE_SPACE, make_prompts, render_response

RECORD = {"id": "t-0", "prompt": "sort 3 1 2", "items": [3, 1, 2]}


def correct(style, verbosity=0):
    return render_response([1, 2, 3], style, verbosity)


def wrong(style, verbosity=0):
    return render_response([3, 1, 2], style, verbosity)


def test_preference_follows_the_formula():
    o = SyntheticPreferenceOracle(w_quality=2.0, w_cycle=1.0, w_length=0.6)
    # correct, style 2, v=1 vs wrong, style 0, v=3: q 1 - 0, 2 beats 0, v 1 - 3
    assert o.preference(RECORD, correct(2, 1), wrong(0, 3)) == pytest.approx(sigmoid(2.0 + 1.0 + 0.6 * (1 - 3) / 3))
    # invalid vs wrong style 1, v=2: q -1 - 0, no cycle term, v 0 - 2
    assert o.preference(RECORD, "( 1 2 3", wrong(1, 2)) == pytest.approx(sigmoid(-2.0 - 0.6 * 2 / 3))


def test_preference_is_antisymmetric_exactly_and_half_on_equal_features():
    o = SyntheticPreferenceOracle(w_quality=1.3, w_cycle=0.7, w_length=0.9)
    m = o.preference_matrix()
    assert m.shape == (25, 25)
    assert np.array_equal(m + m.T, np.ones((25, 25)))
    assert np.all(np.diag(m) == 0.5)
    # different texts with equal features
    assert o.preference(RECORD, correct(1), render_response([1, 2, 3], 1, 0)) == 0.5
    assert o.preference(RECORD, "garbage", "( 3 2 1 ]") == 0.5


def test_default_weights_make_correctness_dominate_style_and_length():
    o = SyntheticPreferenceOracle()
    assert (o.w_quality, o.w_cycle, o.w_length) == (2.0, 1.0, 0.6)
    for s1 in range(3):
        for s2 in range(3):
            assert o.preference(RECORD, correct(s1, 0), wrong(s2, 3)) > 0.5
            assert o.preference(RECORD, wrong(s1, 0), "( 1 2") > 0.5
    assert o.preference(RECORD, correct(0, 3), correct(0, 0)) == pytest.approx(sigmoid(0.6))


def test_the_styles_form_a_cycle_no_bradley_terry_reward_can_order():
    o = SyntheticPreferenceOracle()
    a, b, c = correct(0, 2), correct(1, 2), correct(2, 2)
    # A BT model would need r(a) > r(b) > r(c) > r(a).
    assert o.compare(RECORD, a, b) > 0.5
    assert o.compare(RECORD, b, c) > 0.5
    assert o.compare(RECORD, c, a) > 0.5


def fit_bradley_terry(p, steps=3000, lr=0.5):
    """Maximum-likelihood BT rewards for a preference matrix (gradient ascent, convex)."""
    n = len(p)
    r = np.zeros(n)
    for _ in range(steps):
        q = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
        r += lr * (p - q).sum(axis=1) / n
    return 1 / (1 + np.exp(-(r[:, None] - r[None, :])))


def fit_bradley_terry_logits(p):
    """Least squares on logits: logit p_ij ~ r_i - r_j over all i != j (sum r = 0 fixes the gauge)."""
    n = len(p)
    rows, target = [], []
    for i in range(n):
        for j in range(n):
            if i != j:
                row = np.zeros(n)
                row[i], row[j] = 1.0, -1.0
                rows.append(row)
                target.append(math.log(p[i, j] / (1 - p[i, j])))
    rows.append(np.ones(n))
    target.append(0.0)
    r = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)[0]
    return 1 / (1 + np.exp(-(r[:, None] - r[None, :])))


@pytest.mark.parametrize("fit", [fit_bradley_terry, fit_bradley_terry_logits])
def test_no_bradley_terry_model_fits_the_preference_but_one_fits_the_reward_oracle(fit):
    cyc = [FEATURE_SPACE.index((True, True, s, 2)) for s in range(3)]
    general = SyntheticPreferenceOracle().preference_matrix()
    bt = SyntheticRewardOracle().preference_matrix()
    # the 3-cycle: the best BT fit is off by sigmoid(1) - 1/2 = 0.23
    assert np.abs(fit(general[np.ix_(cyc, cyc)]) - general[np.ix_(cyc, cyc)]).max() > 0.2
    assert np.abs(fit(general) - general).max() > 0.1
    # control: the fit is exact when the preference is Bradley-Terry
    assert np.abs(fit(bt) - bt).max() < 1e-6


def test_reward_oracle_is_bradley_terry_in_its_reward():
    o = SyntheticRewardOracle(w_quality=2.0, w_length=0.6)
    assert o.reward(RECORD, correct(2, 3)) == pytest.approx(2.6)
    assert o.reward(RECORD, wrong(0, 0)) == 0.0
    assert o.reward(RECORD, "( 1 2 3 ]") == -2.0
    assert o.preference(RECORD, correct(0, 3), correct(1, 0)) == pytest.approx(sigmoid(0.6))
    # no cyclic term: equal correctness and verbosity, any styles, is a tie
    assert o.preference(RECORD, correct(0, 1), correct(1, 1)) == 0.5
    m = o.preference_matrix()
    assert np.array_equal(m + m.T, np.ones((25, 25)))


def test_compare_averages_both_orders_and_counts_calls():
    o = SyntheticPreferenceOracle()
    p = o.compare(RECORD, correct(0), wrong(1))
    assert p == pytest.approx(o.preference(RECORD, correct(0), wrong(1)))
    assert o.n_calls == 3
    r = SyntheticRewardOracle()
    r.reward(RECORD, correct(0))
    r.preference(RECORD, correct(0), wrong(1))
    assert r.n_calls == 3


def test_feature_distribution_is_a_normalized_histogram():
    records = make_prompts(4, seed=0)
    texts = [
        render_response(sorted(records[0]["items"]), 1, 3),
        render_response(sorted(records[1]["items"]), 1, 3),
        "nonsense",
        render_response(records[3]["items"][::-1] + [0, 0], 0, 0),  # valid, but wrong length
    ]
    d = SyntheticPreferenceOracle.feature_distribution(records, texts)
    assert d.sum() == pytest.approx(1.0)
    assert d[FEATURE_SPACE.index((True, True, 1, 3))] == 0.5
    assert d[0] == 0.25
    assert d[FEATURE_SPACE.index((True, False, 0, 0))] == 0.25
    with pytest.raises(ValueError):
        SyntheticPreferenceOracle.feature_distribution(records, texts[:3])


def test_make_judge_builds_each_kind_and_rejects_bad_settings():
    j = make_judge("synthetic_preference", w_quality=1, w_cycle=3, w_length=0)
    assert isinstance(j, SyntheticPreferenceOracle) and (j.w_quality, j.w_cycle, j.w_length) == (1.0, 3.0, 0.0)
    assert isinstance(make_judge("synthetic_reward"), SyntheticRewardOracle)
    with pytest.raises(ValueError, match="unknown judge kind"):
        make_judge("gpt4")
    with pytest.raises(ValueError, match="w_cycle"):
        make_judge("synthetic_reward", w_cycle=1.0)


def test_sigmoid_is_exactly_complementary():
    for x in np.linspace(-40, 40, 801):
        assert sigmoid(x) + sigmoid(-x) == 1.0
    assert sigmoid(0.0) == 0.5 and sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
