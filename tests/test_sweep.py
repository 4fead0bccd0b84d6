import pytest

from inpo.sweep import expand_grid, parse_point, point_path, train_overrides

GRID = {"algo": ["inpo", "inpo_nokl", "dpo"], "judge": ["synthetic_preference", "synthetic_reward"],
        "seed": [0, 1], "eta": [0.2], "tau": [0.0667], "beta": [0.1, 0.5]}


def test_parameters_multiply_only_the_algorithms_that_use_them():
    points = expand_grid(GRID)
    per_algo = {a: sum(p["algo"] == a for p in points) for a in GRID["algo"]}
    assert per_algo == {"inpo": 4, "inpo_nokl": 4, "dpo": 8}
    assert all("beta" not in p for p in points if p["algo"] != "dpo")
    assert len({point_path(p) for p in points}) == len(points)


def test_paths_are_readable_and_read_back():
    point = {"algo": "inpo", "judge": "synthetic_preference", "seed": 1, "eta": 0.2, "tau": 0.0667}
    assert point_path(point) == "algo~inpo/judge~synthetic_preference/seed~1/eta~0.2/tau~0.0667"
    assert parse_point(point_path(point)) == point
    assert train_overrides(point) == ["algo=inpo", "algo.eta=0.2", "algo.tau=0.0667"]


def test_numbers_given_as_text_on_the_command_line_are_read_as_numbers():
    (point,) = expand_grid({"algo": ["inpo"], "judge": ["j"], "seed": ["3"], "eta": ["0.5"], "tau": ["0.1"]})
    assert point == {"algo": "inpo", "judge": "j", "seed": 3, "eta": 0.5, "tau": 0.1}


@pytest.mark.parametrize("change, message", [
    ({"tau": [0.5]}, r"algo~inpo/.*tau must be <= eta"),
    ({"eta": [0.0]}, r"eta must be > 0"),
    ({"beta": [-1]}, r"beta must be > 0"),
    ({"algo": ["ppo"]}, r"unknown algo 'ppo'"),
    ({"seed": []}, r"needs at least one value for seed"),
    ({"eta": "x"}, r"eta must be a number"),
])
def test_bad_grids_name_the_setting(change, message):
    with pytest.raises(ValueError, match=message):
        expand_grid({**GRID, **change})


def test_a_path_that_is_not_a_point_is_rejected():
    with pytest.raises(ValueError, match="has no '~'"):
        parse_point("algo~inpo/oops")
