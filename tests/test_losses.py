import math

import numpy as np
import pytest
import torch

from inpo.game import omd_step
from inpo.losses import dpo_loss, inpo_loss, ipo_loss, sppo_loss


def logps(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return [-20 * torch.rand(n, generator=g, dtype=torch.float64) for _ in range(6)]


def test_inpo_loss_matches_scalar_formula():
    pw, pl, rw, rl, tw, tl = logps(0)
    eta, tau = 0.05, 0.02
    got = inpo_loss(pw, pl, rw, rl, tw, tl, eta=eta, tau=tau)
    for i in range(6):
        # h = log[pi(w) pi_t(l)^(1-a) pi_ref(l)^a / (pi(l) pi_t(w)^(1-a) pi_ref(w)^a)] with a = tau/eta
        a = tau / eta
        h = (pw[i].item() - pl[i].item()) - a * (rw[i].item() - rl[i].item()) - (1 - a) * (tw[i].item() - tl[i].item())
        assert got[i].item() == pytest.approx((h - 1 / (2 * eta)) ** 2, rel=1e-12)


def test_inpo_loss_is_zero_at_the_target_margin():
    eta, tau = 0.1, 0.0
    zero = torch.zeros(1, dtype=torch.float64)
    margin = torch.full((1,), 1 / (2 * eta), dtype=torch.float64)
    assert inpo_loss(margin, zero, zero, zero, zero, zero, eta=eta, tau=tau).item() == 0.0


def test_inpo_loss_with_tau_equal_eta_ignores_previous_iterate():
    pw, pl, rw, rl, tw, tl = logps(1)
    a = inpo_loss(pw, pl, rw, rl, tw, tl, eta=0.2, tau=0.2)
    b = inpo_loss(pw, pl, rw, rl, tw + 5.0, tl - 3.0, eta=0.2, tau=0.2)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "eta, tau, match",
    [(0.0, 0.0, "eta must be > 0"), (-1.0, 0.0, "eta must be > 0"), (0.1, -0.01, "tau"), (0.1, 0.2, "tau must be <= eta")],
)
def test_inpo_loss_rejects_bad_settings(eta, tau, match):
    with pytest.raises(ValueError, match=match):
        inpo_loss(*logps(2), eta=eta, tau=tau)


def test_dpo_loss_matches_scalar_formula():
    pw, pl, rw, rl, _, _ = logps(3)
    beta = 0.1
    got = dpo_loss(pw, pl, rw, rl, beta=beta)
    for i in range(6):
        z = beta * ((pw[i] - rw[i]) - (pl[i] - rl[i])).item()
        assert got[i].item() == pytest.approx(math.log1p(math.exp(-z)), rel=1e-12)


def test_ipo_loss_matches_scalar_formula():
    pw, pl, rw, rl, _, _ = logps(4)
    beta = 0.5
    got = ipo_loss(pw, pl, rw, rl, beta=beta)
    for i in range(6):
        z = ((pw[i] - rw[i]) - (pl[i] - rl[i])).item()
        assert got[i].item() == pytest.approx((z - 1 / (2 * beta)) ** 2, rel=1e-12)


def winrates(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=g, dtype=torch.float64) for _ in range(2)]


def test_sppo_loss_matches_scalar_formula():
    pw, pl, tw, tl, _, _ = logps(7)
    ww, wl = winrates(7)
    beta = 0.2
    got = sppo_loss(pw, pl, tw, tl, ww, wl, beta=beta)
    for i in range(6):
        chosen = (pw[i].item() - tw[i].item()) - (1 / beta) * (ww[i].item() - 0.5)
        rejected = (pl[i].item() - tl[i].item()) - (1 / beta) * (wl[i].item() - 0.5)
        assert got[i].item() == pytest.approx(chosen**2 + rejected**2, rel=1e-12)


def test_sppo_loss_is_zero_at_inpo_without_kl_step():
    """At log pi/pi_t = (P(y > pi_t) - 1/2)/beta on every response of a tabular game the loss is 0, and
    that policy, normalized, is INPO without KL's exact step at eta = beta (inpo.game.omd_step)."""
    rng = np.random.default_rng(0)
    upper = np.triu(rng.uniform(size=(5, 5)), 1)
    P = upper + np.tril(1 - upper.T, -1) + np.diag(np.full(5, 0.5))
    pi_t, beta = rng.dirichlet(np.ones(5)), 0.2
    winrate = P @ pi_t  # P(y > pi_t)
    log_ratio = (winrate - 0.5) / beta
    policy = torch.tensor(np.log(pi_t) + log_ratio)
    zero = sppo_loss(policy, policy, torch.tensor(np.log(pi_t)), torch.tensor(np.log(pi_t)), torch.tensor(winrate),
                     torch.tensor(winrate), beta=beta)
    assert zero.max().item() < 1e-24  # squares of rounding errors
    step = pi_t * np.exp(log_ratio)
    np.testing.assert_allclose(step / step.sum(), omd_step(pi_t, P, pi_t, eta=beta, tau=0.0), rtol=1e-12)


@pytest.mark.parametrize("loss, args", [(dpo_loss, 4), (ipo_loss, 4), (sppo_loss, 6)])
def test_baselines_reject_non_positive_beta(loss, args):
    with pytest.raises(ValueError, match="beta must be > 0"):
        loss(*logps(5)[:args], beta=0.0)


def test_losses_are_differentiable():
    pw, pl, rw, rl, tw, tl = logps(6)
    pw.requires_grad_(True)
    inpo_loss(pw, pl, rw, rl, tw, tl, eta=0.05, tau=0.01).mean().backward()
    assert torch.isfinite(pw.grad).all() and pw.grad.abs().sum() > 0
