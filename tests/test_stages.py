"""Each stage's run(cfg) on a tiny SFT model, chained as the workflow chains them."""

import json
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from inpo import annotate, evaluate, logps, prompts, report, sample, sft, train
from inpo.config import load_config
from inpo.judges.synthetic import SyntheticPreferenceOracle
from inpo.modeling import load_policy
from inpo.training import NonFiniteLossError, Objective, OptimSettings, fit, latest_checkpoint
from inpo.records import PAIR, SAMPLE, SCORED_PAIR, RecordError, read_json, read_jsonl, write_jsonl
from inpo.task import make_prompts, render_response
from inpo.game import omd_step
from inpo.game_metrics import answer_cells, cell_counts, smoothed, total_variation
from inpo.judges.synthetic import SyntheticPreferenceOracle
from sample_records import finished

TINY_MODEL = [
    "model.architecture.hidden_size=64",
    "model.architecture.intermediate_size=128",
    "model.architecture.num_hidden_layers=1",
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """SFT, then one iteration of sample -> annotate -> logps -> train, on a handful of prompts."""
    root = tmp_path_factory.mktemp("chain")
    sft.run(load_config("sft", [f"output={root}/sft/model", f"work_dir={root}/sft", "n_demonstrations=1024",
                                "optim.epochs=2", "optim.batch_size=32", *TINY_MODEL]))
    prompts.run(load_config("prompts", [f"output={root}/train.jsonl", "n_prompts=24"]))
    prompts.run(load_config("prompts", [f"output={root}/eval.jsonl", "split=eval", "n_prompts=12"]))
    sample.run(load_config("sample", [f"policy={root}/sft/model", f"prompts={root}/train.jsonl",
                                      f"output={root}/samples.jsonl", "n_samples=4"]))
    annotate.run(load_config("annotate", [f"samples={root}/samples.jsonl", f"output={root}/pairs.jsonl",
                                          f"stats={root}/annotation.json"]))
    logps.run(load_config("logps", [f"pairs={root}/pairs.jsonl", f"ref_policy={root}/sft/model",
                                    f"policy={root}/sft/model", f"output={root}/scored.jsonl"]))
    train.run(load_config("train", [f"pairs={root}/scored.jsonl", f"policy={root}/sft/model",
                                    f"output={root}/iter1/policy", f"work_dir={root}/iter1", "optim.epochs=1",
                                    "optim.batch_size=8"]))
    return root


def test_sft_writes_a_loadable_model_with_a_chat_template(chain):
    model, tokenizer = load_policy(chain / "sft" / "model")
    assert model.num_parameters() < 5_000_000
    assert tokenizer.chat_template and "<assistant>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "sort 3 1"}], add_generation_prompt=True, tokenize=False)
    assert read_json(chain / "sft" / "sft_summary.json")["steps"] == 64  # 1024 demos / batch 32, two epochs


def test_prompt_sets_are_reproducible_and_distinct(chain, tmp_path):
    prompts.run(load_config("prompts", [f"output={tmp_path}/again.jsonl", "n_prompts=24"]))
    prompts.run(load_config("prompts", [f"output={tmp_path}/iter2.jsonl", "n_prompts=24", "iteration=2"]))
    first = read_jsonl(chain / "train.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl") == first
    assert [r["prompt"] for r in read_jsonl(tmp_path / "iter2.jsonl")] != [r["prompt"] for r in first]


def test_samples_have_k_responses_per_prompt(chain):
    samples = read_jsonl(chain / "samples.jsonl", SAMPLE)
    assert len(samples) == 24 and all(len(s["responses"]) == 4 for s in samples)
    assert samples[0]["id"] == "train1-00000" and "items" in samples[0]


def test_annotation_counts_oracle_calls_and_keeps_trl_fields(chain):
    pairs = read_jsonl(chain / "pairs.jsonl", PAIR)
    stats = read_json(chain / "annotation.json")
    assert stats["pairs"] == len(pairs) and stats["pairs"] + stats["dropped"] == 24
    # K = 4: at most 5 comparisons per prompt, each judged in both orders.
    assert 0 < stats["oracle_calls"] <= 24 * 5 * 2
    assert all(p["preference"] > 0.5 and p["chosen"] != p["rejected"] for p in pairs)


def cut_samples(folder):
    """Samples of 3 prompts whose best answer was cut at the length limit: in the first two prompts
    the last answer is cut too; in the third every answer but the worst is."""
    records = []
    for k, p in enumerate(make_prompts(3, seed=3, split="train1")):
        assert p["items"] != sorted(p["items"])
        # synthetic rewards 2.6, 2.2, 0.0 and 0.2 (correct answers score 2, and more words score more)
        answers = [render_response(sorted(p["items"]), 0, 3), render_response(sorted(p["items"]), 1, 1),
                   render_response(p["items"], 2, 0), render_response(p["items"], 1, 1)]
        record = {**p, **finished(answers)}
        for i in (0, 3) if k < 2 else (0, 1, 3):
            record["finish_reasons"][i], record["stop_tokens"][i] = "length", None
        records.append(record)
    write_jsonl(folder / "samples.jsonl", records)
    return records


def annotate_cut(folder, *overrides):
    return annotate.run(load_config("annotate", [f"samples={folder}/samples.jsonl", f"output={folder}/pairs.jsonl",
                                                 f"stats={folder}/annotation.json", *overrides]))


def test_annotation_keeps_masks_or_penalizes_answers_cut_at_the_length_limit(tmp_path):
    samples = cut_samples(tmp_path)
    kept = annotate_cut(tmp_path, "judge=synthetic_reward")
    assert {k: kept[k] for k in ("responses", "responses_cut", "prompts_truncated", "prompts_without_two_finished")} == {
        "responses": 12, "responses_cut": 7, "prompts_truncated": 0, "prompts_without_two_finished": 0}
    pairs = read_jsonl(tmp_path / "pairs.jsonl", PAIR)
    # the cut best answer wins, and the pair says it was cut
    assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == [(0, 2)] * 3
    assert all(p["chosen_finish_reason"] == "length" and p["chosen_stop_token"] is None for p in pairs)
    assert all(p["rejected_finish_reason"] == "stop" and p["rejected_stop_token"] == "<eos>" for p in pairs)
    assert kept["chosen_cut"] == 3 and kept["rejected_cut"] == 0

    masked = annotate_cut(tmp_path, "judge=synthetic_reward", "mask_truncated_completions=true")
    pairs = read_jsonl(tmp_path / "pairs.jsonl", PAIR)
    assert masked["prompts_without_two_finished"] == 1 and masked["pairs"] == 2 and masked["chosen_cut"] == 0
    assert all(p["chosen_finish_reason"] == p["rejected_finish_reason"] == "stop" for p in pairs)
    assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == [(1, 2), (1, 2)]
    assert masked["oracle_calls"] == 4  # only the finished answers of the first two prompts are judged

    penalized = annotate_cut(tmp_path, "judge=synthetic_reward", "missing_eos_penalty=100")
    pairs = read_jsonl(tmp_path / "pairs.jsonl", PAIR)
    # a finished answer beats every cut one, and the worst is the most penalized (0.2 - 100)
    assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == [(1, 3), (1, 3), (2, 3)]
    assert penalized["missing_eos_penalty"] == 100 and penalized["rejected_cut"] == 3
    with pytest.raises(ValueError, match="with a pairwise judge use mask_truncated_completions=true"):
        annotate_cut(tmp_path, "missing_eos_penalty=1")


def test_logps_equal_the_models_own_scores(chain):
    scored = read_jsonl(chain / "scored.jsonl", SCORED_PAIR)
    assert all(r["ref_chosen_logp"] == r["prev_chosen_logp"] for r in scored)  # pi_1 = pi_ref
    assert all(r["ref_chosen_logp"] < 0 and r["ref_rejected_logp"] < 0 for r in scored)


def test_train_moves_the_policy_towards_the_chosen_responses(chain):
    before, _ = load_policy(chain / "sft" / "model")
    after, _ = load_policy(chain / "iter1" / "policy")
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
    assert all(changed)
    log = [json.loads(line) for line in (chain / "iter1" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == read_json(chain / "iter1" / "train_summary.json")["total_steps"]


def test_train_rejects_bad_algorithm_settings_before_loading_anything(tmp_path):
    for overrides, message in [(["algo.eta=0"], "eta must be > 0"), (["algo.tau=0.5", "algo.eta=0.1"], "tau must be <= eta"),
                               (["algo.eta_schedule=cosine"], "algo: eta_schedule must be one of"),
                               (["algo=sppo", "algo.beta=0"], "algo.beta must be > 0, got 0")]:
        cfg = load_config("train", [f"pairs={tmp_path}/missing.jsonl", "policy=none", f"output={tmp_path}/o",
                                    f"work_dir={tmp_path}/w", *overrides])
        with pytest.raises(ValueError, match=message):
            train.run(cfg)


def eight_answer_samples(folder, n_prompts=3):
    """Samples of the embedded task with K = 8 distinct answers per prompt (correct or not, in
    every bracket style, with short and long preambles)."""
    records = []
    for p in make_prompts(n_prompts, seed=5, split="train1"):
        answers = [render_response(items, style, verbosity) for items in (sorted(p["items"]), p["items"])
                   for style, verbosity in ((0, 0), (1, 1), (2, 2), (0, 3))]
        records.append({**p, **finished(answers)})
    write_jsonl(folder / "samples.jsonl", records)
    return records


def test_sppo_annotation_judges_every_pair_in_one_batch_and_keeps_the_extreme_win_rates(tmp_path, monkeypatch):
    samples = eight_answer_samples(tmp_path)
    samples[2]["finish_reasons"][0:2], samples[2]["stop_tokens"][0:2] = ["length"] * 2, [None] * 2
    write_jsonl(tmp_path / "samples.jsonl", samples)
    batches, compare_many = [], SyntheticPreferenceOracle.compare_many

    def recorded(judge, comparisons):
        batches.append(len(comparisons))
        return compare_many(judge, comparisons)

    monkeypatch.setattr(SyntheticPreferenceOracle, "compare_many", recorded)
    stats = annotate_cut(tmp_path, "pairing=sppo")
    # K = 8: 28 pairs, each judged in both orders; all three prompts in one batch
    assert batches == [3 * 28]
    assert stats["pairing"] == "sppo" and stats["oracle_calls"] == stats["comparisons"] == 3 * 8 * 7
    pairs = read_jsonl(tmp_path / "pairs.jsonl", PAIR)
    judge = SyntheticPreferenceOracle()
    assert len(pairs) == 3
    for record, pair in zip(samples, pairs):
        # Phat(y_i > pi_t) by hand, from the judge's order-averaged preferences
        rates = [sum(judge.compare(record, a, b) for j, b in enumerate(record["responses"]) if j != i) / 7
                 for i, a in enumerate(record["responses"])]
        assert pair["chosen_winrate"] == pytest.approx(max(rates)) and pair["rejected_winrate"] == pytest.approx(min(rates))
        assert rates.index(max(rates)) == pair["chosen_index"] and rates.index(min(rates)) == pair["rejected_index"]
        assert pair["preference"] == pytest.approx(judge.compare(record, pair["chosen"], pair["rejected"]))

    # answers cut at the length limit take no part: 6 candidates in the third prompt, 15 pairs
    masked = annotate_cut(tmp_path, "pairing=sppo", "mask_truncated_completions=true")
    assert masked["oracle_calls"] == masked["comparisons"] == 2 * (28 + 28 + 15)
    assert {read_jsonl(tmp_path / "pairs.jsonl", PAIR)[2][f"{side}_index"] for side in ("chosen", "rejected")}.isdisjoint({0, 1})


def test_random_pairing_draws_two_answers_and_the_winner_with_the_oracle_probability(tmp_path):
    samples = eight_answer_samples(tmp_path, n_prompts=400)
    stats = annotate_cut(tmp_path, "pairing=random")
    assert stats["pairing"] == "random" and stats["comparisons"] == stats["oracle_calls"] == 2 * 400
    pairs = read_jsonl(tmp_path / "pairs.jsonl", PAIR)
    judge = SyntheticPreferenceOracle()
    assert len(pairs) == 400 and all(p["chosen_index"] != p["rejected_index"] for p in pairs)
    for record, pair in zip(samples, pairs):
        assert pair["preference"] == pytest.approx(judge.compare(record, pair["chosen"], pair["rejected"]))
    # the winner is drawn, not taken: the lower-indexed answer of the pair wins with its probability on average
    first = [min(p["chosen_index"], p["rejected_index"]) == p["chosen_index"] for p in pairs]
    p_first = [p["preference"] if won else 1 - p["preference"] for p, won in zip(pairs, first)]
    assert abs(np.mean(first) - np.mean(p_first)) < 4 * np.sqrt(np.mean(np.multiply(p_first, 1 - np.array(p_first))) / 400)
    assert 0 < sum(p["preference"] < 0.5 for p in pairs) < 400  # upsets happen
    # every unordered pair of the 8 answers can be drawn
    assert len({frozenset((p["chosen_index"], p["rejected_index"])) for p in pairs}) == 28
    # the draws are the same on a rerun, and another seed draws others
    annotate_cut(tmp_path, "pairing=random")
    assert read_jsonl(tmp_path / "pairs.jsonl", PAIR) == pairs
    annotate_cut(tmp_path, "pairing=random", "seed=1")
    assert read_jsonl(tmp_path / "pairs.jsonl", PAIR) != pairs


def test_sppo_annotation_drops_a_prompt_whose_answers_all_win_half_the_time(tmp_path):
    records = [{**p, **finished([render_response(p["items"], 0, 0)] * 4)} for p in make_prompts(2, seed=1, split="train1")]
    records[1]["responses"][0] = render_response(sorted(records[1]["items"]), 0, 0)
    write_jsonl(tmp_path / "samples.jsonl", records)
    stats = annotate_cut(tmp_path, "pairing=sppo")
    assert stats["pairs"] == 1 and stats["dropped"] == 1 and stats["oracle_calls"] == 2 * 4 * 3


def test_logps_and_train_carry_sppo_win_rates(chain, tmp_path):
    annotate.run(load_config("annotate", [f"samples={chain}/samples.jsonl", f"output={tmp_path}/pairs.jsonl",
                                          f"stats={tmp_path}/annotation.json", "pairing=sppo"]))
    logps.run(load_config("logps", [f"pairs={tmp_path}/pairs.jsonl", f"ref_policy={chain}/sft/model",
                                    f"policy={chain}/sft/model", f"output={tmp_path}/scored.jsonl"]))
    pairs, scored = read_jsonl(tmp_path / "pairs.jsonl", PAIR), read_jsonl(tmp_path / "scored.jsonl", SCORED_PAIR)
    assert [(p["chosen_winrate"], p["rejected_winrate"]) for p in pairs] == \
        [(p["chosen_winrate"], p["rejected_winrate"]) for p in scored]
    assert all(p["chosen_winrate"] > p["rejected_winrate"] for p in scored)
    summary = train.run(load_config("train", [f"pairs={tmp_path}/scored.jsonl", f"policy={chain}/sft/model", "algo=sppo",
                                              f"output={tmp_path}/policy", f"work_dir={tmp_path}/train", "optim.epochs=1",
                                              "optim.batch_size=8"]))
    assert summary["algo"] == {"name": "sppo", "loss": "sppo", "beta": 0.2} and summary["pairs"] == len(scored)
    load_policy(tmp_path / "policy")

    # knockout pairs have no win rates: train names the file and what is missing
    first = read_jsonl(chain / "scored.jsonl", SCORED_PAIR)[0]["id"]
    with pytest.raises(ValueError, match=re.escape(f"{chain}/scored.jsonl: pair {first!r} has no chosen_winrate field: "
                                                   f"the pairs were not annotated with pairing=sppo")):
        train.run(load_config("train", [f"pairs={chain}/scored.jsonl", f"policy={chain}/sft/model", "algo=sppo",
                                        f"output={tmp_path}/o", f"work_dir={tmp_path}/w"]))


def test_train_takes_eta_t_of_its_iteration_from_the_schedule():
    for iteration, schedule, eta in [(1, "theory", 0.2), (2, "theory", 0.2 * 4 / 3), (3, "constant", 0.2)]:
        cfg = load_config("train", ["pairs=p", "policy=q", f"iteration={iteration}", f"algo.eta_schedule={schedule}"])
        algo = train.iteration_algo(cfg.algo, cfg.iteration)
        assert algo.eta == pytest.approx(eta) and algo.tau == cfg.algo.tau and algo.eta_schedule == schedule
    dpo = load_config("train", ["pairs=p", "policy=q", "iteration=2", "algo=dpo"]).algo
    assert train.iteration_algo(dpo, 2) == dpo


def test_evaluate_and_report(chain, tmp_path):
    """Evaluate the SFT model and pi_2, lay the files out as the workflow does, and report them."""
    point = "algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667"
    sample.run(load_config("sample", [f"policy={chain}/sft/model", f"prompts={chain}/eval.jsonl",
                                      f"output={tmp_path}/baseline.jsonl", "n_samples=2", "iteration=0"]))
    sft_answers = f"{tmp_path}/sft/eval/iter0/answers.jsonl"
    game = {0: ["game.tau=0.0667", "game.policy_is_reference=true"],
            1: ["game.tau=0.0667", f"game.reference_answers='{sft_answers}'", f"game.previous_answers='{sft_answers}'",
                "game.step.eta=0.2", "game.step.tau=0.0667"]}
    evaluated = {}
    for t, policy, folder in [(0, chain / "sft" / "model", tmp_path / "sft"), (1, chain / "iter1" / "policy", tmp_path / "sweep" / point)]:
        metrics = evaluate.run(load_config("evaluate", [f"policy={policy}", f"prompts={chain}/eval.jsonl",
                                                        f"baseline={tmp_path}/baseline.jsonl", *game[t],
                                                        f"output_dir='{folder}/eval/iter{t}'", "n_samples=2", f"iteration={t}"]))
        assert 0 <= metrics["win_rate"] <= 1 and metrics["standard_error"] > 0
        assert 0 <= metrics["duality_gap"] <= 1 and metrics["mean_length"] > 0
        assert metrics["kl_to_nash"] > 0 and metrics["duality_gap_tau"] > 0 and metrics["kl_to_nash_se"] > 0
        assert "game_missing" not in metrics and metrics["game_answers"] == 12 * 2
        evaluated[t] = metrics
    # pi_1 = pi_ref, so iteration 1's shadow is omd_step(pi_ref, M, pi_ref, eta, tau), both from the SFT answers
    judge = SyntheticPreferenceOracle()
    sft_cells = cell_counts(answer_cells(judge, read_jsonl(chain / "eval.jsonl"), [r["responses"] for r in read_jsonl(sft_answers)]), 25).sum(0)
    new_cells = cell_counts(answer_cells(judge, read_jsonl(chain / "eval.jsonl"),
                                         [r["responses"] for r in read_jsonl(tmp_path / "sweep" / point / "eval" / "iter1" / "answers.jsonl")]), 25).sum(0)
    ref = smoothed(sft_cells, 0.5)
    assert evaluated[1]["shadow_tv"] == pytest.approx(total_variation(omd_step(ref, judge.preference_matrix(), ref, 0.2, 0.0667),
                                                                      smoothed(new_cells, 0.5)))
    assert evaluated[0]["nash_distribution"] == pytest.approx(evaluated[1]["nash_distribution"])
    # without pi_ref's answers: the plain gap only, and the reasons recorded
    alone = evaluate.run(load_config("evaluate", [f"policy={chain}/iter1/policy", f"prompts={chain}/eval.jsonl",
                                                  f"baseline={tmp_path}/baseline.jsonl", f"output_dir='{tmp_path}/alone'",
                                                  "n_samples=2", "iteration=1"]))
    assert "kl_to_nash" not in alone and alone["duality_gap_se"] > 0
    assert alone["game_missing"] == ["regularized metrics: no pi_ref answers (game.reference_answers)",
                                     "regularized metrics: no game.tau",
                                     "shadow: no mirror-descent step (game.step.eta) for this algorithm"]
    annotation = tmp_path / "shared" / "seed~0" / "judge~synthetic_preference" / "iter1" / "annotate"
    annotation.mkdir(parents=True)
    (annotation / "annotation.json").write_text((chain / "annotation.json").read_text())
    (tmp_path / "sweep" / point / "iter1" / "train").mkdir(parents=True)
    (tmp_path / "sweep" / point / "iter1" / "train" / "train_summary.json").write_text((chain / "iter1" / "train_summary.json").read_text())

    rows = report.run(load_config("report", [f"results={tmp_path}", "iterations=1", f"points=['{point}']",
                                             f"output_dir={tmp_path}/report"]))
    assert [(r["algo"], r["iteration"]) for r in rows] == [("inpo", 0), ("inpo", 1)] and "oracle_calls" in rows[1]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| algo | judge | eta | tau | seeds | win_rate |" in text
    assert "## The game: distance to the regularized Nash policy" in text and "| setting | KL to Nash" in (tmp_path / "report" / "game.md").read_text()
    for name in ("win_rate", "duality_gap", "kl_to_nash", "shadow_tv", "mean_length", "overview", "length_vs_tau", "style_simplex"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 0
    assert (tmp_path / "report" / "report.csv").read_text().splitlines()[0].startswith("algo,judge,eta,tau,beta,seed,setting,iteration,win_rate")
    assert (tmp_path / "report" / "summary.csv").read_text().splitlines()[1].startswith("inpo,synthetic_preference,0.2,0.0667,,1,")


def test_malformed_input_stops_the_stage_naming_file_and_line(chain, tmp_path):
    lines = (chain / "samples.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]
    (tmp_path / "samples.jsonl").write_text("\n".join(lines) + "\n")
    cfg = load_config("annotate", [f"samples={tmp_path}/samples.jsonl", f"output={tmp_path}/pairs.jsonl",
                                   f"stats={tmp_path}/annotation.json"])
    with pytest.raises(RecordError, match=r"samples.jsonl:3: not valid JSON"):
        annotate.run(cfg)
    assert not (tmp_path / "pairs.jsonl").exists()


def stage_stops_and_destroys_nothing(run, cfg, folder, message):
    """``run(cfg)`` raises RecordError with exactly ``message``, and leaves every file of ``folder``
    byte-identical (no file added, none changed)."""
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(RecordError) as error:
        run(cfg)
    assert str(error.value) == message
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def bad_samples(folder, third_line: bytes):
    """samples.jsonl of the embedded task whose third line is ``third_line``, beside the outputs of
    an earlier run of annotate and of the next stage, logps."""
    records = [{**p, **finished([render_response(p["items"], 0, 0), render_response(sorted(p["items"]), 1, 1)])}
               for p in make_prompts(4, seed=3, split="train1")]
    write_jsonl(folder / "samples.jsonl", records)
    lines = (folder / "samples.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "samples.jsonl").write_bytes(b"".join(lines[:2]) + third_line + b"".join(lines[3:]))
    write_jsonl(folder / "pairs.jsonl", [{"id": "old", "prompt": "p", "chosen": "a", "rejected": "b"}])
    (folder / "scored_pairs.jsonl").write_text('{"id": "old", "ref_chosen_logp": -1.0}\n')
    return load_config("annotate", [f"samples={folder}/samples.jsonl", f"output={folder}/pairs.jsonl",
                                    f"stats={folder}/annotation.json"])


def test_annotate_stops_at_a_byte_that_is_not_utf8(tmp_path):
    cfg = bad_samples(tmp_path, b'{"id": "x", "prompt": "sort \xff 1", "responses": ["a", "b"], "finish_reasons": ["stop", "stop"]}\n')
    stage_stops_and_destroys_nothing(annotate.run, cfg, tmp_path,
                                     f"{tmp_path}/samples.jsonl:3: not UTF-8 (byte 0xff at column 29)")


def test_annotate_stops_at_a_response_that_is_not_a_string(tmp_path):
    cfg = bad_samples(tmp_path, b'{"id": "x", "prompt": "sort 2 1", "items": [2, 1], "responses": ["a", 3], "finish_reasons": ["stop", "stop"], '
                                b'"stop_tokens": ["<eos>", "<eos>"], "prompt_truncated": false}\n')
    stage_stops_and_destroys_nothing(annotate.run, cfg, tmp_path,
                                     f"{tmp_path}/samples.jsonl:3: field 'responses' must be a list of strings, item 1 is 3")


def test_train_stops_at_a_log_prob_that_is_not_finite(tmp_path):
    pair = {"id": "a", "prompt": "sort 2 1", "chosen": "( 1 2 )", "rejected": "( 2 1 )", "ref_chosen_logp": -1.0,
            "ref_rejected_logp": -2.0, "prev_chosen_logp": -1.0, "prev_rejected_logp": -2.0,
            "max_length": None, "max_prompt_length": None}
    write_jsonl(tmp_path / "scored_pairs.jsonl", [pair, {**pair, "id": "b", "ref_chosen_logp": float("nan")}])
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": "a", "prompt": "p", "chosen": "a", "rejected": "b"}])
    cfg = load_config("train", [f"pairs={tmp_path}/scored_pairs.jsonl", f"policy={tmp_path}/none",
                                f"output={tmp_path}/policy", f"work_dir={tmp_path}/train"])
    stage_stops_and_destroys_nothing(train.run, cfg, tmp_path,
                                     f"{tmp_path}/scored_pairs.jsonl:2: field 'ref_chosen_logp' must be a finite number, got nan")


def test_evaluate_needs_baseline_answers_for_every_prompt(chain, tmp_path):
    write_jsonl(tmp_path / "baseline.jsonl", [{"id": "eval-00000", "prompt": "sort 1 2 3", **finished(["( 1 2 3 )"])}])
    cfg = load_config("evaluate", [f"policy={chain}/sft/model", f"prompts={chain}/eval.jsonl",
                                   f"baseline={tmp_path}/baseline.jsonl", f"output_dir={tmp_path}/ev"])
    with pytest.raises(ValueError, match="no baseline answers for 11 prompts"):
        evaluate.run(cfg)


def test_evaluate_takes_an_empty_list_of_baseline_answers_for_none(tmp_path):
    write_jsonl(tmp_path / "eval.jsonl", [{"id": "eval-00000", "prompt": "sort 2 1"}])
    write_jsonl(tmp_path / "baseline.jsonl", [{"id": "eval-00000", "prompt": "sort 2 1", **finished([])}])
    cfg = load_config("evaluate", [f"policy={tmp_path}/none", f"prompts={tmp_path}/eval.jsonl",
                                   f"baseline={tmp_path}/baseline.jsonl", f"output_dir={tmp_path}/ev"])
    with pytest.raises(ValueError) as error:
        evaluate.run(cfg)
    assert str(error.value) == f"{tmp_path}/baseline.jsonl: no baseline answers for 1 prompts (first: 'eval-00000')"


def train_overrides(chain, work_dir):
    return [f"pairs={chain}/scored.jsonl", f"policy={chain}/sft/model", f"output={work_dir}/policy",
            f"work_dir={work_dir}", "optim.epochs=40", "optim.batch_size=2", "optim.checkpoint_every=10"]


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(chain, tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "inpo.train", *train_overrides(chain, killed),
                                f"hydra.run.dir={killed}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while latest_checkpoint(killed / "checkpoints") is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training ended before it could be killed"
    step_at_kill = json.loads((latest_checkpoint(killed / "checkpoints") / "progress.json").read_text())["step"]

    resumed = train.run(load_config("train", train_overrides(chain, killed)))
    assert resumed["resumed_from_step"] == step_at_kill and 0 < step_at_kill < resumed["total_steps"]

    straight = train.run(load_config("train", train_overrides(chain, tmp_path / "straight")))
    assert straight["resumed_from_step"] is None and straight["steps"] == resumed["steps"]
    a, _ = load_policy(killed / "policy")
    b, _ = load_policy(tmp_path / "straight" / "policy")
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    steps = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "log lines after the checkpoint must not be duplicated on resume"
    assert not (killed / "checkpoints").exists(), "checkpoints are removed once the model is saved"


def nan_at_call(n):
    """A loss that turns NaN at its n-th call, like a diverging run."""
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = model(batch).pow(2).sum()
        return (loss * float("nan") if len(calls) == n else loss), {}

    return loss_fn


def fit_linear(tmp_path, loss_fn, learning_rate=0.1):
    settings = OptimSettings(learning_rate=learning_rate, batch_size=1, checkpoint_every=2, log_every=1)
    return fit(torch.nn.Linear(2, 1), [torch.ones(2)] * 8, Objective(torch.stack, loss_fn), settings, seed=0, work_dir=tmp_path,
               output=tmp_path / "model", tokenizer=None)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* micro-batch 0 at epoch 0, batch 4.*checkpoint"):
        fit_linear(tmp_path, nan_at_call(5))
    assert json.loads((latest_checkpoint(tmp_path / "checkpoints") / "progress.json").read_text())["step"] == 4
    assert not (tmp_path / "model").exists()


def test_a_log_line_torn_by_a_kill_does_not_stop_the_resumed_run(tmp_path):
    with pytest.raises(NonFiniteLossError):
        fit_linear(tmp_path, nan_at_call(5))  # checkpoint and log at step 4
    with (tmp_path / "train_log.jsonl").open("a") as log:
        log.write('{"step": 5, "epoch": 0, "lo')  # the kill came while this line was written
    with pytest.raises(NonFiniteLossError, match="batch 6"):  # resumed at batch 4; stopped again at its third
        fit_linear(tmp_path, nan_at_call(3))
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_of_another_training_setup_is_not_resumed(tmp_path, capsys):
    with pytest.raises(NonFiniteLossError):
        fit_linear(tmp_path, nan_at_call(5))
    first = json.loads((latest_checkpoint(tmp_path / "checkpoints") / "progress.json").read_text())
    # same examples and seed, another learning rate: starts from step 0 (and fails at the same batch)
    with pytest.raises(NonFiniteLossError, match="batch 4"):
        fit_linear(tmp_path, nan_at_call(5), learning_rate=0.01)
    assert "from another training setup: starting afresh" in capsys.readouterr().out
    second = json.loads((latest_checkpoint(tmp_path / "checkpoints") / "progress.json").read_text())
    assert second["step"] == 4 and second["fingerprint"] != first["fingerprint"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_hydra_multirun_trains_one_policy_per_combination(chain, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "inpo.train", "-m", "algo.eta=0.1,0.2", "algo.tau=0,0.05", f"pairs={chain}/scored.jsonl",
         f"policy={chain}/sft/model", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["algo.eta=0.1,algo.tau=0", "algo.eta=0.1,algo.tau=0.05", "algo.eta=0.2,algo.tau=0", "algo.eta=0.2,algo.tau=0.05"]
    for folder in folders:
        load_policy(tmp_path / folder / "policy")
        assert "eta: " + folder.split(",")[0].split("=")[1] in (tmp_path / folder / ".hydra/config.yaml").read_text()


def test_adamw_is_fused_on_the_cpu_and_takes_the_same_steps(tmp_path, monkeypatch):
    """optim.fused: torch's fused AdamW kernel where the device has one; the weights it trains
    equal the default implementation's to float32 rounding."""
    from accelerate import Accelerator

    from inpo import training

    accelerator = Accelerator()  # on this machine: the CPU
    assert accelerator.device.type == "cpu" or not torch.cuda.is_available()
    assert training.use_fused_adamw(OptimSettings(learning_rate=0.1), accelerator)
    assert not training.use_fused_adamw(OptimSettings(learning_rate=0.1, fused=False), accelerator)
    with pytest.raises(ValueError, match="optim.fused must be true or false"):
        OptimSettings(learning_rate=0.1, fused="yes")

    class Linear(torch.nn.Linear):  # saved like a Hugging Face model, as fit does at the end
        def save_pretrained(self, path, **_):
            Path(path).mkdir(parents=True)

    used = []
    adamw = torch.optim.AdamW
    monkeypatch.setattr(training.torch.optim, "AdamW", lambda *a, **k: used.append(k["fused"]) or adamw(*a, **k))
    weights = {}
    for name in (True, False):
        torch.manual_seed(0)
        model = Linear(16, 4)
        settings = OptimSettings(learning_rate=0.05, batch_size=2, weight_decay=0.1, fused=name)
        fit(model, [torch.randn(16) for _ in range(8)], Objective(torch.stack, lambda m, b: (m(b).pow(2).sum(), {})),
            settings, seed=0, work_dir=tmp_path / str(name), output=tmp_path / str(name) / "model",
            tokenizer=types.SimpleNamespace(save_pretrained=lambda path: None))
        weights[name] = model.weight.detach().clone()
    assert used == [True, False]
    torch.testing.assert_close(weights[True], weights[False], atol=1e-6, rtol=0)
