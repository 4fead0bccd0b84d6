import math
import random

import numpy as np
import pytest

from inpo.pairs import (SelfPlayPair, Tournament, best_vs_worst, knockout_pair, knockout_rounds, max_knockout_comparisons,
                        play_tournaments, self_play_pair, win_rates)


def by_score(scores):
    """A transitive judge P(i beats j) = sigmoid(s_i - s_j) that records its calls."""
    calls = []

    def compare(i, j):
        calls.append((i, j))
        return 1 / (1 + math.exp(-(scores[i] - scores[j])))

    return compare, calls


def test_eight_responses_take_eleven_comparisons_and_find_best_and_worst():
    scores = [0.3, 2.0, -1.0, 0.5, 1.5, -2.5, 0.0, 1.0]
    compare, calls = by_score(scores)
    t = knockout_pair(8, compare)
    assert (t.chosen, t.rejected) == (1, 5)
    assert t.preference == pytest.approx(1 / (1 + math.exp(-4.5)))
    assert t.n_comparisons == len(calls) == 11 == max_knockout_comparisons(8)
    assert calls[:4] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert len(set(calls)) == len(calls)


@pytest.mark.parametrize("n", range(2, 14))
def test_any_k_finds_the_true_best_and_worst_of_a_transitive_judge(n):
    rng = np.random.default_rng(n)
    for _ in range(30):
        scores = rng.normal(size=n)
        compare, calls = by_score(scores)
        t = knockout_pair(n, compare)
        assert (t.chosen, t.rejected) == (int(np.argmax(scores)), int(np.argmin(scores)))
        assert t.n_comparisons == len(calls) == len(set(calls))
        assert t.n_comparisons <= math.ceil(3 * n / 2) - 1


def test_comparison_count_formula():
    assert [max_knockout_comparisons(n) for n in range(2, 10)] == [1, 3, 5, 7, 8, 10, 11, 13]
    # the bound is reached when y_w and y_l are in different first-round matches, neither a bye
    for n in range(4, 14):
        scores = [0.0] * n
        scores[0], scores[3] = 1.0, -1.0
        scores[1:3] = [0.5, 0.2]
        compare, calls = by_score(scores)
        assert knockout_pair(n, compare).n_comparisons == len(calls) == max_knockout_comparisons(n)
    for n in (2, 3):
        compare, calls = by_score(list(range(n)))
        assert knockout_pair(n, compare).n_comparisons == len(calls) == max_knockout_comparisons(n)


def test_two_responses_take_one_comparison():
    t = knockout_pair(2, lambda i, j: 0.2)
    assert t == Tournament(chosen=1, rejected=0, preference=pytest.approx(0.8), n_comparisons=1)


def test_a_repeated_final_reuses_the_first_round_result():
    # 0 beats everyone, 1 loses to everyone: they meet in round one and again in the final
    compare, calls = by_score([5.0, -5.0, 0.0, 0.1])
    t = knockout_pair(4, compare)
    assert (t.chosen, t.rejected) == (0, 1)
    assert t.n_comparisons == len(calls) == max_knockout_comparisons(4) - 1


def test_all_ties_go_to_the_lower_index_and_the_pair_is_dropped():
    calls = []

    def tie(i, j):
        calls.append((i, j))
        return 0.5

    assert knockout_pair(8, tie) is None
    assert calls[-1] == (0, 7)  # the final check: y_w = 0 (wins every tie), y_l = 7 (loses every tie)
    assert all(i < j for i, j in calls)


def test_ties_within_a_match_go_to_the_lower_index():
    # 0 ties 1 and 2 ties 3: the lower index wins each tie, so 0 is chosen and 3 rejected
    compare, _ = by_score([1.0, 1.0, 0.0, 0.0])
    t = knockout_pair(4, compare)
    assert (t.chosen, t.rejected) == (0, 3)


@pytest.mark.parametrize("p_final,kept", [(0.6, True), (0.5, False), (0.4, False)])
def test_the_pair_is_kept_only_if_the_winner_strictly_wins_the_final_check(p_final, kept):
    # round one: 0 beats 1, 2 beats 3; W: 0 beats 2; L: 1 beats 3, so 3 is y_l; final 0 vs 3
    table = {(0, 1): 0.6, (2, 3): 0.6, (0, 2): 0.6, (1, 3): 0.6, (0, 3): p_final}
    t = knockout_pair(4, lambda i, j: table[(i, j)])
    if kept:
        assert t == Tournament(chosen=0, rejected=3, preference=p_final, n_comparisons=5)
    else:
        assert t is None


def test_a_bye_that_is_both_best_and_worst_gives_no_pair():
    # n = 3: round one (0, 1); 2 has a bye into both brackets, beats the winner 0, loses to the loser 1
    table = {(0, 1): 0.7, (0, 2): 0.2, (1, 2): 0.8}
    assert knockout_pair(3, lambda i, j: table[(i, j)]) is None


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        knockout_pair(1, lambda i, j: 0.5)
    with pytest.raises(ValueError, match="probability"):
        knockout_pair(4, lambda i, j: 1.5)
    with pytest.raises(ValueError):
        best_vs_worst([1.0])
    with pytest.raises(ValueError):
        best_vs_worst([1.0, float("nan")])


def test_best_vs_worst_takes_argmax_and_argmin_with_ties_to_the_lowest_index():
    assert best_vs_worst([0.1, 3.0, -1.0, 3.0, -1.0]) == (1, 2)
    assert best_vs_worst([2, 1]) == (0, 1)
    assert best_vs_worst([0.5, 0.5, 0.5]) is None


def test_tournaments_in_lockstep_match_one_at_a_time_and_batch_each_round():
    rng = random.Random(3)
    sizes = [2, 3, 5, 8, 8, 7]
    tables = [{(i, j): rng.random() for i in range(n) for j in range(i + 1, n)} for n in sizes]
    alone = [knockout_pair(n, lambda i, j, t=t: t[(i, j)]) for n, t in zip(sizes, tables)]
    batches = []

    def judge_round(matches):
        batches.append(len(matches))
        return [tables[k][m] for k, m in matches]

    together = play_tournaments([knockout_rounds(n) for n in sizes], judge_round)
    assert together == alone
    assert sum(batches) <= sum(map(max_knockout_comparisons, sizes))
    # K = 8 takes four rounds (4 first-round matches, 2 + 2, 1 + 1, the final): all six prompts fit in four batches
    assert len(batches) == 4 and batches[0] == sum(n // 2 for n in sizes)


def from_upper(k, upper):
    """The K x K preference matrix with P(i > j) = upper[(i, j)] for i < j, P(j > i) = 1 - it (diagonal 0.5)."""
    matrix = [[0.5] * k for _ in range(k)]
    for (i, j), p in upper.items():
        matrix[i][j], matrix[j][i] = p, 1 - p
    return matrix


def test_win_rates_average_each_response_over_the_others():
    matrix = from_upper(3, {(0, 1): 0.9, (0, 2): 0.4, (1, 2): 0.25})
    # by hand: Phat(0) = (0.9 + 0.4) / 2, Phat(1) = (0.1 + 0.25) / 2, Phat(2) = (0.6 + 0.75) / 2
    assert win_rates(matrix) == pytest.approx([0.65, 0.175, 0.675])
    assert self_play_pair(matrix) == SelfPlayPair(chosen=2, rejected=1, chosen_winrate=pytest.approx(0.675),
                                                  rejected_winrate=pytest.approx(0.175))
    # the diagonal is not read, and the win rates of complementary pairs average to 1/2
    matrix[0][0] = matrix[1][1] = 7.0
    assert sum(win_rates(matrix)) / 3 == pytest.approx(0.5)


def test_self_play_pair_breaks_ties_to_the_lowest_index_and_drops_all_equal_win_rates():
    # 0 and 1 tie at the top, 2 and 3 at the bottom
    matrix = from_upper(4, {(0, 1): 0.5, (0, 2): 0.8, (0, 3): 0.8, (1, 2): 0.8, (1, 3): 0.8, (2, 3): 0.5})
    pair = self_play_pair(matrix)
    assert (pair.chosen, pair.rejected) == (0, 2)
    assert self_play_pair(from_upper(4, {})) is None
    # a cycle: every response beats one and loses to one by the same margin
    assert self_play_pair(from_upper(3, {(0, 1): 0.7, (1, 2): 0.7, (0, 2): 0.3})) is None


@pytest.mark.parametrize("matrix, message", [
    ([[0.5]], "K >= 2"),
    ([[0.5, 0.6], [0.4]], "K x K"),
    ([[0.5, 0.6], [0.6, 0.5]], "summing to 1"),
    ([[0.5, 1.5], [-0.5, 0.5]], "probabilities"),
])
def test_win_rates_reject_a_matrix_that_is_not_a_preference(matrix, message):
    with pytest.raises(ValueError, match=message):
        win_rates(matrix)
