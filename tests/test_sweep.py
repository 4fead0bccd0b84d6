import pytest

from inpo.sweep import (annotation_pairing, expand_grid, grid_judges, parse_point, point_path, stage_folder, step_size, train_overrides,
                        workflow_grid)

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
    ({"eta_schedule": ["cosine"]}, r"algo~inpo/.*eta_schedule~cosine: eta_schedule must be one of \('constant', 'theory'\)"),
    ({"beta": {"dpo": [0.1], "ppo": [0.2]}}, r"sweep.beta: unknown algo 'ppo' \(values per algorithm are keyed by algo names"),
    ({"beta": {"dpo": [0.1], "inpo": [0.2]}}, r"sweep.beta: algo 'inpo' takes no beta \(its parameters: eta, tau, eta_schedule\)"),
    ({"beta": {"ipo": [0.1]}}, r"algo 'dpo' needs at least one value for beta"),
    ({"seed": {"dpo": [0]}}, r"sweep.seed must be a list"),
    ({"judge": {"dpo": ["j"]}}, r"sweep.judge is given per algorithm but names none for algo 'inpo'"),
])
def test_bad_grids_name_the_setting(change, message):
    with pytest.raises(ValueError, match=message):
        expand_grid({**GRID, **change})


def test_judges_may_be_given_per_algorithm():
    judges = {"inpo": ["reward", "preference"], "inpo_nokl": ["preference"], "dpo": ["reward"]}
    points = expand_grid({**GRID, "judge": judges, "beta": [2.0]})
    assert [(p["algo"], p["judge"], p["seed"]) for p in points] == [
        (a, j, s) for a in GRID["algo"] for j in judges[a] for s in (0, 1)]
    assert grid_judges(judges) == ["reward", "preference"]
    assert grid_judges(["b", "a", "b"]) == ["b", "a"]


def test_a_path_that_is_not_a_point_is_rejected():
    with pytest.raises(ValueError, match="has no '~'"):
        parse_point("algo~inpo/oops")


def test_a_parameter_may_take_values_per_algorithm():
    points = expand_grid({**GRID, "algo": ["dpo", "sppo", "inpo"], "beta": {"dpo": [2.0], "sppo": [0.2, 0.5]}})
    assert [point_path(p) for p in points] == [
        f"algo~dpo/judge~{j}/seed~{s}/beta~2" for j in GRID["judge"] for s in (0, 1)] + [
        f"algo~sppo/judge~{j}/seed~{s}/beta~{b}" for j in GRID["judge"] for s in (0, 1) for b in (0.2, 0.5)] + [
        f"algo~inpo/judge~{j}/seed~{s}/eta~0.2/tau~0.0667" for j in GRID["judge"] for s in (0, 1)]


def test_the_eta_schedule_names_a_point_only_when_it_is_not_constant():
    points = expand_grid({**GRID, "algo": ["inpo", "inpo_nokl", "dpo"], "eta_schedule": ["constant", "theory"]})
    paths = [point_path(p) for p in points if p["judge"] == "synthetic_preference" and p["seed"] == 0]
    # constant points keep the folders they had before schedules existed; DPO takes no schedule
    assert paths == ["algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667",
                     "algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667/eta_schedule~theory",
                     "algo~inpo_nokl/judge~synthetic_preference/seed~0/eta~0.2",
                     "algo~inpo_nokl/judge~synthetic_preference/seed~0/eta~0.2/eta_schedule~theory",
                     "algo~dpo/judge~synthetic_preference/seed~0/beta~0.1",
                     "algo~dpo/judge~synthetic_preference/seed~0/beta~0.5"]
    theory = parse_point(paths[1])
    assert theory == {"algo": "inpo", "judge": "synthetic_preference", "seed": 0, "eta": 0.2, "tau": 0.0667,
                      "eta_schedule": "theory"}
    assert point_path(theory) == paths[1]
    # the scale eta and the schedule go to train, which takes eta_t of its iteration
    assert train_overrides(theory) == ["algo=inpo", "algo.eta=0.2", "algo.tau=0.0667", "algo.eta_schedule=theory"]
    assert train_overrides(parse_point(paths[0])) == ["algo=inpo", "algo.eta=0.2", "algo.tau=0.0667"]
    assert [step_size(paths[1], t) for t in (1, 2, 3)] == pytest.approx([0.2, 0.2 * 4 / 3, 0.2 * 5 / 3])
    assert [step_size(theory, t) for t in (1, 2)] == [step_size(paths[1], t) for t in (1, 2)]
    assert step_size(paths[0], 3) == step_size(paths[2], 3) == 0.2
    with pytest.raises(ValueError, match="algo 'dpo' has no eta"):
        step_size(paths[4], 1)


def test_a_theory_schedule_needs_tau_below_eta_at_the_first_iteration():
    with pytest.raises(ValueError, match=r"eta_schedule~theory: tau must be <= eta"):
        expand_grid({**GRID, "algo": ["inpo"], "eta_schedule": ["theory"], "tau": [0.3]})


def test_sppo_points_share_iteration_one_pairs_only_with_sppo_points():
    inpo = "algo~inpo/judge~synthetic_preference/seed~1/eta~0.2/tau~0.0667"
    sppo = "algo~sppo/judge~synthetic_preference/seed~1/beta~0.2"
    assert stage_folder(inpo, 1, "sample") == stage_folder(sppo, 1, "sample") == "shared/seed~1"
    assert stage_folder(inpo, 1, "annotate") == stage_folder(inpo, 1, "logps") == "shared/seed~1/judge~synthetic_preference"
    assert stage_folder(sppo, 1, "annotate") == stage_folder(sppo, 1, "logps") == \
        "shared/seed~1/judge~synthetic_preference/pairing~sppo"
    assert stage_folder(sppo, 2, "annotate") == f"sweep/{sppo}"
    # the pairing each chain's annotate job runs with
    assert [annotation_pairing(stage_folder(p, t, "annotate")) for p in (inpo, sppo) for t in (1, 2)] == \
        ["auto", "auto", "sppo", "sppo"]


def test_the_workflow_grid_takes_the_top_level_value_where_the_sweep_has_none():
    config = {"algo": "inpo", "judge": "j", "seed": 0, "eta": 0.2, "tau": 0.05, "eta_schedule": "constant", "beta": 2.0,
              "sweep": {"algo": ["inpo", "sppo"], "beta": {"sppo": [0.2]}}}
    assert workflow_grid(config) == {"algo": ["inpo", "sppo"], "judge": ["j"], "seed": [0], "eta": [0.2], "tau": [0.05],
                                     "eta_schedule": ["constant"], "beta": {"sppo": [0.2]}}
