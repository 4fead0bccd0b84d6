"""Arena-Hard v0.1 files (lmarena/arena-hard-auto) and the official score.

Versions. arena-hard-auto changed its file formats in 2025 (with Arena-Hard v2.0); the
``data/arena-hard-v0.1`` files it now ships, and shared/benchmarks/arena-hard-v0.1, are in the
newer format, so this module writes that format and reads both:

- question: new ``{uid, category, cluster, prompt}``; old ``{question_id, category, cluster,
  turns: [{content}]}``.
- model_answer/<model>.jsonl: new ``{uid, ans_id, model, messages: [{role: user, content:
  prompt}, {role: assistant, content: {answer}}], tstamp[, metadata]}``; old ``{question_id,
  answer_id, model_id, choices: [{index, turns: [{content, token_len}]}], tstamp}``.
- model_judgment/<judge>/<model>.jsonl: new ``{uid, category, judge, model, baseline, games}``
  with game = ``{score, judgment: {answer}, prompt}`` (or null when the judge call failed); old
  ``{question_id, model, judge, games}`` with game = ``{user_prompt, judgment, score}``.

Judgment settings: v0.1's ``config/judge_config.yaml`` (``read_judge_config``: judge model,
system prompt, prompt template, verdict regex, ``number_of_judgment_attempts``, temperature,
max tokens), read at run time. Game 1 shows the baseline's answer as A and the model's as B;
game 2 swaps them. The verdict is the config's regex (``\\[\\[([AB<>=]+)\\]\\]``) on the judgment:
the label when all matches agree, None when they disagree, and when there is none the judge is
asked again (``judgment_verdict``, v0.1's ``gen_judgment.get_score``; the 2025 version keeps
the last label instead).

Scoring follows the v0.1 ``show_result.py`` / ``utils_math.py`` (the one behind the published
v0.1 leaderboard; the 2025 version reports a plain mean with a 90% interval and drops a question
when either game is unparseable):

- battles: each game gives the model an outcome 1 (win), 1/2 (A=B) or 0 (loss), repeated
  ``weight`` = 3 times for a strong verdict (``>>``); an unparseable game gives nothing.
- Bradley-Terry: one logistic fit of all models' battles against the baseline,
  P(i beats j) = sigmoid(ln 10 (b_i - b_j)), ties counted as half a win; the score is the fitted
  P(model beats baseline) in percent (the Elo ratings 400 b + 1000 anchored at the baseline,
  mapped back to a win rate). Every battle involves the baseline, so the log-likelihood splits
  into one term per model m with d = b_m - b_baseline and outcomes y_1..y_n::

      l(d) = sum_i [y_i log sigmoid(c d) + (1 - y_i) log(1 - sigmoid(c d))],  c = ln 10,
      l'(d) = c sum_i (y_i - sigmoid(c d)) = 0   =>   sigmoid(c d) = mean_i y_i,

  so the score is 100 x the model's weighted win fraction, whatever the other models (a model
  that always wins or always loses gets 100 or 0, where sklearn stops at a large finite rating).
- 95% interval: ``n_rounds`` bootstrap resamples of the pooled battle rows of all models (the
  weighted copies resampled independently, as ``battles.sample(frac=1, replace=True)``), refitted
  each time; the 2.5 and 97.5 percentiles (linear interpolation) are taken on the rating scale
  and mapped back to win rates. Because the rows are pooled, the models scored in one call share
  the resamples, so ``score`` takes several models at once, as the official script does.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Iterable, Mapping, Sequence

import numpy as np
import yaml
from scipy.special import expit, logit

from ..records import RecordError, iter_jsonl, iter_jsonl_keyed, write_jsonl

BASELINE = "gpt-4-0314"
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
VERDICT_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")
# outcome for the model, and whether the verdict is strong, by game (1: A = baseline, 2: A = model)
_OUTCOMES = {
    1: {"A>>B": (0.0, True), "A>B": (0.0, False), "A=B": (0.5, False), "B>A": (1.0, False), "B>>A": (1.0, True)},
    2: {"A>>B": (1.0, True), "A>B": (1.0, False), "A=B": (0.5, False), "B>A": (0.0, False), "B>>A": (0.0, True)},
}
_MAX_LOGIT = 750.0  # expit(+-750) is exactly 1 / 0 in float64


# v0.1's gen_judgment.py (code, not config): the user turn that asks for the verdict on a further attempt
CONTINUE_JUDGMENT = "continue your judgment and finish by outputting a final verdict label"
JUDGE_CONFIG_KEYS = {"judge_model": str, "system_prompt": str, "prompt_template": list, "regex_pattern": str,
                     "number_of_judgment_attempts": int, "temperature": (int, float), "max_tokens": int,
                     "pairwise": bool, "baseline_model": str}


def read_judge_config(path: str | os.PathLike) -> dict:
    """Arena-Hard's ``judge_config.yaml``: the keys of ``JUDGE_CONFIG_KEYS``, checked, with
    ``regex_pattern`` compiled as ``pattern``. Raises RecordError naming the file and the key."""
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except OSError as err:
        raise RecordError(f"{path}: cannot read Arena-Hard's judge config ({err.strerror}); fetch it with "
                          f"`python -m inpo.benchmarks.download arena_hard_v0.1 <dir>`") from None
    except yaml.YAMLError as err:
        raise RecordError(f"{path}: not YAML ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise RecordError(f"{path}: expected a YAML mapping of judgment settings")
    for key, kind in JUDGE_CONFIG_KEYS.items():
        if key not in config:
            raise RecordError(f"{path}: no {key!r} (Arena-Hard v0.1's judge_config.yaml has it)")
        if not isinstance(config[key], kind) or (kind is int and isinstance(config[key], bool)):
            raise RecordError(f"{path}: {key} must be of type {kind}, got {config[key]!r:.60}")
    if not config["pairwise"] or config["number_of_judgment_attempts"] < 1:
        raise RecordError(f"{path}: expected pairwise: true and number_of_judgment_attempts >= 1")
    if not config["prompt_template"] or not all(isinstance(t, str) for t in config["prompt_template"]):
        raise RecordError(f"{path}: prompt_template must be a list of template strings")
    try:
        pattern = re.compile(config["regex_pattern"])
    except re.error as err:
        raise RecordError(f"{path}: regex_pattern does not compile ({err})") from None
    return {**config, "pattern": pattern}


def judgment_verdict(judgment: str, pattern: re.Pattern = VERDICT_PATTERN) -> tuple[str | None, bool]:
    """(verdict, ask again) of a judgment so far, as v0.1's ``get_score``: the non-empty matches of
    ``pattern``; one distinct label -> (label, False); several -> (None, False); none -> (None, True).
    A label outside ``VERDICTS`` is returned as None (arena-hard-auto records it, never counts it)."""
    matches = {m for m in pattern.findall(judgment) if m != ""}
    if not matches:
        return None, True
    if len(matches) > 1:
        return None, False
    label = matches.pop().strip("\n")
    return (label if label in VERDICTS else None), False


def _question_id(record: Mapping, where: str) -> str:
    qid = record.get("uid", record.get("question_id"))
    if not isinstance(qid, str):
        raise RecordError(f"{where}: no question id (a string 'uid', or 'question_id' in the old format)")
    return qid


def _text(value, where: str, name: str) -> str:
    if isinstance(value, Mapping):  # new format: {"answer": ...}; old turns: {"content": ...}
        value = value.get("answer", value.get("content"))
    if not isinstance(value, str):
        raise RecordError(f"{where}: {name} must be a string, got {value!r:.60}")
    return value


def read_questions(path: str | os.PathLike) -> list[dict]:
    """The questions, as new-format records ``{uid, category, cluster, prompt, ...}`` (old-format
    single-turn records are converted)."""
    questions = []
    for where, qid, record in iter_jsonl_keyed(path, _question_id, "question id"):
        if "prompt" not in record:
            turns = record.get("turns")
            if not isinstance(turns, list) or len(turns) != 1:
                raise RecordError(f"{where}: expected 'prompt', or 'turns' with one turn (old format)")
            record = {"uid": qid, "category": record.get("category"), "cluster": record.get("cluster"),
                      "prompt": turns[0]}
        record = {**record, "prompt": _text(record["prompt"], where, "prompt")}
        questions.append(record)
    if not questions:
        raise RecordError(f"{path}: no questions")
    return questions


def _answer_text(record: Mapping, where: str) -> str:
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], Mapping) \
                or messages[-1].get("role") != "assistant":
            raise RecordError(f"{where}: 'messages' must end with the assistant's message")
        return _text(messages[-1].get("content"), where, "the assistant's content")
    try:
        return _text(record["choices"][0]["turns"][0], where, "choices[0].turns[0]")
    except (KeyError, IndexError, TypeError):
        raise RecordError(f"{where}: no answer ('messages' or, in the old format, 'choices[0].turns[0]')") from None


def read_answers(path: str | os.PathLike) -> dict[str, str]:
    """One model's answers: question id -> answer text (either format)."""
    answers, models = {}, set()
    for where, qid, record in iter_jsonl_keyed(path, _question_id, "answer to"):
        models.add(record.get("model", record.get("model_id")))
        answers[qid] = _answer_text(record, where)
    if len(models) > 1:
        raise RecordError(f"{path}: answers of several models {sorted(map(str, models))}")
    if not answers:
        raise RecordError(f"{path}: no answers")
    return answers


def answer_record(question: Mapping, answer_text: str, model: str, *, ans_id: str | None = None,
                  tstamp: float | None = None, metadata: Mapping | None = None) -> dict:
    """One model_answer line in the new format (``ans_id`` random and ``tstamp`` now by default)."""
    record = {"uid": _question_id(question, "question"), "ans_id": ans_id or uuid.uuid4().hex, "model": model,
              "messages": [{"role": "user", "content": _text(question.get("prompt"), "question", "prompt")},
                           {"role": "assistant", "content": {"answer": _text(answer_text, "answer", "answer_text")}}],
              "tstamp": time.time() if tstamp is None else tstamp}
    if metadata is not None:
        record["metadata"] = dict(metadata)
    return record


def write_answers(path: str | os.PathLike, records: Sequence[Mapping]) -> None:
    """Write model_answer/<model>.jsonl atomically."""
    write_jsonl(path, records)


def parse_verdict(text: str, pattern: re.Pattern = VERDICT_PATTERN) -> str | None:
    """The judge's verdict among ``VERDICTS`` in a whole judgment (``judgment_verdict``), or None."""
    return judgment_verdict(text, pattern)[0]


def _game(game, number: int) -> dict:
    if isinstance(game, str):
        game = {"judgment": game}
    if not isinstance(game, Mapping) or not isinstance(game.get("judgment"), str):
        raise ValueError(f"game {number} must be the judge's reply or a mapping with its text as 'judgment'")
    verdict = game["score"] if "score" in game else parse_verdict(game["judgment"])
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"game {number}: score must be one of {VERDICTS} or None, got {verdict!r}")
    record = {"score": verdict, "judgment": {"answer": game["judgment"]}, "prompt": game.get("prompt")}
    return {**record, "error": game["error"]} if game.get("error") else record


def judgment_record(question: Mapping, model: str, baseline: str, judge: str, games: Sequence) -> dict:
    """One model_judgment line (new format). ``games``: game 1 (A = the baseline's answer, B = the
    model's), then game 2 (swapped); each the judge's reply, or ``{judgment, score?, prompt?}``
    (the score is parsed from the reply when absent)."""
    if len(games) != 2:
        raise ValueError(f"a judgment has 2 games (both answer orders), got {len(games)}")
    return {"uid": _question_id(question, "question"), "category": question.get("category"), "judge": judge,
            "model": model, "baseline": baseline, "games": [_game(g, i) for i, g in enumerate(games, start=1)]}


def read_judgments(path: str | os.PathLike) -> list[dict]:
    """model_judgment lines of either format, checked to have a question id, a model and 2 games."""
    records = []
    for number, record in iter_jsonl(path):
        where = f"{path}:{number}"
        _question_id(record, where)
        games = record.get("games")
        if not isinstance(record.get("model"), str) or not isinstance(games, list) or len(games) != 2:
            raise RecordError(f"{where}: a judgment needs 'model' and 'games' with 2 games")
        if any(g is not None and not isinstance(g, Mapping) for g in games):
            raise RecordError(f"{where}: a game must be an object or null")
        records.append(record)
    if not records:
        raise RecordError(f"{path}: no judgments")
    return records


def battles(judgments: Iterable[Mapping], weight: int = 3) -> list[dict]:
    """The battles of the judgments against the baseline: ``{uid, model, game, outcome}`` with the
    model's outcome 1 / 0.5 / 0 (module docstring), ``weight`` copies for a strong verdict and
    none for a game without a valid verdict (a null game, a None or unknown score)."""
    if not (isinstance(weight, int) and weight >= 1):
        raise ValueError(f"weight must be a positive integer, got {weight!r}")
    rows = []
    for index, record in enumerate(judgments):
        qid = _question_id(record, f"judgment {index}")
        for number, game in enumerate(record["games"], start=1):
            verdict = game.get("score") if isinstance(game, Mapping) else None
            if isinstance(verdict, str) and verdict in _OUTCOMES[number]:
                outcome, strong = _OUTCOMES[number][verdict]
                rows += [{"uid": qid, "model": record["model"], "game": number, "outcome": outcome}] * (weight if strong else 1)
    return rows


def _baseline(judgments: Sequence[Mapping], baseline: str | None) -> str:
    named = {j["baseline"] for j in judgments if "baseline" in j}
    if len(named) > 1 or (baseline is not None and named - {baseline}):
        raise ValueError(f"the judgments name baselines {sorted(named)}" + (f", not {baseline!r}" if baseline else "")
                         + ": score judgments against one baseline")
    return baseline or (named.pop() if named else BASELINE)


def _percentiles(win_rates: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Percentiles of win rates taken on the rating (logit) scale, as the official code does."""
    ratings = np.clip(logit(win_rates), -_MAX_LOGIT, _MAX_LOGIT)
    return expit(np.nanpercentile(ratings, q, axis=0))


def score(judgments: Iterable[Mapping], *, baseline: str | None = None, weight: int = 3,
          n_rounds: int = 100, seed: int = 0) -> dict[str, dict]:
    """Arena-Hard scores of the models in ``judgments`` against the baseline (module docstring):
    model -> ``{score, ci: [lower, upper], n_judgments, n_games_dropped, n_battles}``, score and
    interval in percent. ``baseline``: checked against the judgments' ``baseline`` field (default:
    that field, else gpt-4-0314)."""
    judgments = list(judgments)
    baseline = _baseline(judgments, baseline)
    if any(j["model"] == baseline for j in judgments):
        raise ValueError(f"judgments of the baseline {baseline!r} against itself: leave them out")
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
    rows = battles(judgments, weight)
    models = sorted({j["model"] for j in judgments})
    scored = sorted({r["model"] for r in rows})
    if scored != models:
        raise ValueError(f"no judgment with a valid verdict for {sorted(set(models) - set(scored))}")
    code = np.array([models.index(r["model"]) for r in rows])
    outcome = np.array([r["outcome"] for r in rows])

    def win_rates(index: np.ndarray) -> np.ndarray:  # the BT fit: each model's mean outcome
        with np.errstate(invalid="ignore", divide="ignore"):  # a model absent from a resample: NaN
            return np.bincount(code[index], outcome[index], len(models)) / np.bincount(code[index], minlength=len(models))

    rng = np.random.default_rng(seed)
    resamples = np.array([win_rates(rng.integers(0, len(rows), len(rows))) for _ in range(n_rounds)])
    lower, upper = _percentiles(resamples, [2.5, 97.5])
    point = win_rates(np.arange(len(rows)))
    result = {}
    for m, name in enumerate(models):
        mine = [j for j in judgments if j["model"] == name]
        result[name] = {"baseline": baseline, "score": 100 * float(point[m]),
                        "ci": [100 * float(lower[m]), 100 * float(upper[m])], "n_judgments": len(mine),
                        "n_games_dropped": sum(not (isinstance(g, Mapping) and g.get("score") in VERDICTS)
                                               for j in mine for g in j["games"]),
                        "n_battles": int(np.count_nonzero(code == m))}
    return result
