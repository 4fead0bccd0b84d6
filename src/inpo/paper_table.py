"""The report's ``table1.md``: the toy rows in the layout of the INPO paper's Table 1, beside the
paper's published figures for the same methods (``paper_table`` in conf/report.yaml).

One row per setting after the last iteration (mean ± standard deviation over seeds), and the SFT
policy (iteration 0): held-out length-controlled and raw win rate against the SFT model's answers,
mean length, both duality gaps, and the oracle calls of the whole chain (annotation, summed over
iterations 1..T). The paper's columns (AlpacaEval 2.0 LC win rate and Arena-Hard win rate, LLaMA-3-8B)
are filled on the rows whose algorithm (and oracle, where the paper names one) matches an entry.
The toy figures are not on the paper's scale: read the order of the rows, not the numbers.
"""

from __future__ import annotations

import statistics
from typing import Sequence

COLUMNS = (("length_controlled_winrate", "LC win rate", 3), ("win_rate", "win rate", 3), ("mean_length", "length", 1),
           ("duality_gap_tau", "duality gap (tau)", 3), ("duality_gap", "duality gap", 3))


def _mean_sd(values: Sequence[float], digits: int) -> str:
    if not values:
        return "missing"
    text = f"{statistics.fmean(values):.{digits}f}"
    return text + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def paper_row(entries: Sequence[dict], algo: str, judge: str | None) -> dict | None:
    """The first entry of the paper's rows whose ``algo`` matches and whose ``judge``, if it names one, too."""
    return next((e for e in entries if e["algo"] == algo and e.get("judge") in (None, judge)), None)


def paper_table(rows: list[dict], iterations: int, paper: dict) -> str:
    """Markdown in Table 1's layout from ``inpo.report.gather``'s rows; ``paper`` has ``source`` and
    ``rows`` (each: ``algo``, optional ``judge``, ``label``, ``alpaca_eval_2_lc``, ``arena_hard``).
    Empty when no row has a length-controlled win rate (no held-out evaluation)."""
    if not any(r.get("length_controlled_winrate") is not None for r in rows):
        return ""
    header = ["method", "oracle", *(title for _, title, _ in COLUMNS), "oracle calls", "seeds",
              "paper's row", "paper: AlpacaEval 2.0 LC", "paper: Arena-Hard"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def line(label: str, judge: str, group: list[dict], calls: str, entry: dict | None) -> str:
        cells = [_mean_sd([r[name] for r in group if r.get(name) is not None], digits) for name, _, digits in COLUMNS]
        published = [entry["label"] if entry else "", *(f"{entry[k]:.1f}" if entry else "" for k in ("alpaca_eval_2_lc", "arena_hard"))]
        return "| " + " | ".join([label, judge, *cells, calls, str(len(group)), *published]) + " |"

    sft = [r for r in rows if r["iteration"] == 0][:1]  # pi_ref's evaluation is shared by every point
    lines.append(line("SFT", "", sft, "0", paper_row(paper["rows"], "sft", None)))
    last = [r for r in rows if r["iteration"] == iterations]
    for setting in dict.fromkeys(r["setting"] for r in last):
        group = [r for r in last if r["setting"] == setting]
        calls = [sum(r["oracle_calls"] for r in rows if r["setting"] == setting and r["seed"] == g["seed"]
                     and r["iteration"] >= 1) for g in group]
        label = setting.replace(f"judge={group[0]['judge']}", "").replace("  ", " ").strip()
        lines.append(line(label, group[0]["judge"], group, _mean_sd(calls, 0),
                          paper_row(paper["rows"], group[0]["algo"], group[0]["judge"])))
    return "\n".join([*lines, "", f"Paper: {paper['source']}. Toy columns: held-out prompts, against the SFT "
                      f"model's answers, after iteration {iterations}; mean ± standard deviation over seeds."]) + "\n"
