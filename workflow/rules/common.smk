# Shared helpers: the experiment points, where each stage's files live, the iteration chain,
# per-stage Hydra overrides. Resources (GPUs, memory, time) are set by the profiles in profiles/.
#
# Files of an experiment point P (inpo.sweep.point_path) live under results/sweep/P/. Work that
# coincides between points is done once: the SFT model, the prompt sets, the SFT model's
# evaluation; iteration 1's samples (drawn from pi_1 = SFT) are shared by all points with the
# same seed (results/shared/seed~S/), and their pairs and log-probs by all points that also have
# the same judge (results/shared/seed~S/judge~J/).
import os
import re
import shlex
import sys

from inpo.sweep import expand_grid, parse_point, point_path, stage_folder, train_overrides

R = config["results"]
PYTHON = sys.executable  # the jobs run with the interpreter that runs Snakemake
# sft and train: plain Python, or accelerate's launcher on several GPUs
TRAINER = PYTHON if not config.get("accelerate_config") else (
    f"{PYTHON} -m accelerate.commands.launch --config_file {shlex.quote(config['accelerate_config'])}")
ITERATIONS = list(range(1, config["iterations"] + 1))
REPORT_DIR = f"{R}/report"
GRID_KEYS = ("algo", "judge", "seed", "eta", "tau", "beta")
POINTS = [point_path(p) for p in expand_grid({k: config["sweep"].get(k, [config[k]]) for k in GRID_KEYS})]


wildcard_constraints:
    t=r"\d+",
    point=r"algo~[^/]+/.+",
    chain=r"shared/seed~\d+(/judge~[^/]+)?|sweep/algo~[^/]+/.+|sft",


def segment(chain, key):
    """The value of ``key~value`` in a chain's path."""
    return next(s.split("~", 1)[1] for s in chain.split("/") if s.startswith(f"{key}~"))


def policy_in(chain, t):
    """pi_t, the policy iteration t starts from: the SFT model for t = 1, else iteration t-1's output."""
    t = int(t)
    return f"{R}/sft/model" if t == 1 else f"{R}/{chain}/iter{t - 1}/train/policy"


def evaluated_policy(chain, t):
    """The policy an evaluation is about: the SFT model (chain sft), or pi_{t+1} trained in iteration t."""
    return f"{R}/sft/model" if chain == "sft" else f"{R}/{chain}/iter{t}/train/policy"


def evaluations(point):
    """A point's evaluation files, iteration 0 (the SFT model, shared) to T."""
    return [f"{R}/sft/eval/iter0/metrics.json"] + [f"{R}/sweep/{point}/eval/iter{t}/metrics.json" for t in ITERATIONS]


def hydra_args(stage, run_dir, **settings):
    """A stage's Hydra command line: its settings, its run directory (where Hydra saves the composed
    config, beside the outputs) and the workflow config's extra overrides for it, shell-quoted.
    Strings with characters Hydra's override grammar reserves (the '~' of point folders) are quoted."""
    def value(v):
        if isinstance(v, list):
            return "[" + ",".join(value(x) for x in v) + "]"
        return f"'{v}'" if isinstance(v, str) and not re.fullmatch(r"[\w./+-]*", v) else str(v)

    args = [f"{k}={value(v)}" for k, v in settings.items()] + [f"hydra.run.dir={value(str(run_dir))}"]
    return " ".join(shlex.quote(a) for a in args + list(config.get("overrides", {}).get(stage, [])))


def conf(*names):
    """Hydra config files a rule reads; listed as inputs so that editing one reruns what depends on it."""
    return [f"conf/{name}.yaml" for name in names]
