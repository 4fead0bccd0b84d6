"""The benchmark judges send the official requests: checked against the official tools themselves
over real HTTP (tests/openai_server.py).

- AlpacaEval 2.0: the alpaca-eval package's own ``PairwiseAnnotator``
  (``weighted_alpaca_eval_gpt4_turbo``) annotates the same outputs against the same server; the
  requests must be identical and the annotations equal.
- Arena-Hard v0.1: each request rebuilt independently from ``judge_config.yaml`` as
  arena-hard-auto's ``gen_judgment.py`` builds it.
"""

import json
from pathlib import Path

import pytest
import yaml

from alpaca_eval_package import import_alpaca_eval
from inpo.benchmarks import alpaca_eval, arena_hard
from inpo.judges.alpaca_eval import AlpacaEvalJudge
from inpo.judges.api_client import ChatClient
from inpo.judges.arena_hard import ArenaHardJudge
from openai_server import SECRET

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
REFERENCES = SHARED / "alpaca_eval_2" / "reference_outputs_gpt4_1106_preview.json"
CLAUDE = SHARED / "alpaca_eval_2" / "annotations" / "claude-2.1.json"
ARENA = SHARED / "arena-hard-v0.1"
N = 10  # instructions / questions in the slice


def canonical(bodies) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in bodies)


@pytest.mark.skipif(not REFERENCES.is_file() or not CLAUDE.is_file(), reason=f"no AlpacaEval files in {SHARED}")
def test_alpaca_eval_requests_and_annotations_equal_the_packages_own_annotator(server, tmp_path):
    references = json.loads(REFERENCES.read_text())[:N]
    outputs = [a["output_2"] for a in json.loads(CLAUDE.read_text())[:N]]  # a real model's outputs
    outputs[3] = references[3]["output"]  # identical outputs: a draw, nobody asks
    outputs[5] = "REFUSE " + outputs[5]  # the server answers without a label among the top log-probs
    judge = AlpacaEvalJudge(ChatClient(server.base_url, "gpt-4-1106-preview", api_key_env="INPO_TEST_KEY"))
    ours = alpaca_eval.annotate(judge, references, outputs, "claude-2.1")
    our_requests = [r["body"] for r in server.state["requests"]]
    server.state["requests"].clear()

    client_config = tmp_path / "openai_configs.yaml"
    client_config.write_text(yaml.safe_dump({"default": [{"api_key": SECRET, "base_url": server.base_url}]}))
    annotators = import_alpaca_eval("alpaca_eval.annotators")
    official = annotators.PairwiseAnnotator(annotators_config=alpaca_eval.ANNOTATOR, caching_path=tmp_path / "ae.json")
    theirs = official.annotate_head2head(
        outputs_1=[{"instruction": r["instruction"], "output": r["output"], "generator": r["generator"]} for r in references],
        outputs_2=[{"instruction": r["instruction"], "output": o, "generator": "claude-2.1"} for r, o in zip(references, outputs)],
        client_config_path=str(client_config))
    their_requests = [r["body"] for r in server.state["requests"]]

    assert len(our_requests) == N - 1  # the identical pair is not sent
    assert canonical(our_requests) == canonical(their_requests)  # messages, model and every setting
    assert {k: our_requests[0][k] for k in ("model", "max_tokens", "temperature", "top_p", "logprobs", "top_logprobs")} == {
        "model": "gpt-4-1106-preview", "max_tokens": 1, "temperature": 1, "top_p": 1.0, "logprobs": True, "top_logprobs": 5}

    their_preference = {a["output_2"]: a["preference"] for a in theirs}
    assert their_preference[outputs[5]] is None and ours[5]["preference"] is None  # a refusal: no annotation
    assert ours[3]["preference"] == their_preference[outputs[3]] == 1.5
    for mine in ours:
        if mine["preference"] is not None:
            assert mine["preference"] == pytest.approx(their_preference[mine["output_2"]], abs=1e-12)
    assert len({a["preference"] > 1.5 for a in ours if a["preference"] is not None}) == 2  # wins and losses, both orders
    scores = alpaca_eval.score_annotations(ours)
    assert (scores["n_total"], scores["n_missing"]) == (N - 1, 1)
    official_rate = import_alpaca_eval("alpaca_eval.metrics.winrate").get_winrate(theirs)
    assert scores["win_rate"] == pytest.approx(official_rate["win_rate"], abs=1e-9)


@pytest.mark.skipif(not (ARENA / "judge_config.yaml").is_file(), reason=f"no Arena-Hard files in {ARENA}")
def test_arena_hard_requests_are_judge_config_yamls(server):
    config = yaml.safe_load((ARENA / "judge_config.yaml").read_text())
    questions = arena_hard.read_questions(ARENA / "question.jsonl")[:N]
    baseline = arena_hard.read_answers(ARENA / "model_answer" / "gpt-4-0314.jsonl")
    answers = arena_hard.read_answers(ARENA / "model_answer" / "gpt-3.5-turbo-0125.jsonl")
    judge = ArenaHardJudge(ChatClient(server.base_url, config["judge_model"], api_key_env="INPO_TEST_KEY"),
                           judge_config=str(ARENA / "judge_config.yaml"))
    games = judge.games_many([(q["prompt"], baseline[q["uid"]], answers[q["uid"]]) for q in questions])

    # gen_judgment.py: game 1 A = baseline, game 2 swapped; system prompt, then the templates formatted
    expected = [{"model": config["judge_model"], "temperature": config["temperature"], "max_tokens": config["max_tokens"],
                 "messages": [{"role": "system", "content": config["system_prompt"]},
                              *({"role": "user", "content": t.format(question_1=q["prompt"], answer_1=a, answer_2=b)}
                                for t in config["prompt_template"])]}
                for q in questions
                for a, b in ((baseline[q["uid"]], answers[q["uid"]]), (answers[q["uid"]], baseline[q["uid"]]))]
    assert canonical(r["body"] for r in server.state["requests"]) == canonical(expected)
    assert (config["temperature"], config["max_tokens"], config["number_of_judgment_attempts"]) == (0, 4096, 2)
    assert [g["prompt"] for pair in games for g in pair] == [e["messages"][1]["content"] for e in expected]
    assert all(g["score"] in arena_hard.VERDICTS for pair in games for g in pair)
