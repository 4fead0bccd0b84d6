"""Sweeps: a grid of settings expanded into experiment points, each with a readable path.

A point fixes the algorithm (``conf/algo/<algo>.yaml``) and the parameters it uses, the
annotation oracle (``conf/judge/<judge>.yaml``) and the seed of its iteration chain:

    expand_grid({"algo": ["inpo", "dpo"], "eta": [0.1, 0.2], "tau": [0.02], "beta": [0.1],
                 "judge": ["synthetic_preference"], "seed": [0, 1]})

gives INPO at each (eta, tau) and DPO at each beta, for each judge and seed; a parameter that an
algorithm does not use does not multiply its points. ``point_path`` names a point the way
Snakemake's Paramspace does (``algo~inpo/judge~synthetic_preference/seed~0/eta~0.1/tau~0.02``),
and ``parse_point`` reads the name back.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from .losses import check_inpo_settings

# The parameters of each algorithm config, in path order; anything else in conf/algo is fixed.
ALGO_PARAMETERS: dict[str, tuple[str, ...]] = {
    "inpo": ("eta", "tau"),
    "inpo_nokl": ("eta",),
    "dpo": ("beta",),
    "ipo": ("beta",),
}
SHARED_KEYS = ("algo", "judge", "seed")


def _number(key: str, value: Any) -> float | int:
    """Numbers from a config file or from ``snakemake --config`` (where they may arrive as text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"sweep: {key} must be a number, got {value!r}") from None
    return int(number) if key == "seed" else number


def check_point(point: Mapping[str, Any]) -> None:
    """Raise ValueError naming the setting if a point's algorithm settings are invalid."""
    algo = point["algo"]
    if algo not in ALGO_PARAMETERS:
        raise ValueError(f"sweep: unknown algo {algo!r}; known: {sorted(ALGO_PARAMETERS)}")
    if algo in ("inpo", "inpo_nokl"):
        try:
            check_inpo_settings(point["eta"], point.get("tau", 0.0))
        except ValueError as err:
            raise ValueError(f"sweep point {point_path(point)}: {err}") from None
    elif not point["beta"] > 0:
        raise ValueError(f"sweep point {point_path(point)}: beta must be > 0, got beta={point['beta']}")
    if point["seed"] < 0:
        raise ValueError(f"sweep: seed must be >= 0, got seed={point['seed']}")


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All points of the grid, each a dict of the shared keys and its algorithm's parameters."""
    missing = [k for k in SHARED_KEYS if not grid.get(k)]
    if missing:
        raise ValueError(f"sweep: needs at least one value for {', '.join(missing)}")
    points, seen = [], set()
    for algo, judge, seed in itertools.product(grid["algo"], grid["judge"], grid["seed"]):
        if algo not in ALGO_PARAMETERS:
            raise ValueError(f"sweep: unknown algo {algo!r}; known: {sorted(ALGO_PARAMETERS)}")
        names = ALGO_PARAMETERS[algo]
        for key in names:
            if not grid.get(key):
                raise ValueError(f"sweep: algo {algo!r} needs at least one value for {key}")
        for values in itertools.product(*(grid[k] for k in names)):
            point = {"algo": algo, "judge": str(judge), "seed": _number("seed", seed),
                     **{k: _number(k, v) for k, v in zip(names, values)}}
            check_point(point)
            path = point_path(point)
            if path not in seen:
                seen.add(path)
                points.append(point)
    return points


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def point_path(point: Mapping[str, Any]) -> str:
    """``algo~A/judge~J/seed~S/<param>~<value>...``: the point's folder, readable and unique."""
    keys = [*SHARED_KEYS, *ALGO_PARAMETERS.get(point["algo"], ())]
    return "/".join(f"{k}~{_text(point[k])}" for k in keys)


def parse_point(path: str) -> dict[str, Any]:
    """The point a ``point_path`` names."""
    point: dict[str, Any] = {}
    for segment in path.split("/"):
        key, sep, value = segment.partition("~")
        if not sep:
            raise ValueError(f"not a sweep point path: {path!r} (segment {segment!r} has no '~')")
        point[key] = value if key in ("algo", "judge") else _number(key, value)
    return point


def train_overrides(point: Mapping[str, Any]) -> list[str]:
    """Hydra overrides that select the point's algorithm and its parameters in ``conf/train.yaml``."""
    return [f"algo={point['algo']}", *(f"algo.{k}={_text(point[k])}" for k in ALGO_PARAMETERS[point["algo"]])]


def stage_folder(point: str, t: int, stage: str) -> str:
    """Where (below the results folder) a point's ``stage`` output of iteration t lives.

    Iteration 1 starts from the SFT model for every point, so its samples are shared by the
    points with the same seed, and its pairs and log-probs by those with the same seed and judge.
    """
    p = parse_point(point)
    if int(t) == 1 and stage == "sample":
        return f"shared/seed~{p['seed']}"
    if int(t) == 1 and stage in ("annotate", "logps"):
        return f"shared/seed~{p['seed']}/judge~{p['judge']}"
    return f"sweep/{point}"
