"""The synthetic instruction task of the embedded default: sort a few digits, in a style.

Prompt:   ``sort 7 3 9 1``  (3 to 5 digits, repetition allowed)
Response: ``[preamble] <open> d1 d2 ... dn <close>``

- style = the bracket pair: 0 ``( )``, 1 ``[ ]``, 2 ``{ }``;
- verbosity 0..3 = which preamble precedes the list (0: none; each level strictly longer);
- correct = the digits are exactly ``sorted(prompt items)``.

Everything is whitespace-separated words from ``VOCABULARY``, so a word-level tokenizer covers
prompts and responses exactly. A response matters to the oracle only through its
``FeatureCell``; ``FEATURE_SPACE`` enumerates the 25 cells (one invalid cell plus correct x
style x verbosity), which makes exact game quantities (duality gap, Nash policy) computable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
INSTRUCTION = "sort"
BRACKETS: tuple[tuple[str, str], ...] = (("(", ")"), ("[", "]"), ("{", "}"))
PREAMBLES: tuple[tuple[str, ...], ...] = (
    (),
    ("sure", "."),
    ("sure", ",", "here", "it", "is", ":"),
    ("sure", ",", "here", "is", "the", "sorted", "list", "you", "asked", "for", ":"),
)
N_STYLES = len(BRACKETS)
N_VERBOSITY = len(PREAMBLES)
_OPEN_STYLE = {open_: style for style, (open_, _) in enumerate(BRACKETS)}
_PREAMBLE_LEVEL = {preamble: level for level, preamble in enumerate(PREAMBLES)}


def _vocabulary() -> tuple[str, ...]:
    words = [*DIGITS, INSTRUCTION, *(b for pair in BRACKETS for b in pair)]
    for preamble in PREAMBLES:
        words += [w for w in preamble if w not in words]
    return tuple(words)


VOCABULARY: tuple[str, ...] = _vocabulary()
"""Every word a prompt or a well-formed response can contain, in a fixed order (30 words)."""


@dataclass(frozen=True)
class TaskConfig:
    """The task's settings; the defaults are the embedded default (a Hydra ``task`` group overrides them).

    The demonstration defaults leave room to improve: 40% of demonstrations are wrong, the
    styles are skewed away from the uniform mix of the Nash policy, and short preambles
    dominate although the oracle's length bias favours the longest one.
    """

    min_items: int = 3  # fewest digits in a prompt
    max_items: int = 5  # most digits in a prompt
    p_correct: float = 0.6  # probability that a demonstration is the correct answer
    style_probs: tuple[float, ...] = (0.6, 0.3, 0.1)  # demonstration bracket style 0, 1, 2
    verbosity_probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)  # demonstration preamble level 0..3

    def __post_init__(self) -> None:
        # Lists from an OmegaConf config become tuples, so the config stays hashable and frozen.
        object.__setattr__(self, "style_probs", tuple(float(p) for p in self.style_probs))
        object.__setattr__(self, "verbosity_probs", tuple(float(p) for p in self.verbosity_probs))
        _check_item_range(self.min_items, self.max_items)
        _check_demonstration_probs(self.p_correct, self.style_probs, self.verbosity_probs)


class FeatureCell(NamedTuple):
    """What the oracle sees of a response. The invalid cell has style = verbosity = None."""

    valid: bool
    correct: bool
    style: int | None
    verbosity: int | None


INVALID_CELL = FeatureCell(False, False, None, None)

FEATURE_SPACE: tuple[FeatureCell, ...] = (INVALID_CELL,) + tuple(
    FeatureCell(True, correct, style, verbosity)
    for correct in (False, True)
    for style in range(N_STYLES)
    for verbosity in range(N_VERBOSITY)
)
"""The 25 enumerable cells: index 0 is invalid, then (correct, style, verbosity) in that nesting order."""

_CELL_INDEX = {cell: i for i, cell in enumerate(FEATURE_SPACE)}


@dataclass(frozen=True)
class Features:
    """Parsed features of one response; ``n_words`` is its length in words (tokens of the word tokenizer)."""

    valid: bool
    correct: bool
    style: int | None
    verbosity: int | None
    n_words: int

    @property
    def cell(self) -> FeatureCell:
        return FeatureCell(self.valid, self.correct, self.style, self.verbosity)


def feature_cell(features: Features) -> int:
    """Index of the response's cell in ``FEATURE_SPACE``."""
    return _CELL_INDEX[features.cell]


def _check_item_range(min_items: int, max_items: int) -> None:
    if not 1 <= min_items <= max_items:
        raise ValueError(f"need 1 <= min_items <= max_items, got min_items={min_items}, max_items={max_items}")


def _check_probs(name: str, probs: Sequence[float], size: int) -> None:
    if len(probs) != size or any(not p >= 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be {size} non-negative probabilities summing to 1, got {tuple(probs)}")


def _check_demonstration_probs(
    p_correct: float, style_probs: Sequence[float], verbosity_probs: Sequence[float]
) -> None:
    if not 0.0 <= p_correct <= 1.0:
        raise ValueError(f"p_correct must be in [0, 1], got {p_correct}")
    _check_probs("style_probs", style_probs, N_STYLES)
    _check_probs("verbosity_probs", verbosity_probs, N_VERBOSITY)


def render_prompt(items: Sequence[int]) -> str:
    """``sort d1 ... dn``."""
    return " ".join([INSTRUCTION, *(str(d) for d in items)])


def make_prompts(
    n: int,
    seed: int | Sequence[int],
    split: str = "train",
    min_items: int = TaskConfig.min_items,
    max_items: int = TaskConfig.max_items,
) -> list[dict]:
    """``n`` prompt records ``{"id": f"{split}-{i:05d}", "prompt": "sort ...", "items": [...]}``.

    The length is uniform on [min_items, max_items] and the digits are uniform (with
    repetition); the same seed gives the same records.
    """
    if n < 0:
        raise ValueError(f"the number of prompts must be >= 0, got {n}")
    _check_item_range(min_items, max_items)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        items = rng.integers(0, 10, size=int(rng.integers(min_items, max_items + 1))).tolist()
        records.append({"id": f"{split}-{i:05d}", "prompt": render_prompt(items), "items": items})
    return records


def render_response(items: Sequence[int], style: int, verbosity: int) -> str:
    """``[preamble(verbosity)] open(style) d1 ... dn close(style)`` with the digits as given."""
    if style not in range(N_STYLES) or verbosity not in range(N_VERBOSITY):
        raise ValueError(
            f"need style in 0..{N_STYLES - 1} and verbosity in 0..{N_VERBOSITY - 1}, got {style}, {verbosity}"
        )
    open_, close = BRACKETS[style]
    return " ".join([*PREAMBLES[verbosity], open_, *(str(d) for d in items), close])


def parse_response(prompt_items: Sequence[int], text: str) -> Features:
    """Features of ``text`` as an answer to the prompt with ``prompt_items``.

    Valid iff the words are exactly one known preamble, one opening bracket, digits only, and
    the matching closing bracket as the last word. Correct iff valid and the digits equal
    ``sorted(prompt_items)``. Anything else is invalid (correct=False, style=verbosity=None).
    """
    words = text.split()
    invalid = Features(False, False, None, None, len(words))
    opens = [i for i, w in enumerate(words) if w in _OPEN_STYLE]
    if len(opens) != 1:
        return invalid
    start = opens[0]
    style = _OPEN_STYLE[words[start]]
    preamble, body = tuple(words[:start]), words[start + 1 :]
    if preamble not in _PREAMBLE_LEVEL or not body or body[-1] != BRACKETS[style][1]:
        return invalid
    digits = body[:-1]
    if not all(w in DIGITS for w in digits):
        return invalid
    correct = [int(w) for w in digits] == sorted(prompt_items)
    return Features(True, correct, style, _PREAMBLE_LEVEL[preamble], len(words))



def _imperfect_answer(items: Sequence[int], rng: np.random.Generator) -> list[int]:
    """A wrong answer of a kind a weak model makes; never equal to ``sorted(items)``.

    Picks uniformly among the mistakes that apply: swap two adjacent unequal digits of the
    sorted list, drop one digit, duplicate one digit, or echo the input order (if unsorted).
    """
    target = sorted(items)
    swaps = [i for i in range(len(target) - 1) if target[i] != target[i + 1]]
    mistakes = ["drop", "duplicate"] + (["swap"] if swaps else []) + (["echo"] if list(items) != target else [])
    mistake = mistakes[rng.integers(len(mistakes))]
    if mistake == "echo":
        return list(items)
    if mistake == "swap":
        i = swaps[rng.integers(len(swaps))]
        return target[:i] + [target[i + 1], target[i]] + target[i + 2 :]
    i = int(rng.integers(len(target)))
    return target[:i] + target[i + 1 :] if mistake == "drop" else target[: i + 1] + target[i:]


def make_demonstration(
    items: Sequence[int],
    rng: np.random.Generator,
    p_correct: float = TaskConfig.p_correct,
    style_probs: Sequence[float] = TaskConfig.style_probs,
    verbosity_probs: Sequence[float] = TaskConfig.verbosity_probs,
) -> str:
    """One SFT demonstration: always well formed; correct with probability ``p_correct``.

    Correctness, style and verbosity are drawn independently, so the demonstration
    distribution over ``FEATURE_SPACE`` is ``demonstration_distribution(...)``.
    """
    _check_demonstration_probs(p_correct, style_probs, verbosity_probs)
    answer = sorted(items) if rng.random() < p_correct else _imperfect_answer(items, rng)
    style = int(rng.choice(N_STYLES, p=style_probs))
    verbosity = int(rng.choice(N_VERBOSITY, p=verbosity_probs))
    return render_response(answer, style, verbosity)


def demonstration_distribution(
    p_correct: float = TaskConfig.p_correct,
    style_probs: Sequence[float] = TaskConfig.style_probs,
    verbosity_probs: Sequence[float] = TaskConfig.verbosity_probs,
) -> np.ndarray:
    """Exact distribution of ``make_demonstration`` over ``FEATURE_SPACE``:

        pi(valid, c, s, v) = P(c) * style_probs[s] * verbosity_probs[v],  pi(invalid) = 0
    """
    _check_demonstration_probs(p_correct, style_probs, verbosity_probs)
    pi = np.zeros(len(FEATURE_SPACE))
    for i, cell in enumerate(FEATURE_SPACE[1:], start=1):
        p_c = p_correct if cell.correct else 1.0 - p_correct
        pi[i] = p_c * style_probs[cell.style] * verbosity_probs[cell.verbosity]
    return pi


def describe_distribution(pi: Sequence[float]) -> dict[str, float]:
    """Readable marginals of a distribution over ``FEATURE_SPACE``: shares of invalid and correct
    answers, of each bracket style, and the mean verbosity of the valid answers."""
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (len(FEATURE_SPACE),):
        raise ValueError(f"need a distribution over the {len(FEATURE_SPACE)} feature cells, got shape {pi.shape}")
    valid = [(p, cell) for p, cell in zip(pi, FEATURE_SPACE) if cell.valid]
    summary = {"share_invalid": float(pi[0]), "share_correct": float(sum(p for p, c in valid if c.correct))}
    for style, (open_, close) in enumerate(BRACKETS):
        summary[f"share_style_{open_}{close}"] = float(sum(p for p, c in valid if c.style == style))
    total_valid = sum(p for p, _ in valid)
    summary["mean_verbosity"] = float(sum(p * c.verbosity for p, c in valid) / total_valid) if total_valid else 0.0
    return summary
