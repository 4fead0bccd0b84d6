"""``evaluate`` with the AlpacaEval 2.0 and Arena-Hard v0.1 configs, end to end: a slice of the
real questions and reference answers (../shared/benchmarks), a tiny random policy, and the API
judges served by a local OpenAI-compatible server (tests/openai_server.py). The files it writes
are read back the way the official tools read them."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from alpaca_eval_package import import_alpaca_eval
from inpo import evaluate
from inpo.config import load_config
from inpo.tiny_models import run as build_tiny_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
ALPACA = SHARED / "alpaca_eval_2" / "reference_outputs_gpt4_1106_preview.json"
ARENA = SHARED / "arena-hard-v0.1"
pytestmark = pytest.mark.skipif(not ALPACA.is_file() or not ARENA.is_dir(),
                                reason=f"the shared benchmark fixtures are absent ({SHARED})")
N = 6  # questions in the slice


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "policy"
    build_tiny_model(load_config("tiny_models", ["kind=policy", f"output={folder}"]))
    return folder


def evaluate_config(eval_name, policy, output_dir, server, *extra):
    return load_config("evaluate", [f"eval={eval_name}", f"policy={policy}", f"output_dir={output_dir}",
                                    f"judge.base_url={server.base_url}", "judge.api_key_env=INPO_TEST_KEY",
                                    "judge.model=judge-model", f"eval.limit={N}", "eval.generation.max_new_tokens=12",
                                    "generator=tiny", *extra])


def test_alpaca_eval_2_end_to_end(policy, tmp_path, server):
    cfg = evaluate_config("alpaca_eval_2", policy, tmp_path, server, f"eval.reference_outputs={ALPACA}")
    metrics = evaluate.run(cfg)
    assert len(server.state["requests"]) == N  # one verdict per instruction
    assert all(r["headers"]["authorization"] == "Bearer sk-test-5ecret-do-not-leak" for r in server.state["requests"])

    annotations = json.loads((tmp_path / "annotations.json").read_text())
    reference = json.loads(ALPACA.read_text())[:N]
    assert [a["instruction"] for a in annotations] == [r["instruction"] for r in reference]
    assert [a["output_1"] for a in annotations] == [r["output"] for r in reference]
    assert {a["generator_1"] for a in annotations} == {"gpt4_1106_preview"} and {a["generator_2"] for a in annotations} == {"tiny"}
    # the server prefers the longer output; the tiny policy's answers are shorter than GPT-4 Turbo's
    assert all(1 <= a["preference"] < 1.5 for a in annotations)
    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    assert [o["output"] for o in outputs] == [a["output_2"] for a in annotations]

    # AlpacaEval's own reader and metric give the same win rate and standard error
    official = import_alpaca_eval("alpaca_eval.metrics.winrate").get_winrate(pd.DataFrame(annotations))
    assert metrics["win_rate"] == pytest.approx(official["win_rate"], abs=1e-9)
    assert metrics["standard_error"] == pytest.approx(official["standard_error"], abs=1e-9)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n_total"] == N and saved["judge_requests"] == N and saved["n_missing"] == 0
    assert (saved["annotator"], saved["judge_model"]) == ("weighted_alpaca_eval_gpt4_turbo", "judge-model")
    assert saved["lc_variant"] == "inpo:length_only"  # no df_gamed.csv here: the metrics say which LC it is

    # an interrupted evaluation resumes from the judge's cache: a rerun pays for nothing
    rerun = evaluate.run(cfg)
    assert len(server.state["requests"]) == N and rerun["judge_cached"] == N
    assert rerun["win_rate"] == metrics["win_rate"]


def test_arena_hard_end_to_end(policy, tmp_path, server):
    cfg = evaluate_config("arena_hard_v0.1", policy, tmp_path, server, f"eval.questions={ARENA}/question.jsonl",
                          f"eval.baseline_answers={ARENA}/model_answer/gpt-4-0314.jsonl", "eval.bootstrap_rounds=50",
                          f"judge.judge_config={ARENA}/judge_config.yaml")
    metrics = evaluate.run(cfg)
    assert len(server.state["requests"]) == 2 * N  # both orders

    judgments = pd.read_json(tmp_path / "model_judgment" / "judge-model" / "tiny.jsonl", lines=True)
    questions = pd.read_json(ARENA / "question.jsonl", lines=True).head(N)
    assert list(judgments["uid"]) == list(questions["uid"])
    assert set(judgments["model"]) == {"tiny"} and set(judgments["baseline"]) == {"gpt-4-0314"}
    # game 1 shows the (much longer) baseline answer as A, game 2 as B: the server's verdicts say so
    assert {g[0]["score"] for g in judgments["games"]} == {"A>>B"} and {g[1]["score"] for g in judgments["games"]} == {"B>>A"}
    answers = pd.read_json(tmp_path / "model_answer" / "tiny.jsonl", lines=True)
    assert list(answers["uid"]) == list(questions["uid"]) and set(answers["model"]) == {"tiny"}
    assert metrics["score"] == 0.0 and metrics["ci_lower"] == 0.0 and metrics["ci_upper"] == 0.0

    # the command-line scorer reads the same file and agrees
    scored = subprocess.run([sys.executable, "-m", "inpo.score", "arena_hard",
                             str(tmp_path / "model_judgment" / "judge-model" / "tiny.jsonl"), "--rounds", "50"],
                            capture_output=True, text=True, check=True)
    assert json.loads(scored.stdout)["score"] == metrics["score"]


def test_a_benchmark_without_its_files_says_how_to_fetch_them(policy, tmp_path, server):
    cfg = evaluate_config("arena_hard_v0.1", policy, tmp_path, server, f"eval.questions={tmp_path}/nope/question.jsonl",
                          f"judge.judge_config={ARENA}/judge_config.yaml")
    with pytest.raises(FileNotFoundError, match=r"python -m inpo.benchmarks.download arena_hard_v0.1"):
        evaluate.run(cfg)


def test_a_benchmark_refuses_a_judge_of_the_wrong_kind(policy, tmp_path):
    cfg = load_config("evaluate", ["eval=alpaca_eval_2", "judge=synthetic_preference", f"policy={policy}",
                                   f"output_dir={tmp_path}", f"eval.reference_outputs={ALPACA}"])
    with pytest.raises(ValueError, match="needs a judge of kind 'alpaca_eval_api'"):
        evaluate.run(cfg)
