"""The report's benchmark table: each benchmark's headline figure per iteration beside the paper's,
with the judge model, the LC variant and the judgments left out named."""

import json

from inpo.config import load_config
from inpo.report import benchmark_table, metrics_file
from omegaconf import OmegaConf

POINT = "algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667"


def write(results, t, benchmark, metrics):
    path = metrics_file(results, POINT, t, benchmark)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


def test_benchmark_table_sits_beside_the_papers_figures(tmp_path):
    paper = OmegaConf.to_container(load_config("report", ["results=r", "iterations=1", "points=[p]", "output_dir=o"]).paper)
    alpaca = [{"length_controlled_winrate": 12.5, "judge_model": "gpt-4-1106-preview", "lc_variant": "inpo:length_only",
               "n_missing": 2},
              {"length_controlled_winrate": 20.0, "judge_model": "gpt-4-1106-preview", "lc_variant": "inpo:length_only",
               "n_missing": 1}]
    arena = [{"score": 8.0, "judge_model": "gpt-4-1106-preview", "n_games_dropped": 3},
             {"score": None, "judge_model": "gpt-4-1106-preview", "n_games_dropped": 0}]
    rows = []
    for t in (0, 1):
        write(tmp_path, t, "alpaca_eval_2", alpaca[t])
        write(tmp_path, t, "arena_hard_v0.1", arena[t])
        rows.append({"setting": "algo=inpo", "iteration": t, "alpaca_eval_2.length_controlled_winrate":
                     alpaca[t]["length_controlled_winrate"], "arena_hard_v0.1.score": arena[t]["score"]})
    table = benchmark_table(rows, tmp_path, [POINT], 1, paper).splitlines()
    assert table[0] == "| setting | iteration | alpaca_eval_2 length_controlled_winrate | arena_hard_v0.1 score |"
    assert table[2:6] == ["| algo=inpo | 0 | 12.5 | 8 |", "| algo=inpo | 1 | 20 | missing |",
                          "| paper: SFT | | 16 | 10.2 |", "| paper: INPO | | 42.6 | 37.8 |"]
    assert "- alpaca_eval_2: judge gpt-4-1106-preview, LC inpo:length_only; judgments without a verdict, left out: 3" in table
    assert "- arena_hard_v0.1: judge gpt-4-1106-preview; judgments without a verdict, left out: 3" in table
    assert benchmark_table([{"setting": "s", "iteration": 0, "win_rate": 0.5}], tmp_path, [POINT], 0, paper) == ""
