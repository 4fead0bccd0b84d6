"""Programmatic preference oracles of the embedded default (they see responses only through features).

General preference (the paper's "preference model" role), for responses y, y' of one prompt:

    score(y, y') = w_quality (q(y) - q(y')) + w_cycle cyc(s(y), s(y')) + w_length (v(y) - v(y')) / 3
    P(y > y')    = sigmoid(score(y, y'))

q = -1 invalid, 0 valid but incorrect, 1 correct; s = bracket style; v = verbosity (0 if invalid);
cyc(s, s') = +1 if s beats s' in the cycle 0 > 1 > 2 > 0, -1 if s' beats s, 0 if equal or
either response is invalid. score is antisymmetric, so P(y > y') + P(y' > y) = 1 (exactly, in
floating point too) and P = 1/2 on equal features. The cyclic term is intransitive: no
Bradley-Terry reward reproduces it. The length term is an LLM judge's bias for longer answers.

Bradley-Terry variant (the paper's "reward model" role): the same oracle without the cycle,

    r(y) = w_quality q(y) + w_length v(y) / 3,    P_BT(y > y') = sigmoid(r(y) - r(y')).

Default weights: correctness dominates (w_quality = 2: a correct answer beats an incorrect one
with P >= sigmoid(2 - 1 - 0.6) = 0.60 whatever its style and length), the cycle matters
(w_cycle = 1: P = 0.73 between equally correct and verbose answers), and the length bias is
visible but second-order (w_length = 0.6: the longest preamble beats none with P = 0.65).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from inpo.judges import Judge, RewardJudge, sigmoid
from inpo.task import FEATURE_SPACE, N_STYLES, FeatureCell, feature_cell, parse_response

MAX_VERBOSITY = 3  # v / 3 puts the length term in [0, 1]


def quality(cell: FeatureCell) -> int:
    """q: -1 invalid, 0 valid but incorrect, 1 correct."""
    return -1 if not cell.valid else int(cell.correct)


def cycle(a: FeatureCell, b: FeatureCell) -> int:
    """cyc: +1 if a's style beats b's in 0 > 1 > 2 > 0, -1 if b's beats a's, 0 if equal or either invalid."""
    if not (a.valid and b.valid) or a.style == b.style:
        return 0
    return 1 if (b.style - a.style) % N_STYLES == 1 else -1


def verbosity(cell: FeatureCell) -> int:
    """v: the preamble level, 0 for an invalid response."""
    return cell.verbosity if cell.valid else 0


@dataclass(eq=False)
class FeatureJudge(Judge):
    """A judge that depends on a response only through its ``FeatureCell``.

    ``preference(record, a, b)`` is P(a > b | prompt) for one A/B order; ``compare`` averages
    both orders, the interface LLM judges share. ``n_calls`` counts oracle calls (what an
    LLM judge would bill): one per ``preference`` here, per ``reward`` in the reward oracle.
    """

    n_calls: int = field(default=0, init=False)

    @classmethod
    def from_config(cls, **weights: Any) -> "FeatureJudge":
        """The judge with the given weights (``w_quality``, ``w_cycle``, ``w_length``) as floats."""
        allowed = {"w_quality", "w_cycle", "w_length"} & set(cls.__dataclass_fields__)
        unknown = set(weights) - allowed
        if unknown:
            raise ValueError(f"judge {cls.__name__} takes weights {sorted(allowed)}, got unknown {sorted(unknown)}")
        return cls(**{name: float(w) for name, w in weights.items()})

    @abstractmethod
    def cell_preference(self, a: FeatureCell, b: FeatureCell) -> float:
        """P(a > b) between two feature cells."""

    def preference(self, prompt_record: dict, a_text: str, b_text: str) -> float:
        """P(a > b | x) with a shown first."""
        self.n_calls += 1
        items = prompt_record["items"]
        return self.cell_preference(parse_response(items, a_text).cell, parse_response(items, b_text).cell)

    def compare(self, prompt_record: dict, a_text: str, b_text: str) -> float:
        """P(a > b | x) averaged over both presentation orders: (p(a, b) + 1 - p(b, a)) / 2."""
        p_ab = self.preference(prompt_record, a_text, b_text)
        p_ba = self.preference(prompt_record, b_text, a_text)
        return 0.5 * (p_ab + 1.0 - p_ba)

    def preference_matrix(self) -> np.ndarray:
        """M[i, j] = P(FEATURE_SPACE[i] > FEATURE_SPACE[j]); M + M.T = 1. (P pi) = M @ pi."""
        return np.array([[self.cell_preference(a, b) for b in FEATURE_SPACE] for a in FEATURE_SPACE])

    @staticmethod
    def feature_cells(prompt_records: Sequence[dict], responses: Sequence[str]) -> np.ndarray:
        """Index into ``FEATURE_SPACE`` of ``responses[i]`` answering ``prompt_records[i]``, shape [len(responses)]."""
        if len(prompt_records) != len(responses) or not responses:
            raise ValueError(
                f"need one response per prompt record and at least one, got {len(prompt_records)} records "
                f"and {len(responses)} responses"
            )
        return np.array([feature_cell(parse_response(record["items"], text))
                         for record, text in zip(prompt_records, responses)])

    @classmethod
    def feature_distribution(cls, prompt_records: Sequence[dict], responses: Sequence[str]) -> np.ndarray:
        """Normalized histogram over ``FEATURE_SPACE`` of ``responses[i]`` answering ``prompt_records[i]``."""
        counts = np.bincount(cls.feature_cells(prompt_records, responses), minlength=len(FEATURE_SPACE))
        return counts / counts.sum()


@dataclass(eq=False)
class SyntheticPreferenceOracle(FeatureJudge):
    """The general (intransitive) preference: P(y > y') = sigmoid(score(y, y')), see the module doc."""

    w_quality: float = 2.0
    w_cycle: float = 1.0
    w_length: float = 0.6

    def score(self, a: FeatureCell, b: FeatureCell) -> float:
        """score(a, b) = w_quality (q(a) - q(b)) + w_cycle cyc(a, b) + w_length (v(a) - v(b)) / 3."""
        return (
            self.w_quality * (quality(a) - quality(b))
            + self.w_cycle * cycle(a, b)
            + self.w_length * (verbosity(a) - verbosity(b)) / MAX_VERBOSITY
        )

    def cell_preference(self, a: FeatureCell, b: FeatureCell) -> float:
        return sigmoid(self.score(a, b))


@dataclass(eq=False)
class SyntheticRewardOracle(FeatureJudge, RewardJudge):
    """The Bradley-Terry variant: r(y) = w_quality q(y) + w_length v(y) / 3, P(a > b) = sigmoid(r(a) - r(b))."""

    w_quality: float = 2.0
    w_length: float = 0.6

    def cell_reward(self, cell: FeatureCell) -> float:
        return self.w_quality * quality(cell) + self.w_length * verbosity(cell) / MAX_VERBOSITY

    def reward(self, prompt_record: dict, text: str) -> float:
        """r(y | x), one oracle call."""
        self.n_calls += 1
        return self.cell_reward(parse_response(prompt_record["items"], text).cell)

    def cell_preference(self, a: FeatureCell, b: FeatureCell) -> float:
        return sigmoid(self.cell_reward(a) - self.cell_reward(b))

    def preference(self, prompt_record: dict, a_text: str, b_text: str) -> float:
        """sigmoid(r(a) - r(b)); two reward calls."""
        return sigmoid(self.reward(prompt_record, a_text) - self.reward(prompt_record, b_text))
