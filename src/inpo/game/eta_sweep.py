"""python -m inpo.game.eta_sweep: for which eta does the exact INPO update converge? (conf/eta_sweep.yaml)

Runs omd_step from pi_ref for each eta at a fixed tau, measures how much the last iterates still
move, and compares the boundary it finds with the one predicted by linearizing the update at the
regularized Nash policy. Writes eta_sweep.json and eta_sweep.png.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from matplotlib import colormaps
from matplotlib.figure import Figure
from omegaconf import DictConfig

from inpo.config import hydra_app
from inpo.game.core import kl, omd_step, regularized_nash
from inpo.game.experiment import PLOT_FLOOR, check_game, number, save_figure
from inpo.losses import check_inpo_settings
from inpo.records import write_json

log = logging.getLogger(__name__)


def amplitude(policies) -> float:
    """Oscillation amplitude of a run of iterates: max_y ( max_t pi_t(y) - min_t pi_t(y) )."""
    a = np.asarray(policies)
    return float((a.max(0) - a.min(0)).max())


def rotation_rate(P, nash) -> float:
    """mu = max |Im lambda| over the eigenvalues lambda of P (diag(pi*) - pi* pi*^T).

    P = 11^T/2 + C with C antisymmetric, and 1^T (diag(pi) - pi pi^T) = 0, so this matrix is
    C S with S positive semi-definite: its eigenvalues are those of S^(1/2) C S^(1/2), purely imaginary.
    """
    S = np.diag(nash) - np.outer(nash, nash)
    return float(np.abs(np.linalg.eigvals(P @ S).imag).max())


def contraction(mu: float, eta: float, tau: float) -> float:
    """Local contraction factor of omd_step at pi*: the largest |lambda| of its Jacobian in log space.

        J = (1 - tau/eta) I + P (diag(pi*) - pi* pi*^T) / eta,  |lambda|^2 = (1 - tau/eta)^2 + mu^2 / eta^2
    """
    return float(np.hypot(1 - tau / eta, mu / eta))


def stability_boundary(mu: float, tau: float) -> float:
    """eta* = (tau^2 + mu^2) / (2 tau): contraction(mu, eta, tau) < 1 iff eta > eta*.

    (The fastest local rate is at eta = 2 eta*.)
    """
    return (tau**2 + mu**2) / (2 * tau)


def classify(amp_mid: float, amp_last: float, tol: float) -> str:
    """'converged' if amp_last < tol; 'converging' if amp_last < amp_mid / 2 (still shrinking); else 'cycles'."""
    if amp_last < tol:
        return "converged"
    return "converging" if amp_last < amp_mid / 2 else "cycles"


def sweep(P, ref, tau: float, etas, iterations: int, window: int, tol: float):
    """Rows of the table (one per eta) and the KL(pi* || pi_t) curves, for the exact update from pi_1 = ref.

    amp_mid / amp_last: amplitude over the `window` iterates ending at T/2 / at T.
    """
    nash = regularized_nash(P, ref, tau)
    mu = rotation_rate(P, nash)
    rows, kl_curves = [], []
    for eta in etas:
        policies = [ref]
        for _ in range(iterations):
            policies.append(omd_step(policies[-1], P, ref, eta, tau))
        half = len(policies) // 2
        amp_mid, amp_last = amplitude(policies[half - window:half]), amplitude(policies[-window:])
        rows.append(dict(eta=eta, final_kl_to_nash=kl(nash, policies[-1]), amplitude=amp_last,
                         amplitude_at_half=amp_mid, status=classify(amp_mid, amp_last, tol),
                         contraction=contraction(mu, eta, tau), final_policy=policies[-1].tolist()))
        kl_curves.append([kl(nash, pi) for pi in policies])
    return nash, mu, rows, kl_curves


def observed_boundary(rows) -> tuple[float | None, float | None]:
    """(largest eta that cycles, smallest eta above it that does not): the boundary lies between."""
    cycling = [r["eta"] for r in rows if r["status"] == "cycles"]
    below = max(cycling, default=None)
    above = min((r["eta"] for r in rows if below is None or r["eta"] > below), default=None)
    return below, above


def run(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the sweep of cfg (every setting checked first); write eta_sweep.json and eta_sweep.png."""
    tau = number(cfg, "tau")
    etas = [number(cfg, f"etas[{i}]") for i in range(len(cfg.etas))]
    for eta in etas:
        check_inpo_settings(eta, tau)
    if not (isinstance(cfg.iterations, int) and isinstance(cfg.window, int) and 1 <= cfg.window <= cfg.iterations // 2):
        raise ValueError(f"need integers 1 <= window <= iterations / 2, got window={cfg.window}, "
                         f"iterations={cfg.iterations}")
    tol = number(cfg, "tol")
    name, P, ref = check_game(cfg.game)
    out = Path(output_dir if output_dir is not None else os.getcwd())

    nash, mu, rows, kl_curves = sweep(P, ref, tau, etas, cfg.iterations, cfg.window, tol)
    below, above = observed_boundary(rows)
    result = {
        "settings": {"game": name, "P": P.tolist(), "ref": ref.tolist(), "tau": tau,
                     "iterations": cfg.iterations, "window": cfg.window, "tol": tol},
        "regularized_nash": nash.tolist(),
        "predicted_boundary": stability_boundary(mu, tau),
        "observed_boundary": {"cycles_at": below, "converges_at": above},
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eta_sweep.json", result)
    save_figure(plot(result, kl_curves), out / "eta_sweep.png")
    return result


def plot(result: dict[str, Any], kl_curves) -> Figure:
    """Left: KL(pi* || pi_t) per iteration for each eta. Right: final amplitude against eta, with eta*."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    colors = colormaps["viridis"](np.linspace(0, 1, len(kl_curves)))
    for row, curve, color in zip(result["rows"], kl_curves, colors):
        left.plot(np.maximum(curve, PLOT_FLOOR), lw=0.8, color=color, label=f"eta={row['eta']:g} ({row['status']})")
    left.set(yscale="log", xlabel="iteration t", ylabel="KL(pi* || pi_t)")
    left.legend(fontsize=6, ncol=2)
    etas = [r["eta"] for r in result["rows"]]
    right.plot(etas, np.maximum([r["amplitude"] for r in result["rows"]], PLOT_FLOOR), "o-")
    right.axvline(result["predicted_boundary"], color="k", ls="--",
                  label=f"predicted boundary eta*={result['predicted_boundary']:.3f}")
    right.set(xscale="log", yscale="log", xlabel="eta", ylabel="amplitude of the last iterates")
    right.legend()
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    s = result["settings"]
    fig.suptitle(f"exact INPO update on {s['game']}, tau={s['tau']}, {s['iterations']} iterations")
    return fig


@hydra_app("eta_sweep")
def main(cfg: DictConfig) -> None:
    out = HydraConfig.get().runtime.output_dir
    result = run(cfg, out)
    for r in result["rows"]:
        log.info("eta=%-6g KL to Nash %9.2e  amplitude %9.2e  contraction %.4f  %s",
                 r["eta"], r["final_kl_to_nash"], r["amplitude"], r["contraction"], r["status"])
    log.info("boundary: cycles at eta=%s, converges at eta=%s; predicted eta*=%.4f; wrote %s",
             *result["observed_boundary"].values(), result["predicted_boundary"], out)


if __name__ == "__main__":
    main()
