"""INPO's eta over the iterations: eta_t, the eta of iteration t's loss (1/eta_t is the learning rate
of the mirror-descent step pi_{t+1} ∝ pi_t^(1-tau/eta_t) pi_ref^(tau/eta_t) exp(P(y > pi_t)/eta_t)).

- ``constant``: eta_t = eta, what the paper's experiments use.
- ``theory``:   eta_t = eta (t + 2) / 3. The INPO paper's last-iterate analysis (its O(1/T) rate)
  takes eta_t = tau (t + 2) / 2, a learning rate decaying like 1/t; that is rescaled here so that
  eta_1 = eta, the user's scale: the margin 1/(2 eta) is in nats of summed log-probability, which tau
  does not set (and tau = 0, INPO without KL, still gets the 1/t decay).
"""

from __future__ import annotations

from .losses import check_inpo_settings

ETA_SCHEDULES = ("constant", "theory")


def eta_at(eta: float, schedule: str, t: int) -> float:
    """eta_t of iteration t >= 1: ``eta`` (constant) or eta (t + 2) / 3 (theory); see the module."""
    if schedule not in ETA_SCHEDULES:
        raise ValueError(f"eta_schedule must be one of {ETA_SCHEDULES}, got {schedule!r}")
    if int(t) != t or t < 1:
        raise ValueError(f"iterations are numbered from 1, got t={t}")
    return eta if schedule == "constant" else eta * (t + 2) / 3


def check_eta_schedule(eta: float, tau: float, schedule: str) -> None:
    """Raise ValueError unless ``schedule`` is known and every eta_t > 0 with 0 <= tau <= eta_t
    (``check_inpo_settings``). Both schedules are non-decreasing in t, so t = 1 decides."""
    check_inpo_settings(eta_at(eta, schedule, 1), tau)
