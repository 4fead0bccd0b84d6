"""Preference pairs (y_w, y_l) from the K responses to one prompt (paper, section 4.1).

- With a pairwise judge: ``knockout_pair``, the knockout tournament of DESIGN.md section 2.
- With a scalar reward: ``best_vs_worst``, y_w = argmax reward, y_l = argmin reward.

Both work on indices into the K responses, so they know nothing about texts or judges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Tournament:
    """A kept pair: indices of y_w and y_l, P(y_w > y_l) from the final check, and the judge calls used."""

    chosen: int
    rejected: int
    preference: float
    n_comparisons: int


def max_knockout_comparisons(n: int) -> int:
    """Most judge calls of ``knockout_pair(n, ...)``: min(ceil(3n/2) - 1, n(n-1)/2); 11 for n = 8.

    n // 2 first-round matches, |W| - 1 and |L| - 1 bracket matches (|W| = |L| = ceil(n/2),
    a bye counting in both) and the final. A final between two responses that already met
    reuses that result, hence one call fewer; with n <= 3 the final is always such a repeat.
    """
    return min(math.ceil(3 * n / 2) - 1, n * (n - 1) // 2)


def knockout_pair(n: int, compare: Callable[[int, int], float]) -> Tournament | None:
    """Knockout tournament over responses 0..n-1; ``compare(i, j)`` = P(i beats j), order-averaged.

    1. Round one pairs (0, 1), (2, 3), ...; winners go to bracket W, losers to bracket L. With
       n odd the last response has a bye and enters both brackets (it may be best or worst).
    2. W plays single elimination down to y_w (the winner advances); L plays down to y_l (the
       loser advances). In a round with an odd count the last entrant advances without a match.
    3. Final check: y_w vs y_l; the pair is kept only if P(y_w > y_l) > 1/2 strictly.

    A match is won by i (the lower index; entrants stay in index order) iff P(i beats j) >= 1/2:
    ties go to the lower index. Responses are i.i.d. samples, so this favours no kind of
    response, and the result is deterministic. Each pair is judged at most once (a repeat
    reuses the result), so at most ``max_knockout_comparisons(n)`` calls are made.

    Returns None when the final check fails, or when one response (the bye) comes out as both
    y_w and y_l, which an intransitive judge allows.
    """
    if n < 2:
        raise ValueError(f"a knockout tournament needs at least 2 responses, got {n}")
    results: dict[tuple[int, int], float] = {}

    def p_beats(i: int, j: int) -> float:
        """P(i beats j), asking the judge once per unordered pair (as compare(lower, higher))."""
        lo, hi = min(i, j), max(i, j)
        if (lo, hi) not in results:
            p = float(compare(lo, hi))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"compare({lo}, {hi}) must be a probability in [0, 1], got {p}")
            results[(lo, hi)] = p
        return results[(lo, hi)] if i == lo else 1.0 - results[(lo, hi)]

    def match(i: int, j: int) -> tuple[int, int]:
        """(winner, loser) of i < j; a tie goes to i."""
        return (i, j) if p_beats(i, j) >= 0.5 else (j, i)

    def eliminate(entrants: list[int], keep_winner: bool) -> int:
        while len(entrants) > 1:
            advancing = [match(a, b)[0 if keep_winner else 1] for a, b in zip(entrants[::2], entrants[1::2])]
            entrants = advancing + entrants[len(advancing) * 2 :]  # the bye, if any, advances last
        return entrants[0]

    first_round = [match(i, i + 1) for i in range(0, n - 1, 2)]
    bye = [n - 1] if n % 2 else []
    y_w = eliminate([w for w, _ in first_round] + bye, keep_winner=True)
    y_l = eliminate([l for _, l in first_round] + bye, keep_winner=False)
    if y_w == y_l:
        return None
    p_final = p_beats(y_w, y_l)
    if not p_final > 0.5:
        return None
    return Tournament(chosen=y_w, rejected=y_l, preference=p_final, n_comparisons=len(results))


def best_vs_worst(rewards: Sequence[float]) -> tuple[int, int] | None:
    """(argmax, argmin) of the rewards, ties to the lowest index; None if all rewards are equal."""
    if len(rewards) < 2:
        raise ValueError(f"best-vs-worst needs at least 2 rewards, got {len(rewards)}")
    if any(math.isnan(r) for r in rewards):
        raise ValueError(f"rewards must not be NaN, got {list(rewards)}")
    best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
    worst = min(range(len(rewards)), key=lambda i: (rewards[i], i))
    return None if rewards[best] == rewards[worst] else (best, worst)
