"""Learning from labelled pairs on a tabular policy: INPO by loss minimization, and iterative DPO.

With finitely many actions, a set of labelled pairs is summed up by its pair table
W[w, l] = fraction of pairs with winner y_w = w and loser y_l = l: any mean loss over the pairs is
sum_{w,l} W[w, l] * loss(w, l). So N sampled pairs and the analytic expectation (N -> inf) are
the same computation with a different W, and 10^5 pairs cost no more than 10.

A policy is learned as a table of logits theta (log pi = log_softmax(theta)), minimized with
LBFGS in float64 starting from theta = log pi_t. The losses depend on theta only through
differences theta_w - theta_l, so the shift left free is removed by the softmax.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from inpo.game.core import check_distribution, check_preference_matrix, omd_step
from inpo.losses import check_inpo_settings, dpo_loss, inpo_loss

# Streams of randomness, so that INPO and the baseline never share samples.
INPO_STREAM, BT_STREAM = 0, 1


def expected_pair_table(P, pi) -> np.ndarray:
    """Pair table of y, y' ~ pi i.i.d. labelled by the oracle, in expectation:

        W[w, l] = Pr(y_w = w, y_l = l) = pi(w) pi(l) P[w, l] + pi(l) pi(w) P[w, l] = 2 pi(w) pi(l) P[w, l]
    """
    P = check_preference_matrix(P)
    pi = check_distribution(pi, len(P), "pi")
    return 2 * np.outer(pi, pi) * P


def sampled_pair_table(P, pi, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Pair table of n_pairs sampled pairs: y, y' ~ pi i.i.d., y wins with probability P[y, y'].

        W[w, l] = #{k : y_w^k = w, y_l^k = l} / n_pairs
    """
    P = check_preference_matrix(P)
    n = len(P)
    pi = check_distribution(pi, n, "pi")
    if not n_pairs >= 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    y, y2 = rng.choice(n, size=(2, n_pairs), p=pi)
    first_wins = rng.random(n_pairs) < P[y, y2]
    winner, loser = np.where(first_wins, y, y2), np.where(first_wins, y2, y)
    return np.bincount(winner * n + loser, minlength=n * n).reshape(n, n) / n_pairs


def pair_table(P, pi, n_pairs: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """expected_pair_table if n_pairs is 0 or None, else sampled_pair_table with n_pairs pairs."""
    if not n_pairs:
        return expected_pair_table(P, pi)
    if rng is None:
        raise ValueError("a numpy Generator (rng) is needed to sample pairs")
    return sampled_pair_table(P, pi, n_pairs, rng)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: on tables of a few entries, parallel start-up costs more than the
    work (up to 10x slower with 2 threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit_policy(weighted_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                table: np.ndarray, pi_t: np.ndarray) -> np.ndarray:
    """softmax(theta*), theta* = argmin_theta sum_{w,l} W[w,l] * loss(log pi_theta(w), log pi_theta(l)).

    weighted_loss(logp, w, l) returns per-pair losses for log pi = logp and index vectors w, l.
    LBFGS from theta = log pi_t on the support of pi_t (an action of probability 0 is never
    sampled, so no pair informs it and it keeps probability 0). The objective is convex in theta
    (a least-squares or logistic fit on differences), so a minimizer found is a global one.
    """
    # Pairs y_w = y_l have a constant loss, so they are dropped and the rest rescaled to sum 1:
    # the minimizer is unchanged, and LBFGS's absolute tolerances stay meaningful when pi_t is
    # nearly pure and almost all the weight sits on such ties.
    off_diagonal = table * (1 - np.eye(len(table)))
    if off_diagonal.sum() == 0:
        return pi_t.copy()  # no informative pair: nothing to learn
    w, l = (torch.as_tensor(i) for i in np.nonzero(off_diagonal))
    weight = torch.as_tensor(off_diagonal[w.numpy(), l.numpy()] / off_diagonal.sum(), dtype=torch.float64)
    support = torch.as_tensor(np.flatnonzero(pi_t > 0))
    theta = torch.tensor(np.log(pi_t[support.numpy()]), dtype=torch.float64, requires_grad=True)
    off_support = torch.full((len(pi_t),), -torch.inf, dtype=torch.float64)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=100, tolerance_grad=1e-12, tolerance_change=0.0,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logp = off_support.index_put((support,), torch.log_softmax(theta, 0))
        loss = (weight * weighted_loss(logp, w, l)).sum()
        loss.backward()
        return loss

    with _one_thread():
        opt.step(closure)
    pi = np.zeros(len(pi_t))
    pi[support.numpy()] = torch.softmax(theta.detach(), 0).numpy()
    return pi


def inpo_step(table, pi, ref, eta: float, tau: float) -> np.ndarray:
    """INPO step: the policy minimizing the mean INPO loss over the pairs of `table` (pairs ~ pi_t).

        pi_{t+1} = argmin_pi sum_{w,l} W[w,l] * ( h(w,l) - 1/(2 eta) )^2,
        h(w,l) = [log pi(w) - log pi(l)] - (tau/eta) [log pi_ref(w) - log pi_ref(l)] - (1 - tau/eta) [log pi_t(w) - log pi_t(l)]
    With W = expected_pair_table(P, pi_t) this is omd_step(pi_t, P, ref, eta, tau) (Proposition 6 of the paper).
    """
    check_inpo_settings(eta, tau)
    table = np.asarray(table, dtype=float)
    n = len(table)
    pi = check_distribution(pi, n, "pi")
    ref = check_distribution(ref, n, "ref", positive=True)
    with np.errstate(divide="ignore"):  # log 0 = -inf off the support, never indexed by a pair
        log_ref, log_pi = torch.as_tensor(np.log(ref)), torch.as_tensor(np.log(pi))

    def loss(logp, w, l):
        return inpo_loss(logp[w], logp[l], log_ref[w], log_ref[l], log_pi[w], log_pi[l], eta=eta, tau=tau)

    return _fit_policy(loss, table, pi)


def dpo_step(table, pi, beta: float) -> np.ndarray:
    """Iterative-DPO step (Bradley-Terry assumption), reference = the current policy pi_t.

        pi_{t+1} = argmin_pi sum_{w,l} W[w,l] * -log sigmoid( beta [log pi(w)/pi_t(w) - log pi(l)/pi_t(l)] )
                 = pi_t exp(r / beta) / Z,  r = argmax_r sum_{w,l} W[w,l] log sigmoid(r(w) - r(l))
    i.e. the KL-regularized best policy for the maximum-likelihood Bradley-Terry reward r of the
    pairs, since the DPO loss is the Bradley-Terry likelihood with r = beta log(pi / pi_t).
    Where the pairs are (nearly) separable, e.g. the sure wins of rock-paper-scissors seen from a
    nearly pure pi_t, the likelihood has no maximum (or a remote one): the fit then stops at
    LBFGS's gradient tolerance, with reward gaps of about log(1e12) ~ 28.
    """
    table = np.asarray(table, dtype=float)
    pi = check_distribution(pi, len(table), "pi")
    with np.errstate(divide="ignore"):  # log 0 = -inf off the support, never indexed by a pair
        log_pi = torch.as_tensor(np.log(pi))

    def loss(logp, w, l):
        return dpo_loss(logp[w], logp[l], log_pi[w], log_pi[l], beta=beta)

    return _fit_policy(loss, table, pi)


def _rng(seed: int, stream: int, t: int) -> np.random.Generator:
    """Generator of iteration t of a stream: derived from (seed, stream, t) only, so runs are reproducible."""
    return np.random.default_rng([seed, stream, t])


def inpo_iterates(P, ref, eta: float, tau: float, iterations: int,
                  n_pairs: int | None = 0, seed: int = 0) -> list[np.ndarray]:
    """[pi_1, ..., pi_{T+1}], pi_1 = pi_ref, pi_{t+1} = INPO step from pi_t (T = iterations).

    n_pairs 0 or None: the exact step omd_step; else inpo_step on n_pairs sampled pairs.
    """
    policies = [check_distribution(ref, len(P), "ref", positive=True)]
    for t in range(iterations):
        pi = policies[-1]
        if n_pairs:
            table = sampled_pair_table(P, pi, n_pairs, _rng(seed, INPO_STREAM, t))
            policies.append(inpo_step(table, pi, ref, eta, tau))
        else:
            policies.append(omd_step(pi, P, ref, eta, tau))
    return policies


def dpo_iterates(P, ref, beta: float, iterations: int,
                 n_pairs: int | None = 0, seed: int = 0) -> list[np.ndarray]:
    """[pi_1, ..., pi_{T+1}], pi_1 = pi_ref, pi_{t+1} = dpo_step on pairs from pi_t (analytic if n_pairs is 0/None)."""
    policies = [check_distribution(ref, len(P), "ref", positive=True)]
    for t in range(iterations):
        pi = policies[-1]
        table = pair_table(P, pi, n_pairs, _rng(seed, BT_STREAM, t))
        policies.append(dpo_step(table, pi, beta))
    return policies
