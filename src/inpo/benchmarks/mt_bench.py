"""MT-Bench files (lm-sys/FastChat, ``fastchat/llm_judge``) and the official single-answer score.

Files read (FastChat's ``data/`` layout; ``python -m inpo.benchmarks.download mt_bench DEST``):

- ``mt_bench/question.jsonl``: ``{question_id, category, turns: [turn 1, turn 2][, reference]}``,
  80 two-turn questions in eight categories (``common.load_questions``);
- ``mt_bench/reference_answer/gpt-4.jsonl``: GPT-4's answers in the model-answer format below,
  the reference the judge sees for the categories in ``NEED_REF_CATS`` (``common.load_model_answers``;
  ``gen_judgment.py`` takes the file named after the judge model);
- ``judge_prompts.jsonl``: ``{name, type, system_prompt, prompt_template, description, category,
  output_format}`` (``common.load_judge_prompts``). Their text is read from the file at run time and
  never restated here.

Files written, in the formats FastChat's tools read:

- ``model_answer/<model>.jsonl`` (``gen_model_answer.py``): ``{question_id, answer_id, model_id,
  choices: [{index: 0, turns: [answer 1, answer 2]}], tstamp}``;
- ``model_judgment/<judge model>_single.jsonl`` (``common.play_a_match_single``): one line per
  graded turn, ``{question_id, model, judge: [judge model, prompt name], user_prompt, judgment,
  score, turn, tstamp}``, score -1 when the judge gave no rating.

Grading (``gen_judgment.make_judge_single``, ``common.run_judge_single``): turn 1 of a question
is graded with ``single-v1``, or ``single-math-v1`` with the reference's first turn as
``{ref_answer_1}`` when the category needs a reference; turn 2 with ``single-v1-multi-turn`` /
``single-math-v1-multi-turn``, which show the whole conversation (``{question_1} {answer_1}
{question_2} {answer_2}``, and ``{ref_answer_1} {ref_answer_2}``). The template is filled with
``str.format``; the judge's rating is the number in the first ``[[N]]`` of its reply, else in the
first ``[N]`` (``one_score_pattern`` then ``one_score_pattern_backup``: ``\\[\\[(\\d+\\.?\\d*)\\]\\]``,
``\\[(\\d+\\.?\\d*)\\]``), an int or a float as written; with neither, -1 (no rating).

Score (``show_result.display_result_single``): judgments with score -1 are dropped; the score of
turn t is the mean rating of turn t, and the MT-Bench score the mean over all remaining
judgments (both turns pooled, not the mean of the two turn means):

    score_turn_t = mean{s_j : turn_j = t, s_j != -1},    score = mean{s_j : s_j != -1}.

The dropped judgments are counted (``n_missing_ratings``), never hidden.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from typing import Iterable, Mapping, Sequence

from ..records import RecordError, iter_jsonl, iter_jsonl_keyed, write_jsonl

NEED_REF_CATS = ("math", "reasoning", "coding")  # common.NEED_REF_CATS: graded against the reference answer
NO_RATING = -1  # common.run_judge_single's rating when the reply has none
RATING_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # common.one_score_pattern
RATING_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")  # common.one_score_pattern_backup
# gen_judgment.make_judge_single: (needs a reference, turn) -> judge prompt name
PROMPT_NAMES = {(False, 1): "single-v1", (True, 1): "single-math-v1",
                (False, 2): "single-v1-multi-turn", (True, 2): "single-math-v1-multi-turn"}
PROMPT_FIELDS = ("name", "type", "system_prompt", "prompt_template", "output_format")


def _question_id(value, where: str):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RecordError(f"{where}: question_id must be an integer or a string, got {value!r:.60}")
    return value


def _turns(value, where: str, name: str, n: int | None = 2) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value) or (n is not None and len(value) != n):
        count = f"{n} strings" if n is not None else "strings"
        raise RecordError(f"{where}: {name} must be a list of {count}, got {value!r:.80}")
    return value


def _record_question_id(record: Mapping, where: str):
    return _question_id(record.get("question_id"), where)


def read_questions(path: str | os.PathLike) -> list[dict]:
    """The questions in file order, each ``{question_id, category, turns: [turn 1, turn 2], ...}``;
    a RecordError names the file and line of a bad or repeated question."""
    questions = []
    for where, _, record in iter_jsonl_keyed(path, _record_question_id, "question_id"):
        if not isinstance(record.get("category"), str):
            raise RecordError(f"{where}: category must be a string, got {record.get('category')!r:.60}")
        _turns(record.get("turns"), where, "turns")
        questions.append(record)
    if not questions:
        raise RecordError(f"{path}: no questions")
    return questions


def read_answers(path: str | os.PathLike) -> dict:
    """question_id -> the turns of ``choices[0]``, of a model-answer file (a reference answer file,
    or one this module wrote); a RecordError names the file and line of a bad or repeated answer."""
    answers = {}
    for where, qid, record in iter_jsonl_keyed(path, _record_question_id, "answer to question"):
        try:
            turns = record["choices"][0]["turns"]
        except (KeyError, IndexError, TypeError):
            raise RecordError(f"{where}: no answer turns (choices[0].turns)") from None
        answers[qid] = _turns(turns, where, "choices[0].turns", n=None)
    if not answers:
        raise RecordError(f"{path}: no answers")
    return answers


def read_judge_prompts(path: str | os.PathLike) -> dict[str, dict]:
    """The single-answer grading prompts by name (the four of ``PROMPT_NAMES``), checked to have
    their fields, ``type`` single and ``output_format`` ``[[rating]]`` (the only format
    ``run_judge_single`` parses); a RecordError names the file and line, or the prompt missing."""
    prompts = {}
    for number, record in iter_jsonl(path):
        where = f"{path}:{number}"
        if record.get("name") not in PROMPT_NAMES.values():
            continue  # the pairwise prompts: not used here
        missing = [f for f in PROMPT_FIELDS if not isinstance(record.get(f), str)]
        if missing:
            raise RecordError(f"{where}: judge prompt {record.get('name')!r} needs string fields {missing}")
        if record["type"] != "single" or record["output_format"] != "[[rating]]":
            raise RecordError(f"{where}: judge prompt {record['name']!r} must have type 'single' and output_format "
                              f"'[[rating]]', got {record['type']!r} and {record['output_format']!r}")
        prompts[record["name"]] = {**record, "where": where}
    absent = [name for name in PROMPT_NAMES.values() if name not in prompts]
    if absent:
        raise RecordError(f"{path}: no judge prompt named {absent}")
    return prompts


def needs_reference(category: str) -> bool:
    return category in NEED_REF_CATS


def prompt_name(category: str, turn: int) -> str:
    """The judge prompt that grades ``turn`` (1 or 2) of a question of ``category``."""
    if turn not in (1, 2):
        raise ValueError(f"MT-Bench questions have turns 1 and 2, got {turn!r}")
    return PROMPT_NAMES[needs_reference(category), turn]


def user_prompt(prompt: Mapping, question: Mapping, answers: Sequence[str], turn: int,
                reference: Sequence[str] | None = None) -> str:
    """The judge prompt's ``prompt_template`` filled for ``turn`` of ``question`` with the model's
    ``answers`` (both turns) and, for the reference-based prompts, the reference's turns."""
    fields = {}
    if reference is not None:
        fields["ref_answer_1"] = reference[0]
        if turn == 2:
            fields["ref_answer_2"] = reference[1]
    if turn == 1:
        fields.update(question=question["turns"][0], answer=answers[0])
    else:
        fields.update(question_1=question["turns"][0], question_2=question["turns"][1],
                      answer_1=answers[0], answer_2=answers[1])
    try:
        return prompt["prompt_template"].format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        raise RecordError(f"{prompt.get('where', 'judge prompt')}: the template of {prompt['name']!r} cannot be "
                          f"filled with {sorted(fields)} ({type(err).__name__}: {err})") from None


def grading_items(questions: Sequence[Mapping], answers: Sequence[Sequence[str]], prompts: Mapping[str, Mapping],
                  references: Mapping) -> list[dict]:
    """What the judge is asked, per question turn 1 then turn 2: ``{question_id, turn, prompt_name,
    system_prompt, user_prompt}``. A question needing a reference without one is a ValueError."""
    items = []
    for question, turns in zip(questions, answers, strict=True):
        reference = None
        if needs_reference(question["category"]):
            reference = references.get(question["question_id"])
            if reference is None or len(reference) < 2:
                raise ValueError(f"no two-turn reference answer for question {question['question_id']!r} "
                                 f"(category {question['category']!r} is graded against one)")
        for turn in (1, 2):
            prompt = prompts[prompt_name(question["category"], turn)]
            items.append({"question_id": question["question_id"], "turn": turn, "prompt_name": prompt["name"],
                          "system_prompt": prompt["system_prompt"],
                          "user_prompt": user_prompt(prompt, question, turns, turn, reference)})
    return items


def _number(text: str) -> int | float:
    """The matched digits as FastChat's ``ast.literal_eval`` reads them: an int, or a float with a
    point (a leading zero, as in ``[[08]]``, reads 8 here, where literal_eval raises)."""
    return float(text) if "." in text else int(text)


def parse_rating(judgment: str) -> int | float:
    """The judge's rating: the first ``[[N]]``, else the first ``[N]``; ``NO_RATING`` (-1) with neither."""
    match = RATING_PATTERN.search(judgment) or RATING_PATTERN_BACKUP.search(judgment)
    return _number(match.group(1)) if match else NO_RATING


def answer_id(model: str, question_id) -> str:
    """A stable 22-character answer id (FastChat's are random shortuuids of that length)."""
    return hashlib.sha256(f"{model}/{question_id}".encode()).hexdigest()[:22]


def answer_record(question: Mapping, turns: Sequence[str], model: str, *, tstamp: float | None = None) -> dict:
    """One model_answer line: ``{question_id, answer_id, model_id, choices: [{index: 0, turns}], tstamp}``."""
    return {"question_id": question["question_id"], "answer_id": answer_id(model, question["question_id"]),
            "model_id": model, "choices": [{"index": 0, "turns": list(turns)}],
            "tstamp": time.time() if tstamp is None else tstamp}


def judgment_record(item: Mapping, model: str, judge_model: str, judgment: str, score: int | float,
                    *, tstamp: float | None = None) -> dict:
    """One model_judgment line for a ``grading_items`` item: the judge's reply and its rating (-1: none)."""
    return {"question_id": item["question_id"], "model": model, "judge": [judge_model, item["prompt_name"]],
            "user_prompt": item["user_prompt"], "judgment": judgment, "score": score, "turn": item["turn"],
            "tstamp": time.time() if tstamp is None else tstamp}


def write_records(path: str | os.PathLike, records: Iterable[Mapping]) -> None:
    """Write model_answer or model_judgment lines atomically."""
    write_jsonl(path, records)


def read_judgments(path: str | os.PathLike) -> list[dict]:
    """model_judgment lines, checked to have a numeric ``score`` and ``turn`` 1 or 2."""
    records = []
    for number, record in iter_jsonl(path):
        score, turn = record.get("score"), record.get("turn")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise RecordError(f"{path}:{number}: score must be a number (-1: no rating), got {score!r:.60}")
        if turn not in (1, 2) or isinstance(turn, bool):
            raise RecordError(f"{path}:{number}: turn must be 1 or 2, got {turn!r:.60}")
        records.append(record)
    if not records:
        raise RecordError(f"{path}: no judgments")
    return records


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def score(judgments: Sequence[Mapping]) -> dict:
    """``show_result.display_result_single`` for one model: ``score`` (mean rating over every graded
    turn), ``score_turn_1``, ``score_turn_2`` (None where nothing was rated), ``n_ratings`` (judgments
    kept, and per turn) and ``n_missing_ratings`` (judgments with score -1, dropped)."""
    models = {j.get("model") for j in judgments}
    if len(models) > 1:
        raise ValueError(f"judgments of several models {sorted(map(str, models))}: score one model at a time")
    rated = [j for j in judgments if j["score"] != NO_RATING]
    by_turn = {t: [j["score"] for j in rated if j["turn"] == t] for t in (1, 2)}
    return {"score": _mean([j["score"] for j in rated]), "score_turn_1": _mean(by_turn[1]),
            "score_turn_2": _mean(by_turn[2]), "n_ratings": len(rated), "n_ratings_turn_1": len(by_turn[1]),
            "n_ratings_turn_2": len(by_turn[2]), "n_missing_ratings": len(judgments) - len(rated)}
