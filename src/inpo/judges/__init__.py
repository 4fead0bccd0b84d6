"""Judges: who says which of two responses to a prompt is better.

Every judge is a ``Judge``: ``compare(record, a, b)`` is P(a > b | prompt), averaged over both
presentation orders, and ``compare_many`` answers a batch of such questions at once (model
judges batch the forward passes, API judges send the requests concurrently). A ``RewardJudge``
also scores one response (``reward``/``rewards_many``); ``annotate`` then pairs best vs worst.
``n_calls`` counts what the judge billed: oracle evaluations, model sequences or API requests.

Kinds (``conf/judge/<name>.yaml`` sets ``kind`` and the judge's options):

- ``synthetic_preference``, ``synthetic_reward``: the embedded default's oracles (``synthetic``);
- ``pair_preference_lm``: a causal LM that reads the prompt and responses A and B and whose
  next-token probabilities of "A" and "B" give the preference (``preference_model``);
- ``reward_model``: a sequence-classification reward model (``reward_model``);
- ``alpaca_eval_api``, ``arena_hard_api``: the benchmarks' LLM judges over an OpenAI-compatible API
  (``alpaca_eval``, ``arena_hard``; their base and options: ``api``).
- ``mt_bench_api``: MT-Bench's single-answer grader over the same API (``mt_bench``).
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

Comparison = tuple[dict, str, str]  # (prompt record, response a, response b)


def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), computed so that sigmoid(x) + sigmoid(-x) == 1 exactly."""
    if x < 0:
        return 1.0 - sigmoid(-x)
    return 1.0 / (1.0 + math.exp(-x))


class Judge(ABC):
    """P(a > b | x) for two responses a, b to the prompt record x (a dict with ``prompt``)."""

    n_calls: int = 0

    @abstractmethod
    def compare(self, record: dict, a: str, b: str) -> float:
        """P(a > b | x), averaged over both presentation orders."""

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """``compare`` for each (record, a, b); judges that can batch override this."""
        return [self.compare(*c) for c in comparisons]


class RewardJudge(Judge):
    """A judge with a scalar reward r(y | x); its preference is Bradley-Terry, sigmoid(r(a) - r(b))."""

    @abstractmethod
    def reward(self, record: dict, text: str) -> float:
        """r(y | x)."""

    def rewards_many(self, items: Sequence[tuple[dict, str]]) -> list[float]:
        """``reward`` for each (record, response); judges that can batch override this."""
        return [self.reward(*item) for item in items]

    def compare(self, record: dict, a: str, b: str) -> float:
        r_a, r_b = self.rewards_many([(record, a), (record, b)])
        return sigmoid(r_a - r_b)

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        rewards = self.rewards_many([(record, text) for record, a, b in comparisons for text in (a, b)])
        return [sigmoid(rewards[2 * i] - rewards[2 * i + 1]) for i in range(len(comparisons))]


# kind -> "module:class"; modules are imported on use, so a judge's heavy dependencies load only for it.
JUDGE_KINDS = {
    "synthetic_preference": "synthetic:SyntheticPreferenceOracle",
    "synthetic_reward": "synthetic:SyntheticRewardOracle",
    "pair_preference_lm": "preference_model:PairPreferenceJudge",
    "reward_model": "reward_model:RewardModelJudge",
    "alpaca_eval_api": "alpaca_eval:AlpacaEvalJudge",
    "arena_hard_api": "arena_hard:ArenaHardJudge",
    "mt_bench_api": "mt_bench:MTBenchJudge",
}


def judge_class(kind: str) -> type[Judge]:
    if kind not in JUDGE_KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; known kinds: {sorted(JUDGE_KINDS)}")
    module, name = JUDGE_KINDS[kind].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def make_judge(kind: str, **options: Any) -> Judge:
    """Build a judge from its config: ``make_judge(**cfg.judge)``; each class's ``from_config`` validates."""
    return judge_class(kind).from_config(**options)


def __getattr__(name: str):
    # The synthetic oracles are the default; keep ``from inpo.judges import SyntheticPreferenceOracle`` working.
    if name in ("SyntheticPreferenceOracle", "SyntheticRewardOracle", "FeatureJudge"):
        return getattr(importlib.import_module(f"{__name__}.synthetic"), name)
    raise AttributeError(name)
