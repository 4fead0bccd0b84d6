"""Preference pairs (y_w, y_l) from the K responses to one prompt (paper, section 4.1).

- With a pairwise judge: ``knockout_pair``, the knockout tournament of DESIGN.md section 2.
- With a scalar reward: ``best_vs_worst``, y_w = argmax reward, y_l = argmin reward.
- For SPPO: ``self_play_pair``, the highest and lowest estimated win rate against pi_t, from every
  pair's comparison (DESIGN.md section 2).

All work on indices into the K responses, so they know nothing about texts or judges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator, Sequence


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


def knockout_rounds(n: int) -> Generator[list[tuple[int, int]], list[float], Tournament | None]:
    """Knockout tournament over responses 0..n-1, played round by round.

    A generator: it yields the matches (i, j), i < j, that a round needs, receives P(i beats j)
    for each (order-averaged), and returns the ``Tournament`` (or None). Driving many prompts'
    tournaments in lockstep lets a model judge batch a whole round across prompts.

    1. Round one pairs (0, 1), (2, 3), ...; winners go to bracket W, losers to bracket L. With
       n odd the last response has a bye and enters both brackets (it may be best or worst).
    2. W plays single elimination down to y_w (the winner advances); L plays down to y_l (the
       loser advances), both brackets in the same rounds. In a round with an odd count the last
       entrant advances without a match.
    3. Final check: y_w vs y_l; the pair is kept only if P(y_w > y_l) > 1/2 strictly.

    A match is won by i (the lower index; entrants stay in index order) iff P(i beats j) >= 1/2:
    ties go to the lower index. Responses are i.i.d. samples, so this favours no kind of
    response, and the result is deterministic. Each pair is judged at most once (a repeat
    reuses the result), so at most ``max_knockout_comparisons(n)`` matches are asked for.

    Returns None when the final check fails, or when one response (the bye) comes out as both
    y_w and y_l, which an intransitive judge allows.
    """
    if n < 2:
        raise ValueError(f"a knockout tournament needs at least 2 responses, got {n}")
    results: dict[tuple[int, int], float] = {}

    def ask(matches: list[tuple[int, int]]):
        """Judge the matches not played yet (as (lower, higher))."""
        new = list(dict.fromkeys((min(i, j), max(i, j)) for i, j in matches if (min(i, j), max(i, j)) not in results))
        if new:
            answers = yield new
            if len(answers) != len(new):
                raise ValueError(f"asked for {len(new)} matches, got {len(answers)} results")
            for match, p in zip(new, answers):
                p = float(p)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"P({match[0]} beats {match[1]}) must be a probability in [0, 1], got {p}")
                results[match] = p

    def p_beats(i: int, j: int) -> float:
        p = results[(min(i, j), max(i, j))]
        return p if i < j else 1.0 - p

    def play(entrants: list[int], keep_winner: bool) -> list[int]:
        """One elimination round of a bracket (its matches already judged)."""
        advancing = [a if (p_beats(a, b) >= 0.5) == keep_winner else b for a, b in zip(entrants[::2], entrants[1::2])]
        return advancing + entrants[len(advancing) * 2 :]  # the bye, if any, advances last

    first_round = [(i, i + 1) for i in range(0, n - 1, 2)]
    yield from ask(first_round)
    bye = [n - 1] if n % 2 else []
    winners = [i if p_beats(i, j) >= 0.5 else j for i, j in first_round] + bye
    losers = [j if p_beats(i, j) >= 0.5 else i for i, j in first_round] + bye
    while len(winners) > 1 or len(losers) > 1:
        yield from ask(list(zip(winners[::2], winners[1::2])) + list(zip(losers[::2], losers[1::2])))
        winners, losers = play(winners, keep_winner=True), play(losers, keep_winner=False)
    y_w, y_l = winners[0], losers[0]
    if y_w == y_l:
        return None
    yield from ask([(y_w, y_l)])
    p_final = p_beats(y_w, y_l)
    if not p_final > 0.5:
        return None
    return Tournament(chosen=y_w, rejected=y_l, preference=p_final, n_comparisons=len(results))


def knockout_pair(n: int, compare: Callable[[int, int], float]) -> Tournament | None:
    """``knockout_rounds(n)`` with ``compare(i, j)`` = P(i beats j) answering each match."""
    return play_tournaments([knockout_rounds(n)], lambda matches: [compare(i, j) for _, (i, j) in matches])[0]


def play_tournaments(tournaments: Sequence[Generator], judge_round: Callable[[list[tuple[int, tuple[int, int]]]], list[float]]) -> list:
    """Drive several ``knockout_rounds`` generators in lockstep.

    Each round, ``judge_round`` gets every pending match as (tournament index, (i, j)) and
    returns P(i beats j) for each, in order; returns each tournament's result.
    """
    results: list = [None] * len(tournaments)
    pending: dict[int, list[tuple[int, int]]] = {}
    for k, t in enumerate(tournaments):
        try:
            pending[k] = next(t)
        except StopIteration as stop:
            results[k] = stop.value
    while pending:
        matches = [(k, m) for k, ms in pending.items() for m in ms]
        answers = judge_round(matches)
        if len(answers) != len(matches):
            raise ValueError(f"asked for {len(matches)} matches, got {len(answers)} results")
        offset, asked = 0, pending
        pending = {}
        for k, ms in asked.items():
            try:
                pending[k] = tournaments[k].send(list(answers[offset : offset + len(ms)]))
            except StopIteration as stop:
                results[k] = stop.value
            offset += len(ms)
    return results


def best_vs_worst(rewards: Sequence[float]) -> tuple[int, int] | None:
    """(argmax, argmin) of the rewards, ties to the lowest index; None if all rewards are equal."""
    if len(rewards) < 2:
        raise ValueError(f"best-vs-worst needs at least 2 rewards, got {len(rewards)}")
    if any(math.isnan(r) for r in rewards):
        raise ValueError(f"rewards must not be NaN, got {list(rewards)}")
    best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
    worst = min(range(len(rewards)), key=lambda i: (rewards[i], i))
    return None if rewards[best] == rewards[worst] else (best, worst)


@dataclass(frozen=True)
class SelfPlayPair:
    """SPPO's pair: indices of y_w and y_l and their estimated win rates Phat(y > pi_t)."""

    chosen: int
    rejected: int
    chosen_winrate: float
    rejected_winrate: float


def win_rates(matrix: Sequence[Sequence[float]]) -> list[float]:
    """Each response's estimated win rate against the policy that sampled them (SPPO, Wu et al., 2024):

        Phat(y_i > pi_t) = 1/(K-1) * sum_{j != i} P(y_i > y_j)

    from the K x K matrix ``matrix[i][j]`` = P(y_i > y_j); the diagonal is not read. The pairs must
    be complementary, P(y_i > y_j) + P(y_j > y_i) = 1, as an order-averaged judge gives them.
    (uclaml/SPPO's compute_prob.py also counts y_i against itself at 1/2, dividing by K: that
    shrinks Phat - 1/2 by (K-1)/K; here the K-1 other samples estimate P(y_i > pi_t).)
    """
    k = len(matrix)
    if k < 2 or any(len(row) != k for row in matrix):
        raise ValueError(f"win rates need a K x K matrix with K >= 2, got rows of lengths {[len(r) for r in matrix]}")
    for i in range(k):
        for j in range(i + 1, k):
            p, q = float(matrix[i][j]), float(matrix[j][i])
            if not (0.0 <= p <= 1.0 and 0.0 <= q <= 1.0 and math.isclose(p + q, 1.0, abs_tol=1e-9)):
                raise ValueError(f"P({i} beats {j}) = {p} and P({j} beats {i}) = {q} must be probabilities summing to 1")
    return [sum(float(matrix[i][j]) for j in range(k) if j != i) / (k - 1) for i in range(k)]


def self_play_pair(matrix: Sequence[Sequence[float]]) -> SelfPlayPair | None:
    """SPPO's pair from every pair's preference ``matrix[i][j]`` = P(y_i > y_j): y_w = argmax and
    y_l = argmin of ``win_rates`` (ties to the lowest index); None when all win rates are equal."""
    rates = win_rates(matrix)
    pair = best_vs_worst(rates)
    return None if pair is None else SelfPlayPair(pair[0], pair[1], rates[pair[0]], rates[pair[1]])
