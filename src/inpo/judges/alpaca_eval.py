"""AlpacaEval 2.0's judge (``weighted_alpaca_eval_gpt4_turbo``) over an OpenAI-compatible API.

Everything that decides a verdict is the alpaca-eval package's, read at run time
(``inpo.benchmarks.alpaca_eval.annotator``): the prompt template, the request (model
gpt-4-1106-preview, ``max_tokens`` 1, ``temperature`` 1, ``top_p`` 1, ``logprobs`` with
``top_logprobs`` 5, as its ``configs.yaml`` and ``openai_completions`` set them) and the
``logprob_parser``: with l_m, l_M the log-probs of the labels of output 1 and output 2 among the
first token's top log-probs (a missing one has probability 0),

    preference = 2 - P(m) = 1 + exp(l_M) / (exp(l_m) + exp(l_M)),   P(output 2 better) = preference - 1,

and no verdict (NaN) when neither label is there: a refusal, which AlpacaEval drops. Identical
outputs are a draw without a request, as ``PairwiseAnnotator`` does. Only replies with a verdict
are cached. The project's HTTP client sends the requests (retries, concurrency, a cache that
keeps only usable replies; tests/test_alpaca_eval_official.py checks the requests equal the
package's own annotator's).

``compare`` (this project's use as a pairwise judge, e.g. for the held-out evaluation):
P(a > b) = mean over the presentation orders with a verdict of P(a better | that order); it
raises when neither order has one, since a comparison has no value to give then.
"""

from __future__ import annotations

import math
from typing import Sequence

from inpo.benchmarks import alpaca_eval
from inpo.judges import Comparison
from inpo.judges.api import ApiJudge
from inpo.judges.api_client import ApiError, ChatClient, RequestRejected


class AlpacaEvalJudge(ApiJudge):
    """AlpacaEval 2.0's weighted judge: P(output 2 better) from the label log-probs, see the module doc."""

    OPTIONS = ("annotator",)

    def __init__(self, client: ChatClient, annotator: str = alpaca_eval.ANNOTATOR):
        super().__init__(client)
        self.annotator = alpaca_eval.annotator(annotator)

    @classmethod
    def official_model(cls, annotator: str = alpaca_eval.ANNOTATOR) -> str:
        return alpaca_eval.annotator(annotator).model

    def preference_many(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[float, dict | RequestRejected | None]]:
        """(P(output_2 better), the reply) for each (instruction, output_1, output_2), in that one
        order. P is NaN when the reply gives no verdict (refusal, rejected request); identical
        outputs give 0.5 and no reply (None), without a request."""
        asked = [i for i, (_, output_1, output_2) in enumerate(items) if output_1 != output_2]
        replies = self._complete([self.annotator.request(*items[i]) for i in asked], desc="alpaca_eval judge",
                                 usable=lambda reply: not math.isnan(alpaca_eval.parse_preference(self.annotator, reply)))
        results: list[tuple[float, dict | RequestRejected | None]] = [(0.5, None)] * len(items)
        for i, reply in zip(asked, replies):
            preference = math.nan if isinstance(reply, RequestRejected) else alpaca_eval.parse_preference(self.annotator, reply)
            results[i] = (preference - 1.0, reply)
        return results

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """P(a > b): the mean of 1 - p2(a, b) and p2(b, a) over the orders with a verdict (module doc)."""
        items = [item for record, a, b in comparisons for item in ((record["prompt"], a, b), (record["prompt"], b, a))]
        p2 = [p for p, _ in self.preference_many(items)]
        result = []
        for i, (record, _, _) in enumerate(comparisons):
            a_first, b_first = 1.0 - p2[2 * i], p2[2 * i + 1]  # P(a better) as each order showed it
            verdicts = [p for p in (a_first, b_first) if not math.isnan(p)]
            if not verdicts:
                raise ApiError(f"the AlpacaEval judge gave no verdict in either order for prompt {record.get('id')!r}: "
                               f"the replies held neither label among their top log-probs (refusals)")
            result.append(sum(verdicts) / len(verdicts))
        return result
