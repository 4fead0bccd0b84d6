import math

import pytest
import torch

from inpo.losses import dpo_loss, inpo_loss, ipo_loss


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


@pytest.mark.parametrize("loss", [dpo_loss, ipo_loss])
def test_baselines_reject_non_positive_beta(loss):
    with pytest.raises(ValueError, match="beta must be > 0"):
        loss(*logps(5)[:4], beta=0.0)


def test_losses_are_differentiable():
    pw, pl, rw, rl, tw, tl = logps(6)
    pw.requires_grad_(True)
    inpo_loss(pw, pl, rw, rl, tw, tl, eta=0.05, tau=0.01).mean().backward()
    assert torch.isfinite(pw.grad).all() and pw.grad.abs().sum() > 0
