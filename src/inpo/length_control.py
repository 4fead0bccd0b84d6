"""AlpacaEval 2.0 win rates: the raw (weighted) win rate and the length-controlled (LC) win rate.

An independent implementation (numpy/scipy only) of the metrics of AlpacaEval 2.0
(``alpaca_eval.metrics.winrate.get_winrate`` and
``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``, alpaca-eval 0.6.6).

Notation. Instruction i = 1..n has the model's output (length ``m_i`` characters) and the
baseline's output (``b_i`` characters), and a judgment ``y_i`` in [0, 1]: the probability that
the model's output is preferred (AlpacaEval's official ``preference`` in [1, 2] minus 1; a draw
is 0.5).

Raw win rate (AlpacaEval's ``win_rate`` / ``standard_error``)::

    WR = 100 * mean_i y_i,        SE = 100 * std_i(y_i; ddof=1) / sqrt(n)

Length-controlled win rate. A logistic GLM with soft targets (cross-entropy of ``y_i``)::

    logit P(model preferred on i) = theta + beta * tanh(d_i) [+ gamma * q_i]
    d_i = (m_i - b_i) / std_j(m_j - b_j; ddof=1)

``theta`` is the model's term, ``beta`` the length term (tanh of the standardized length
difference) and ``q_i`` an optional per-instruction covariate (AlpacaEval's
``instruction_difficulty``, a fixed number per instruction that it downloads from the Hugging
Face hub; ``gamma`` is fitted). The LC win rate is the prediction with no length difference,
averaged over the instructions::

    LC = 100 * mean_i sigmoid(theta + gamma * q_i)

Differences from AlpacaEval, by design:

- AlpacaEval writes the length difference as ``len(output_1) - len(output_2)`` = baseline minus
  model, so its length coefficient is ``-beta``; the fit and the LC win rate are the same.
- AlpacaEval fits the GLM with sklearn's ``LogisticRegressionCV`` (L1 penalty, liblinear, no
  intercept, C chosen among ``logspace(-4, 4, 10)`` by 5-fold cross-validated log loss) and its
  default ``length_controlled_v1`` adds, with sample weight 0.2 / 2, the judgments of two
  "gamed" versions of the baseline (prompted to be verbose / concise; only on the hub) to
  regularize towards the baseline. Here the default is the unpenalized maximum-likelihood fit
  (what AlpacaEval's selection tends to when the largest C wins); ``l1_C`` gives the L1 fit
  with a fixed C, with exactly liblinear's objective ``||w||_1 + C * sum_i CE_i(w)``. The
  leaderboard's figure needs the hub's df_gamed.csv; with it, AlpacaEval 2.0 evaluations call the
  package's own ``get_length_controlled_winrate`` (``inpo.benchmarks.alpaca_eval``), not this module.
- Standard error: AlpacaEval reports ``lc_standard_error`` = the standard error of the mean of
  the per-instruction predictions ``sigmoid(theta + gamma q_i)``; it measures how much the
  predictions vary across instructions, not the uncertainty of the estimate (it is 0 without a
  difficulty term). Here ``lc_standard_error`` is the sandwich (M-estimation / influence
  function) standard error over instructions, which is the delta method on the GLM with a
  robust covariance, plus the sampling variance of the average over instructions::

      phi_i = (s_i - LC/100) / n - D^T H^-1 g_i,
      s_i = sigmoid(z_i . w),  z_i = x_i with the length feature set to 0,
      g_i = (p_i - y_i) x_i,   H = sum_i p_i (1 - p_i) x_i x_i^T,
      D = mean_i s_i (1 - s_i) z_i
      SE = 100 * sqrt(n / (n - k) * sum_i phi_i^2)      (k = number of GLM coefficients)

  The robust ("sandwich") covariance is used because the targets are probabilities, not
  Bernoulli draws (a quasi-likelihood, fractional-response GLM), so the model-based Fisher
  information would misstate the variance. With only the model term (no length, no difficulty)
  it reduces exactly to the raw win rate's SE, and it agrees with a bootstrap over
  instructions (tests/test_length_control.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.special import expit

from .records import read_json

__all__ = [
    "raw_win_rate",
    "length_controlled_win_rate",
    "read_alpaca_eval_annotations",
    "official_to_probability",
]


def _as_vector(name: str, values, n: int | None = None) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers: {error}") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence, got shape {x.shape}")
    if n is not None and x.size != n:
        raise ValueError(f"{name} has {x.size} values but preferences has {n}: they must match, one per instruction")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has NaN or infinite values")
    return x


def _preferences(preferences) -> np.ndarray:
    y = _as_vector("preferences", preferences)
    if y.size < 2:
        raise ValueError(f"need at least 2 judgments, got {y.size}")
    if np.any((y < 0) | (y > 1)):
        bad = y[(y < 0) | (y > 1)][:3]
        raise ValueError(
            f"preferences must be probabilities in [0, 1] (official AlpacaEval preferences in [1, 2] minus 1), got e.g. {bad.tolist()}"
        )
    return y


def raw_win_rate(preferences) -> tuple[float, float]:
    """AlpacaEval's (weighted) win rate and its standard error, in percent.

    ``preferences``: per-instruction probability in [0, 1] that the model beats the baseline
    (a draw is 0.5). Returns ``(100 * mean(y), 100 * std(y, ddof=1) / sqrt(n))``, i.e.
    AlpacaEval's ``win_rate`` and ``standard_error``.
    """
    y = _preferences(preferences)
    return float(y.mean() * 100), float(y.std(ddof=1) / math.sqrt(y.size) * 100)


def official_to_probability(preference) -> float | None:
    """An official AlpacaEval ``preference`` (1 = baseline wins, 2 = model wins, 0 = draw) as the
    probability in [0, 1] that the model wins: 0 -> 0.5, p in [1, 2] -> p - 1, anything else
    (None, NaN, out of range) -> None (AlpacaEval drops it)."""
    if preference is None or isinstance(preference, bool):
        return None
    try:
        p = float(preference)
    except (TypeError, ValueError):
        return None
    if p == 0.0:
        p = 1.5
    if not 1.0 <= p <= 2.0:  # also False for NaN
        return None
    return p - 1.0


def read_alpaca_eval_annotations(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official AlpacaEval annotation file (a JSON list of records with ``instruction``,
    ``output_1`` = the baseline/reference output, ``output_2`` = the model's output and
    ``preference`` in [1, 2], 0 = draw).

    Records whose preference is not in [1, 2] (after 0 -> 1.5) are dropped, as AlpacaEval does.
    Lengths are in characters (Python ``len`` of the output string, as AlpacaEval's
    ``Series.str.len()``). Returns arrays, one entry per kept record:

    - ``instruction``, ``output_1``, ``output_2``, ``generator_1``, ``generator_2`` (object arrays;
      generators are None where absent),
    - ``preference``: official preference in [1, 2] (draws 1.5),
    - ``preferences``: ``preference - 1``, the probability in [0, 1] that the model wins,
    - ``model_lengths`` = len(output_2), ``baseline_lengths`` = len(output_1),
    - ``index``: the record's position in the file (AlpacaEval's instruction index).

    Raises RecordError (a ValueError) naming the file, and the line where known, for a missing
    file, a file that is not UTF-8 or not valid JSON; ValueError for a record of the wrong shape.
    """
    records = read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of annotation records")
    rows: dict[str, list] = {
        k: []
        for k in ("index", "instruction", "output_1", "output_2", "generator_1", "generator_2", "preferences")
    }
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {position} is not a JSON object")
        missing = [k for k in ("output_1", "output_2", "preference") if k not in record]
        if missing:
            raise ValueError(f"{path}: record {position} lacks {missing}")
        y = official_to_probability(record["preference"])
        if y is None:
            continue
        for key in ("output_1", "output_2"):
            if not isinstance(record[key], str):
                raise ValueError(f"{path}: record {position}: {key} is not a string")
        rows["index"].append(position)
        rows["instruction"].append(record.get("instruction"))
        rows["output_1"].append(record["output_1"])
        rows["output_2"].append(record["output_2"])
        rows["generator_1"].append(record.get("generator_1"))
        rows["generator_2"].append(record.get("generator_2"))
        rows["preferences"].append(y)
    out = {k: np.array(v, dtype=object) for k, v in rows.items() if k not in ("index", "preferences")}
    out["index"] = np.array(rows["index"], dtype=int)
    out["preferences"] = np.array(rows["preferences"], dtype=float)
    out["preference"] = out["preferences"] + 1.0
    out["model_lengths"] = np.array([len(s) for s in rows["output_2"]], dtype=float)
    out["baseline_lengths"] = np.array([len(s) for s in rows["output_1"]], dtype=float)
    return out


# --- the GLM ---------------------------------------------------------------------------------


def _cross_entropy(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """sum_i [log(1 + exp(eta_i)) - y_i eta_i], eta = X w (soft-target logistic loss)."""
    eta = X @ w
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def _fit_mle(X: np.ndarray, y: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Unpenalized soft-target logistic regression by Newton steps (with backtracking)."""
    w = np.zeros(X.shape[1])
    loss = _cross_entropy(w, X, y)
    for _ in range(max_iter):
        p = expit(X @ w)
        grad = X.T @ (p - y)
        hess = (X * (p * (1 - p))[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        decrement = float(grad @ step)  # Newton decrement squared, >= 0
        slack = 1e-12 * max(1.0, abs(loss))  # rounding of the loss
        t = 1.0
        while True:
            candidate = w - t * step
            new_loss = _cross_entropy(candidate, X, y)
            if new_loss <= loss - 1e-4 * t * decrement + slack or t < 1e-8:
                break
            t /= 2
        if t < 1e-8:
            break
        w, loss = candidate, new_loss
        if t == 1.0 and np.max(np.abs(step)) <= 1e-10 * max(1.0, np.max(np.abs(w))):
            return w
    raise RuntimeError(
        "the length-control GLM did not converge (the judgments may separate perfectly, e.g. the "
        "model always wins or always loses); pass l1_C to fit a penalized GLM"
    )


def _fit_l1(X: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """Minimize ||w||_1 + C * sum_i CE_i(w) (liblinear's L1 objective), split w = u - v, u, v >= 0,
    by L-BFGS-B, then polished with Newton steps on the nonzero coefficients."""
    n, k = X.shape

    def objective(uv):
        w = uv[:k] - uv[k:]
        eta = X @ w
        g = C * (X.T @ (expit(eta) - y))
        return C * float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + float(uv.sum()), np.concatenate([g + 1, -g + 1])

    result = optimize.minimize(
        objective, np.zeros(2 * k), jac=True, method="L-BFGS-B", bounds=[(0, None)] * (2 * k),
        options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
    )
    w = result.x[:k] - result.x[k:]
    active = np.abs(w) > 1e-9 * max(1.0, np.max(np.abs(w)))
    w[~active] = 0.0
    if active.any():  # on the active set the objective is smooth: C * CE(w) + sign(w) . w
        sign = np.sign(w[active])
        XA = X[:, active]
        wa = w[active]
        for _ in range(50):
            p = expit(XA @ wa)
            grad = C * (XA.T @ (p - y)) + sign
            if np.max(np.abs(grad)) <= 1e-12 * max(1.0, C * n):
                break
            hess = C * (XA * (p * (1 - p))[:, None]).T @ XA
            new = wa - np.linalg.solve(hess, grad)
            if np.any(np.sign(new) != sign):  # the active set would change: keep L-BFGS-B's answer
                break
            wa = new
        w[active] = wa
    return w


def length_controlled_win_rate(
    preferences,
    model_lengths,
    baseline_lengths,
    instruction_difficulty=None,
    *,
    l1_C: float | None = None,
) -> dict:
    """AlpacaEval 2.0's length-controlled win rate (see the module docstring for the formulas).

    Arguments, one value per instruction:

    - ``preferences``: probability in [0, 1] that the model's output beats the baseline's,
    - ``model_lengths`` / ``baseline_lengths``: output lengths (AlpacaEval: characters),
    - ``instruction_difficulty``: optional per-instruction covariate q_i (its coefficient is fitted),
    - ``l1_C``: None for the unpenalized maximum-likelihood GLM, or the inverse strength C of an
      L1 penalty with liblinear's objective ``||w||_1 + C * sum_i CE_i(w)`` (AlpacaEval's
      ``fit_LogisticRegressionCV(..., n_splits=0, C=C)``).

    Returns a dict:

    - ``length_controlled_winrate``: ``100 * mean_i sigmoid(theta + gamma q_i)``,
    - ``lc_standard_error``: sandwich / influence-function SE over instructions (module docstring),
    - ``win_rate``, ``standard_error``: the raw win rate and its SE (``raw_win_rate``),
    - ``coefficients``: ``{"model": theta, "length": beta, ["instruction_difficulty": gamma]}``,
      with ``beta`` the coefficient of tanh((model - baseline length) / std) (AlpacaEval's
      ``np.tanh(std_delta_len)`` coefficient is ``-beta``),
    - ``length_std``: std (ddof=1) of the length differences, ``n``: number of instructions,
    - ``predicted_preferences``: sigmoid(theta + gamma q_i) per instruction (AlpacaEval's
      ``glm_preference``).
    """
    y = _preferences(preferences)
    n = y.size
    m = _as_vector("model_lengths", model_lengths, n)
    b = _as_vector("baseline_lengths", baseline_lengths, n)
    q = None if instruction_difficulty is None else _as_vector("instruction_difficulty", instruction_difficulty, n)
    if np.any(m < 0) or np.any(b < 0):
        raise ValueError("lengths must be non-negative")
    delta = m - b
    length_std = float(delta.std(ddof=1))
    if not length_std > 0:
        raise ValueError(
            "the length differences (model - baseline) have zero variance across instructions: the length term is not identifiable"
        )
    columns = [np.ones(n), np.tanh(delta / length_std)]
    names = ["model", "length"]
    if instruction_difficulty is not None:
        columns.append(q)
        names.append("instruction_difficulty")
    X = np.column_stack(columns)
    k = X.shape[1]
    if n <= k:
        raise ValueError(f"need more instructions ({n}) than GLM coefficients ({k})")
    if np.linalg.matrix_rank(X) < k:
        raise ValueError(
            "the GLM design is rank-deficient (e.g. instruction_difficulty is constant, or the length "
            "term is collinear with it): the coefficients are not identifiable"
        )
    if l1_C is None:
        if np.all(y == y[0]) and y[0] in (0.0, 1.0):
            raise ValueError(
                f"every preference is {y[0]:g}: the unpenalized GLM has no finite fit (pass l1_C to penalize it)"
            )
        w = _fit_mle(X, y)
    else:
        if not (np.isfinite(l1_C) and l1_C > 0):
            raise ValueError(f"l1_C must be a positive number, got {l1_C}")
        w = _fit_l1(X, y, float(l1_C))

    Z = X.copy()
    Z[:, 1] = 0.0  # no length difference
    s = expit(Z @ w)
    lc = float(s.mean())

    # influence of each instruction on the LC estimate (M-estimation sandwich)
    p = expit(X @ w)
    G = X * (p - y)[:, None]  # score contributions g_i
    H = (X * (p * (1 - p))[:, None]).T @ X
    D = (Z * (s * (1 - s))[:, None]).mean(axis=0)
    try:
        h = np.linalg.solve(H, D)
    except np.linalg.LinAlgError:
        h = np.linalg.lstsq(H, D, rcond=None)[0]
    phi = (s - lc) / n - G @ h
    se = math.sqrt(n / (n - k) * float(phi @ phi))

    win_rate, standard_error = raw_win_rate(y)
    return {
        "length_controlled_winrate": lc * 100,
        "lc_standard_error": se * 100,
        "win_rate": win_rate,
        "standard_error": standard_error,
        "coefficients": dict(zip(names, (float(v) for v in w))),
        "length_std": length_std,
        "n": n,
        "predicted_preferences": s,
    }
