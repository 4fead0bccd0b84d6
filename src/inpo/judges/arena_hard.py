"""Arena-Hard v0.1's judge over an OpenAI-compatible API, from its official ``judge_config.yaml``.

The settings are read at run time (``inpo.benchmarks.arena_hard.read_judge_config``): the
judge model (gpt-4-1106-preview), the system prompt, the prompt template (filled with
``question_1``, ``answer_1`` = assistant A, ``answer_2`` = assistant B by ``str.format``), the
verdict regex, ``number_of_judgment_attempts`` (2), ``temperature`` (0) and ``max_tokens``
(4096). A request is ``{messages: [system, user], temperature, max_tokens}``, as
arena-hard-auto's ``chat_completion_openai`` sends it. As its v0.1 ``gen_judgment.py`` does, a
judgment with no verdict label is continued: the reply and the user turn "continue your judgment
and finish by outputting a final verdict label" are appended and the judge asked again, up to
the number of attempts; the judgment is the replies joined, each after a newline. Each question
is two games, A = baseline then A = the answer. Only replies with a verdict are cached.

``compare`` (this project's use as a pairwise judge): a verdict maps to P(A wins) = 1, 3/4,
1/2, 1/4, 0; P(a > b) averages the games with a verdict and raises when neither has one. The
official score is computed from the verdicts (``inpo.benchmarks.arena_hard.score``).
"""

from __future__ import annotations

import math
from typing import Sequence

from inpo.benchmarks import arena_hard
from inpo.judges import Comparison
from inpo.judges.api import ApiJudge, reply_text
from inpo.judges.api_client import ApiError, ChatClient, RequestRejected

VERDICT_SCORES = {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}  # P(A wins), the project's map


class ArenaHardJudge(ApiJudge):
    """Arena-Hard v0.1's judge: two games per question, verdict labels, see the module doc."""

    OPTIONS = ("judge_config",)

    def __init__(self, client: ChatClient, judge_config: str):
        super().__init__(client)
        self.config = arena_hard.read_judge_config(judge_config)

    @classmethod
    def official_model(cls, judge_config: str) -> str:
        return arena_hard.read_judge_config(judge_config)["judge_model"]

    @classmethod
    def from_config(cls, **options) -> "ArenaHardJudge":
        if "judge_config" not in options:
            raise ValueError(f"judge {cls.__name__} needs option 'judge_config' (Arena-Hard's judge_config.yaml)")
        return super().from_config(**options)

    def conversation(self, question: str, answer_a: str, answer_b: str) -> list[dict]:
        """The official first request's messages: the system prompt, then one user turn per template."""
        return [{"role": "system", "content": self.config["system_prompt"]},
                *({"role": "user", "content": template.format(question_1=question, answer_1=answer_a, answer_2=answer_b)}
                  for template in self.config["prompt_template"])]

    def _has_verdict(self, reply: dict) -> bool:
        return arena_hard.judgment_verdict(reply_text(reply) or "", self.config["pattern"])[0] is not None

    def judge_many(self, conversations: list[list[dict]]) -> list[dict]:
        """Each conversation judged with up to ``number_of_judgment_attempts`` attempts: a game
        ``{prompt, judgment, score}`` (score None without a valid verdict; ``error`` when the
        server rejected a request)."""
        games = [{"prompt": conv[1]["content"], "judgment": "", "score": None} for conv in conversations]
        pending = {i: list(conv) for i, conv in enumerate(conversations)}
        for attempt in range(self.config["number_of_judgment_attempts"]):
            order = list(pending)
            bodies = [{"messages": pending[i], "temperature": self.config["temperature"],
                       "max_tokens": self.config["max_tokens"]} for i in order]
            replies = self._complete(bodies, desc=f"arena_hard judge (attempt {attempt + 1})", usable=self._has_verdict)
            for i, reply in zip(order, replies):
                if isinstance(reply, RequestRejected):
                    games[i]["error"] = str(reply)
                    del pending[i]
                    continue
                text = reply_text(reply) or ""  # a reply without text: no verdict in it
                games[i]["judgment"] += "\n" + text
                games[i]["score"], again = arena_hard.judgment_verdict(games[i]["judgment"], self.config["pattern"])
                if again:
                    pending[i] += [{"role": "assistant", "content": text},
                                   {"role": "user", "content": arena_hard.CONTINUE_JUDGMENT}]
                else:
                    del pending[i]
            if not pending:
                break
        return games

    def games_many(self, items: Sequence[tuple[str, str, str]]) -> list[list[dict]]:
        """For each (question, baseline_answer, answer): game 1 with A = baseline, game 2 with A = answer."""
        games = self.judge_many([self.conversation(question, first, second)
                                 for question, baseline, answer in items
                                 for first, second in ((baseline, answer), (answer, baseline))])
        return [games[2 * i: 2 * i + 2] for i in range(len(items))]

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """P(a > b) with b as the baseline: the mean of 1 - s(game 1) and s(game 2) over the games
        with a verdict, s = ``VERDICT_SCORES``."""
        result = []
        for (record, _, _), (g1, g2) in zip(comparisons, self.games_many([(r["prompt"], b, a) for r, a, b in comparisons])):
            a_in_game_1 = 1.0 - VERDICT_SCORES.get(g1["score"], math.nan)  # game 1: a is B
            verdicts = [p for p in (a_in_game_1, VERDICT_SCORES.get(g2["score"], math.nan)) if not math.isnan(p)]
            if not verdicts:
                raise ApiError(f"the Arena-Hard judge gave no verdict in either game for prompt {record.get('id')!r}")
            result.append(sum(verdicts) / len(verdicts))
        return result
