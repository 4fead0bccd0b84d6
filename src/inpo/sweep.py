"""Sweeps: a grid of settings expanded into experiment points, each with a readable path.

A point fixes the algorithm (``conf/algo/<algo>.yaml``) and the parameters it uses, the
annotation oracle (``conf/judge/<judge>.yaml``) and the seed of its iteration chain:

    expand_grid({"algo": ["inpo", "dpo"], "eta": [0.1, 0.2], "tau": [0.02], "beta": [0.1],
                 "judge": ["synthetic_preference"], "seed": [0, 1]})

gives INPO at each (eta, tau) and DPO at each beta, for each judge and seed; a parameter that an
algorithm does not use does not multiply its points. A parameter's values may also be given per
algorithm, ``"beta": {"dpo": [2.0], "sppo": [0.2]}``, when algorithms sharing a name want
different values, and so may the judges, ``"judge": {"dpo": [...], "sppo": [...]}`` (every algo named). ``point_path`` names a point the way Snakemake's Paramspace does
(``algo~inpo/judge~synthetic_preference/seed~0/eta~0.1/tau~0.02``), and ``parse_point`` reads the
name back.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from .schedules import check_eta_schedule, eta_at

# The parameters of each algorithm config, in path order; anything else in conf/algo is fixed.
ALGO_PARAMETERS: dict[str, tuple[str, ...]] = {
    "inpo": ("eta", "tau", "eta_schedule"),
    "inpo_nokl": ("eta", "eta_schedule"),
    "dpo": ("beta",),
    "ipo": ("beta",),
    "sppo": ("beta",),
}
# Parameters a grid may leave out, and their default. A point at the default leaves the parameter
# out of its path, so the folders of points from before the parameter existed stay where they are.
DEFAULTS = {"eta_schedule": "constant"}
SHARED_KEYS = ("algo", "judge", "seed")
TEXT_KEYS = ("algo", "judge", "eta_schedule")
# The keys of a workflow config's sweep grid (conf/workflow.yaml), each with a top-level single value.
GRID_KEYS = (*SHARED_KEYS, *dict.fromkeys(k for names in ALGO_PARAMETERS.values() for k in names))
# annotate's pairing for an algorithm's pairs; auto (by the judge's kind) for the others
PAIRING = {"sppo": "sppo"}


def _number(key: str, value: Any) -> float | int:
    """Numbers from a config file or from ``snakemake --config`` (where they may arrive as text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"sweep: {key} must be a number, got {value!r}") from None
    return int(number) if key == "seed" else number


def _value(key: str, value: Any) -> Any:
    return str(value) if key in TEXT_KEYS else _number(key, value)


def _at_default(point: Mapping[str, Any], key: str) -> bool:
    """Whether the point leaves ``key`` at its default (``DEFAULTS``): absent, or the default itself."""
    return key in DEFAULTS and point.get(key, DEFAULTS[key]) == DEFAULTS[key]


def check_point(point: Mapping[str, Any]) -> None:
    """Raise ValueError naming the setting if a point's algorithm settings are invalid."""
    algo = point["algo"]
    if algo not in ALGO_PARAMETERS:
        raise ValueError(f"sweep: unknown algo {algo!r}; known: {sorted(ALGO_PARAMETERS)}")
    if algo in ("inpo", "inpo_nokl"):
        try:
            check_eta_schedule(point["eta"], point.get("tau", 0.0), point.get("eta_schedule", DEFAULTS["eta_schedule"]))
        except ValueError as err:
            raise ValueError(f"sweep point {point_path(point)}: {err}") from None
    elif not point["beta"] > 0:
        raise ValueError(f"sweep point {point_path(point)}: beta must be > 0, got beta={point['beta']}")
    if point["seed"] < 0:
        raise ValueError(f"sweep: seed must be >= 0, got seed={point['seed']}")


def grid_values(grid: Mapping[str, Any], key: str, algo: str) -> Sequence[Any]:
    """The values of ``key`` for ``algo``'s points: ``grid[key]``, a list, or ``grid[key][algo]`` when
    it maps algorithm names to lists; a parameter with a default (``DEFAULTS``) may be left out."""
    values = grid.get(key)
    if isinstance(values, Mapping):
        unknown = sorted(set(values) - set(ALGO_PARAMETERS))
        if unknown:
            raise ValueError(f"sweep.{key}: unknown algo {unknown[0]!r} (values per algorithm are keyed by algo names; "
                             f"known: {sorted(ALGO_PARAMETERS)})")
        wrong = sorted(a for a in values if key not in ALGO_PARAMETERS[a])
        if wrong:
            raise ValueError(f"sweep.{key}: algo {wrong[0]!r} takes no {key} (its parameters: "
                             f"{', '.join(ALGO_PARAMETERS[wrong[0]]) or 'none'})")
        values = values.get(algo)
    if values is None and key in DEFAULTS:
        return [DEFAULTS[key]]
    if not values:
        raise ValueError(f"sweep: algo {algo!r} needs at least one value for {key}")
    return values


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All points of the grid, each a dict of the shared keys and its algorithm's parameters (those
    at their default, ``DEFAULTS``, left out)."""
    missing = [k for k in SHARED_KEYS if not grid.get(k)]
    if missing:
        raise ValueError(f"sweep: needs at least one value for {', '.join(missing)}")
    shared = [k for k in ("algo", "seed") if isinstance(grid[k], Mapping)]
    if shared:
        raise ValueError(f"sweep.{shared[0]} must be a list; only judge and algorithm parameters may be given per algorithm")
    points, seen = [], set()
    for algo in grid["algo"]:
        if algo not in ALGO_PARAMETERS:
            raise ValueError(f"sweep: unknown algo {algo!r}; known: {sorted(ALGO_PARAMETERS)}")
        judges = grid["judge"]
        if isinstance(judges, Mapping):
            judges = judges.get(algo)
            if not judges:
                raise ValueError(f"sweep.judge is given per algorithm but names none for algo {algo!r}")
        for judge, seed in itertools.product(judges, grid["seed"]):
            points += _points(grid, algo, judge, seed, seen)
    return points


def _points(grid: Mapping[str, Any], algo: str, judge: str, seed: Any, seen: set[str]) -> list[dict[str, Any]]:
    """The grid's points of one (algo, judge, seed), those whose path is in ``seen`` left out."""
    points, names = [], ALGO_PARAMETERS[algo]
    for values in itertools.product(*(grid_values(grid, k, algo) for k in names)):
        parameters = {k: _value(k, v) for k, v in zip(names, values)}
        point = {"algo": algo, "judge": str(judge), "seed": _number("seed", seed), **parameters}
        point = {k: v for k, v in point.items() if not _at_default(point, k)}
        check_point(point)
        path = point_path(point)
        if path not in seen:
            seen.add(path)
            points.append(point)
    return points


def grid_judges(judges: Sequence[str] | Mapping[str, Sequence[str]]) -> list[str]:
    """Every judge a grid names, once each, whether given as a list or per algorithm."""
    values = judges.values() if isinstance(judges, Mapping) else [judges]
    return list(dict.fromkeys(str(j) for group in values for j in group))


def workflow_grid(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep grid of a workflow config: ``sweep.<key>`` where given, else the top-level ``<key>``'s
    single value."""
    sweep = config.get("sweep") or {}
    return {k: sweep[k] if k in sweep else [config[k]] for k in GRID_KEYS}


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def point_path(point: Mapping[str, Any]) -> str:
    """``algo~A/judge~J/seed~S/<param>~<value>...``: the point's folder, readable and unique; a
    parameter at its default (``DEFAULTS``) is left out."""
    keys = [*SHARED_KEYS, *ALGO_PARAMETERS.get(point["algo"], ())]
    return "/".join(f"{k}~{_text(point[k])}" for k in keys if not _at_default(point, k))


def parse_point(path: str) -> dict[str, Any]:
    """The point a ``point_path`` names (a parameter at its default absent, as the path leaves it out)."""
    point: dict[str, Any] = {}
    for segment in path.split("/"):
        key, sep, value = segment.partition("~")
        if not sep:
            raise ValueError(f"not a sweep point path: {path!r} (segment {segment!r} has no '~')")
        point[key] = _value(key, value)
    return point


def train_overrides(point: Mapping[str, Any]) -> list[str]:
    """Hydra overrides that select the point's algorithm and its parameters in ``conf/train.yaml``
    (a parameter at its default is left to the algorithm's config, which has the same default)."""
    return [f"algo={point['algo']}",
            *(f"algo.{k}={_text(point[k])}" for k in ALGO_PARAMETERS[point["algo"]] if not _at_default(point, k))]


def step_size(point: str | Mapping[str, Any], t: int) -> float:
    """eta_t, the eta that an INPO point (a ``point_path`` or its dict) trained iteration t with:
    ``inpo.schedules.eta_at`` of its eta and eta_schedule. Its tau is ``point["tau"]`` (inpo_nokl: 0)."""
    point = parse_point(point) if isinstance(point, str) else point
    if point["algo"] not in ("inpo", "inpo_nokl"):
        raise ValueError(f"step_size: algo {point['algo']!r} has no eta; only inpo and inpo_nokl do")
    return eta_at(point["eta"], point.get("eta_schedule", DEFAULTS["eta_schedule"]), int(t))


def pairing(point: Mapping[str, Any]) -> str:
    """annotate's pairing for a point's pairs: SPPO's for sppo (its loss reads win rates), else auto."""
    return PAIRING.get(point["algo"], "auto")


def annotation_pairing(chain: str) -> str:
    """annotate's pairing for a chain's folder (``stage_folder``): its ``pairing~P`` segment in a shared
    folder (auto without one), its point's ``pairing`` in ``sweep/<point>``."""
    if chain.startswith("sweep/"):
        return pairing(parse_point(chain.removeprefix("sweep/")))
    return next((s.split("~", 1)[1] for s in chain.split("/") if s.startswith("pairing~")), "auto")


def stage_folder(point: str, t: int, stage: str) -> str:
    """Where (below the results folder) a point's ``stage`` output of iteration t lives.

    Iteration 1 starts from the SFT model for every point, so its samples are shared by the
    points with the same seed, and its pairs and log-probs by those with the same seed, judge and
    pairing (``shared/seed~S/judge~J``, ``.../pairing~sppo`` for SPPO's).
    """
    p = parse_point(point)
    if int(t) == 1 and stage == "sample":
        return f"shared/seed~{p['seed']}"
    if int(t) == 1 and stage in ("annotate", "logps"):
        folder = f"shared/seed~{p['seed']}/judge~{p['judge']}"
        return folder if pairing(p) == "auto" else f"{folder}/pairing~{pairing(p)}"
    return f"sweep/{point}"
