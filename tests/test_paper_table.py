"""inpo.paper_table: the toy rows in the paper's Table 1 layout, checked against values computed by hand."""

import statistics

from inpo.paper_table import paper_row, paper_table

PAPER = {"source": "the paper", "rows": [
    {"algo": "sft", "label": "SFT", "alpaca_eval_2_lc": 16.0, "arena_hard": 10.2},
    {"algo": "dpo", "judge": "reward", "label": "DPO", "alpaca_eval_2_lc": 28.5, "arena_hard": 29.6},
    {"algo": "inpo", "label": "INPO", "alpaca_eval_2_lc": 42.6, "arena_hard": 37.8}]}


def row(algo, judge, seed, t, lc, calls=10):
    return {"algo": algo, "judge": judge, "seed": seed, "iteration": t, "setting": f"algo={algo} judge={judge}",
            "length_controlled_winrate": lc, "win_rate": lc + 0.01, "mean_length": 20.0 + seed, "duality_gap": 0.1,
            **({"oracle_calls": calls * t} if t else {})}


def test_paper_row_matches_algo_and_the_judge_when_named():
    assert paper_row(PAPER["rows"], "dpo", "reward")["label"] == "DPO"
    assert paper_row(PAPER["rows"], "dpo", "preference") is None
    assert paper_row(PAPER["rows"], "inpo", "preference")["label"] == "INPO"


def test_table_rows_means_over_seeds_and_oracle_calls_over_iterations():
    rows = [row(algo, judge, seed, t, 0.5 if t == 0 else lc + 0.1 * seed)
            for algo, judge, lc in [("dpo", "reward", 0.6), ("dpo", "preference", 0.55), ("inpo", "preference", 0.7)]
            for seed in (0, 1) for t in range(3)]
    lines = paper_table(rows, 2, PAPER).splitlines()
    cells = {tuple(c.strip() for c in line.strip("|").split("|"))[:2]: [c.strip() for c in line.strip("|").split("|")]
             for line in lines[2:6]}
    sft = cells[("SFT", "")]
    assert sft[2] == "0.500" and sft[7] == "0" and sft[-3:] == ["SFT", "16.0", "10.2"]
    inpo = cells[("algo=inpo", "preference")]
    assert inpo[2] == f"{statistics.fmean([0.7, 0.8]):.3f} ± {statistics.stdev([0.7, 0.8]):.3f}"
    assert inpo[5] == "missing"  # no duality_gap_tau in these rows
    assert inpo[7] == "30 ± 0"  # 10 + 20 oracle calls in each seed's chain
    assert inpo[-3:] == ["INPO", "42.6", "37.8"]
    assert cells[("algo=dpo", "reward")][-3:] == ["DPO", "28.5", "29.6"]
    assert cells[("algo=dpo", "preference")][-3:] == ["", "", ""]


def test_no_table_without_a_heldout_evaluation():
    assert paper_table([{"iteration": 0, "setting": "s"}], 1, PAPER) == ""
