"""Stage ``report``: one table (Markdown and CSV) of every metric per iteration, and plots.

Row t is the policy after iteration t (0 = SFT): its evaluation metrics, and for t >= 1 the
annotation (pairs, oracle calls) and training (final loss) of iteration t.

    python -m inpo.report results=results iterations=3 output_dir=results/report
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no display
from omegaconf import DictConfig

from .config import hydra_app
from .records import read_json, write_text

# Axis titles of the metrics people read first; any other numeric metric is plotted under its name.
TITLES = {
    "win_rate": "win rate vs SFT (± s.e.)",
    "duality_gap": "duality gap (unregularized)",
    "mean_length": "mean response length (tokens)",
    "share_correct": "share of correct answers",
    "mean_verbosity": "mean verbosity of valid answers",
    "oracle_calls": "oracle calls (annotation)",
    "pairs": "preference pairs kept",
    "train_loss": "final training loss",
}
# Bookkeeping columns: in the table, not plotted.
NOT_PLOTTED = {"iteration", "standard_error", "n_prompts", "n_samples", "judge_calls"}


def gather(results: Path, iterations: int) -> list[dict]:
    """One flat row of scalar metrics per evaluated policy, t = 0..iterations."""
    rows = []
    for t in range(iterations + 1):
        metrics = read_json(results / "eval" / f"iter{t}" / "metrics.json")
        row = {"iteration": t, **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "iteration"}}
        if t >= 1:
            annotation = read_json(results / f"iter{t}" / "annotate" / "annotation.json")
            training = read_json(results / f"iter{t}" / "train" / "train_summary.json")
            row.update(pairs=annotation["pairs"], oracle_calls=annotation["oracle_calls"],
                       train_loss=training["last_metrics"].get("loss"))
        rows.append(row)
    return rows


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


def to_markdown(rows: list[dict]) -> str:
    names = columns(rows)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row.get(n)) for n in names) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _draw(ax, rows: list[dict], name: str) -> None:
    points = [(row["iteration"], row[name], row.get("standard_error")) for row in rows if row.get(name) is not None]
    xs, ys, errors = zip(*points)
    if name == "win_rate":
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    else:
        ax.plot(xs, ys, marker="o")
    ax.set_xlabel("iteration")
    ax.set_title(TITLES.get(name, name), fontsize=9)
    ax.set_xticks(list(xs))
    ax.grid(True, alpha=0.3)


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=120)
    os.replace(tmp, path)


def plot(rows: list[dict], output_dir: Path) -> list[Path]:
    """A PNG per numeric metric, and overview.png with all of them; returns the paths, overview first."""
    names = [n for n in columns(rows) if n not in NOT_PLOTTED]
    names.sort(key=lambda n: list(TITLES).index(n) if n in TITLES else len(TITLES))
    per_row = 4
    overview = Figure(figsize=(3.4 * per_row, 2.9 * -(-len(names) // per_row)), layout="constrained")
    axes = overview.subplots(-(-len(names) // per_row), per_row, squeeze=False).flat
    paths = [output_dir / "overview.png"]
    for name, ax in zip(names, axes):
        _draw(ax, rows, name)
        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        _draw(fig.subplots(), rows, name)
        paths.append(output_dir / f"{name}.png")
        _save(fig, paths[-1])
    for ax in list(axes):
        ax.set_visible(False)
    _save(overview, paths[0])
    return paths


def run(cfg: DictConfig) -> list[dict]:
    if cfg.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {cfg.iterations}")
    rows = gather(Path(cfg.results), cfg.iterations)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(rows, out)
    write_text(out / "report.csv", to_csv(rows))
    body = ["# INPO report", "",
            "Row t: the policy after iteration t (0 = the SFT model), evaluated on the held-out prompts.", "",
            to_markdown(rows), *(f"![{p.stem}]({p.name})" for p in figures)]
    write_text(out / "report.md", "\n".join(body) + "\n")
    return rows


@hydra_app("report")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
