# Shared helpers: paths, the iteration chain, per-stage Hydra overrides, config checks, resources.
import shlex
import sys

if config["tau"] > config["eta"]:
    raise ValueError(
        f"config: tau must be <= eta (the INPO update mixes pi_t^(1 - tau/eta)), got tau={config['tau']} > eta={config['eta']}"
    )

R = config["results"]
PYTHON = sys.executable  # the jobs run with the interpreter that runs Snakemake
ITERATIONS = list(range(1, config["iterations"] + 1))
REPORT_DIR = f"{R}/report"


wildcard_constraints:
    t=r"\d+",


def policy_in(t):
    """pi_t, the policy iteration t starts from: the SFT model for t = 1, else iteration t-1's output."""
    t = int(t)
    return f"{R}/sft/model" if t == 1 else f"{R}/iter{t - 1}/train/policy"


def evaluated_policy(t):
    """The policy whose evaluation is labelled t: the SFT model for t = 0, else pi_{t+1} trained in iteration t."""
    t = int(t)
    return f"{R}/sft/model" if t == 0 else f"{R}/iter{t}/train/policy"


def overrides(stage):
    """Extra Hydra overrides for a stage from the workflow config, shell-quoted."""
    return " ".join(shlex.quote(o) for o in config.get("overrides", {}).get(stage, []))


def conf(*names):
    """Hydra config files a rule reads; listed as inputs so that editing one reruns what depends on it."""
    return [f"conf/{name}.yaml" for name in names]


def resource(stage, key):
    table = config["resources"]
    return table.get(stage, {}).get(key, table["default"][key])


def resources_of(stage):
    return {key: resource(stage, key) for key in ("mem_mb", "runtime", "gpu")}
