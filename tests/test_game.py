"""inpo.game: the regularized preference game, its Nash policy, INPO and the Bradley-Terry baseline."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from inpo.config import load_config
from inpo.game import (
    check_distribution,
    check_preference_matrix,
    dpo_iterates,
    dpo_step,
    duality_gap,
    expected_pair_table,
    inpo_iterates,
    inpo_step,
    kl,
    omd_step,
    regularized_nash,
    sampled_pair_table,
)

RPS = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
REF = np.array([0.6, 0.3, 0.1])
TAU, ETA = 0.1, 1.0


def tv(p, q):
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum()


@pytest.fixture(scope="module")
def cyclic5():
    game = load_config("lab", ["game=cyclic5"]).game
    return np.array(OmegaConf.to_object(game.P)), np.array(OmegaConf.to_object(game.ref))


@pytest.fixture(scope="module")
def nash():
    return regularized_nash(RPS, REF, TAU)


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("P, match", [
    ([[0.5, 1.2], [-0.2, 0.5]], r"P\[0, 1\] = 1.2 is not a probability"),
    ([[0.5, 0.7], [0.4, 0.5]], r"P\[0, 1\] \+ P\[1, 0\] = 1.1, must be 1"),
    ([[0.6, 0.5], [0.5, 0.5]], r"P\[0, 0\] \+ P\[0, 0\] = 1.2"),
    ([0.5, 0.5], r"square n x n matrix"),
    ([[0.5, np.nan], [0.5, 0.5]], r"P\[0, 1\] = nan"),
])
def test_bad_preference_matrix(P, match):
    with pytest.raises(ValueError, match=match):
        check_preference_matrix(P)


@pytest.mark.parametrize("ref, match", [
    ([0.6, 0.4], r"ref must be a vector of length 3"),
    ([0.7, 0.4, -0.1], r"ref\[2\] = -0.1, must be >= 0"),
    ([0.6, 0.3, 0.2], r"ref sums to 1.1, must sum to 1"),
])
def test_bad_distribution(ref, match):
    with pytest.raises(ValueError, match=match):
        check_distribution(ref, 3, "ref")


def test_zero_reference_rejected_where_its_log_is_taken():
    with pytest.raises(ValueError, match=r"ref\[1\] = 0.0, must be > 0 \(its log is taken\)"):
        omd_step(REF, RPS, [0.5, 0.0, 0.5], ETA, TAU)
    with pytest.raises(ValueError, match=r"ref\[1\] = 0.0, must be > 0"):
        regularized_nash(RPS, [0.5, 0.0, 0.5], TAU)
    # With tau = 0 the reference does not enter the update.
    assert omd_step(REF, RPS, [0.5, 0.0, 0.5], ETA, 0.0).sum() == pytest.approx(1)


@pytest.mark.parametrize("eta, tau, match", [
    (0.0, 0.0, r"eta must be > 0"),
    (1.0, -0.1, r"tau \(the KL weight\) must be >= 0"),
    (0.05, 0.1, r"tau must be <= eta"),
])
def test_bad_settings(eta, tau, match):
    with pytest.raises(ValueError, match=match):
        omd_step(REF, RPS, REF, eta, tau)
    with pytest.raises(ValueError, match=match):
        inpo_step(expected_pair_table(RPS, REF), REF, REF, eta, tau)


def test_duality_gap_needs_ref_when_regularized():
    with pytest.raises(ValueError, match="ref .* is required when tau > 0"):
        duality_gap(RPS, REF, None, TAU)


# --- closed forms ----------------------------------------------------------------------------

def test_omd_step_is_the_product_formula():
    pi = np.array([0.2, 0.5, 0.3])
    direct = pi ** (1 - TAU / ETA) * REF ** (TAU / ETA) * np.exp(RPS @ pi / ETA)
    np.testing.assert_allclose(omd_step(pi, RPS, REF, ETA, TAU), direct / direct.sum(), rtol=1e-12)


def test_omd_step_is_stable_for_a_large_learning_rate():
    # exp((P pi)/eta) overflows for eta = 1e-3; the log-space update does not.
    out = omd_step(REF, RPS, REF, 1e-3, 1e-4)
    assert np.all(np.isfinite(out)) and out.sum() == pytest.approx(1)
    assert out.argmax() == 2  # scissors is the best response to rock-heavy ref


def test_omd_step_keeps_zero_probability_at_zero_without_kl():
    out = omd_step([0.5, 0.5, 0.0], RPS, REF, ETA, 0.0)
    assert out[2] == 0 and out.sum() == pytest.approx(1)


def test_kl():
    assert kl(REF, REF) == 0
    assert kl([0.5, 0.5, 0], REF) == pytest.approx(0.5 * np.log(0.5 / 0.6) + 0.5 * np.log(0.5 / 0.3))
    assert kl(REF, [0.5, 0.5, 0]) == np.inf


# --- the regularized Nash policy, checked without mirror descent -----------------------------

def test_regularized_nash_is_a_fixed_point_with_zero_gap(nash):
    target = REF * np.exp(RPS @ nash / TAU)
    np.testing.assert_allclose(nash, target / target.sum(), atol=1e-12)
    assert abs(duality_gap(RPS, nash, REF, TAU)) < 1e-12
    # Not the unregularized Nash (uniform): the KL term pulls it towards ref.
    assert tv(nash, np.ones(3) / 3) > 0.05


def test_gap_is_positive_away_from_nash(nash):
    rng = np.random.default_rng(0)
    for pi in rng.dirichlet(np.ones(3), size=20):
        assert duality_gap(RPS, pi, REF, TAU) > 0
        assert duality_gap(RPS, pi, tau=0.0) > 0
    for eps in (1e-2, 1e-3):
        for direction in ([1, -1, 0], [0, 1, -1], [-1, 0, 1]):
            assert duality_gap(RPS, nash + eps * np.array(direction), REF, TAU) > 0


def test_nash_of_a_general_game(cyclic5):
    P, ref = cyclic5
    for tau in (0.02, 0.1, 1.0):
        pi = regularized_nash(P, ref, tau)
        assert abs(duality_gap(P, pi, ref, tau)) < 1e-12
        assert duality_gap(P, ref, ref, tau) > 1e-3


def test_nash_for_small_tau_and_a_lopsided_reference():
    # A single root solve from log pi_ref fails here; the continuation in tau does not.
    ref = np.array([0.98, 0.019, 0.001])
    for tau in (1e-2, 1e-3, 1e-4):
        pi = regularized_nash(RPS, ref, tau)
        assert abs(duality_gap(RPS, pi, ref, tau)) < 1e-10
        assert tv(pi, np.ones(3) / 3) < 0.1


def test_unregularized_nash_by_linear_program(cyclic5):
    np.testing.assert_allclose(regularized_nash(RPS, REF, 0.0), np.ones(3) / 3, atol=1e-9)
    assert abs(duality_gap(RPS, np.ones(3) / 3)) < 1e-12
    P, ref = cyclic5
    pi = regularized_nash(P, ref, 0.0)
    assert abs(duality_gap(P, pi)) < 1e-9
    np.testing.assert_allclose(pi, [4 / 9, 1 / 6, 0, 7 / 18, 0], atol=1e-7)


def test_regularized_nash_reports_failure():
    with pytest.raises(RuntimeError, match=r"did not converge for tau=0.1: fixed-point residual"):
        regularized_nash(RPS, REF, TAU, tol=1e-300)


# --- INPO ------------------------------------------------------------------------------------

def test_exact_inpo_converges_to_the_regularized_nash(nash):
    last = inpo_iterates(RPS, REF, ETA, TAU, 200)[-1]
    assert kl(nash, last) < 1e-6
    assert duality_gap(RPS, last, REF, TAU) < 1e-6


def test_expected_loss_minimizer_is_the_omd_step(cyclic5):
    """Proposition 6: minimizing the expected INPO loss over pairs from pi_t gives the OMD step."""
    for P, ref in [(RPS, REF), cyclic5]:
        pi = ref
        for _ in range(5):
            exact = omd_step(pi, P, ref, ETA, TAU)
            np.testing.assert_allclose(inpo_step(expected_pair_table(P, pi), pi, ref, ETA, TAU), exact, atol=1e-8)
            pi = exact


def test_pair_tables():
    expected = expected_pair_table(RPS, REF)
    assert expected.sum() == pytest.approx(1)  # pi^T P pi = 1/2, counted for both orders
    sampled = sampled_pair_table(RPS, REF, 100_000, np.random.default_rng(0))
    assert sampled.sum() == pytest.approx(1)
    np.testing.assert_allclose(sampled, expected, atol=5e-3)
    assert sampled[0, 2] == 0  # rock never beats paper


def test_sampled_step_is_close_to_the_exact_step():
    exact = omd_step(REF, RPS, REF, ETA, TAU)
    table = sampled_pair_table(RPS, REF, 100_000, np.random.default_rng(1))
    gap = tv(inpo_step(table, REF, REF, ETA, TAU), exact)
    assert 0 < gap < 5e-3


def test_sampled_step_approaches_the_exact_step_as_pairs_grow():
    exact = omd_step(REF, RPS, REF, ETA, TAU)

    def mean_tv(n):
        return np.mean([tv(inpo_step(sampled_pair_table(RPS, REF, n, np.random.default_rng(s)), REF, REF, ETA, TAU),
                           exact) for s in range(4)])

    small, medium, large = mean_tv(100), mean_tv(10_000), mean_tv(1_000_000)
    assert large < medium < small  # ~ 1/sqrt(N): factor 10 per 100x pairs
    assert large < small / 20


def test_sampled_inpo_is_reproducible_and_near_nash(nash):
    a = inpo_iterates(RPS, REF, ETA, TAU, 30, n_pairs=20_000, seed=3)
    b = inpo_iterates(RPS, REF, ETA, TAU, 30, n_pairs=20_000, seed=3)
    np.testing.assert_array_equal(a[-1], b[-1])
    # sampling noise leaves the iterates near, not at, the Nash policy
    assert kl(nash, a[-1]) < 0.01 < 0.1 < kl(nash, a[0])


# --- the iterative DPO baseline (Bradley-Terry) ----------------------------------------------

def test_dpo_step_is_the_kl_step_on_the_bradley_terry_reward():
    # On a Bradley-Terry preference the expected-pair fit recovers the true reward r.
    r = np.array([0.0, 1.0, -0.5, 2.0])
    P = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
    pi, beta = np.array([0.1, 0.2, 0.3, 0.4]), 2.0
    target = pi * np.exp(r / beta)
    np.testing.assert_allclose(dpo_step(expected_pair_table(P, pi), pi, beta), target / target.sum(), atol=1e-8)


def test_bradley_terry_baseline_does_not_reach_the_nash_policy(nash):
    for n_pairs in (0, 1000):
        policies = dpo_iterates(RPS, REF, beta=1.0, iterations=60, n_pairs=n_pairs)
        assert min(duality_gap(RPS, pi, REF, TAU) for pi in policies) > 0.05
        # nor the unregularized one (uniform): it circles the simplex's corners instead
        assert min(duality_gap(RPS, pi) for pi in policies[10:]) > 0.05
        assert min(kl(nash, pi) for pi in policies[10:]) > 0.1
