"""MT-Bench's single-answer grading judge (FastChat ``llm_judge``) over an OpenAI-compatible API.

One request per graded turn, as ``common.run_judge_single`` sends it through
``common.chat_completion_openai`` (the judge's conversation template, ``to_openai_api_messages``)::

    {"model": <judge model>, "messages": [{"role": "system", "content": <the prompt's system_prompt>},
                                           {"role": "user", "content": <its prompt_template, filled>}],
     "n": 1, "temperature": 0, "max_tokens": 2048}

The judge model is FastChat's default, ``gpt-4`` (``gen_judgment.py --judge-model``), unless the
config names another. The prompts come from FastChat's ``judge_prompts.jsonl``, read at run time
(``inpo.benchmarks.mt_bench`` picks and fills them). The rating is
``inpo.benchmarks.mt_bench.parse_rating`` of the reply: ``[[N]]``, else ``[N]``, else -1. Only
replies with a rating are cached, so a rerun asks again for the others. A request the server
rejects (HTTP 400: an ``ApiError`` in the client's answers), or a reply without text, is graded
-1 too, with ``$ERROR$`` (FastChat's judgment when its API calls fail) and the reason as its
judgment. ``grade_many`` tells these apart (``error``) so that the caller counts them.

As a pairwise ``Judge`` (``compare``, e.g. for annotation), both responses are graded with
``single-v1`` and, as FastChat's ``play_a_match_pair`` does with a single-answer judge, the higher
rating wins unless the two are within ``TIE_DELTA`` = 0.1, a tie, P(a > b) = 1/2; a missing rating
raises, since the comparison then has no value.
"""

from __future__ import annotations

from typing import Sequence

from inpo.benchmarks import mt_bench
from inpo.judges import Comparison
from inpo.judges.api import ApiJudge, reply_text
from inpo.judges.api_client import ApiError, ChatClient

OFFICIAL_MODEL = "gpt-4"  # gen_judgment.py: --judge-model default
TEMPERATURE, MAX_TOKENS = 0, 2048  # common.run_judge_single: chat_completion_openai(model, conv, temperature=0, max_tokens=2048)
API_ERROR_OUTPUT = "$ERROR$"  # common.API_ERROR_OUTPUT: FastChat's judgment when the API call failed
TIE_DELTA = 0.1  # common.TIE_DELTA


def has_rating(response: dict) -> bool:
    """Whether a reply is worth caching: its text gives a rating."""
    text = reply_text(response)
    return text is not None and mt_bench.parse_rating(text) != mt_bench.NO_RATING


class MTBenchJudge(ApiJudge):
    """FastChat's single-answer grader; see the module doc."""

    OPTIONS = ("judge_prompts",)

    def __init__(self, client: ChatClient, judge_prompts: str | None = None):
        super().__init__(client)
        self.judge_prompts = judge_prompts  # judge_prompts.jsonl, read by ``compare_many`` (the benchmark passes its own)
        self._prompts: dict | None = None

    @classmethod
    def official_model(cls, **options) -> str:
        return OFFICIAL_MODEL

    @staticmethod
    def request(system_prompt: str, user_prompt: str) -> dict:
        """The chat-completions body (the client adds ``model``) that ``chat_completion_openai`` sends."""
        return {"messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_prompt}],
                "n": 1, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}

    def grade_many(self, items: Sequence[tuple[str, str]], desc: str = "mt_bench judge") -> list[dict]:
        """For each (system prompt, user prompt): ``{"judgment": text, "score": rating or -1,
        "error": None, or why there is no reply to grade (the server rejected the request, or its
        reply has no text)}``."""
        responses = self._complete([self.request(*item) for item in items], desc=desc, usable=has_rating)
        grades = []
        for response in responses:
            text = reply_text(response)
            if text is None:
                error = str(response) if isinstance(response, ApiError) else \
                    f"a chat completion without message text: {str(response)[:300]}"
                grades.append({"judgment": f"{API_ERROR_OUTPUT} {error}", "score": mt_bench.NO_RATING, "error": error})
            else:
                grades.append({"judgment": text, "score": mt_bench.parse_rating(text), "error": None})
        return grades

    def prompts(self) -> dict:
        if self._prompts is None:
            if self.judge_prompts is None:
                raise ValueError("judge option judge_prompts (FastChat's judge_prompts.jsonl) is needed to compare answers")
            self._prompts = mt_bench.read_judge_prompts(self.judge_prompts)
        return self._prompts

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """P(a > b): 1 if a's ``single-v1`` rating beats b's by more than ``TIE_DELTA``, 0 if b's
        beats a's so, else 1/2; raises ApiError when either has no rating. The question is the record's ``prompt``."""
        prompt = self.prompts()[mt_bench.PROMPT_NAMES[False, 1]]
        items = [(prompt["system_prompt"], mt_bench.user_prompt(prompt, {"turns": [record["prompt"]]}, [answer], 1))
                 for record, a, b in comparisons for answer in (a, b)]
        scores = [g["score"] for g in self.grade_many(items, desc="mt_bench compare")]
        preferences = []
        for (record, _, _), r_a, r_b in zip(comparisons, scores[0::2], scores[1::2]):
            if mt_bench.NO_RATING in (r_a, r_b):
                raise ApiError(f"the MT-Bench judge gave no rating to an answer to prompt {record.get('id')!r}")
            preferences.append(0.5 if abs(r_a - r_b) <= TIE_DELTA else float(r_a > r_b))
        return preferences
