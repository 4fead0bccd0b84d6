"""Stage ``report``: one table (Markdown and CSV) of every metric per iteration, and plots.

Row t is the policy after iteration t (0 = SFT): its evaluation metrics, and for t >= 1 the
annotation (pairs, oracle calls) and training (final loss) of iteration t.

    python -m inpo.report results=results iterations=3 output_dir=results/report
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from .config import hydra_app  # noqa: E402
from .records import read_json  # noqa: E402

# Metrics plotted, in this order, with the label of their axis.
PLOTTED = {
    "win_rate": "win rate vs SFT",
    "duality_gap": "duality gap (unregularized)",
    "mean_length": "mean response length (tokens)",
    "share_correct": "share of correct answers",
    "mean_verbosity": "mean verbosity of valid answers",
    "oracle_calls": "oracle calls (annotation)",
    "pairs": "preference pairs kept",
    "train_loss": "final training loss",
}


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


def plot(rows: list[dict], output_dir: Path) -> list[Path]:
    """One PNG per plotted metric present in the rows, plus overview.png with all of them."""
    present = [m for m in PLOTTED if any(m in row for row in rows)]
    written = []
    overview, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3), squeeze=False)
    for name, ax_overview in zip(present, axes[0]):
        points = [(row["iteration"], row[name], row.get("standard_error") if name == "win_rate" else None)
                  for row in rows if row.get(name) is not None]
        xs, ys, errs = zip(*points)
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for target in (ax, ax_overview):
            if name == "win_rate":
                target.errorbar(xs, ys, yerr=errs, marker="o", capsize=3)
                target.axhline(0.5, color="grey", lw=0.8, ls="--")
            else:
                target.plot(xs, ys, marker="o")
            target.set_xlabel("iteration")
            target.set_title(PLOTTED[name], fontsize=9)
            target.set_xticks(list(xs))
        fig.tight_layout()
        path = output_dir / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    overview.tight_layout()
    overview.savefig(output_dir / "overview.png", dpi=110)
    plt.close(overview)
    return written + [output_dir / "overview.png"]


def run(cfg: DictConfig) -> list[dict]:
    if cfg.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {cfg.iterations}")
    rows = gather(Path(cfg.results), cfg.iterations)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(rows, out)
    (out / "report.csv").write_text(to_csv(rows))
    body = ["# INPO report", "", "Row t: the policy after iteration t (0 = the SFT model), evaluated on the held-out prompts.", "",
            to_markdown(rows), *(f"![{p.stem}]({p.name})" for p in figures)]
    (out / "report.md").write_text("\n".join(body) + "\n")
    return rows


@hydra_app("report")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
