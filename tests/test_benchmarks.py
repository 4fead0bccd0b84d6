"""Official benchmark formats (inpo.benchmarks): AlpacaEval 2.0, Arena-Hard v0.1 and the downloader.

- AlpacaEval: the scores of three official annotation files reproduce the published leaderboard
  row (shared/benchmarks/README.md; counts and avg_length from alpaca-eval 0.6.6's leaderboard
  csv); ``annotation`` and ``model_outputs`` rebuild the official records field for field.
- Arena-Hard: verdict parsing and battles per verdict and game; the score and its bootstrap
  interval agree with the official procedure (a Bradley-Terry fit by scikit-learn's
  ``LogisticRegression``, as arena-hard-auto's ``compute_mle_elo``); the shared model answers
  survive read -> record -> write -> read, in both the new and the old format.
- Download: real HTTP from a local server gives byte-identical files; a closed port gives one
  message listing every file, exit status 2 and no files.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from inpo.benchmarks import alpaca_eval, arena_hard, download
from inpo.length_control import length_controlled_win_rate
from inpo.records import RecordError, write_jsonl

SHARED = Path(__file__).resolve().parents[2] / "shared"
ALPACA = SHARED / "benchmarks" / "alpaca_eval_2"
ARENA = SHARED / "benchmarks" / "arena-hard-v0.1"
needs_alpaca = pytest.mark.skipif(not ALPACA.is_dir(), reason=f"the shared AlpacaEval fixtures are absent ({ALPACA})")
needs_arena = pytest.mark.skipif(not ARENA.is_dir(), reason=f"the shared Arena-Hard fixtures are absent ({ARENA})")

# AlpacaEval 2.0 leaderboard (weighted_alpaca_eval_gpt4_turbo, alpaca-eval 0.6.6):
# win_rate, standard_error, n_wins, n_wins_base, n_draws, avg_length
PUBLISHED = {
    "gemma-7b-it": (6.937294379677018, 0.7869665731853178, 50, 754, 1, 1115),
    "claude-2.1": (15.733506736409938, 1.120315865445773, 115, 688, 2, 1096),
    "gpt-3.5-turbo-1106": (9.177964561962735, 0.8904117511864436, 64, 737, 4, 796),
}


# --- AlpacaEval -------------------------------------------------------------------------------


@needs_alpaca
@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_alpaca_eval_scores_reproduce_the_leaderboard(model):
    path = ALPACA / "annotations" / f"{model}.json"
    result = alpaca_eval.score_annotations(path)
    win_rate, standard_error, n_wins, n_wins_base, n_draws, avg_length = PUBLISHED[model]
    assert result["win_rate"] == pytest.approx(win_rate, abs=1e-6)
    assert result["standard_error"] == pytest.approx(standard_error, abs=1e-6)
    assert (result["n_wins"], result["n_wins_base"], result["n_draws"], result["n_total"]) == (n_wins, n_wins_base, n_draws, 805)
    assert (result["avg_length"], result["generator"]) == (avg_length, model)
    # LC: the GLM on character lengths, model = output_2, baseline = output_1
    records = json.loads(path.read_text(encoding="utf-8"))
    fit = length_controlled_win_rate([r["preference"] - 1 for r in records],
                                     [len(r["output_2"]) for r in records], [len(r["output_1"]) for r in records])
    assert result["length_controlled_winrate"] == pytest.approx(fit["length_controlled_winrate"], rel=1e-12)
    assert result["lc_standard_error"] == pytest.approx(fit["lc_standard_error"], rel=1e-12)
    assert (result["lc_variant"], result["n_missing"]) == ("inpo:length_only", 0)  # no df_gamed.csv: not the leaderboard's LC
    # the same figures from the records in memory
    in_memory = alpaca_eval.score_annotations(records)
    assert in_memory.pop("lc_variant") == result.pop("lc_variant")
    assert in_memory.pop("generator") == model and in_memory == pytest.approx({k: v for k, v in result.items() if k != "generator"}, rel=1e-12)


def test_alpaca_eval_scores_by_hand():
    def record(preference, output="xy"):
        return {"instruction": "q", "output_1": "ab", "output_2": output, "preference": preference}

    # y = 1, 0, 0.5 (a draw written as 0), 0.25; a null and an out-of-range preference are dropped
    records = [record(2.0), record(1.0), record(0), record(1.25), record(None), record(2.5)]
    result = alpaca_eval.score_annotations(records)
    y = [1.0, 0.0, 0.5, 0.25]
    assert result["win_rate"] == pytest.approx(43.75, abs=1e-12)
    assert result["standard_error"] == pytest.approx(100 * np.std(y, ddof=1) / 2, abs=1e-12)
    assert (result["n_wins"], result["n_wins_base"], result["n_draws"], result["n_total"], result["n_missing"]) == (1, 2, 1, 4, 2)
    # every output as long as the reference: no length term, recorded as missing with the reason
    assert result["length_controlled_winrate"] is None and "cannot be fitted" in result["lc_missing"]
    with pytest.raises(RecordError, match=r"annotations: record 1 lacks 'output_2'"):
        alpaca_eval.score_annotations([record(2.0), {"instruction": "q", "output_1": "a", "preference": 1.0}])
    mixed = [dict(record(2.0), generator_2="a"), dict(record(1.0), generator_2="b")]
    with pytest.raises(RecordError, match="several models"):
        alpaca_eval.score_annotations(mixed)


def test_a_refusal_is_left_out_of_the_win_rate_not_counted_as_a_draw():
    """../shared/cases/alpaca-refusal-counted-as-draw: three clear losses and one refusal give
    AlpacaEval's 10.0, not the 20.0 of a draw."""
    losses = [alpaca_eval.annotation(f"q{i}", "reference answer " * (i + 1), "my answer " * (i + 2), 1.1,
                                     generator="m", annotator="j") for i in range(3)]
    refusal = alpaca_eval.annotation("q3", "reference", "mine mine", 1 + float("nan"), generator="m", annotator="j")
    result = alpaca_eval.score_annotations(losses + [refusal])
    assert refusal["preference"] is None
    assert result["win_rate"] == pytest.approx(10.0, abs=1e-12) and (result["n_total"], result["n_missing"]) == (3, 1)


@needs_alpaca
def test_annotation_rebuilds_the_official_records(tmp_path):
    records = json.loads((ALPACA / "annotations" / "claude-2.1.json").read_text(encoding="utf-8"))
    rebuilt = [
        alpaca_eval.annotation(r["instruction"], r["output_1"], r["output_2"], r["preference"],
                               generator=r["generator_2"], annotator=r["annotator"], raw_completion=r["raw_completion"],
                               reference_generator=r["generator_1"], dataset=r["dataset"],
                               price_per_example=r["price_per_example"], time_per_example=r["time_per_example"])
        for r in records
    ]
    assert rebuilt == records
    assert list(rebuilt[0]) == list(records[0])  # the official field order
    alpaca_eval.write_annotations(tmp_path / "annotations.json", rebuilt)
    assert json.loads((tmp_path / "annotations.json").read_text(encoding="utf-8")) == records
    for bad in (0, 2.5, True, "2"):
        with pytest.raises(ValueError, match="preference must be a number in"):
            alpaca_eval.annotation("q", "a", "b", bad, generator="m", annotator="j")
    for missing in (None, float("nan")):  # no verdict: written as null, as AlpacaEval leaves it out
        assert alpaca_eval.annotation("q", "a", "b", missing, generator="m", annotator="j")["preference"] is None


@needs_alpaca
def test_reference_and_model_outputs(tmp_path):
    reference = alpaca_eval.read_reference_outputs(ALPACA / "reference_outputs_gpt4_1106_preview.json")
    assert len(reference) == 805 and {r["generator"] for r in reference} == {"gpt4_1106_preview"}
    rebuilt = alpaca_eval.model_outputs([r["instruction"] for r in reference], [r["output"] for r in reference],
                                        "gpt4_1106_preview", datasets=[r["dataset"] for r in reference])
    assert rebuilt == reference and list(rebuilt[0]) == list(reference[0])
    path = tmp_path / "model_outputs.json"
    alpaca_eval.write_model_outputs(path, rebuilt)
    assert alpaca_eval.read_reference_outputs(path) == reference


def test_model_outputs_and_reference_errors(tmp_path):
    outputs = alpaca_eval.model_outputs(["q1", "q2"], ["a1", "a2"], "mine")
    assert outputs == [{"instruction": "q1", "output": "a1", "generator": "mine"},
                       {"instruction": "q2", "output": "a2", "generator": "mine"}]
    with pytest.raises(ValueError, match="2 instructions, 1 outputs"):
        alpaca_eval.model_outputs(["q1", "q2"], ["a1"], "mine")
    with pytest.raises(RecordError, match=r"record 1: 'output' must be a string"):
        alpaca_eval.model_outputs(["q1", "q2"], ["a1", None], "mine")
    path = tmp_path / "ref.json"
    path.write_text(json.dumps([{"instruction": "q", "output": "a", "generator": "g", "dataset": "d"},
                                {"instruction": "q", "generator": "g", "dataset": "d"}]))
    with pytest.raises(RecordError, match=rf"{path}: record 1 lacks 'output'"):
        alpaca_eval.read_reference_outputs(path)
    path.write_text('{"instruction": "q"}')
    with pytest.raises(RecordError, match="expected a non-empty JSON list"):
        alpaca_eval.read_reference_outputs(path)


# --- Arena-Hard: verdicts and battles --------------------------------------------------------


@pytest.mark.parametrize("text, verdict", [
    ("Both are fine.\n\nMy final verdict is tie: [[A=B]]", "A=B"),
    ("[[B>>A]] ... so again: [[B>>A]]", "B>>A"),   # the same label twice
    ("[[A>B]]", "A>B"), ("[[B>A]]", "B>A"), ("verdict: [[A>>B]].", "A>>B"),
    ("First [[A>B]], on reflection [[B>A]]", None),  # different labels
    ("Assistant B is better.", None),                 # no label
    ("[[A<B]]", None),                                # a label the scoring never counts
    ("[[a>b]]", None), ("[[ A>B ]]", None), ("[[]]", None),
])
def test_parse_verdict(text, verdict):
    assert arena_hard.parse_verdict(text) == verdict


# the model's outcomes by hand: game 1 shows the baseline as A, game 2 the model as A
BY_HAND = {
    1: {"A>>B": [0, 0, 0], "A>B": [0], "A=B": [0.5], "B>A": [1], "B>>A": [1, 1, 1]},
    2: {"A>>B": [1, 1, 1], "A>B": [1], "A=B": [0.5], "B>A": [0], "B>>A": [0, 0, 0]},
}


def judgment(uid, model, game1, game2, baseline="gpt-4-0314"):
    games = [None if v == "null" else {"score": v, "judgment": {"answer": f"[[{v}]]"}} for v in (game1, game2)]
    return {"uid": uid, "category": "arena-hard-v0.1", "judge": "j", "model": model, "baseline": baseline, "games": games}


@pytest.mark.parametrize("game", [1, 2])
@pytest.mark.parametrize("verdict", [*arena_hard.VERDICTS, None, "A<B", "null"])
def test_battles_per_verdict_and_game(game, verdict):
    pair = (verdict, "null") if game == 1 else ("null", verdict)
    rows = arena_hard.battles([judgment("q1", "m", *pair)])
    assert [r["outcome"] for r in rows] == BY_HAND[game].get(verdict, [])
    assert all(r == {"uid": "q1", "model": "m", "game": game, "outcome": r["outcome"]} for r in rows)
    strong = arena_hard.battles([judgment("q1", "m", *pair)], weight=1)
    assert [r["outcome"] for r in strong] == sorted(set(BY_HAND[game].get(verdict, [])))


def official_bt_win_rates(rows, baseline="gpt-4-0314"):
    """arena-hard-auto's compute_mle_elo + predict_win_rate, by scikit-learn: battles (model_a =
    baseline, model_b = model) duplicated, a tie counted as one A win and one B win; Elo 400 b + 1000."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    models = [baseline] + sorted({r["model"] for r in rows})
    n = len(rows)
    X = np.zeros((2 * n, len(models)))
    Y = np.zeros(2 * n)
    for i, r in enumerate(rows):
        for k in (i, i + n):
            X[k, 0], X[k, models.index(r["model"])] = math.log(10), -math.log(10)
        Y[i] = Y[i + n] = 1.0 if r["outcome"] == 0 else 0.0  # model_a (the baseline) wins
        if r["outcome"] == 0.5:
            Y[i], Y[i + n] = 1.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = linear_model.LogisticRegression(fit_intercept=False, penalty=None, tol=1e-10, max_iter=10_000).fit(X, Y)
    elo = 400 * fit.coef_[0] + 1000
    return {m: 100 / (1 + 10 ** ((elo[0] - elo[j]) / 400)) for j, m in enumerate(models) if j}


def synthetic_judgments(seed=0, n=150):
    """Judgments of three models of different strength, with unparseable and failed games."""
    rng = np.random.default_rng(seed)
    labels = [*arena_hard.VERDICTS, None, "null"]
    judgments = []
    for model, p in (("weak", [0.3, 0.3, 0.15, 0.1, 0.05, 0.05, 0.05]), ("even", [0.1, 0.25, 0.25, 0.25, 0.1, 0.03, 0.02]),
                     ("strong", [0.02, 0.1, 0.15, 0.35, 0.33, 0.03, 0.02])):
        for q in range(n):
            game1 = labels[rng.choice(7, p=p)]
            game2 = labels[rng.choice(7, p=p[:5][::-1] + p[5:])]  # the same model, answers swapped
            judgments.append(judgment(f"q{q}", model, game1, game2))
    return judgments


def test_score_is_the_official_bradley_terry_fit():
    judgments = synthetic_judgments()
    scores = arena_hard.score(judgments, n_rounds=10)
    expected = official_bt_win_rates(arena_hard.battles(judgments))
    assert set(scores) == set(expected) == {"weak", "even", "strong"}
    for model, win_rate in expected.items():
        assert scores[model]["score"] == pytest.approx(win_rate, abs=1e-5)
    assert scores["weak"]["score"] < 35 < scores["even"]["score"] < 65 < scores["strong"]["score"]
    for model in scores:
        mine = [j for j in judgments if j["model"] == model]
        dropped = sum(g is None or g["score"] is None for j in mine for g in j["games"])
        assert (scores[model]["n_judgments"], scores[model]["n_games_dropped"]) == (150, dropped)
        assert scores[model]["baseline"] == "gpt-4-0314"


def test_interval_is_the_official_bootstrap():
    """The official bootstrap: resample all battle rows (every model pooled) with replacement, refit,
    take the 2.5 / 97.5 percentiles of the Elo ratings and map them to win rates; replayed here
    with the same resampled rows (the generator's draws are ``score``'s documented seed use)."""
    judgments = synthetic_judgments(seed=1, n=60)
    rows = arena_hard.battles(judgments)
    rounds = 12
    scores = arena_hard.score(judgments, n_rounds=rounds, seed=7)
    rng = np.random.default_rng(7)
    boot = [official_bt_win_rates([rows[i] for i in rng.integers(0, len(rows), len(rows))]) for _ in range(rounds)]
    for model in scores:
        elo = [1000 - 400 * math.log10(100 / b[model] - 1) for b in boot]
        lower, upper = (100 / (1 + 10 ** ((1000 - e) / 400)) for e in np.percentile(elo, [2.5, 97.5]))
        assert scores[model]["ci"] == pytest.approx([lower, upper], abs=1e-4)
        assert lower < scores[model]["score"] < upper


def test_interval_width_matches_the_sampling_error():
    """With many battles the 95% interval is about +- 1.96 sd / sqrt(n) around the score."""
    rng = np.random.default_rng(3)
    verdicts = rng.choice(["B>A", "A>B", "A=B"], size=(2000, 2), p=[0.5, 0.3, 0.2])
    judgments = [judgment(f"q{i}", "m", a, b) for i, (a, b) in enumerate(verdicts)]
    outcomes = [r["outcome"] for r in arena_hard.battles(judgments)]
    result = arena_hard.score(judgments, n_rounds=400, seed=0)["m"]
    half = 1.96 * 100 * np.std(outcomes) / math.sqrt(len(outcomes))
    lower, upper = result["ci"]
    assert result["score"] - lower == pytest.approx(half, rel=0.15)
    assert upper - result["score"] == pytest.approx(half, rel=0.15)


def test_score_errors():
    ok = judgment("q1", "m", "B>A", "A>B")
    with pytest.raises(ValueError, match="baselines"):
        arena_hard.score([ok], baseline="other")
    with pytest.raises(ValueError, match="baselines"):
        arena_hard.score([ok, judgment("q1", "n", "B>A", "A>B", baseline="other")])
    with pytest.raises(ValueError, match="against itself"):
        arena_hard.score([ok, judgment("q1", "gpt-4-0314", "A=B", "A=B")])
    with pytest.raises(ValueError, match=r"no judgment with a valid verdict for \['n'\]"):
        arena_hard.score([ok, judgment("q1", "n", None, "null")])
    assert arena_hard.score([judgment("q1", "m", "B>>A", "A>B")], n_rounds=5)["m"]["score"] == 100.0


def test_judgment_record_and_both_judgment_formats(tmp_path):
    question = {"uid": "q1", "category": "arena-hard-v0.1", "cluster": "c", "prompt": "Why?"}
    record = arena_hard.judgment_record(question, "m", "gpt-4-0314", "gpt-4-1106-preview",
                                        ["... My final verdict: [[B>A]]", {"judgment": "no label", "score": "A>>B", "prompt": [1]}])
    assert record == {"uid": "q1", "category": "arena-hard-v0.1", "judge": "gpt-4-1106-preview", "model": "m",
                      "baseline": "gpt-4-0314", "games": [
                          {"score": "B>A", "judgment": {"answer": "... My final verdict: [[B>A]]"}, "prompt": None},
                          {"score": "A>>B", "judgment": {"answer": "no label"}, "prompt": [1]}]}
    with pytest.raises(ValueError, match="2 games"):
        arena_hard.judgment_record(question, "m", "b", "j", ["[[A>B]]"])
    with pytest.raises(ValueError, match="game 2: score must be one of"):
        arena_hard.judgment_record(question, "m", "b", "j", ["[[A>B]]", {"judgment": "x", "score": "A<B"}])
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    write_jsonl(new, [record])
    write_jsonl(old, [{"question_id": "q1", "model": "m", "judge": "j",
                       "games": [{"user_prompt": "u", "judgment": "t", "score": "B>A"}, {"user_prompt": "u", "judgment": "t", "score": "A>>B"}]}])
    assert arena_hard.battles(arena_hard.read_judgments(new)) == arena_hard.battles(arena_hard.read_judgments(old))
    old.write_text('{"question_id": "q1", "model": "m", "games": []}\n')
    with pytest.raises(RecordError, match=rf"{old}:1: a judgment needs 'model' and 'games' with 2 games"):
        arena_hard.read_judgments(old)


# --- Arena-Hard: questions and answers -------------------------------------------------------


@needs_arena
@pytest.mark.parametrize("model", ["gpt-4-0314", "gpt-3.5-turbo-0125"])
def test_shared_answers_round_trip(model, tmp_path):
    questions = {q["uid"]: q for q in arena_hard.read_questions(ARENA / "question.jsonl")}
    path = ARENA / "model_answer" / f"{model}.jsonl"
    originals = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    answers = arena_hard.read_answers(path)
    assert len(questions) == len(answers) == 500 and set(answers) == set(questions)
    rebuilt = [arena_hard.answer_record(questions[r["uid"]], answers[r["uid"]], model, ans_id=r["ans_id"], tstamp=r["tstamp"])
               for r in originals]
    assert rebuilt == originals
    arena_hard.write_answers(tmp_path / f"{model}.jsonl", rebuilt)
    assert arena_hard.read_answers(tmp_path / f"{model}.jsonl") == answers
    written = [json.loads(line) for line in (tmp_path / f"{model}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert written == originals


@needs_arena
def test_old_formats_read_like_the_new(tmp_path):
    questions = arena_hard.read_questions(ARENA / "question.jsonl")
    answers = arena_hard.read_answers(ARENA / "model_answer" / "gpt-4-0314.jsonl")
    write_jsonl(tmp_path / "question.jsonl", [{"question_id": q["uid"], "category": q["category"], "cluster": q["cluster"],
                                              "turns": [{"content": q["prompt"]}]} for q in questions])
    write_jsonl(tmp_path / "answers.jsonl", [{"question_id": uid, "answer_id": "x", "model_id": "gpt-4-0314", "tstamp": 0.0,
                                             "choices": [{"index": 0, "turns": [{"content": text, "token_len": 1}]}]}
                                            for uid, text in answers.items()])
    assert arena_hard.read_questions(tmp_path / "question.jsonl") == questions
    assert arena_hard.read_answers(tmp_path / "answers.jsonl") == answers


def test_answer_file_errors(tmp_path):
    path = tmp_path / "a.jsonl"
    good = arena_hard.answer_record({"uid": "q1", "prompt": "p"}, "text", "m")
    write_jsonl(path, [good, {**good, "uid": "q2", "messages": [{"role": "user", "content": "p"}]}])
    with pytest.raises(RecordError, match=rf"{path}:2: 'messages' must end with the assistant's message"):
        arena_hard.read_answers(path)
    write_jsonl(path, [good, good])
    with pytest.raises(RecordError, match=rf"{path}:2: duplicate answer to 'q1' \(first on line 1\)"):
        arena_hard.read_answers(path)
    write_jsonl(path, [good, {**good, "uid": "q2", "model": "other"}])
    with pytest.raises(RecordError, match="answers of several models"):
        arena_hard.read_answers(path)


# --- download --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_lists_every_file(tmp_path):
    dest = tmp_path / "arena"
    base = f"http://127.0.0.1:{closed_port()}"
    done = subprocess.run([sys.executable, "-m", "inpo.benchmarks.download", "arena_hard_v0.1", str(dest), "--base-url", base,
                           "--timeout", "10"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1
    for url, path in download.plan("arena_hard_v0.1", dest, base):
        assert f"{url}\n    -> {path}" in done.stderr
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server over tmp_path/root, in a thread; yields (root, base URL)."""
    root = tmp_path / "root"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("benchmark", sorted(download.FILES))
def test_download_over_http_is_byte_identical(benchmark, server, tmp_path, capsys):
    root, base = server
    rng = np.random.default_rng(0)
    contents = {}
    for local, remote in download.FILES[benchmark].items():
        (root / remote).parent.mkdir(parents=True, exist_ok=True)
        contents[local] = rng.bytes(300_000) + "é\n".encode()  # several reads' worth, not text-safe
        (root / remote).write_bytes(contents[local])
    dest = tmp_path / "dest"
    paths = download.download(benchmark, dest, base_url=base)
    assert paths == [dest / local for local in contents]
    for local, data in contents.items():
        assert (dest / local).read_bytes() == data
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == sorted(Path(local).name for local in contents)
    assert capsys.readouterr().err.count("300,003 bytes") == len(contents)
    for remote in download.FILES[benchmark].values():  # a second run leaves the files alone
        (root / remote).write_bytes(b"changed")
    download.download(benchmark, dest, base_url=base)
    assert all((dest / local).read_bytes() == data for local, data in contents.items())
    assert capsys.readouterr().err.count("already there, skipped") == len(contents)


def test_downloaded_files_follow_the_umask(server, tmp_path):
    root, base = server
    for remote in download.FILES["arena_hard_v0.1"].values():
        (root / remote).parent.mkdir(parents=True, exist_ok=True)
        (root / remote).write_text("{}\n")
    old = os.umask(0o002)
    try:
        paths = download.download("arena_hard_v0.1", tmp_path / "dest", base_url=base)
    finally:
        os.umask(old)
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == [oct(0o664)] * len(paths)


def test_download_missing_file_on_server(server, tmp_path):
    root, base = server
    remote = download.FILES["arena_hard_v0.1"]["question.jsonl"]
    (root / remote).parent.mkdir(parents=True)
    (root / remote).write_text("{}\n")
    with pytest.raises(download.DownloadError, match="404") as error:
        download.download("arena_hard_v0.1", tmp_path / "dest", base_url=base)
    assert (tmp_path / "dest" / "question.jsonl").read_text() == "{}\n"
    assert "question.jsonl" not in str(error.value) and "gpt-4-0314.jsonl" in str(error.value)
    assert [p.name for p in (tmp_path / "dest").rglob("*") if p.is_file()] == ["question.jsonl"]
