# Shared helpers: the experiment points, where each stage's files live, the iteration chain,
# per-stage Hydra overrides. Resources (GPUs, memory, time) are set by the profiles in profiles/.
#
# Files of an experiment point P (inpo.sweep.point_path) live under results/sweep/P/. Work that
# coincides between points is done once: the SFT model, the prompt sets, the SFT model's
# evaluation; iteration 1's samples (drawn from pi_1 = SFT) are shared by all points with the
# same seed (results/shared/seed~S/), and their pairs and log-probs by all points that also have
# the same judge (results/shared/seed~S/judge~J/) and annotate pairing (SPPO's pairs, annotated with
# pairing=sppo, in results/shared/seed~S/judge~J/pairing~sppo/).
import os
import re
import shlex
import sys

from inpo.game_metrics import algorithm_step
from inpo.sweep import (annotation_pairing, expand_grid, parse_point, point_path, stage_folder, step_size,
                        train_overrides, workflow_grid)
from inpo.workflow_config import (Untracked, benchmark_inputs, check_workflow_config, hydra_command, is_local_path,
                                  split_overrides)

# The checkout's configs: every stage reads them (INPO_CONF_DIR in each shell line), whatever
# environment inpo is installed in, and rules list the files they read as inputs.
CONF_DIR = os.path.relpath(os.path.join(workflow.basedir, "conf"))
check_workflow_config(config, CONF_DIR)

R = config["results"]
# Every shell line starts with STAGE_ENV; jobs run with the interpreter that runs Snakemake.
STAGE_ENV = f"INPO_CONF_DIR={shlex.quote(os.path.abspath(CONF_DIR))}"
PYTHON = shlex.quote(sys.executable)
# sft and train: plain Python, or accelerate's launcher on several GPUs
TRAINER = PYTHON if not config.get("accelerate_config") else (
    f"{PYTHON} -m accelerate.commands.launch --config_file {shlex.quote(config['accelerate_config'])}")
ACCELERATE_INPUT = [config["accelerate_config"]] if config.get("accelerate_config") else []
ITERATIONS = list(range(1, config["iterations"] + 1))
# the report of this config's points; experiments sharing a results folder share their chains
REPORT_DIR = config.get("report") or f"{R}/report"
# its log and benchmark file: logs/<the report folder below the results>.log (default logs/report.log)
REPORT_NAME = os.path.relpath(REPORT_DIR, R)
REPORT_NAME = "report" if REPORT_NAME.startswith("..") else REPORT_NAME
POINTS = [point_path(p) for p in expand_grid(workflow_grid(config))]
EMBEDDED = config["reference"] == "sft"
# pi_ref: the sft rule's output, or a model by hub name / folder (not a file this workflow makes)
REFERENCE = f"{R}/sft/model" if EMBEDDED else config["reference"]
HELDOUT = "heldout" in config["evaluations"]
BENCHMARKS = [name for name in config["evaluations"] if name != "heldout"]
SHARDS = config["sample_shards"]


wildcard_constraints:
    t=r"\d+",
    point=r"algo~[^/]+/.+",
    chain=r"shared/seed~\d+(/judge~[^/]+(/pairing~\w+)?)?|sweep/algo~[^/]+/.+|sft|reference",
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
    """A stage's Hydra arguments: its settings, its run directory (where Hydra saves the composed
    config, beside the outputs) and the workflow config's overrides for it that can change a result.

    Rules pass this as a param computed from wildcards and config only, so Snakemake records it and
    its params rerun trigger reruns the job when any of it changes (a param computed from
    ``input``/``output`` is not recorded). Paths are therefore built from wildcards, not taken from
    ``input``/``output``."""
    tracked, _ = split_overrides(config.get("overrides", {}).get(stage, []))
    return hydra_command({**settings, "hydra.run.dir": str(run_dir)}, tracked)


def untracked_args(stage):
    """The stage's overrides that cannot change a result (logging): passed on, never a rerun reason."""
    _, untracked = split_overrides(config.get("overrides", {}).get(stage, []))
    return Untracked(hydra_command({}, untracked))


def conf(*names):
    """Hydra config files a rule reads; listed as inputs so that editing one reruns what depends on it."""
    return [f"{CONF_DIR}/{name}.yaml" for name in names]
