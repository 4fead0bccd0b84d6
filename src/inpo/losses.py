"""Preference-optimization losses on per-sequence (summed) log-probabilities.

Every function takes tensors of shape [B] (one entry per preference pair, log-probabilities
summed over the response tokens) and returns the per-pair losses, shape [B]; reduce them as
you like (the trainers take the mean).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def check_inpo_settings(eta: float, tau: float) -> None:
    """Raise ValueError unless eta > 0 and 0 <= tau <= eta (DESIGN.md section 2)."""
    if not eta > 0:
        raise ValueError(f"eta must be > 0 (it is 1/learning rate of the mirror descent), got eta={eta}")
    if not tau >= 0:
        raise ValueError(f"tau (the KL weight) must be >= 0, got tau={tau}")
    if tau > eta:
        raise ValueError(f"tau must be <= eta (the update mixes pi_t^(1-tau/eta)), got tau={tau} > eta={eta}")


def inpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    prev_chosen_logps: Tensor,
    prev_rejected_logps: Tensor,
    *,
    eta: float,
    tau: float,
) -> Tensor:
    """INPO loss (Zhang et al., ICLR 2025), per pair.

        h    = [log pi(y_w) - log pi(y_l)]
               - (tau/eta)     [log pi_ref(y_w) - log pi_ref(y_l)]
               - (1 - tau/eta) [log pi_t(y_w)   - log pi_t(y_l)]
        loss = (h - 1/(2 eta))^2

    ``prev`` is the current iterate pi_t (frozen), ``ref`` the reference policy pi_ref.
    The minimizer over pairs drawn from pi_t is the mirror-descent step
    pi_{t+1} ∝ pi_t^(1-tau/eta) pi_ref^(tau/eta) exp(P(y > pi_t)/eta).
    """
    check_inpo_settings(eta, tau)
    mix = tau / eta
    h = (
        (policy_chosen_logps - policy_rejected_logps)
        - mix * (ref_chosen_logps - ref_rejected_logps)
        - (1.0 - mix) * (prev_chosen_logps - prev_rejected_logps)
    )
    return (h - 1.0 / (2.0 * eta)) ** 2


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
) -> Tensor:
    """DPO loss (Rafailov et al., 2023), per pair; sigmoid form.

        loss = -log sigmoid( beta * ( [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)] ) )

    Iterative DPO sets ``ref`` to the current iterate pi_t at each iteration.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got beta={beta}")
    logits = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * logits)


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
) -> Tensor:
    """IPO loss (Azar et al., 2023), per pair, on summed log-probabilities.

        loss = ( [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)] - 1/(2 beta) )^2

    Online IPO samples the pairs from the current policy each iteration.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got beta={beta}")
    logits = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return (logits - 1.0 / (2.0 * beta)) ** 2


def sppo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    prev_chosen_logps: Tensor,
    prev_rejected_logps: Tensor,
    chosen_winrate: Tensor,
    rejected_winrate: Tensor,
    *,
    beta: float,
) -> Tensor:
    """SPPO loss (Wu et al., 2024, "Self-Play Preference Optimization"), per pair:

        loss = ( log pi(y_w)/pi_t(y_w) - (1/beta) (Phat(y_w) - 1/2) )^2
             + ( log pi(y_l)/pi_t(y_l) - (1/beta) (Phat(y_l) - 1/2) )^2

    with Phat(y) the estimated win rate of y against pi_t (``inpo.pairs.win_rates``) and ``prev``
    the current iterate pi_t (frozen). Each answer's log-ratio is regressed onto its own target, so
    its minimizer over answers drawn from pi_t is log pi(y)/pi_t(y) = (P(y > pi_t) - 1/2)/beta,
    which approximates pi_{t+1} ∝ pi_t exp(P(y > pi_t)/beta) (1/(2 beta) standing in for its
    log-normalizer, as E_{y ~ pi_t} P(y > pi_t) = 1/2): ``inpo.game.omd_step`` with eta = beta,
    tau = 0, INPO without KL's step. (uclaml/SPPO's trainer, loss_type="sppo", halves this sum.)
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got beta={beta}")
    chosen = (policy_chosen_logps - prev_chosen_logps) - (chosen_winrate - 0.5) / beta
    rejected = (policy_rejected_logps - prev_rejected_logps) - (rejected_winrate - 0.5) / beta
    return chosen**2 + rejected**2
