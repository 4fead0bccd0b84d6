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
EMBEDDED = config["reference"] == "sft"
# pi_ref: the sft rule's output, or a model by hub name / folder (not a file this workflow makes)
REFERENCE = f"{R}/sft/model" if EMBEDDED else config["reference"]
HELDOUT = "heldout" in config["evaluations"]
BENCHMARKS = [name for name in config["evaluations"] if name != "heldout"]
SHARDS = config["sample_shards"]


def check_config():
    """What the schema cannot say, checked before any job with one message naming the setting."""
    prompts = config["train_prompts"]
    if prompts != "synthetic" and len(prompts) < config["iterations"]:
        raise ValueError(f"train_prompts lists {len(prompts)} datasets for iterations={config['iterations']}: one per iteration")
    if HELDOUT and not EMBEDDED:
        raise ValueError(f"evaluations: heldout judges the embedded task's answers with the synthetic oracle, so it needs "
                         f"reference=sft; with reference={config['reference']} evaluate on benchmarks (conf/eval/)")
    for name in BENCHMARKS:
        if not os.path.exists(f"conf/eval/{name}.yaml"):
            known = sorted(f[:-5] for f in os.listdir("conf/eval") if f.endswith(".yaml"))
            raise ValueError(f"evaluations: no conf/eval/{name}.yaml; known: heldout and {known}")
    if config["max_length"] and config["max_prompt_length"] and config["max_prompt_length"] >= config["max_length"]:
        raise ValueError(f"max_prompt_length={config['max_prompt_length']} must be below max_length={config['max_length']}")


check_config()


wildcard_constraints:
    t=r"\d+",
    point=r"algo~[^/]+/.+",
    chain=r"shared/seed~\d+(/judge~[^/]+)?|sweep/algo~[^/]+/.+|sft|reference",
    benchmark="|".join(map(re.escape, BENCHMARKS)) or "no-benchmark",
    shard=r"\d+",


def segment(chain, key):
    """The value of ``key~value`` in a chain's path."""
    return next(s.split("~", 1)[1] for s in chain.split("/") if s.startswith(f"{key}~"))


def policy_in(chain, t):
    """pi_t, the policy iteration t starts from: pi_ref for t = 1, else iteration t-1's output."""
    t = int(t)
    return REFERENCE if t == 1 else f"{R}/{chain}/iter{t - 1}/train/policy"


def evaluated_policy(chain, t):
    """The policy an evaluation is about: pi_ref (chain sft or reference), or pi_{t+1} trained in iteration t."""
    return REFERENCE if chain in ("sft", "reference") else f"{R}/{chain}/iter{t}/train/policy"


def model_input(path):
    """A model as a rule input: a folder this workflow makes or that exists here; a hub name is no input."""
    return [path] if path.startswith(f"{R}/") or os.path.exists(path) else []


def benchmark_evaluations(point):
    """A point's benchmark metrics files, iteration 0 (pi_ref, shared) to T."""
    return [f"{R}/reference/eval/{b}/iter0/metrics.json" for b in BENCHMARKS] + [
        f"{R}/sweep/{point}/eval/{b}/iter{t}/metrics.json" for b in BENCHMARKS for t in ITERATIONS]


def evaluations(point):
    """A point's held-out evaluation files (if configured), iteration 0 (the SFT model, shared) to T."""
    if not HELDOUT:
        return []
    return [f"{R}/sft/eval/iter0/metrics.json"] + [f"{R}/sweep/{point}/eval/iter{t}/metrics.json" for t in ITERATIONS]


def hydra_args(stage, run_dir, **settings):
    """A stage's Hydra command line: its settings, its run directory (where Hydra saves the composed
    config, beside the outputs) and the workflow config's extra overrides for it, shell-quoted.
    Strings with characters Hydra's override grammar reserves (the '~' of point folders) are quoted."""
    def value(v):
        if v is None:
            return "null"
        if isinstance(v, list):
            return "[" + ",".join(value(x) for x in v) + "]"
        return f"'{v}'" if isinstance(v, str) and not re.fullmatch(r"[\w./+-]*", v) else str(v)

    args = [f"{k}={value(v)}" for k, v in settings.items()] + [f"hydra.run.dir={value(str(run_dir))}"]
    return " ".join(shlex.quote(a) for a in args + list(config.get("overrides", {}).get(stage, [])))


def conf(*names):
    """Hydra config files a rule reads; listed as inputs so that editing one reruns what depends on it."""
    return [f"conf/{name}.yaml" for name in names]
