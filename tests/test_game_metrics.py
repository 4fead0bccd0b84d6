"""Game metrics of measured feature distributions (inpo.game_metrics) against the tabular lab."""

import math

import numpy as np
import pytest
import torch

from inpo.game import duality_gap, kl, omd_step, regularized_nash
from inpo.game_metrics import Step, algorithm_step, cell_counts, game_metrics, smoothed, total_variation
from inpo.judges.synthetic import SyntheticPreferenceOracle
from inpo.losses import inpo_loss, ipo_loss

M = SyntheticPreferenceOracle().preference_matrix()
N_CELLS = len(M)
TAU, ETA = 0.0667, 0.2


def cells_of(counts: np.ndarray, answers_per_prompt: int) -> np.ndarray:
    """[P, S] cells whose pooled histogram is exactly ``counts`` (sum divisible by S)."""
    flat = np.repeat(np.arange(len(counts)), counts)
    return flat.reshape(-1, answers_per_prompt)


def exact_counts(p: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` that are as close to total * p as rounding allows."""
    counts = np.floor(p * total).astype(int)
    counts[np.argsort(p * total - counts)[::-1][: total - counts.sum()]] += 1
    return counts


def random_distribution(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(N_CELLS))


def test_smoothed_and_total_variation_by_hand():
    assert np.allclose(smoothed(np.array([3, 0, 1]), 0.5), [3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5])
    assert total_variation([0.5, 0.5, 0], [0, 0.5, 0.5]) == 0.5
    assert np.array_equal(cell_counts(np.array([[0, 2], [2, 2]]), 3), [[1, 0, 1], [0, 0, 2]])
    with pytest.raises(ValueError, match="feature cells must be in 0..2"):
        cell_counts(np.array([[0, 3]]), 3)


def test_regularized_gap_and_kl_to_nash_match_the_lab_on_the_smoothed_distributions():
    ref_counts = exact_counts(random_distribution(0), 4000)
    pi_counts = exact_counts(random_distribution(1), 4000)
    out = game_metrics(M, cells_of(pi_counts, 4), reference_cells=cells_of(ref_counts, 4), tau=TAU, bootstrap=0)
    pi, ref = (pi_counts + 0.5) / (4000 + 0.5 * N_CELLS), (ref_counts + 0.5) / (4000 + 0.5 * N_CELLS)
    # DualGap_tau written out from DESIGN.md section 2, term by term
    best_response = TAU * math.log(sum(ref[y] * math.exp((M[y] @ pi) / TAU) for y in range(N_CELLS)))
    kl_pi_ref = sum(pi[y] * math.log(pi[y] / ref[y]) for y in range(N_CELLS))
    assert out["duality_gap_tau"] == pytest.approx(2 * (best_response + TAU * kl_pi_ref) - 1, abs=1e-10)
    nash = regularized_nash(M, ref, TAU)
    assert out["nash_distribution"] == pytest.approx(nash.tolist(), abs=1e-12)
    assert out["kl_to_nash"] == pytest.approx(sum(nash[y] * math.log(nash[y] / pi[y]) for y in range(N_CELLS)), abs=1e-10)
    raw = pi_counts / pi_counts.sum()  # the unregularized gap takes the raw histogram
    assert out["duality_gap"] == pytest.approx(2 * max(M[y] @ raw for y in range(N_CELLS)) - 1, abs=1e-12)
    assert out["game_tau"] == TAU and out["game_answers"] == 4000 and out["duality_gap_se"] is None


def test_answers_drawn_at_the_nash_policy_have_no_gap_and_no_distance():
    ref = random_distribution(2)
    nash = regularized_nash(M, ref, TAU)
    total = 2_000_000  # a huge sample with a tiny pseudocount: the estimates are the distributions themselves
    out = game_metrics(M, cells_of(exact_counts(nash, total), 8), reference_cells=cells_of(exact_counts(ref, total), 8),
                       tau=TAU, pseudocount=1e-6, bootstrap=0)
    assert abs(out["duality_gap_tau"]) < 1e-5 and out["kl_to_nash"] < 1e-6
    assert out["duality_gap_tau"] == pytest.approx(duality_gap(M, nash, ref, TAU), abs=1e-5)


def test_the_shadow_is_the_labs_mirror_descent_step():
    ref, previous = random_distribution(3), random_distribution(4)
    step = omd_step(previous, M, ref, ETA, TAU)
    total = 2_000_000
    cells = {name: cells_of(exact_counts(p, total), 8) for name, p in [("ref", ref), ("previous", previous), ("next", step)]}
    exact = game_metrics(M, cells["next"], reference_cells=cells["ref"], tau=TAU, previous_cells=cells["previous"],
                         step=Step(ETA, TAU), pseudocount=1e-6, bootstrap=0)
    assert exact["shadow_tv"] < 1e-4 and exact["shadow_kl"] < 1e-7  # rounding 2e6 answers to counts
    assert (exact["shadow_eta"], exact["shadow_tau"]) == (ETA, TAU)
    # a policy that did not follow the step: the distances to the step from pi_t's smoothed histogram
    other = exact_counts(random_distribution(5), 4000)
    ref_counts, prev_counts = exact_counts(ref, 4000), exact_counts(previous, 4000)
    out = game_metrics(M, cells_of(other, 4), reference_cells=cells_of(ref_counts, 4), tau=TAU,
                       previous_cells=cells_of(prev_counts, 4), step=Step(ETA, TAU), bootstrap=0)
    shadow = omd_step(smoothed(prev_counts, 0.5), M, smoothed(ref_counts, 0.5), ETA, TAU)
    measured = smoothed(other, 0.5)
    assert out["shadow_tv"] == pytest.approx(0.5 * np.abs(shadow - measured).sum(), abs=1e-12)
    assert out["shadow_kl"] == pytest.approx(kl(shadow, measured), abs=1e-12) and out["shadow_kl"] > 0.1


def test_bootstrap_standard_errors_shrink_like_one_over_root_prompts():
    rng = np.random.default_rng(0)
    ses = []
    for prompts in (100, 900):
        pi_cells, ref_cells = rng.integers(0, N_CELLS, (prompts, 4)), rng.integers(0, N_CELLS, (prompts, 4))
        out = game_metrics(M, pi_cells, reference_cells=ref_cells, tau=TAU, bootstrap=100, seed=1)
        ses.append(np.array([out["duality_gap_se"], out["duality_gap_tau_se"], out["kl_to_nash_se"]]))
    assert np.all(ses[0] > 0) and np.allclose(ses[0] / ses[1], 3, rtol=0.35)


def test_without_a_reference_only_the_plain_gap_is_computed():
    out = game_metrics(M, np.zeros((3, 2), dtype=int), bootstrap=10)
    assert set(out) == {"game_answers", "game_bootstrap", "duality_gap", "duality_gap_se"}


def test_mismatched_prompts_and_a_step_without_pi_t_are_errors():
    with pytest.raises(ValueError, match="same prompts"):
        game_metrics(M, np.zeros((3, 2), dtype=int), reference_cells=np.zeros((4, 2), dtype=int), tau=TAU)
    with pytest.raises(ValueError, match="needs previous_cells"):
        game_metrics(M, np.zeros((3, 2), dtype=int), reference_cells=np.zeros((3, 2), dtype=int), tau=TAU,
                     step=Step(ETA, TAU))


@pytest.mark.parametrize("step", [Step(ETA, TAU), Step(2.0, TAU), Step(ETA, 0.0)])
def test_the_predicted_contraction_says_whether_the_exact_iterates_converge(step):
    ref_counts = exact_counts(random_distribution(5), 4000)
    prev_counts = exact_counts(random_distribution(6), 4000)
    out = game_metrics(M, cells_of(prev_counts, 4), reference_cells=cells_of(ref_counts, 4), tau=TAU,
                       previous_cells=cells_of(prev_counts, 4), step=step, bootstrap=0)
    ref = smoothed(ref_counts, 0.5)
    fixed_point = regularized_nash(M, ref, step.tau)
    # the rotation rate from the eigenvalues of the linearized update, written out
    mu = max(abs(np.linalg.eigvals(M @ (np.diag(fixed_point) - np.outer(fixed_point, fixed_point))).imag))
    assert out["shadow_contraction"] == pytest.approx(math.hypot(1 - step.tau / step.eta, mu / step.eta), rel=1e-9)
    nash_mu = max(abs(np.linalg.eigvals(M @ (np.diag(regularized_nash(M, ref, TAU)) - np.outer(*[regularized_nash(M, ref, TAU)] * 2))).imag))
    assert out["stability_eta"] == pytest.approx((TAU**2 + nash_mu**2) / (2 * TAU), rel=1e-9)
    # and the lab's exact iterates behave as predicted: near the fixed point, they close in iff the factor is < 1
    pi = 0.99 * fixed_point + 0.01 * ref
    start = kl(fixed_point, pi)
    for _ in range(300):
        pi = omd_step(pi, M, ref, step.eta, step.tau)
    assert (kl(fixed_point, pi) < start) == (out["shadow_contraction"] < 1)


def test_each_algorithm_is_shadowed_by_the_step_its_loss_approximates():
    assert algorithm_step("inpo", eta=0.3, tau=0.1, beta=2.0) == Step(0.3, 0.1)
    assert algorithm_step("inpo_nokl", eta=0.3, tau=0.1) == Step(0.3, 0.0)
    assert algorithm_step("sppo", beta=0.2) == Step(0.2, 0.0)
    assert algorithm_step("dpo", beta=2.0) is None
    # online IPO against pi_t is INPO without KL at eta = beta, loss for loss: the same step
    assert algorithm_step("ipo", beta=0.2) == Step(0.2, 0.0)
    logps = torch.randn(6, 8, dtype=torch.float64)
    ipo = ipo_loss(logps[0], logps[1], logps[2], logps[3], beta=0.2)
    inpo = inpo_loss(logps[0], logps[1], logps[4], logps[5], logps[2], logps[3], eta=0.2, tau=0.0)
    assert torch.allclose(ipo, inpo, rtol=0, atol=1e-12)


def test_the_shadow_floor_is_what_exact_training_measures_on_average():
    rng = np.random.default_rng(7)
    p_ref, p_prev = random_distribution(8), random_distribution(9)
    step = Step(ETA, TAU)
    exact = omd_step(p_prev, M, p_ref, ETA, TAU)
    measured, floors = [], []
    for i in range(40):  # pi_t, pi_ref and a policy that made the exact step, each measured on 1024 answers
        def draw(p):
            return rng.choice(N_CELLS, size=(256, 4), p=p)
        out = game_metrics(M, draw(exact), reference_cells=draw(p_ref), tau=TAU, previous_cells=draw(p_prev), step=step,
                           bootstrap=40, seed=i)
        measured.append(out["shadow_tv"])
        floors.append(out["shadow_tv_floor"])
    assert np.mean(measured) == pytest.approx(np.mean(floors), rel=0.1)
