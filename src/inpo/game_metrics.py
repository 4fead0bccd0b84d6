"""Game quantities of a language-model policy, measured through the feature cells of its answers.

A feature judge (the embedded default's synthetic oracles) sees an answer only through its cell
(``inpo.task.FEATURE_SPACE``), so its preference is a matrix M over cells and a policy's answers
give its feature distribution pi over cells. The game of DESIGN.md section 2 restricted to cells
is then the tabular game of ``inpo.game``, and these quantities are computable:

- ``duality_gap``: DualGap_0(pi) = 2 max_y (M pi)(y) - 1, of the empirical distribution;
- ``duality_gap_tau``: DualGap_tau(pi), with pi_ref the SFT model's feature distribution;
- ``kl_to_nash``: KL(pi*_tau || pi), pi*_tau = ``inpo.game.regularized_nash(M, pi_ref, tau)``,
  the distance the last-iterate theorem of the INPO paper bounds;
- the exact-OMD shadow of iteration t: from pi_t's measured distribution, the exact update
  ``inpo.game.omd_step(pi_t, M, pi_ref, eta_t, tau)`` that iteration t's training approximates,
  and its distances to the measured pi_{t+1}: ``shadow_tv`` = (1/2) sum_y |shadow(y) - pi_{t+1}(y)|
  and ``shadow_kl`` = KL(shadow || pi_{t+1}); and their sampling floor ``shadow_tv_floor``,
  ``shadow_kl_floor`` (``shadow_floor``): what they would be on average if training made the exact
  step, so that only the measurement's finite samples stood between the two;
- what the tabular lab predicts for that step (``inpo.game.eta_sweep``): ``shadow_contraction``,
  the local contraction factor hypot(1 - tau/eta, mu/eta) of the exact update at its own fixed
  point (the Nash policy of its tau), mu being the game's rotation rate there: below 1 the exact
  iterates converge to it, above 1 they spiral away (tau = 0 always: mirror descent on an
  intransitive game cycles); and ``stability_eta`` = (tau^2 + mu^2) / (2 tau), the eta above which
  INPO's exact update converges in the game of the metrics' tau.

The shadow is exact for tau = 0: P(y > pi_t) depends on y through its cell only, so the cell
marginal of pi_t(y) exp(P(y > pi_t)/eta) is omd_step of pi_t's marginal. With tau > 0 the factor
pi_t(y)^(1 - tau/eta) pi_ref(y)^(tau/eta) mixes the policies inside a cell; the marginal update is
then exact only where pi_t and pi_ref answer alike within each cell (and an upper bound per cell
by Hölder's inequality otherwise).

Estimation. Every distribution is pooled over the prompts (the oracle's game is the same for every
prompt; by convexity of the gap in pi, the gap of the pooled distribution is at most the mean
per-prompt gap). The regularized quantities take logs, and a finite sample leaves cells empty that
the model does reach, so those use the add-alpha estimate (counts(y) + alpha) / (N + 25 alpha),
alpha = ``pseudocount`` (0.5: Jeffreys' prior); ``duality_gap`` uses the raw histogram (no log).
Standard errors are bootstrap ones over prompts (the independent units): the policy's, pi_ref's
and pi_t's answers to a resampled prompt are resampled together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .game import duality_gap, kl, omd_step, regularized_nash
from .game.eta_sweep import contraction, rotation_rate, stability_boundary


@dataclass(frozen=True)
class Step:
    """The mirror-descent step an iteration approximates: pi_{t+1} ∝ pi_t^(1 - tau/eta) pi_ref^(tau/eta) exp(M pi_t / eta)."""

    eta: float
    tau: float


def algorithm_step(algo: str, *, eta: float | None = None, tau: float | None = None, beta: float | None = None) -> Step | None:
    """The exact mirror-descent step an algorithm's iteration approximates, or None if none:

    - INPO (``inpo``, ``inpo_nokl``): omd_step with its eta_t and tau (tau = 0 without KL);
    - SPPO: its loss targets log pi(y)/pi_t(y) = (P(y > pi_t) - 1/2) / beta, so pi_{t+1} ∝ pi_t exp(P(y > pi_t) / beta),
      omd_step with eta = beta and tau = 0 (the SPPO update of Wu et al., 2024);
    - online IPO with pi_t as its reference (conf/algo/ipo.yaml): its loss (h - 1/(2 beta))^2, h the log-ratio
      margin against pi_t, is INPO's at tau = 0 and eta = beta term for term, so the same step;
    - iterative DPO: None (a logistic fit of a Bradley-Terry margin; its minimizer is no mirror-descent step).
    """
    if algo in ("inpo", "inpo_nokl"):
        return Step(eta, tau if algo == "inpo" else 0.0)
    if algo in ("sppo", "ipo"):
        return Step(beta, 0.0)
    return None


def cell_counts(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """Per-prompt histograms: cells [P, S] (cell index of answer s to prompt p) -> counts [P, n_cells]."""
    cells = np.asarray(cells)
    if cells.ndim != 2 or cells.size == 0:
        raise ValueError(f"need a [prompts, answers] array of feature cells, got shape {cells.shape}")
    if cells.min() < 0 or cells.max() >= n_cells:
        raise ValueError(f"feature cells must be in 0..{n_cells - 1}, got {cells.min()}..{cells.max()}")
    rows = np.arange(len(cells))[:, None]
    return np.bincount((rows * n_cells + cells).ravel(), minlength=len(cells) * n_cells).reshape(len(cells), n_cells).astype(float)


def smoothed(counts: np.ndarray, pseudocount: float) -> np.ndarray:
    """The add-alpha estimate of a distribution from its counts: (counts + alpha) / (N + n alpha)."""
    counts = np.asarray(counts, dtype=float)
    return (counts + pseudocount) / (counts.sum() + pseudocount * len(counts))


def total_variation(p, q) -> float:
    """TV(p, q) = (1/2) sum_y |p(y) - q(y)|, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


def estimates(M: np.ndarray, policy: np.ndarray, pseudocount: float, reference: np.ndarray | None = None,
              tau: float | None = None, previous: np.ndarray | None = None,
              step: Step | None = None) -> tuple[dict[str, float], np.ndarray | None]:
    """The module's quantities from pooled counts (each [n_cells]) of the policy, pi_ref and pi_t,
    and the regularized Nash policy pi*_tau: ``duality_gap`` always; with ``reference`` and ``tau``
    the regularized ones (else the Nash policy is None); with ``previous`` and ``step`` too, the shadow.

    Raises RuntimeError if the regularized Nash policy cannot be computed (``regularized_nash``).
    """
    values = {"duality_gap": duality_gap(M, policy / policy.sum())}
    if reference is None or tau is None:
        return values, None
    pi, ref = smoothed(policy, pseudocount), smoothed(reference, pseudocount)
    nash = regularized_nash(M, ref, tau)
    values.update(duality_gap_tau=duality_gap(M, pi, ref, tau), kl_to_nash=kl(nash, pi))
    if previous is not None and step is not None:
        shadow = omd_step(smoothed(previous, pseudocount), M, ref, step.eta, step.tau)
        values.update(shadow_tv=total_variation(shadow, pi), shadow_kl=kl(shadow, pi))
    return values, nash


def shadow_floor(M: np.ndarray, previous: np.ndarray, reference: np.ndarray, n_policy: int, step: Step,
                 pseudocount: float, draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """The shadow distances expected from sampling alone: (mean TV, mean KL) over ``draws`` simulations.

    previous, reference: pooled counts [n_cells] of pi_t's and pi_ref's answers. Each draw takes
    multinomial counts of the same sizes from their add-alpha estimates, and ``n_policy`` answers from
    the exact step omd_step(pi_t, M, pi_ref, eta, tau) as the policy's, then measures the shadow as
    ``estimates`` does. Answers are drawn independently, ignoring that answers to one prompt are alike,
    so the floor is a lower one.
    """
    p_prev, p_ref = smoothed(previous, pseudocount), smoothed(reference, pseudocount)
    exact = omd_step(p_prev, M, p_ref, step.eta, step.tau)
    tv, divergence = [], []
    for _ in range(draws):
        shadow = omd_step(smoothed(rng.multinomial(int(previous.sum()), p_prev), pseudocount), M,
                          smoothed(rng.multinomial(int(reference.sum()), p_ref), pseudocount), step.eta, step.tau)
        measured = smoothed(rng.multinomial(n_policy, exact), pseudocount)
        tv.append(total_variation(shadow, measured))
        divergence.append(kl(shadow, measured))
    return float(np.mean(tv)), float(np.mean(divergence))


def game_metrics(M, policy_cells, *, reference_cells=None, tau: float | None = None, previous_cells=None,
                 step: Step | None = None, pseudocount: float = 0.5, bootstrap: int = 200, seed: int = 0) -> dict:
    """Game metrics of a policy from the feature cells of its answers, with bootstrap standard errors.

    M: [n, n] preference matrix over cells. policy_cells, reference_cells (pi_ref's answers) and
    previous_cells (pi_t's): [P, S] cell indices, row p answering prompt p in every array (S may
    differ between arrays). tau: the game's KL weight. What is computed: ``estimates``.
    Returns the point estimates (see the module doc), ``<name>_se`` for each (standard deviation
    over ``bootstrap`` resamples of the prompts, seeded by ``seed``), with a step the shadow's sampling
    floor (``shadow_floor``, as many draws), the Nash policy
    (``nash_distribution``, with a reference) and the settings used. Raises ValueError on
    mismatched prompt counts or a step without pi_t's answers, RuntimeError if the regularized
    Nash policy cannot be computed.
    """
    M = np.asarray(M, dtype=float)
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0 (the regularized metrics take logs), got {pseudocount}")
    if step is not None and previous_cells is None:
        raise ValueError("the shadow (step) needs previous_cells, the answers of pi_t")
    arrays = {"policy": policy_cells, "reference": reference_cells, "previous": previous_cells}
    counts = {name: cell_counts(cells, len(M)) for name, cells in arrays.items() if cells is not None}
    if len({len(c) for c in counts.values()}) != 1:
        raise ValueError(f"every array must answer the same prompts, got prompt counts "
                         f"{ {name: len(c) for name, c in counts.items()} }")

    def at(weights: np.ndarray) -> tuple[dict[str, float], np.ndarray | None]:
        pooled = {name: weights @ c for name, c in counts.items()}
        return estimates(M, pooled["policy"], pseudocount, pooled.get("reference"), tau, pooled.get("previous"), step)

    n_prompts = len(counts["policy"])
    point, nash = at(np.ones(n_prompts))
    rng = np.random.default_rng(seed)
    replicates = [at(rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts)))[0] for _ in range(bootstrap)]
    result: dict = {"game_answers": int(counts["policy"].sum()), "game_bootstrap": bootstrap}
    for name, value in point.items():
        result[name] = value
        result[f"{name}_se"] = float(np.std([r[name] for r in replicates], ddof=1)) if bootstrap > 1 else None
    if nash is not None:
        mu = rotation_rate(M, nash)
        result.update(game_tau=tau, pseudocount=pseudocount, nash_distribution=nash.tolist(),
                      stability_eta=stability_boundary(mu, tau) if tau > 0 else None)
    if "shadow_tv" in point:
        reference = smoothed(counts["reference"].sum(0), pseudocount)
        fixed_point = nash if step.tau == tau else regularized_nash(M, reference, step.tau)
        result.update(shadow_eta=step.eta, shadow_tau=step.tau,
                      shadow_contraction=contraction(rotation_rate(M, fixed_point), step.eta, step.tau))
        if bootstrap > 1:
            result["shadow_tv_floor"], result["shadow_kl_floor"] = shadow_floor(
                M, counts["previous"].sum(0), counts["reference"].sum(0), int(counts["policy"].sum()), step, pseudocount,
                bootstrap, rng)
    return result


def answer_cells(judge, records: Sequence[dict], answers: Sequence[Sequence[str]]) -> np.ndarray:
    """[P, S] feature cells of the answers (row p: the S answers to ``records[p]``) under a feature judge."""
    if len({len(a) for a in answers}) != 1:
        raise ValueError("every prompt needs the same number of answers")
    return np.array([judge.feature_cells([record] * len(a), a) for record, a in zip(records, answers)])
