import pytest

from inpo.schedules import check_eta_schedule, eta_at


def test_constant_keeps_eta_and_theory_scales_the_papers_schedule_to_eta_at_t_1():
    assert [eta_at(0.2, "constant", t) for t in (1, 2, 3)] == [0.2, 0.2, 0.2]
    assert [eta_at(0.2, "theory", t) for t in (1, 2, 3)] == pytest.approx([0.2, 0.2 * 4 / 3, 0.2 * 5 / 3])
    # the paper's eta_t = tau (t + 2) / 2 up to the factor eta_1 / (3 tau / 2)
    tau = 0.05
    assert [eta_at(3 * tau / 2, "theory", t) for t in range(1, 6)] == pytest.approx([tau * (t + 2) / 2 for t in range(1, 6)])


@pytest.mark.parametrize("args, message", [
    ((0.2, "cosine", 1), r"eta_schedule must be one of \('constant', 'theory'\), got 'cosine'"),
    ((0.2, "theory", 0), r"iterations are numbered from 1, got t=0"),
    ((0.2, "theory", 1.5), r"got t=1.5"),
])
def test_eta_at_rejects_unknown_schedules_and_iterations(args, message):
    with pytest.raises(ValueError, match=message):
        eta_at(*args)


def test_tau_must_stay_below_every_eta_t_which_the_first_iteration_decides():
    check_eta_schedule(0.2, 0.2, "theory")
    with pytest.raises(ValueError, match="tau must be <= eta"):
        check_eta_schedule(0.2, 0.21, "theory")
    with pytest.raises(ValueError, match="eta must be > 0"):
        check_eta_schedule(0.0, 0.0, "constant")
    with pytest.raises(ValueError, match="eta_schedule must be one of"):
        check_eta_schedule(0.2, 0.0, "linear")
