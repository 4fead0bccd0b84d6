"""One tabular experiment: INPO and the iterative Bradley-Terry DPO baseline on a game from the config.

Writes metrics.json and curves.png into the output directory (the Hydra run directory in the app).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no display
from omegaconf import DictConfig, OmegaConf

from inpo.game.core import check_distribution, check_preference_matrix, duality_gap, kl, regularized_nash
from inpo.game.learning import dpo_iterates, inpo_iterates
from inpo.losses import check_inpo_settings
from inpo.records import write_json

PLOT_FLOOR = 1e-16  # log-scale plots: values at round-off level (KL ~ 1e-17, may be < 0) are drawn here


def number(cfg: DictConfig, key: str) -> float:
    """cfg[key] as a float; ValueError naming the key if it is not a number."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {key}={value!r}")
    return float(value)


def check_game(game: DictConfig) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, P, pi_ref) of a conf/game entry, checked; the ValueError names the game."""
    try:
        P = check_preference_matrix(OmegaConf.to_object(game.P))
        return str(game.name), P, check_distribution(OmegaConf.to_object(game.ref), len(P), "ref", positive=True)
    except ValueError as e:
        raise ValueError(f"game '{game.name}': {e}") from e


def check_settings(cfg: DictConfig) -> dict[str, Any]:
    """The experiment's settings as plain values, each checked; ValueError naming the first bad one."""
    eta, tau = number(cfg, "eta"), number(cfg, "tau")
    check_inpo_settings(eta, tau)
    name, P, ref = check_game(cfg.game)
    iterations, samples, seed = cfg.iterations, cfg.samples, cfg.seed
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be an integer >= 1, got iterations={iterations}")
    if not (samples is None or (isinstance(samples, int) and samples >= 0)):
        raise ValueError(f"samples must be null or an integer >= 0 (0/null: exact update), got samples={samples}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got seed={seed}")
    beta = number(cfg, "baseline.beta")
    if not beta > 0:
        raise ValueError(f"baseline.beta must be > 0, got baseline.beta={beta}")
    return dict(game=name, P=P, ref=ref, eta=eta, tau=tau, iterations=iterations,
                samples=samples or 0, seed=seed, beta=beta)


def curves(P, ref, tau: float, nash, policies) -> dict[str, list]:
    """Per iterate pi_t: duality gap of the tau-regularized game, and KL(pi* || pi_t) to its Nash policy pi*."""
    return {
        "duality_gap": [duality_gap(P, pi, ref, tau) for pi in policies],
        "kl_to_nash": [kl(nash, pi) for pi in policies],
        "final_policy": policies[-1].tolist(),
    }


def run(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run INPO and the BT baseline for cfg.iterations steps from pi_1 = ref; write and return the metrics.

    Entry t of each curve is the policy after t updates (t = 0: pi_ref). Every setting is checked
    before anything is computed or written.
    """
    s = check_settings(cfg)
    out = Path(output_dir if output_dir is not None else os.getcwd())
    P, ref, tau = s["P"], s["ref"], s["tau"]
    nash = regularized_nash(P, ref, tau)
    inpo = inpo_iterates(P, ref, s["eta"], tau, s["iterations"], s["samples"], s["seed"])
    bt = dpo_iterates(P, ref, s["beta"], s["iterations"], s["samples"], s["seed"])
    metrics = {
        "settings": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.items()},
        "regularized_nash": nash.tolist(),
        "iteration": list(range(s["iterations"] + 1)),
        "inpo": curves(P, ref, tau, nash, inpo),
        "bt_dpo": curves(P, ref, tau, nash, bt),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    save_figure(plot(metrics), out / "curves.png")
    return metrics


def plot(metrics: dict[str, Any]) -> Figure:
    """Duality gap and KL to the regularized Nash policy per iteration, INPO against BT-DPO (log y)."""
    s = metrics["settings"]
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, key, label in zip(fig.subplots(1, 2), ["duality_gap", "kl_to_nash"],
                              ["duality gap", "KL(pi* || pi_t)"]):
        for method, name in [("inpo", "INPO"), ("bt_dpo", f"iterative DPO (BT, beta={s['beta']})")]:
            ax.plot(metrics["iteration"], np.maximum(metrics[method][key], PLOT_FLOOR), label=name)
        ax.set(yscale="log", xlabel="iteration t", ylabel=label)
        ax.grid(True, alpha=0.3)
    ax.legend()
    samples = s["samples"] or "exact"
    fig.suptitle(f"{s['game']}: eta={s['eta']}, tau={s['tau']}, pairs per step: {samples}")
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Save fig as PNG atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=120)
    os.replace(tmp, path)
