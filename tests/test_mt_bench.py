"""MT-Bench (``eval=mt_bench``): FastChat's files and single-answer grading (inpo.benchmarks.mt_bench),
the judge over a local OpenAI-compatible server (inpo.judges.mt_bench, tests/openai_server.py) and
the evaluation end to end with a tiny policy and a few of the real questions
(../shared/benchmarks/mt_bench).

FastChat's own ``fastchat.llm_judge`` (fschat, dev extra) is the oracle where it is installed: its
loaders read the files written here, its ``run_judge_single`` builds the requests and parses the
ratings these tests compare with, and its ``show_result.display_result_single`` computes the score."""

from __future__ import annotations

import importlib
import json
import sys
import types
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from inpo import evaluate, sampling
from inpo import score as score_command
from inpo.benchmarks import mt_bench
from inpo.config import load_config
from inpo.judges import make_judge
from inpo.judges.api_client import ApiError
from inpo.judges.mt_bench import MTBenchJudge
from inpo.records import RecordError
from inpo.tiny_models import run as build_tiny_model
from inpo.workflow_config import WorkflowConfigError, check_workflow_config
from openai_server import mt_bench_rating, mt_bench_reply

ROOT = Path(__file__).resolve().parents[1]
MT_BENCH = ROOT.parent / "shared" / "benchmarks" / "mt_bench"
QUESTIONS, REFERENCES, PROMPTS = (MT_BENCH / "question.jsonl", MT_BENCH / "reference_answer" / "gpt-4.jsonl",
                                  MT_BENCH / "judge_prompts.jsonl")
needs_files = pytest.mark.skipif(not MT_BENCH.is_dir(), reason=f"the shared MT-Bench fixtures are absent ({MT_BENCH})")
FAST = {"initial_backoff_s": 0.001, "max_backoff_s": 0.002}
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")


def fastchat(module: str = "fastchat.llm_judge.common"):
    """A module of FastChat's llm_judge (the fschat package, dev extra), or skip. Its common.py
    imports ``anthropic`` at the top for the Claude judges, never called here: a stand-in module is
    present while it imports when anthropic is not installed."""
    pytest.importorskip("fastchat", reason="fschat (dev extra) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        try:
            import anthropic  # noqa: F401
        except ImportError:
            patch.setitem(sys.modules, "anthropic", types.ModuleType("anthropic"))
        try:
            return importlib.import_module(module)
        except ImportError as err:  # e.g. openai, which it imports too
            pytest.skip(f"{module} cannot be imported: {err}")


def fastchat_judging(common, monkeypatch, reply):
    """FastChat's judging with its API call replaced: ``chat_completion_openai`` records what it
    would send and answers ``reply(messages)``; returns the list of recorded calls."""
    calls = []

    def completion(model, conv, temperature, max_tokens, api_dict=None):
        messages = conv.to_openai_api_messages()
        calls.append({"model": model, "messages": messages, "n": 1, "temperature": temperature, "max_tokens": max_tokens})
        return reply(messages)

    monkeypatch.setattr(common, "chat_completion_openai", completion)
    return calls


# --- files, prompts and ratings --------------------------------------------------------------------

RATINGS = [  # (judge reply, rating): FastChat's [[N]], its backup [N], and none
    ("The answer is helpful.\n\nRating: [[5]]", 5),
    ("Rating: [[8.5]]", 8.5),
    ("Rating: [[10]]", 10),
    ("Rating: [[7.]]", 7.0),
    ("I would rate it [6] out of 10.", 6),
    ("Step [1] is wrong, but overall: Rating: [[4]]", 4),  # [[N]] wins over an earlier [N]
    ("Rating: [3] ... no, Rating: [[2]]", 2),
    ("Scores [[3]] and [[9]]", 3),  # the first [[N]]
    ("Rating: 7/10", -1),
    ("Rating: [[seven]]", -1),
    ("", -1),
]


@pytest.mark.parametrize("reply, rating", RATINGS)
def test_rating_is_parsed_as_fastchat_parses_it(reply, rating):
    parsed = mt_bench.parse_rating(reply)
    assert parsed == rating and type(parsed) is type(rating)


def test_ratings_agree_with_fastchats_run_judge_single(monkeypatch):
    common = fastchat()
    judge = common.Judge("gpt-4", {"name": "single-v1", "system_prompt": "S", "prompt_template": "{question} {answer}",
                                   "output_format": "[[rating]]", "type": "single"})
    for reply, rating in RATINGS:
        fastchat_judging(common, monkeypatch, lambda messages: reply)
        official, _, _ = common.run_judge_single({"turns": ["Q"]}, {"choices": [{"turns": ["A"]}]}, judge, None)
        assert official == rating == mt_bench.parse_rating(reply) and type(official) is type(rating)


@pytest.mark.parametrize("category", CATEGORIES)
def test_the_prompt_for_each_category_and_turn(category):
    with_reference = category in ("math", "reasoning", "coding")
    assert mt_bench.prompt_name(category, 1) == ("single-math-v1" if with_reference else "single-v1")
    assert mt_bench.prompt_name(category, 2) == ("single-math-v1-multi-turn" if with_reference else "single-v1-multi-turn")


@needs_files
def test_prompts_are_chosen_and_filled_as_fastchats_gen_judgment_does(monkeypatch):
    """For one real question of each category, both turns: FastChat's make_judge_single /
    make_match_single / play_a_match_single (the request it would send) against grading_items."""
    common, gen_judgment = fastchat(), fastchat("fastchat.llm_judge.gen_judgment")
    questions = [next(q for q in mt_bench.read_questions(QUESTIONS) if q["category"] == c) for c in CATEGORIES]
    answers = [[f"answer 1 to {q['question_id']} {{braces}}", f"answer 2 to {q['question_id']}"] for q in questions]
    references = mt_bench.read_answers(REFERENCES)
    ours = mt_bench.grading_items(questions, answers, mt_bench.read_judge_prompts(PROMPTS), references)

    calls = fastchat_judging(common, monkeypatch, lambda messages: "Rating: [[5]]")
    judges = gen_judgment.make_judge_single("gpt-4", common.load_judge_prompts(str(PROMPTS)))
    model_answers = {"m": {q["question_id"]: {"choices": [{"index": 0, "turns": a}]} for q, a in zip(questions, answers)}}
    ref_answers = {"gpt-4": common.load_model_answers(str(REFERENCES.parent))["gpt-4"]}
    official = {}
    for multi_turn in (False, True):
        for q in questions:
            math = q["category"] in common.NEED_REF_CATS
            judge = judges[("math" if math else "default") + ("-mt" if multi_turn else "")]
            match, = gen_judgment.make_match_single([q], ["m"], model_answers, judge,
                                                    ref_answers=ref_answers if math else None, multi_turn=multi_turn)
            result = common.play_a_match_single(match, output_file=None)
            official[q["question_id"], result["turn"]] = (result["judge"][1], result["user_prompt"], calls[-1])
    assert len(ours) == len(official) == 2 * len(CATEGORIES)
    for item in ours:
        name, user_prompt, call = official[item["question_id"], item["turn"]]
        assert (item["prompt_name"], item["user_prompt"]) == (name, user_prompt)
        assert {"model": "gpt-4", **MTBenchJudge.request(item["system_prompt"], item["user_prompt"])} == call


@needs_files
def test_the_real_files_read():
    questions = mt_bench.read_questions(QUESTIONS)
    assert len(questions) == 80 and {q["category"] for q in questions} == set(CATEGORIES)
    references = mt_bench.read_answers(REFERENCES)
    assert {q["question_id"] for q in questions if q["category"] in mt_bench.NEED_REF_CATS} <= set(references)
    assert all(len(turns) == 2 for turns in references.values())
    prompts = mt_bench.read_judge_prompts(PROMPTS)
    assert set(prompts) == set(mt_bench.PROMPT_NAMES.values())


@pytest.mark.parametrize("line, message", [
    ('{"question_id": 1, "category": "math", "turns": ["only one"]}', r"q.jsonl:2: turns must be a list of 2 strings"),
    ('{"question_id": 81, "category": "math", "turns": ["a", "b"]}', r"q.jsonl:2: duplicate question_id 81 \(first on line 1\)"),
    ('{"question_id": true, "category": "math", "turns": ["a", "b"]}', r"q.jsonl:2: question_id must be"),
    ('{"question_id": 2, "turns": ["a", "b"]}', r"q.jsonl:2: category must be a string"),
    ('{"question_id": 2, ', r"q.jsonl:2: not valid JSON"),
])
def test_a_bad_question_names_its_file_and_line(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 81, "category": "writing", "turns": ["a", "b"]}\n' + line + "\n")
    with pytest.raises(RecordError, match=message):
        mt_bench.read_questions(path)


@needs_files
def test_judge_prompts_missing_or_of_another_format_are_named(tmp_path):
    lines = PROMPTS.read_text().splitlines()
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(line for line in lines if '"single-math-v1-multi-turn"' not in line) + "\n")
    with pytest.raises(RecordError, match=r"p.jsonl: no judge prompt named \['single-math-v1-multi-turn'\]"):
        mt_bench.read_judge_prompts(path)
    changed = [json.loads(line) for line in lines]
    number = next(i for i, p in enumerate(changed) if p["name"] == "single-v1")
    changed[number]["output_format"] = "[[A]]"
    path.write_text("".join(json.dumps(p) + "\n" for p in changed))
    with pytest.raises(RecordError, match=rf"p.jsonl:{number + 1}: judge prompt 'single-v1' must have .*'\[\[rating\]\]'"):
        mt_bench.read_judge_prompts(path)


def show_result_frames(show_result, path: Path, monkeypatch) -> list:
    """The tables FastChat's ``display_result_single`` prints for a judgment file: turn 1, turn 2, average."""
    printed = []
    monkeypatch.setattr(show_result, "print", lambda *args: printed.extend(a for a in args if isinstance(a, pd.DataFrame)),
                        raising=False)
    show_result.display_result_single(Namespace(input_file=str(path), bench_name="mt_bench", model_list=None,
                                                judge_model="gpt-4"))
    return printed


def random_judgments() -> list[dict]:
    """80 judgments of one model, a rating 1-10 (one 7.5) or -1 (none) each."""
    rng = np.random.default_rng(3)
    items = [{"question_id": q, "turn": t, "prompt_name": "single-v1", "user_prompt": "u"} for q in range(40) for t in (1, 2)]
    scores = [int(s) if s > 0 else -1 for s in rng.integers(-2, 11, len(items))]
    scores[5] = 7.5  # a rating with a point
    return [mt_bench.judgment_record(i, "m", "gpt-4", f"Rating: [[{s}]]", s) for i, s in zip(items, scores)]


def test_the_score_is_the_mean_of_the_ratings(tmp_path):
    judgments = random_judgments()
    scores = [j["score"] for j in judgments]
    result = mt_bench.score(judgments)

    # recomputed independently: means over the judgments with a rating
    kept = [(j["turn"], j["score"]) for j in judgments if j["score"] != -1]
    assert result["score"] == pytest.approx(np.mean([s for _, s in kept]), abs=1e-12)
    for turn in (1, 2):
        assert result[f"score_turn_{turn}"] == pytest.approx(np.mean([s for t, s in kept if t == turn]), abs=1e-12)
        assert result[f"n_ratings_turn_{turn}"] == sum(t == turn for t, _ in kept)
    assert result["n_ratings"] == len(kept) and result["n_missing_ratings"] == scores.count(-1) > 0

    path = tmp_path / "gpt-4_single.jsonl"
    mt_bench.write_records(path, judgments)
    assert mt_bench.read_judgments(path) == judgments


def test_the_scoring_command_reads_a_judgment_file(tmp_path, capsys):
    judgments = random_judgments()
    path = tmp_path / "gpt-4_single.jsonl"
    mt_bench.write_records(path, judgments)
    assert score_command.main(["mt_bench", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": "m", **mt_bench.score(judgments)}
    other = tmp_path / "other.jsonl"
    mt_bench.write_records(other, [{**j, "model": "n", "score": 5} for j in judgments[:4]])
    assert score_command.main(["mt_bench", str(path), str(other)]) == 0
    both = json.loads(capsys.readouterr().out)["models"]
    assert both["m"] == mt_bench.score(judgments) and both["n"]["score"] == 5 and both["n"]["n_ratings"] == 4
    other.write_text('{"question_id": 1, "model": "n", "score": "8", "turn": 1}\n')
    assert score_command.main(["mt_bench", str(other)]) == 2
    assert "other.jsonl:1: score must be a number" in capsys.readouterr().err


def test_the_score_is_show_results(tmp_path, monkeypatch):
    judgments = random_judgments()
    result = mt_bench.score(judgments)
    path = tmp_path / "gpt-4_single.jsonl"
    mt_bench.write_records(path, judgments)
    turn_1, turn_2, average = show_result_frames(fastchat("fastchat.llm_judge.show_result"), path, monkeypatch)
    assert result["score_turn_1"] == pytest.approx(turn_1.loc[("m", 1), "score"], abs=1e-12)
    assert result["score_turn_2"] == pytest.approx(turn_2.loc[("m", 2), "score"], abs=1e-12)
    assert result["score"] == pytest.approx(average.loc["m", "score"], abs=1e-12)


def test_no_rating_at_all_scores_none():
    item = {"question_id": 1, "turn": 1, "prompt_name": "single-v1", "user_prompt": "u"}
    result = mt_bench.score([mt_bench.judgment_record(item, "m", "gpt-4", "?", -1)])
    assert result["score"] is None and result["n_ratings"] == 0 and result["n_missing_ratings"] == 1


def test_answer_and_judgment_records_load_in_fastchat(tmp_path):
    question = {"question_id": 81, "category": "writing", "turns": ["Q1", "Q2"]}
    record = mt_bench.answer_record(question, ["A1 é", "A2"], "tiny", tstamp=1.0)
    assert record == {"question_id": 81, "answer_id": mt_bench.answer_id("tiny", 81), "model_id": "tiny",
                      "choices": [{"index": 0, "turns": ["A1 é", "A2"]}], "tstamp": 1.0}
    assert len(record["answer_id"]) == 22  # as FastChat's shortuuids
    mt_bench.write_records(tmp_path / "model_answer" / "tiny.jsonl", [record])
    assert mt_bench.read_answers(tmp_path / "model_answer" / "tiny.jsonl") == {81: ["A1 é", "A2"]}
    item = {"question_id": 81, "turn": 2, "prompt_name": "single-v1-multi-turn", "user_prompt": "u"}
    judgment = mt_bench.judgment_record(item, "tiny", "gpt-4", "Rating: [[6]]", 6, tstamp=2.0)
    assert judgment == {"question_id": 81, "model": "tiny", "judge": ["gpt-4", "single-v1-multi-turn"], "user_prompt": "u",
                        "judgment": "Rating: [[6]]", "score": 6, "turn": 2, "tstamp": 2.0}
    mt_bench.write_records(tmp_path / "gpt-4_single.jsonl", [judgment])
    assert mt_bench.read_judgments(tmp_path / "gpt-4_single.jsonl") == [judgment]

    common = fastchat()  # FastChat's loaders read both files
    assert common.load_model_answers(str(tmp_path / "model_answer")) == {"tiny": {81: record}}
    loaded = common.load_single_model_judgments(str(tmp_path / "gpt-4_single.jsonl"))
    assert loaded == {("gpt-4", "single-v1-multi-turn"): {(81, "tiny"): {"score": 6, "judgment": "Rating: [[6]]"}}}


# --- the judge over HTTP ---------------------------------------------------------------------------

def judge(server, tmp_path=None, **options) -> MTBenchJudge:
    return make_judge(kind="mt_bench_api", base_url=server.base_url, api_key_env=None, **FAST,
                      cache=str(tmp_path / "cache.jsonl") if tmp_path else None, **options)


def test_the_judge_grades_and_counts_replies_without_a_rating(server, tmp_path):
    grader = judge(server, tmp_path)
    assert grader.client.model == "gpt-4"  # FastChat's default judge
    single = "[The Start of Assistant's Answer]\n{}\n[The End of Assistant's Answer] [[rating]]"
    items = [("S", single.format("four")), ("S", single.format("BACKUP_RATING six")), ("S", single.format("NO_RATING")),
             ("S", single.format("REJECT_ME"))]
    grades = grader.grade_many(items)
    assert [g["score"] for g in grades] == [mt_bench_rating("four"), mt_bench_rating("BACKUP_RATING six"), -1, -1]
    assert [g["error"] is None for g in grades] == [True, True, True, False]
    assert grades[2]["judgment"] == "I cannot judge this."
    assert grades[3]["judgment"].startswith("$ERROR$ ") and "content filter" in grades[3]["error"]
    bodies = [r["body"] for r in server.state["requests"]]
    assert sorted(json.dumps(b, sort_keys=True) for b in bodies) == sorted(
        json.dumps({"model": "gpt-4", "messages": [{"role": "system", "content": s}, {"role": "user", "content": u}],
                    "n": 1, "temperature": 0, "max_tokens": 2048}, sort_keys=True) for s, u in items)

    # only the replies with a rating were cached: a rerun asks again for the other two
    again = judge(server, tmp_path)
    assert [g["score"] for g in again.grade_many(items)] == [g["score"] for g in grades]
    assert again.n_cached == 2 and len(server.state["requests"]) == 6


@needs_files
def test_the_judge_compares_two_answers_by_their_ratings(server):
    grader = judge(server, judge_prompts=str(PROMPTS))
    # the server rates 1 + len mod 10: "abc" 4, "abcdef" 7, "xyz" 4
    assert grader.compare_many([({"prompt": "Q"}, "abcdef", "abc"), ({"prompt": "Q"}, "abc", "abcdef"),
                                ({"prompt": "Q"}, "abc", "xyz")]) == [1.0, 0.0, 0.5]
    assert all(r["body"]["messages"][0]["content"] == "You are a helpful assistant." for r in server.state["requests"])
    with pytest.raises(ApiError, match="no rating to an answer to prompt 'p7'"):  # never a silent tie
        grader.compare({"id": "p7", "prompt": "NO_RATING"}, "abcdef", "abc")


def test_the_judge_needs_its_prompts_to_compare(server):
    with pytest.raises(ValueError, match="judge_prompts"):
        judge(server).compare({"prompt": "Q"}, "a", "b")


# --- end to end ------------------------------------------------------------------------------------

SELECTED = {81: "writing", 101: "reasoning", 121: "coding", 141: "stem", 151: "humanities"}  # the last beyond eval.limit


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "policy"
    build_tiny_model(load_config("tiny_models", ["kind=policy", f"output={folder}"]))
    return folder


@needs_files
def test_mt_bench_end_to_end(policy, tmp_path, server, monkeypatch):
    # real questions of five categories; turn 2 of two of them carries the server's markers: one reply
    # without a rating, one request the server rejects (HTTP 400)
    questions = [q for q in mt_bench.read_questions(QUESTIONS) if q["question_id"] in SELECTED]
    marked = {81: "REJECT_ME", 141: "NO_RATING"}
    for q in questions:
        q["turns"][1] += f" {marked[q['question_id']]}" if q["question_id"] in marked else ""
    question_file = tmp_path / "question.jsonl"
    question_file.write_text("".join(json.dumps(q) + "\n" for q in questions))
    seen = []  # (temperature, prompts) of every generate call
    generate = sampling.HFSampler.generate
    monkeypatch.setattr(sampling.HFSampler, "generate",
                        lambda self, prompts, *a, **k: seen.append((self.temperature, prompts)) or generate(self, prompts, *a, **k))
    out = tmp_path / "out"
    cfg = load_config("evaluate", ["eval=mt_bench", f"policy={policy}", f"output_dir={out}", f"judge.base_url={server.base_url}",
                                   "judge.api_key_env=null", f"eval.questions={question_file}",
                                   f"eval.reference_answers={REFERENCES}", f"eval.judge_prompts={PROMPTS}",
                                   "eval.limit=4", "eval.generation.max_new_tokens=8", "generator=tiny"])
    metrics = evaluate.run(cfg)
    questions = questions[:4]

    # answers: FastChat's format, both turns; turn 2 was generated after the policy's own turn 1
    answers = {r["question_id"]: r for r in map(json.loads, (out / "model_answer" / "tiny.jsonl").read_text().splitlines())}
    assert list(answers) == [q["question_id"] for q in questions]
    temperatures = {81: 0.7, 101: 0.0, 121: 0.0, 141: 0.1}  # FastChat's temperature_config
    assert sorted(t for t, _ in seen) == sorted([0.0, 0.0, 0.1, 0.1, 0.7, 0.7])  # one batch per temperature and turn
    prompts = {(p[0]["content"], len(p)): (t, p) for t, batch in seen for p in batch}
    for q in questions:
        turns = answers[q["question_id"]]["choices"][0]["turns"]
        t1, first = prompts[q["turns"][0], 1]
        t2, second = prompts[q["turns"][0], 3]
        assert first == [{"role": "user", "content": q["turns"][0]}]
        assert second == [{"role": "user", "content": q["turns"][0]}, {"role": "assistant", "content": turns[0]},
                          {"role": "user", "content": q["turns"][1]}]
        assert t1 == t2 == temperatures[q["question_id"]]

    # judgments: one per turn; the server's ratings, -1 where it gave none or refused the request
    judgment_file = out / "model_judgment" / "gpt-4_single.jsonl"
    judgments = mt_bench.read_judgments(judgment_file)
    assert len(judgments) == 8 and len(server.state["requests"]) == 8
    for j in judgments:
        answer = answers[j["question_id"]]["choices"][0]["turns"][j["turn"] - 1]
        if (j["question_id"], j["turn"]) == (81, 2):
            assert j["score"] == -1 and j["judgment"].startswith("$ERROR$") and "content filter" in j["judgment"]
        elif (j["question_id"], j["turn"]) == (141, 2):
            assert j["score"] == -1 and j["judgment"] == "I cannot judge this."
        else:
            assert j["score"] == mt_bench_rating(answer)
    assert metrics["n_missing_ratings"] == 2 and metrics["n_judge_errors"] == 1 and metrics["judge_rejected"] == 1
    assert metrics["n_ratings"] == 6 and metrics["judge_model"] == "gpt-4" and metrics["n_questions"] == 4
    rated = [j for j in judgments if j["score"] != -1]
    assert metrics["score"] == pytest.approx(np.mean([j["score"] for j in rated]), abs=1e-12)
    assert metrics["score_turn_2"] == pytest.approx(np.mean([j["score"] for j in rated if j["turn"] == 2]), abs=1e-12)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {"answers_cut", "prompts_truncated"} <= set(metrics)

    # a rerun pays only for the judgments without a rating (they were not cached)
    sent = sorted(json.dumps(r["body"], sort_keys=True) for r in server.state["requests"])
    rerun = evaluate.run(cfg)
    assert rerun["judge_cached"] == 6 and len(server.state["requests"]) == 10

    # FastChat's own judging of the same answers sends the same requests and records the same judgments
    common, gen_judgment = fastchat(), fastchat("fastchat.llm_judge.gen_judgment")
    calls = fastchat_judging(common, monkeypatch, lambda messages: "$ERROR$" if "REJECT_ME" in json.dumps(messages)
                             else mt_bench_reply(messages)["message"]["content"])
    official_questions = common.load_questions(str(question_file), None, 4)
    model_answers = common.load_model_answers(str(out / "model_answer"))
    ref_answers = {"gpt-4": common.load_model_answers(str(REFERENCES.parent))["gpt-4"]}
    judges = gen_judgment.make_judge_single("gpt-4", common.load_judge_prompts(str(PROMPTS)))
    official = []
    for multi_turn in (False, True):
        for q in official_questions:
            math = q["category"] in common.NEED_REF_CATS
            judge_ = judges[("math" if math else "default") + ("-mt" if multi_turn else "")]
            for match in gen_judgment.make_match_single([q], ["tiny"], model_answers, judge_,
                                                        ref_answers=ref_answers if math else None, multi_turn=multi_turn):
                official.append(common.play_a_match_single(match, output_file=None))
    assert sent == sorted(json.dumps(c, sort_keys=True) for c in calls)
    key = lambda j: (j["question_id"], j["turn"])  # noqa: E731
    for ours, theirs in zip(sorted(judgments, key=key), sorted(official, key=key)):
        same = ("question_id", "model", "user_prompt", "score", "turn")
        assert {k: ours[k] for k in same} == {k: theirs[k] for k in same} and ours["judge"] == list(theirs["judge"])
    # ... and its show_result reads our file to the same score
    turn_1, turn_2, average = show_result_frames(fastchat("fastchat.llm_judge.show_result"), judgment_file, monkeypatch)
    assert metrics["score"] == pytest.approx(average.loc["tiny", "score"], abs=1e-12)
    assert metrics["score_turn_1"] == pytest.approx(turn_1.loc[("tiny", 1), "score"], abs=1e-12)


@needs_files
def test_mt_bench_refuses_a_temperature_for_all_and_a_judge_of_another_kind(policy, tmp_path):
    base = ["eval=mt_bench", f"policy={policy}", f"output_dir={tmp_path}", f"eval.questions={QUESTIONS}",
            f"eval.reference_answers={REFERENCES}", f"eval.judge_prompts={PROMPTS}"]
    with pytest.raises(ValueError, match=r"eval.temperatures.<category>.*not eval.generation.temperature"):
        evaluate.run(load_config("evaluate", [*base, "+eval.generation.temperature=0.0", "judge.base_url=http://127.0.0.1:9"]))
    with pytest.raises(ValueError, match=r"eval.temperatures.writing must be a number >= 0, got -1"):
        evaluate.run(load_config("evaluate", [*base, "eval.temperatures.writing=-1", "judge.base_url=http://127.0.0.1:9"]))
    with pytest.raises(ValueError, match="needs a judge of kind 'mt_bench_api'"):
        evaluate.run(load_config("evaluate", [*base, "judge=synthetic_preference"]))


def test_mt_bench_without_its_files_says_how_to_fetch_them(tmp_path):
    cfg = load_config("evaluate", ["eval=mt_bench", f"policy={tmp_path}", f"output_dir={tmp_path}",
                                   f"eval.questions={tmp_path}/nope/question.jsonl"])
    with pytest.raises(FileNotFoundError, match=r"python -m inpo.benchmarks.download mt_bench"):
        evaluate.run(cfg)


def test_the_workflow_accepts_mt_bench(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the reference is the job's to download
    config = {**yaml.safe_load((ROOT / "conf" / "workflow.yaml").read_text()), "reference": "RLHFlow/LLaMA3-SFT",
              "evaluations": ["mt_bench"], "overrides": {"mt_bench": ["eval.limit=3", "eval.temperatures.writing=0.5"]}}
    check_workflow_config(config, ROOT / "conf")
    config["overrides"] = {"mt_bench": ["eval.limt=3"]}
    with pytest.raises(WorkflowConfigError, match=r"overrides.mt_bench=.*limt"):
        check_workflow_config(config, ROOT / "conf")
