"""The report's game section (inpo.game_report): trends, the style simplex, missing metrics."""

import math

import numpy as np
import pytest

from inpo.game_report import game_table, missing_game_metrics, simplex_xy, style_shares, trend


@pytest.mark.parametrize("values, expected", [
    ([1.0, 0.8, 0.6, 0.5], "falls"),
    ([0.5, 0.6, 0.8, 1.0], "rises"),
    ([1.0, 0.5, 1.0, 0.5], "cycles"),
    ([1.0, 0.5, 1.0], "falls, then rises"),
    ([1.0, 1.01, 0.99, 1.0], "flat"),  # every step within two standard errors
    ([1.0, 0.97, 0.94, 0.91], "falls"),  # small steps, but a significant change overall
])
def test_trend_against_standard_errors(values, expected):
    assert trend(values, [0.02] * len(values)) == expected


def test_trend_needs_two_iterations():
    with pytest.raises(ValueError, match="at least 2"):
        trend([1.0], [0.1])


def test_simplex_corners_and_centre():
    assert simplex_xy(np.array([1, 0, 0])) == (0, 0)
    assert simplex_xy(np.array([0, 1, 0])) == (1, 0)
    assert simplex_xy(np.array([0, 0, 1])) == pytest.approx((0.5, math.sqrt(3) / 2))
    assert simplex_xy(np.ones(3) / 3) == pytest.approx((0.5, math.sqrt(3) / 6))
    # shares among valid answers: the invalid share is left out
    assert style_shares({"share_style_()": 0.2, "share_style_[]": 0.2, "share_style_{}": 0.4}) == pytest.approx([0.25, 0.25, 0.5])


def test_game_table_and_missing_reasons():
    rows = [{"setting": "algo=inpo", "iteration": t, "kl_to_nash": kl, "kl_to_nash_se": 0.01, "duality_gap_tau": g,
             "duality_gap": g + 0.1, **({"shadow_tv": 0.1 * t, "shadow_contraction": 0.9 + 0.01 * t} if t else {})} for t, (kl, g) in enumerate([(0.9, 0.3), (0.5, 0.2), (0.2, 0.1)])]
    table = game_table(rows)
    assert "| algo=inpo | 0.9 → 0.5 → 0.2 | falls | 0.3 → 0.1 | 0.4 → 0.2 | 0.1 → 0.2 | none | none | 0.91 → 0.92 |" in table
    assert game_table([{"setting": "s", "iteration": 0}]) == ""
    text = missing_game_metrics([{"game_missing": ["shadow: none"]}, {"game_missing": ["shadow: none"]}, {}])
    assert text == "- shadow: none: 2 evaluation(s)\n"
