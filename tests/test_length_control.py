"""AlpacaEval 2.0 raw and length-controlled win rates (inpo.length_control).

- The raw win rate and its standard error on three official annotation files reproduce the
  published leaderboard figures (shared/benchmarks/README.md).
- The LC win rate agrees with the reference implementation, alpaca-eval's
  ``get_length_controlled_winrate`` (a dev dependency), on synthetic judgments and on the
  official files. That function downloads AlpacaEval's per-instruction difficulty from the
  Hugging Face hub (``df_gamed.csv``); here the download is replaced by a local file we write.
- Behaviour: a model that wins only by being longer gets LC ~ 50; the coefficients of an exact
  model are recovered; the standard error agrees with a bootstrap; bad input raises ValueError.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from alpaca_eval_package import import_alpaca_eval

from inpo.length_control import (
    length_controlled_win_rate,
    official_to_probability,
    raw_win_rate,
    read_alpaca_eval_annotations,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ANNOTATIONS = SHARED / "benchmarks" / "alpaca_eval_2" / "annotations"
# shared/benchmarks/README.md (alpaca-eval 0.6.6 leaderboard, weighted_alpaca_eval_gpt4_turbo)
PUBLISHED = {
    "gemma-7b-it": (6.937294379677018, 0.7869665731853178),
    "claude-2.1": (15.733506736409938, 1.120315865445773),
    "gpt-3.5-turbo-1106": (9.177964561962735, 0.8904117511864436),
}
MODELS = sorted(PUBLISHED)
needs_shared = pytest.mark.skipif(
    not ANNOTATIONS.is_dir(), reason=f"the shared benchmark fixtures are absent ({ANNOTATIONS})"
)

MINIMAL = "np.tanh(std_delta_len) + not_gamed_baseline.astype(float) - 1"  # AlpacaEval's length_controlled_minimal
WITH_DIFFICULTY = "np.tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline.astype(float) - 1"


def synthetic(n=600, theta=-0.3, beta=1.2, gamma=-0.8, noise=0.7, seed=0):
    """Judgments of a model with a known length bias: logit = theta + beta tanh(d) + gamma q (+ noise),
    d = standardized (model - baseline) length; some hard 0 / 1 judgments and exact draws."""
    rng = np.random.default_rng(seed)
    baseline = np.round(rng.lognormal(7.0, 0.5, n))
    model = np.round(baseline * rng.lognormal(0.2, 0.4, n))
    q = rng.normal(size=n)
    delta = model - baseline
    logit = theta + beta * np.tanh(delta / delta.std(ddof=1)) + gamma * q
    y = 1 / (1 + np.exp(-(logit + rng.normal(0, noise, n))))
    hard = rng.random(n) < 0.1
    y[hard] = (rng.random(hard.sum()) < y[hard]).astype(float)
    y[:5] = 0.5
    return y, model, baseline, q


@pytest.fixture(scope="module")
def glm_winrate():
    return import_alpaca_eval("alpaca_eval.metrics.glm_winrate")


@pytest.fixture
def reference(glm_winrate, monkeypatch, tmp_path):
    """Call alpaca-eval's get_length_controlled_winrate with instruction difficulty from a local file."""
    import sklearn

    config = sklearn.get_config()

    def run(records, formula, difficulty=None, **fit_kwargs):
        n = len(records)
        q = np.zeros(n) if difficulty is None else np.asarray(difficulty, dtype=float)
        # df_gamed.csv as on the hub: one row per (model, instruction index), first rows in index order
        path = tmp_path / "df_gamed.csv"
        path.write_text("model,index,instruction_difficulty\n" + "".join(f"m,{i},{float(v)!r}\n" for i, v in enumerate(q)))

        def local_download(**kwargs):
            assert kwargs["filename"] == "df_gamed.csv", kwargs
            return str(path)

        monkeypatch.setattr(glm_winrate, "hf_hub_download", local_download)
        glm_info = {"formula": formula, "regularize_to_baseline_lambda": None, "kwargs": fit_kwargs}
        try:
            with warnings.catch_warnings():  # alpaca-eval 0.6.6 uses sklearn's deprecated `penalty` argument
                warnings.filterwarnings("ignore", message=".*penalty.*", category=FutureWarning)
                warnings.filterwarnings("ignore", message="Inconsistent values: penalty", category=UserWarning)
                return glm_winrate.get_length_controlled_winrate(
                    records, save_weights_dir=None, is_warn_extreme_changes=False, glm_info=glm_info
                )
        finally:
            sklearn.set_config(**config)  # it switches on metadata routing globally

    return run


def as_records(y, model_lengths, baseline_lengths):
    return [
        {
            "instruction": f"instruction {i}",
            "output_1": "b" * int(b),
            "output_2": "m" * int(m),
            "preference": float(p) + 1.0,
            "generator_1": "baseline",
            "generator_2": "model",
            "annotator": "synthetic",
        }
        for i, (p, m, b) in enumerate(zip(y, model_lengths, baseline_lengths))
    ]


# unpenalized (C = 1e10) and AlpacaEval's fixed-C default (C = 100), solved to a tight tolerance,
# and a strong penalty that zeroes coefficients
FITS = [(None, 1e10), (100.0, 100.0), (0.03, 0.03)]


def fit_kwargs(C):
    return {"n_splits": 0, "C": C, "tol": 1e-10, "max_iter": 1000}  # tighter tolerances can stall liblinear


# --- raw win rate -------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("model", MODELS)
def test_raw_win_rate_reproduces_published_leaderboard(model):
    data = read_alpaca_eval_annotations(ANNOTATIONS / f"{model}.json")
    assert data["preferences"].size == 805
    win_rate, standard_error = raw_win_rate(data["preferences"])
    assert win_rate == pytest.approx(PUBLISHED[model][0], abs=1e-6)
    assert standard_error == pytest.approx(PUBLISHED[model][1], abs=1e-6)


def test_raw_win_rate_definition():
    assert raw_win_rate([0.0, 1.0]) == pytest.approx((50.0, 50.0))
    assert raw_win_rate([0.5, 0.5, 0.5]) == pytest.approx((50.0, 0.0))
    y = np.array([0.1, 0.9, 0.3, 1.0])
    assert raw_win_rate(y) == pytest.approx((100 * y.mean(), 100 * y.std(ddof=1) / 2))


# --- reader -------------------------------------------------------------------------------------


def test_reader_drops_non_preferences_and_counts_characters(tmp_path):
    records = [
        {"instruction": "a", "output_1": "ref", "output_2": "modèle", "preference": 2.0},
        {"instruction": "b", "output_1": "reference", "output_2": "x", "preference": 0},  # draw
        {"instruction": "c", "output_1": "r", "output_2": "m", "preference": None},  # dropped
        {"instruction": "d", "output_1": "r", "output_2": "m", "preference": -1},  # dropped
        {"instruction": "e", "output_1": "r", "output_2": "m", "preference": 2.5},  # dropped
        {"instruction": "f", "output_1": "日本語", "output_2": "", "preference": 1.25},
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    data = read_alpaca_eval_annotations(path)
    assert data["instruction"].tolist() == ["a", "b", "f"]
    assert data["index"].tolist() == [0, 1, 5]
    np.testing.assert_allclose(data["preferences"], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(data["preference"], [2.0, 1.5, 1.25])
    np.testing.assert_array_equal(data["model_lengths"], [6, 1, 0])  # characters, not bytes
    np.testing.assert_array_equal(data["baseline_lengths"], [3, 9, 3])
    assert official_to_probability(float("nan")) is None
    assert official_to_probability(1) == 0.0


@needs_shared
def test_reader_lengths_are_alpaca_eval_character_lengths():
    records = json.loads((ANNOTATIONS / "claude-2.1.json").read_text(encoding="utf-8"))
    data = read_alpaca_eval_annotations(ANNOTATIONS / "claude-2.1.json")
    assert data["model_lengths"].tolist() == [len(r["output_2"]) for r in records]
    assert data["baseline_lengths"].tolist() == [len(r["output_1"]) for r in records]
    assert set(data["generator_1"]) == {"gpt4_1106_preview"} and set(data["generator_2"]) == {"claude-2.1"}


# --- LC win rate vs alpaca-eval -----------------------------------------------------------------


@pytest.mark.parametrize("with_difficulty", [False, True], ids=["minimal", "difficulty"])
@pytest.mark.parametrize("ours_C,their_C", FITS, ids=["mle", "C100", "C0.03"])
def test_lc_matches_alpaca_eval_on_synthetic_judgments(reference, with_difficulty, ours_C, their_C):
    y, model, baseline, q = synthetic()
    difficulty = q if with_difficulty else None
    theirs = reference(
        as_records(y, model, baseline), WITH_DIFFICULTY if with_difficulty else MINIMAL, difficulty, **fit_kwargs(their_C)
    )
    ours = length_controlled_win_rate(y, model, baseline, difficulty, l1_C=ours_C)
    assert ours["length_controlled_winrate"] == pytest.approx(theirs["length_controlled_winrate"], rel=1e-6)
    assert ours["win_rate"] == pytest.approx(theirs["win_rate"], rel=1e-12)
    assert ours["standard_error"] == pytest.approx(theirs["standard_error"], rel=1e-12)
    if ours_C is None:  # the synthetic model writes longer answers and is favoured for it: LC < raw
        assert ours["coefficients"]["length"] == pytest.approx(1.2, abs=0.2)
        assert ours["length_controlled_winrate"] < ours["win_rate"] - 5
    if ours_C == 0.03:  # the L1 penalty zeroes the model term but not the others
        assert ours["coefficients"]["model"] == 0.0
        assert all(v != 0.0 for k, v in ours["coefficients"].items() if k != "model")


@needs_shared
@pytest.mark.parametrize("with_difficulty", [False, True], ids=["minimal", "synthetic-difficulty"])
@pytest.mark.parametrize("model", MODELS)
def test_lc_matches_alpaca_eval_on_official_annotations(reference, model, with_difficulty):
    path = ANNOTATIONS / f"{model}.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    data = read_alpaca_eval_annotations(path)
    difficulty = np.random.default_rng(7).normal(size=len(records)) if with_difficulty else None
    formula = WITH_DIFFICULTY if with_difficulty else MINIMAL
    for ours_C, their_C in FITS[:2]:
        theirs = reference(records, formula, difficulty, **fit_kwargs(their_C))
        ours = length_controlled_win_rate(
            data["preferences"], data["model_lengths"], data["baseline_lengths"], difficulty, l1_C=ours_C
        )
        assert ours["length_controlled_winrate"] == pytest.approx(theirs["length_controlled_winrate"], rel=1e-6)
        assert ours["win_rate"] == pytest.approx(PUBLISHED[model][0], abs=1e-6)
        # every official model here writes shorter answers than GPT-4-Turbo: controlling for length raises it
        assert ours["length_controlled_winrate"] > ours["win_rate"]


# --- behaviour ----------------------------------------------------------------------------------


def test_winning_only_by_length_gives_lc_near_50():
    rng = np.random.default_rng(3)
    n = 800
    baseline = np.round(rng.lognormal(7.0, 0.3, n))
    model = baseline + np.round(rng.normal(500, 300, n)).clip(-baseline + 1)  # mostly longer
    delta = model - baseline
    y = 1 / (1 + np.exp(-(3.0 * np.tanh(delta / delta.std(ddof=1)) + rng.normal(0, 0.5, n))))
    result = length_controlled_win_rate(y, model, baseline)
    assert result["win_rate"] > 80
    assert abs(result["length_controlled_winrate"] - 50) < max(3.0, 2 * result["lc_standard_error"])
    assert abs(result["coefficients"]["model"]) < 0.15


def test_exact_model_recovers_its_coefficients():
    # soft targets equal to the model's probabilities are the fit's fixed point
    _, model, baseline, q = synthetic()
    delta = model - baseline
    logit = -0.3 + 1.2 * np.tanh(delta / delta.std(ddof=1)) - 0.8 * q
    y = 1 / (1 + np.exp(-logit))
    result = length_controlled_win_rate(y, model, baseline, q)
    assert result["coefficients"] == pytest.approx({"model": -0.3, "length": 1.2, "instruction_difficulty": -0.8}, abs=1e-9)
    expected = 100 * np.mean(1 / (1 + np.exp(-(-0.3 - 0.8 * q))))
    assert result["length_controlled_winrate"] == pytest.approx(expected, rel=1e-12)
    # flipping which output is called the model mirrors the fit
    mirrored = length_controlled_win_rate(1 - y, baseline, model, -q)
    assert mirrored["coefficients"] == pytest.approx({"model": 0.3, "length": 1.2, "instruction_difficulty": -0.8}, abs=1e-9)


@pytest.mark.parametrize("with_difficulty", [False, True])
def test_lc_standard_error_agrees_with_bootstrap(with_difficulty):
    y, model, baseline, q = synthetic(n=500, seed=11)
    difficulty = q if with_difficulty else None
    result = length_controlled_win_rate(y, model, baseline, difficulty)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(300):
        i = rng.integers(0, y.size, y.size)
        boot.append(
            length_controlled_win_rate(y[i], model[i], baseline[i], None if difficulty is None else difficulty[i])[
                "length_controlled_winrate"
            ]
        )
    bootstrap_se = float(np.std(boot, ddof=1))
    # 300 resamples estimate an SE to about +-4% (1 sd)
    assert result["lc_standard_error"] == pytest.approx(bootstrap_se, rel=0.15)
    assert result["lc_standard_error"] > 0


def test_lc_standard_error_reduces_to_raw_when_length_is_uninformative():
    # the length feature is orthogonal to everything: the sandwich SE is the raw SE times sqrt((n-1)/(n-2))
    y = np.array([0.2, 0.9, 0.2, 0.9, 0.6, 0.1, 0.6, 0.1])
    baseline = np.full(8, 100.0)
    model = baseline + np.array([50, 50, -50, -50, 50, 50, -50, -50])
    result = length_controlled_win_rate(y, model, baseline)
    assert result["coefficients"]["length"] == pytest.approx(0.0, abs=1e-12)
    assert result["length_controlled_winrate"] == pytest.approx(result["win_rate"], rel=1e-12)
    n = y.size
    assert result["lc_standard_error"] == pytest.approx(result["standard_error"] * math.sqrt((n - 1) / (n - 2)), rel=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        (([0.5, 0.6, 0.7], [1, 2, 3], [1, 2]), "must match"),
        (([0.5, 0.6], [1, 2, 3], [1, 2, 3]), "must match"),
        (([0.5, 1.2, 0.7], [1, 2, 3], [3, 2, 1]), r"\[0, 1\]"),
        (([0.5, -0.1, 0.7], [1, 2, 3], [3, 2, 1]), r"\[0, 1\]"),
        (([1.5, 2.0, 1.0], [1, 2, 3], [3, 2, 1]), r"\[0, 1\]"),  # official scale passed by mistake
        (([0.5, float("nan"), 0.7], [1, 2, 3], [3, 2, 1]), "NaN"),
        (([0.5], [1], [2]), "at least 2"),
        (([], [], []), "at least 2"),
        (([0.5, 0.6, 0.7], [10, 20, 30], [5, 15, 25]), "zero variance"),
        (([0.5, 0.6, 0.7, 0.2], [10, 20, 30, 5], [5, 15, 25, 1], [1, 1, 1, 1]), "rank-deficient"),
        (([0.5, 0.6, 0.7], [10, 20, 31], [5, 15, 25], [1, 2]), "must match"),
        (([0.0, 0.0, 0.0], [1, 2, 3], [3, 2, 1]), "no finite fit"),
        (([0.5, 0.6], [1, -2], [3, 2]), "non-negative"),
        (([[0.5, 0.6]], [1, 2], [3, 2]), "1-d"),
        ((["a", "b"], [1, 2], [3, 2]), "numbers"),
    ],
)
def test_bad_input_raises_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        length_controlled_win_rate(*args)


def test_bad_input_raw_and_penalty():
    with pytest.raises(ValueError, match="at least 2"):
        raw_win_rate([0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        raw_win_rate([1.0, 2.0])
    with pytest.raises(ValueError, match="l1_C"):
        length_controlled_win_rate([0.2, 0.8, 0.4], [1, 2, 3], [3, 2, 1], l1_C=0)
    # the penalized fit is finite even where the unpenalized one is not
    result = length_controlled_win_rate([1.0, 1.0, 1.0], [1, 2, 3], [3, 2, 1], l1_C=1.0)
    assert 50 < result["length_controlled_winrate"] < 100


# --- the leaderboard's LC: AlpacaEval's own GLM with instruction difficulty and gamed baselines ---


def gamed_baselines_file(path, n, rng):
    """A df_gamed.csv as the hub's: per (gamed model, instruction index) its judgment, standardized
    length difference, the instruction's difficulty and not_gamed_baseline = False."""
    difficulty = rng.normal(0, 1, n)
    rows = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, shift in (("gpt4_gamed_verbose", -1.0), ("gpt4_gamed_concise", 1.0)):
        delta = rng.normal(shift, 0.5, n)
        preference = 1 / (1 + np.exp(-(0.3 - 0.8 * np.tanh(delta) + 0.5 * difficulty)))
        rows += [f"{model},{i},{float(preference[i])!r},{float(delta[i])!r},{float(difficulty[i])!r},False" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_leaderboard_lc_is_alpaca_evals_own_computation(glm_winrate, monkeypatch, tmp_path):
    """benchmarks.alpaca_eval.score_annotations with df_gamed.csv equals the package's
    get_length_controlled_winrate (length_controlled_v1: difficulty + gamed-baseline regularization)
    called directly on the same annotations; a missing annotation keeps the others' instruction index."""
    from inpo.benchmarks import alpaca_eval

    rng = np.random.default_rng(7)
    n = 60
    gamed = gamed_baselines_file(tmp_path / "df_gamed.csv", n, rng)
    y, model, baseline, _ = synthetic(n, seed=3)
    records = as_records(y, model, baseline)

    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(gamed))
    import pandas as pd
    import sklearn

    def theirs(frame):
        config = sklearn.get_config()
        try:
            return glm_winrate.get_length_controlled_winrate(frame, glm_name="length_controlled_v1",
                                                             save_weights_dir=None, is_warn_extreme_changes=False)
        finally:
            sklearn.set_config(**config)

    ours = alpaca_eval.score_annotations(records, gamed_baselines=gamed)
    expected = theirs(pd.DataFrame(records))
    assert ours["lc_variant"] == "alpaca_eval:length_controlled_v1"
    assert ours["length_controlled_winrate"] == pytest.approx(expected["length_controlled_winrate"], abs=1e-9)
    assert ours["lc_standard_error"] == pytest.approx(expected["lc_standard_error"], abs=1e-9)
    assert ours["win_rate"] == pytest.approx(expected["win_rate"], abs=1e-9)

    missing = [dict(r) for r in records]
    missing[10]["preference"] = None
    expected = theirs(pd.DataFrame(records).drop(index=10))  # instruction 11 stays instruction 11
    ours = alpaca_eval.score_annotations(missing, gamed_baselines=gamed)
    assert ours["length_controlled_winrate"] == pytest.approx(expected["length_controlled_winrate"], abs=1e-9)
    assert (ours["n_total"], ours["n_missing"]) == (n - 1, 1)
    assert not sklearn.get_config()["enable_metadata_routing"]  # the package's global switch is undone

    without = alpaca_eval.score_annotations(records)
    assert without["lc_variant"] == "inpo:length_only"
    assert without["length_controlled_winrate"] != pytest.approx(ours["length_controlled_winrate"], abs=0.1)
