"""The Hydra apps `python -m inpo.game` and `python -m inpo.game.eta_sweep`."""

import json
import os
import subprocess
import sys

import pytest

from inpo.config import load_config
from inpo.game import eta_sweep, experiment

PNG = b"\x89PNG\r\n\x1a\n"


def test_run_writes_metrics_and_plot(tmp_path):
    m = experiment.run(load_config("lab", ["iterations=30"]), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m))
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    assert saved["settings"]["game"] == "rps" and saved["settings"]["P"][0] == [0.5, 1.0, 0.0]
    assert saved["iteration"] == list(range(31))
    for method in ("inpo", "bt_dpo"):
        assert len(saved[method]["duality_gap"]) == len(saved[method]["kl_to_nash"]) == 31
        assert sum(saved[method]["final_policy"]) == pytest.approx(1)
    inpo, bt = saved["inpo"], saved["bt_dpo"]
    assert inpo["duality_gap"][0] == bt["duality_gap"][0]  # both start at pi_ref
    assert inpo["kl_to_nash"][-1] < 0.05 * inpo["kl_to_nash"][0]
    assert min(bt["duality_gap"]) > 0.05


def test_run_with_sampled_pairs_is_reproducible(tmp_path):
    cfg = load_config("lab", ["game=cyclic5", "samples=500", "iterations=5", "seed=7"])
    a = experiment.run(cfg, tmp_path / "a")
    b = experiment.run(cfg, tmp_path / "b")
    assert a == b
    c = experiment.run(load_config("lab", ["game=cyclic5", "samples=500", "iterations=5", "seed=8"]), tmp_path / "c")
    assert c["inpo"]["final_policy"] != a["inpo"]["final_policy"]


@pytest.mark.parametrize("overrides, match", [
    (["eta=0.05", "tau=0.1"], r"tau must be <= eta .* got tau=0.1 > eta=0.05"),
    (["eta=0"], r"eta must be > 0"),
    (["tau=abc"], r"tau must be a number, got tau='abc'"),
    (["iterations=0"], r"iterations must be an integer >= 1, got iterations=0"),
    (["samples=-5"], r"samples must be null or an integer >= 0"),
    (["baseline.beta=0"], r"baseline.beta must be > 0"),
    (["game.ref=[0.5,0.5]"], r"game 'rps': ref must be a vector of length 3"),
    (["game.P=[[0.5,1,0],[0,0.5,1],[1,0.2,0.5]]"], r"game 'rps': P\[1, 2\] \+ P\[2, 1\] = 1.2, must be 1"),
])
def test_run_rejects_bad_config_before_writing(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        experiment.run(load_config("lab", overrides), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_eta_sweep_finds_the_boundary(tmp_path):
    cfg = load_config("eta_sweep", ["etas=[0.2,0.42,0.44,1.0]", "iterations=2000"])
    result = eta_sweep.run(cfg, tmp_path)
    status = {r["eta"]: r["status"] for r in result["rows"]}
    assert status == {0.2: "cycles", 0.42: "cycles", 0.44: "converging", 1.0: "converged"}
    assert result["observed_boundary"] == {"cycles_at": 0.42, "converges_at": 0.44}
    assert 0.42 < result["predicted_boundary"] < 0.44
    assert json.loads((tmp_path / "eta_sweep.json").read_text())["rows"][0]["eta"] == 0.2
    assert (tmp_path / "eta_sweep.png").read_bytes().startswith(PNG)


def test_eta_sweep_rejects_eta_below_tau(tmp_path):
    with pytest.raises(ValueError, match=r"got tau=0.1 > eta=0.05"):
        eta_sweep.run(load_config("eta_sweep", ["etas=[0.05,1.0]"]), tmp_path)


def app(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "inpo.game", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_app_writes_into_the_run_dir(tmp_path):
    proc = app(tmp_path, "iterations=3")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results/game/rps/eta=1.0_tau=0.1"
    assert {"metrics.json", "curves.png", "lab.log", ".hydra"} <= {p.name for p in run_dir.iterdir()}


@pytest.mark.slow
def test_app_multirun_over_eta_and_tau(tmp_path):
    proc = app(tmp_path, "-m", "eta=0.5,1.0", "tau=0.05,0.1", "iterations=3")
    assert proc.returncode == 0, proc.stderr
    for eta in (0.5, 1.0):
        for tau in (0.05, 0.1):
            job = tmp_path / f"multirun/game/rps/eta={eta},iterations=3,tau={tau}"
            settings = json.loads((job / "metrics.json").read_text())["settings"]
            assert (settings["eta"], settings["tau"], settings["iterations"]) == (eta, tau, 3)


@pytest.mark.slow
def test_app_multirun_names_the_bad_setting(tmp_path):
    proc = app(tmp_path, "-m", "eta=0.05,1.0", "tau=0.1", "iterations=3")
    assert proc.returncode != 0
    assert "tau must be <= eta" in proc.stderr and "got tau=0.1 > eta=0.05" in proc.stderr
    assert not (tmp_path / "multirun/game/rps/eta=0.05,iterations=3,tau=0.1/metrics.json").exists()
    assert (tmp_path / "multirun/game/rps/eta=1.0,iterations=3,tau=0.1/metrics.json").exists()
