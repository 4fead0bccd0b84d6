"""Stage ``report``: tables and plots of every experiment point's metrics per iteration.

- ``report.csv`` / ``report.md``: one row per (point, iteration t), t = 0 being the SFT model;
  its evaluation metrics and, for t >= 1, the annotation (pairs, oracle calls) and training
  (final loss) of iteration t.
- ``benchmarks.md`` (also in ``report.md``), when benchmarks are evaluated: per setting and
  iteration each benchmark's headline figure beside the paper's (``paper`` in the config), with
  the judge model, the AlpacaEval LC variant and the judgments left out (no verdict) named.
- ``summary.csv`` / ``summary.md``: the last iteration per setting (a point without its seed),
  mean and standard deviation over seeds: the table to compare algorithms with.
- one PNG per metric with one line per setting (mean over seeds, error bars: their standard
  deviation, or the metric's standard error with one seed), ``overview.png`` with all of them,
  and ``length_vs_tau.png`` (final mean length against the KL weight).
- with game metrics (a feature judge): ``game.md`` (KL to the regularized Nash policy per iteration
  and its trend, both duality gaps, the distance to the exact mirror-descent step) and
  ``style_simplex.png`` (``inpo.game_report``); what could not be computed is listed with its reason.
- ``table1.md`` (also in ``report.md``), with a held-out evaluation: the settings in the layout of the
  paper's Table 1 beside its figures (``paper_table`` in the config; ``inpo.paper_table``).

    python -m inpo.report results=results iterations=3 "points=['algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667']" output_dir=results/report
"""

from __future__ import annotations

import csv
import io
import os
import statistics
from pathlib import Path

from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no display
from omegaconf import DictConfig, OmegaConf

from .config import hydra_app
from .game_report import game_table, missing_game_metrics, plot_style_simplex
from .paper_table import paper_table
from .records import read_json, write_text
from .sweep import parse_point, stage_folder

TITLES = {
    "win_rate": "win rate vs SFT",
    "length_controlled_winrate": "length-controlled win rate vs SFT",
    "duality_gap": "duality gap (unregularized)",
    "duality_gap_tau": "duality gap (tau-regularized game)",
    "kl_to_nash": "KL(pi*_tau || pi): distance to the regularized Nash policy",
    "shadow_tv": "TV(exact OMD step from pi_t, pi_t+1)",
    "shadow_kl": "KL(exact OMD step from pi_t || pi_t+1)",
    "mean_length": "mean response length (tokens)",
    "share_correct": "share of correct answers",
    "mean_verbosity": "mean verbosity of valid answers",
    "oracle_calls": "oracle calls (annotation)",
    "pairs": "preference pairs kept",
    "sampled_answers_cut": "training samples cut at the length limit",
    "sampled_prompts_truncated": "training prompts cut to max_prompt_length",
    "answers_cut": "evaluation answers cut at the length limit",
    "prompts_truncated": "evaluation prompts cut to max_prompt_length",
    "train_loss": "final training loss",
}
# the benchmark figures papers quote (AlpacaEval 2.0: LC and raw win rate; Arena-Hard: score)
BENCHMARK_HEADLINES = ("length_controlled_winrate", "win_rate", "score")
POINT_KEYS = ("algo", "judge", "eta", "eta_schedule", "tau", "beta", "seed")
# Bookkeeping columns: in the tables, not plotted.
NOT_PLOTTED = {*POINT_KEYS, "setting", "iteration", "standard_error", "lc_standard_error", "n_prompts", "n_samples",
               "judge_calls", "judge_requests", "judge_cached", "judge_rejected", "ci_lower", "ci_upper", "sampled_answers_cut",
               "sampled_prompts_truncated", "answers_cut", "prompts_truncated", "game_tau", "pseudocount", "game_answers",
               "game_bootstrap", "shadow_eta", "shadow_tau", "shadow_contraction", "stability_eta",
               "shadow_tv_floor", "shadow_kl_floor"}
# A metric's standard error in the evaluation's metrics.json (the game metrics': <name>_se)
STANDARD_ERRORS = {"win_rate": "standard_error", "length_controlled_winrate": "lc_standard_error"}


def plotted(name: str) -> bool:
    """Whether a column is a metric with a plot of its own (not bookkeeping, a count or a standard error)."""
    base = name.rsplit(".", 1)[-1]
    return base not in NOT_PLOTTED and not base.startswith("n_") and not base.endswith("_se")


def setting_of(point: dict) -> str:
    """A point's label without its seed: what the seeds of a setting are averaged over."""
    return " ".join(f"{k}={point[k]}" for k in POINT_KEYS if k in point and k != "seed")


def metrics_file(results: Path, point: str, t: int, evaluation: str) -> Path:
    """Where the workflow writes an evaluation of a point's policy after iteration t (t = 0: pi_ref, shared)."""
    if evaluation == "heldout":
        return (results / "sft" if t == 0 else results / "sweep" / point) / "eval" / f"iter{t}" / "metrics.json"
    return (results / "reference" if t == 0 else results / "sweep" / point) / "eval" / evaluation / f"iter{t}" / "metrics.json"


def evaluation_metrics(results: Path, point: str, t: int, evaluations: list[str]) -> dict:
    """The scalar metrics of every evaluation; a benchmark's are named ``<benchmark>.<metric>``."""
    row = {}
    for evaluation in evaluations:
        metrics = read_json(metrics_file(results, point, t, evaluation))
        prefix = "" if evaluation == "heldout" else f"{evaluation}."
        row.update({prefix + k: v for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration"})
    return row


def gather(results: Path, iterations: int, points: list[str], evaluations: list[str] = ("heldout",)) -> list[dict]:
    """One flat row of scalar metrics per (point, evaluated policy), t = 0..iterations."""
    rows = []
    for path in points:
        point = parse_point(path)
        for t in range(iterations + 1):
            row = {**{k: point.get(k) for k in POINT_KEYS if k != "eta_schedule" or k in point}, "setting": setting_of(point), "iteration": t,
                   **evaluation_metrics(results, path, t, list(evaluations))}
            if t >= 1:
                annotation = read_json(results / stage_folder(path, t, "annotate") / f"iter{t}" / "annotate" / "annotation.json")
                training = read_json(results / "sweep" / path / f"iter{t}" / "train" / "train_summary.json")
                # annotation files of runs before finish reasons were recorded lack the counts: None, shown as missing
                row.update(pairs=annotation["pairs"], oracle_calls=annotation["oracle_calls"],
                           sampled_answers_cut=annotation.get("responses_cut"),
                           sampled_prompts_truncated=annotation.get("prompts_truncated"),
                           train_loss=training["last_metrics"].get("loss"))
            rows.append(row)
    return rows


def benchmark_table(rows: list[dict], results: Path, points: list[str], iterations: int, paper: dict) -> str:
    """Markdown: each benchmark's headline figure (``paper.metrics``) per setting and iteration
    (mean over seeds), the paper's rows below, and what was measured how: judge model, LC variant,
    judgments without a verdict. Empty when no benchmark in ``paper.metrics`` was evaluated."""
    benchmarks = [b for b in paper["metrics"] if any(k.startswith(f"{b}.") for r in rows for k in r)]
    if not benchmarks:
        return ""
    names = [f"{b} {paper['metrics'][b]}" for b in benchmarks]
    lines = ["| setting | iteration | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        for t in range(iterations + 1):
            group = [r for r in rows if r["setting"] == setting and r["iteration"] == t]
            cells = []
            for b in benchmarks:
                values = [r[f"{b}.{paper['metrics'][b]}"] for r in group if r.get(f"{b}.{paper['metrics'][b]}") is not None]
                cells.append(_cell(statistics.fmean(values)) if values else "missing")
            lines.append(f"| {setting} | {t} | " + " | ".join(cells) + " |")
    for label, figures in paper["rows"].items():
        lines.append(f"| paper: {label} | | " + " | ".join(_cell(figures.get(b)) for b in benchmarks) + " |")
    notes = []
    for b in benchmarks:  # how each figure was measured, over every evaluated policy
        measured = [read_json(metrics_file(results, point, t, b)) for point in points for t in range(iterations + 1)]
        described = {f"judge {m.get('judge_model')}" + (f", LC {m['lc_variant']}" if "lc_variant" in m else "") for m in measured}
        left_out = sum(m.get(k) or 0 for m in measured for k in ("n_missing", "n_games_dropped", "n_missing_ratings"))
        notes.append(f"- {b}: {'; '.join(sorted(described))}; judgments without a verdict, left out: {left_out}")
    return "\n".join([*lines, "", f"Paper: {paper['source']}", *notes]) + "\n"


def summarize(rows: list[dict], iterations: int) -> list[dict]:
    """The last iteration per setting: mean and standard deviation over seeds of every metric."""
    last = [r for r in rows if r["iteration"] == iterations]
    summary = []
    for setting in dict.fromkeys(r["setting"] for r in last):
        group = [r for r in last if r["setting"] == setting]
        row = {k: group[0][k] for k in POINT_KEYS if k != "seed" and k in group[0]}
        row["seeds"] = len(group)
        for name in columns(group):
            values = [r[name] for r in group if isinstance(r.get(name), (int, float))]
            if name in NOT_PLOTTED or name.endswith("_se") or not values:
                continue
            row[name] = statistics.fmean(values)
            row[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(row)
    return summary


def columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def to_markdown(rows: list[dict], names: list[str] | None = None) -> str:
    names = names or [n for n in columns(rows) if any(row.get(n) is not None for row in rows)]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row.get(n)) for n in names) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def standard_error_of(name: str) -> str:
    """The column holding a metric's standard error."""
    return STANDARD_ERRORS.get(name, f"{name}_se")


def _curve(rows: list[dict], setting: str, name: str) -> tuple[list, list, list]:
    """Per iteration: mean over seeds, and the error bar (sd over seeds; the s.e. with one seed)."""
    xs, ys, errors = [], [], []
    for t in sorted({r["iteration"] for r in rows}):
        group = [r for r in rows if r["setting"] == setting and r["iteration"] == t and r.get(name) is not None]
        if not group:
            continue
        values = [r[name] for r in group]
        xs.append(t)
        ys.append(statistics.fmean(values))
        if len(values) > 1:
            errors.append(statistics.stdev(values))
        else:
            errors.append(group[0].get(standard_error_of(name), 0.0) or 0.0)
    return xs, ys, errors


def _draw(ax, rows: list[dict], name: str) -> None:
    for setting in dict.fromkeys(r["setting"] for r in rows):
        xs, ys, errors = _curve(rows, setting, name)
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=setting)
    if name in ("win_rate", "length_controlled_winrate"):
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("iteration")
    ax.set_title(TITLES.get(name, name), fontsize=9)
    ax.set_xticks(sorted({r["iteration"] for r in rows}))
    ax.grid(True, alpha=0.3)


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=120)
    os.replace(tmp, path)


def plot(rows: list[dict], output_dir: Path) -> list[Path]:
    """A PNG per numeric metric, overview.png with all of them, length_vs_tau.png; overview first."""
    names = [n for n in columns(rows) if plotted(n)]
    names.sort(key=lambda n: list(TITLES).index(n) if n in TITLES else len(TITLES))
    per_row = 4
    n_rows = -(-len(names) // per_row)
    overview = Figure(figsize=(3.6 * per_row, 3.0 * n_rows + 0.8), layout="constrained")
    axes = list(overview.subplots(n_rows, per_row, squeeze=False).flat)
    paths = [output_dir / "overview.png"]
    for name, ax in zip(names, axes):
        _draw(ax, rows, name)
        fig = Figure(figsize=(5.5, 3.6), layout="constrained")
        single = fig.subplots()
        _draw(single, rows, name)
        single.legend(fontsize=6)
        paths.append(output_dir / f"{name}.png")
        _save(fig, paths[-1])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    overview.legend(handles, labels, loc="outside lower center", fontsize=7, ncols=2)
    _save(overview, paths[0])
    if "mean_length" in names:
        paths.append(output_dir / "length_vs_tau.png")
        _save(plot_length_vs_tau(rows), paths[-1])
    return paths


def plot_length_vs_tau(rows: list[dict]) -> Figure:
    """Final mean response length against tau, for the INPO points (tau = 0: INPO without KL)."""
    last = max(r["iteration"] for r in rows)
    fig = Figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.subplots()
    for judge in dict.fromkeys(r["judge"] for r in rows):
        points = [(r["tau"] if r["tau"] is not None else 0.0, r["mean_length"]) for r in rows
                  if r["iteration"] == last and r["judge"] == judge and r["algo"] in ("inpo", "inpo_nokl")]
        if points:
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, "o", label=judge)
    sft = next(r["mean_length"] for r in rows if r["iteration"] == 0)
    ax.axhline(sft, color="grey", lw=0.8, ls="--", label="SFT")
    ax.set(xlabel="tau (KL weight)", ylabel="mean length (tokens)", title=f"response length after iteration {last}")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return fig


def run(cfg: DictConfig) -> list[dict]:
    if cfg.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {cfg.iterations}")
    if not cfg.points:
        raise ValueError("points must name at least one experiment point")
    rows = gather(Path(cfg.results), cfg.iterations, list(cfg.points), list(cfg.evaluations))
    summary = summarize(rows, cfg.iterations)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(rows, out)
    heldout = [read_json(metrics_file(Path(cfg.results), point, t, "heldout")) for point in cfg.points
               for t in range(cfg.iterations + 1)] if "heldout" in cfg.evaluations else []
    game, missing = game_table(rows), missing_game_metrics(heldout)
    if game:
        figures.append(out / "style_simplex.png")
        _save(plot_style_simplex(rows, heldout[0].get("nash_distribution")), figures[-1])
        write_text(out / "game.md", game)
    table1 = paper_table(rows, cfg.iterations, OmegaConf.to_container(cfg.paper_table, resolve=True))
    if table1:
        write_text(out / "table1.md", table1)
    write_text(out / "report.csv", to_csv(rows))
    write_text(out / "summary.csv", to_csv(summary))
    main_columns = [c for c in ("algo", "judge", "eta", "eta_schedule", "tau", "beta", "seeds", "win_rate", "win_rate_sd",
                                "length_controlled_winrate", "length_controlled_winrate_sd", "mean_length",
                                "mean_length_sd", "duality_gap", "duality_gap_sd", "share_correct", "oracle_calls")
                    if any(r.get(c) is not None for r in summary)]
    main_columns += [c for c in columns(summary) if "." in c and c.rsplit(".", 1)[-1] in BENCHMARK_HEADLINES]
    benchmarks = benchmark_table(rows, Path(cfg.results), list(cfg.points), cfg.iterations,
                                 OmegaConf.to_container(cfg.paper, resolve=True))
    body = ["# INPO report", "",
            f"## After iteration {cfg.iterations} (mean and standard deviation over seeds)", "",
            to_markdown(summary, main_columns), "",
            *(["## Benchmarks beside the paper", "", benchmarks] if benchmarks else []),
            *(["## The paper's Table 1 layout, beside its figures", "", table1] if table1 else []),
            *(["## The game: distance to the regularized Nash policy and to the exact mirror-descent step", "",
               "Held-out answers' feature distributions (inpo.game_metrics); mean over seeds; a trend counts steps "
               "larger than two standard errors. The contraction factor is the tabular lab's prediction for the exact "
               "mirror-descent step each iteration approximates (inpo.game.eta_sweep): below 1 its iterates converge, "
               "above 1 they spiral away from the Nash policy." + (
                   f" In this game (tau = {heldout[0]['game_tau']}) INPO's exact step converges for eta > "
                   f"{heldout[0]['stability_eta']:.3g}." if heldout[0].get("stability_eta") else ""), "", game] if game else []),
            *(["## Game metrics not computed", "", missing] if missing else []),
            "## Every point and iteration (iteration 0: pi_ref; benchmark metrics are named <benchmark>.<metric>)", "",
            to_markdown(rows), *(f"![{p.stem}]({p.name})" for p in figures)]
    write_text(out / "report.md", "\n".join(body) + "\n")
    write_text(out / "summary.md", to_markdown(summary, main_columns))
    if benchmarks:
        write_text(out / "benchmarks.md", benchmarks)
    return rows


@hydra_app("report")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
