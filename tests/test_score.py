"""The scoring command ``python -m inpo.score``, run as a real subprocess.

- ``alpaca_eval`` on the three official annotation files prints the published win rate and
  standard error (shared/benchmarks/README.md) and a length-controlled win rate.
- ``arena_hard`` on judgments built here prints the weighted win fraction counted by hand,
  a bootstrap interval around it, and, for several files, every model's figures.
- Unusable input: one line on stderr, exit status 2, no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inpo.records import write_jsonl

SHARED = Path(__file__).resolve().parents[2] / "shared"
ANNOTATIONS = SHARED / "benchmarks" / "alpaca_eval_2" / "annotations"
PUBLISHED = {  # AlpacaEval 2.0 leaderboard: win_rate, standard_error
    "gemma-7b-it": (6.937294379677018, 0.7869665731853178),
    "claude-2.1": (15.733506736409938, 1.120315865445773),
    "gpt-3.5-turbo-1106": (9.177964561962735, 0.8904117511864436),
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inpo.score", *map(str, args)], capture_output=True, text=True, timeout=300)


def output(*args: str) -> dict:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason=f"the shared AlpacaEval fixtures are absent ({ANNOTATIONS})")
@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_alpaca_eval_prints_the_published_figures(model):
    result = output("alpaca_eval", ANNOTATIONS / f"{model}.json")
    assert result["win_rate"] == pytest.approx(PUBLISHED[model][0], abs=1e-6)
    assert result["standard_error"] == pytest.approx(PUBLISHED[model][1], abs=1e-6)
    assert result["generator"] == model and result["n_total"] == 805
    # their answers are shorter than the reference's, so controlling for length raises the win rate
    assert result["win_rate"] < result["length_controlled_winrate"] < 50
    assert 0 < result["lc_standard_error"] < 10


def judgment(uid, model, game1, game2):
    games = [None if v is None else {"score": v, "judgment": {"answer": f"... [[{v}]]"}, "prompt": None} for v in (game1, game2)]
    return {"uid": uid, "category": "arena-hard-v0.1", "judge": "gpt-4-1106-preview", "model": model,
            "baseline": "gpt-4-0314", "games": games}


# (game 1 verdict, game 2 verdict) -> the model's weighted battles, counted by hand
# (game 1: A = the baseline; game 2: A = the model; >> counts 3 times)
HAND = [
    (("B>>A", "A>B"), [1, 1, 1, 1]),
    (("A>B", "B>A"), [0, 0]),
    (("A=B", "A=B"), [0.5, 0.5]),
    ((None, "A>>B"), [1, 1, 1]),
    (("A>>B", "B>>A"), [0, 0, 0, 0, 0, 0]),
]


def hand_judgments(model, copies):
    return [judgment(f"q{i}-{k}", model, *pair) for k in range(copies) for i, (pair, _) in enumerate(HAND)]


def hand_score(copies):
    outcomes = [o for _ in range(copies) for _, battles in HAND for o in battles]
    return 100 * sum(outcomes) / len(outcomes), len(outcomes)


def test_arena_hard_prints_the_score_and_interval(tmp_path):
    path = tmp_path / "my-model.jsonl"
    write_jsonl(path, hand_judgments("my-model", 20))
    result = output("arena_hard", path, "--rounds", "200", "--seed", "3")
    expected, n_battles = hand_score(20)  # 20 x (4 + 0 + 1 + 3 + 0) / 20 x (4 + 2 + 2 + 3 + 6)
    assert expected == pytest.approx(100 * 8 / 17)
    assert result["score"] == pytest.approx(expected, abs=1e-9)
    assert (result["model"], result["baseline"], result["n_battles"], result["n_judgments"], result["n_games_dropped"]) == (
        "my-model", "gpt-4-0314", n_battles, 100, 20)
    lower, upper = result["ci"]
    assert lower < expected - 2 and expected + 2 < upper < 100
    assert output("arena_hard", path, "--rounds", "200", "--seed", "3")["ci"] == result["ci"]  # seeded
    assert output("arena_hard", path, "--rounds", "200", "--seed", "4")["ci"] != result["ci"]
    weight_one = output("arena_hard", path, "--weight", "1", "--rounds", "10")["score"]
    assert weight_one == pytest.approx(100 * 4 / 9)  # 2 + 0 + 1 + 1 + 0 of 2 + 2 + 2 + 1 + 2 battles


def test_arena_hard_scores_several_models_jointly(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", hand_judgments("a", 10))
    write_jsonl(tmp_path / "b.jsonl", [judgment(f"q{i}", "b", "B>A", "A=B") for i in range(30)])
    result = output("arena_hard", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--baseline", "gpt-4-0314")
    assert result["baseline"] == "gpt-4-0314" and set(result["models"]) == {"a", "b"}
    assert result["models"]["a"]["score"] == pytest.approx(hand_score(10)[0], abs=1e-9)
    assert result["models"]["b"]["score"] == pytest.approx(75.0, abs=1e-9)


def assert_one_line_error(done, *fragments):
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_bad_input_is_one_line_and_status_2(tmp_path):
    assert_one_line_error(run("alpaca_eval", tmp_path / "absent.json"), "absent.json: no such file")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "q",\n oops}]')
    assert_one_line_error(run("alpaca_eval", broken), "broken.json:2: not valid JSON")
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"instruction": "q", "output_1": "a", "output_2": "b", "preference": 2.0}]))
    assert_one_line_error(run("alpaca_eval", short), "short.json", "need at least 2 judgments")
    judgments = tmp_path / "j.jsonl"
    write_jsonl(judgments, hand_judgments("m", 1))
    assert_one_line_error(run("arena_hard", judgments, "--baseline", "gpt-4o"), "baselines ['gpt-4-0314'], not 'gpt-4o'")
    judgments.write_text(judgments.read_text() + "{not json\n")
    assert_one_line_error(run("arena_hard", judgments), "j.jsonl:6: not valid JSON")


def test_a_byte_that_is_not_utf8_is_one_line_naming_file_line_and_column(tmp_path):
    latin = tmp_path / "latin1.json"
    latin.write_bytes(b'[{"instruction": "q",\n  "output_1": "caf\xe9"}]')
    assert_one_line_error(run("alpaca_eval", latin), f"{latin}:2: not UTF-8 (byte 0xe9 at column 19)")
    judgments = tmp_path / "j.jsonl"
    write_jsonl(judgments, hand_judgments("m", 1))
    judgments.write_bytes(judgments.read_bytes() + b'{"uid": "\xff"}\n')
    assert_one_line_error(run("arena_hard", judgments), f"{judgments}:6: not UTF-8 (byte 0xff at column 10)")
