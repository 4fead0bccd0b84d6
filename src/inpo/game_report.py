"""The report's game section (``inpo.report``): does each method's policy approach the regularized
Nash policy, and does it track the exact mirror-descent step? From the held-out evaluations'
game metrics (``inpo.game_metrics``):

- ``game_table``: per setting, KL to the Nash policy from iteration 0 to T with its trend, both
  duality gaps, the shadow distance (TV per iteration 1..T beside its sampling floor, KL's mean) and the lab's prediction for the
  exact step (its local contraction factor: below 1 it converges);
- ``plot_style_simplex``: the bracket-style shares of the answers on the simplex, one path per
  setting, with the Nash policy's marked;
- ``missing_game_metrics``: what could not be computed, and why, counted over the evaluations.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .task import BRACKETS, describe_distribution

STYLE_COLUMNS = tuple(f"share_style_{open_}{close}" for open_, close in BRACKETS)


def trend(values: Sequence[float], errors: Sequence[float]) -> str:
    """How a per-iteration series moves, judged against its standard errors.

    A step t -> t+1 counts when |v_{t+1} - v_t| > 2 sqrt(e_t^2 + e_{t+1}^2). Two or more changes of
    direction among counted steps: "cycles"; one: "falls, then rises" or "rises, then falls";
    none: "falls" or "rises" if v_T - v_0 exceeds the same two-standard-error bar, else "flat".
    """
    if len(values) < 2:
        raise ValueError(f"a trend needs at least 2 iterations, got {len(values)}")
    signs = [math.copysign(1, b - a) for a, b, ea, eb in zip(values, values[1:], errors, errors[1:])
             if abs(b - a) > 2 * math.hypot(ea, eb)]
    turns = sum(s != t for s, t in zip(signs, signs[1:]))
    if turns >= 2:
        return "cycles"
    if turns == 1:
        return "falls, then rises" if signs[0] < 0 else "rises, then falls"
    change = values[-1] - values[0]
    if abs(change) <= 2 * math.hypot(errors[0], errors[-1]):
        return "flat"
    return "falls" if change < 0 else "rises"


def _series(rows: list[dict], setting: str, name: str) -> tuple[list[float], list[float]]:
    """Per iteration with a value: mean over seeds, and its error (sd over seeds / sqrt(seeds); one seed: the s.e.)."""
    values, errors = [], []
    for t in sorted({r["iteration"] for r in rows}):
        group = [r for r in rows if r["setting"] == setting and r["iteration"] == t and r.get(name) is not None]
        if not group:
            continue
        xs = [r[name] for r in group]
        values.append(statistics.fmean(xs))
        errors.append(statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else group[0].get(f"{name}_se") or 0.0)
    return values, errors


def _format(values: Sequence[float]) -> str:
    return " → ".join(f"{v:.3g}" for v in values)


def game_table(rows: list[dict]) -> str:
    """Markdown: per setting, KL(pi*_tau || pi) per iteration and its ``trend``, both duality gaps at the
    first and last iteration, the shadow's TV per iteration and its KL's mean over iterations, and the exact step's local
    contraction factor at iteration 1 and T (``shadow_contraction``). Empty without game metrics."""
    if not any(r.get("kl_to_nash") is not None for r in rows):
        return ""
    lines = ["| setting | KL to Nash, iteration 0 → T | trend | duality gap (tau) 0 → T | duality gap (unregularized) 0 → T "
             "| shadow TV, iteration 1 → T | its sampling floor, mean | shadow KL, mean | exact step's contraction factor, 1 → T |", "|---|---|---|---|---|---|---|---|---|"]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        kl, kl_errors = _series(rows, setting, "kl_to_nash")
        gap_tau, _ = _series(rows, setting, "duality_gap_tau")
        gap, _ = _series(rows, setting, "duality_gap")
        tv, _ = _series(rows, setting, "shadow_tv")
        shadow_kl, _ = _series(rows, setting, "shadow_kl")
        factor, _ = _series(rows, setting, "shadow_contraction")
        floor, _ = _series(rows, setting, "shadow_tv_floor")
        lines.append(f"| {setting} | {_format(kl)} | {trend(kl, kl_errors) if len(kl) > 1 else ''} "
                     f"| {_format(gap_tau[:1] + gap_tau[-1:])} | {_format(gap[:1] + gap[-1:])} "
                     f"| {_format(tv) if tv else 'none'} | {f'{statistics.fmean(floor):.3g}' if floor else 'none'} "
                     f"| {f'{statistics.fmean(shadow_kl):.3g}' if shadow_kl else 'none'} "
                     f"| {_format(factor[:1] + factor[-1:]) if factor else 'none'} |")
    return "\n".join(lines) + "\n"


def style_shares(distribution: dict) -> np.ndarray:
    """The bracket styles' shares among the valid answers, from ``describe_distribution``'s marginals."""
    shares = np.array([distribution[c] for c in STYLE_COLUMNS])
    return shares / shares.sum()


def simplex_xy(shares: np.ndarray) -> tuple[float, float]:
    """Barycentric to plane: the styles' vertices at (0, 0), (1, 0) and (1/2, sqrt(3)/2)."""
    return float(shares[1] + shares[2] / 2), float(shares[2] * math.sqrt(3) / 2)


def plot_style_simplex(rows: list[dict], nash_distribution: Sequence[float] | None) -> Figure:
    """The answers' bracket-style shares (among valid answers, mean over seeds) on the simplex, one path
    per setting from iteration 0 (circle) to T (square), and the regularized Nash policy's (star)."""
    fig = Figure(figsize=(5.6, 6.4), layout="constrained")
    ax = fig.subplots()
    corners = np.array([(0, 0), (1, 0), (0.5, math.sqrt(3) / 2), (0, 0)])
    ax.plot(corners[:, 0], corners[:, 1], color="grey", lw=0.8)
    for (x, y), (open_, close), offset in zip(corners[:3], BRACKETS, [(-0.05, -0.04), (0.02, -0.04), (-0.02, 0.02)]):
        ax.text(x + offset[0], y + offset[1], f"{open_} {close}", fontsize=11)
    for setting in dict.fromkeys(r["setting"] for r in rows):
        path = []
        for t in sorted({r["iteration"] for r in rows}):
            group = [r for r in rows if r["setting"] == setting and r["iteration"] == t and r.get(STYLE_COLUMNS[0]) is not None]
            if group:
                path.append(simplex_xy(style_shares({c: statistics.fmean(r[c] for r in group) for c in STYLE_COLUMNS})))
        if path:
            xs, ys = zip(*path)
            line, = ax.plot(xs, ys, "-", marker=".", label=setting)
            ax.plot(xs[0], ys[0], "o", color=line.get_color())
            ax.plot(xs[-1], ys[-1], "s", color=line.get_color())
    if nash_distribution is not None:
        x, y = simplex_xy(style_shares(describe_distribution(nash_distribution)))
        ax.plot(x, y, "*", color="black", markersize=14, label="regularized Nash policy")
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("bracket styles of valid answers (o: iteration 0, □: last)", fontsize=9)
    fig.legend(fontsize=7, loc="outside lower center")  # below the triangle, clear of its corners
    return fig


def missing_game_metrics(evaluations: Sequence[dict]) -> str:
    """Markdown list: each reason a game metric was not computed (``game_missing``) and how many
    evaluations it left out; empty if none."""
    reasons = Counter(reason for m in evaluations for reason in m.get("game_missing", []))
    return "".join(f"- {reason}: {count} evaluation(s)\n" for reason, count in reasons.most_common())
