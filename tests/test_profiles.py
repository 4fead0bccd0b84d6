"""The execution profiles (profiles/slurm, profiles/local) and the accelerate configs (conf/accelerate).

The SLURM profile is dry-run here without SLURM: with ``-n`` Snakemake checks the workflow and the
arguments against the slurm executor plugin but runs the jobs through its ``dryrun``
pseudo-executor, which submits nothing (no sbatch, sinfo or sacctmgr call; the test checks that with
recording stand-ins that would fail). Each job's ``resources:`` line in the dry-run output is what
the plugin would turn into sbatch flags; the plugin's own ``get_submit_command`` shows which flags.
"""

import os
import re
import stat
from collections import Counter
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SLURM_PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = ROOT / "profiles" / "local" / "config.yaml"
ACCELERATE = ROOT / "conf" / "accelerate"

GPU_RULES = {"sft", "sample", "annotate", "baseline_answers", "logps", "train", "evaluate", "benchmark"}
CPU_RULES = {"train_prompts", "eval_prompts", "merge_samples", "report"}
PAPER = "conf/experiment/paper_llama3_8b.yaml"
SLURM_ENV = {"INPO_SLURM_ACCOUNT": "acct_test", "INPO_SLURM_PARTITION": "cpu_test", "INPO_SLURM_GPU_PARTITION": "gpu_test"}
# Commands that submit, cancel or validate accounts: a dry run must call none of them.
SLURM_COMMANDS = ("sbatch", "srun", "scancel", "sacctmgr", "sshare")

JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")
JOB_FIELD = re.compile(r"^ {4}(\w+): ?(.*)$")


def parse_value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def parse_jobs(output: str) -> list[dict]:
    """Each job of a dry run as {"rule": name, "wildcards": str, "resources": {name: value}}."""
    jobs, job = [], None
    for line in output.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            job = {"rule": header.group(1), "resources": {}, "wildcards": ""}
            jobs.append(job)
            continue
        field = JOB_FIELD.match(line) if job is not None else None
        if field is None:
            job = None  # a job's block ends at its first unindented line
            continue
        key, value = field.groups()
        if key == "resources":
            # "a=1, b=x, mem=4 GB": split only before ", name=" so values may hold commas
            for item in re.split(r", (?=[A-Za-z_]\w*=)", value):
                name, _, raw = item.partition("=")
                job["resources"][name] = parse_value(raw)
        elif key == "wildcards":
            job["wildcards"] = value
    return jobs


def recording_stand_ins(folder: Path) -> Path:
    """Executables named like SLURM's commands that log each call to calls.log and fail."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{folder}/calls.log"\nexit 1\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder / "calls.log"


def dry_run(profile: str, results: Path, env: dict[str, str | None], stand_ins: Path | None = None, *extra: str,
            config: tuple[str, ...] = ()):
    environment = dict(os.environ)
    for key in [k for k in environment if k.startswith(("INPO_SLURM_", "SNAKEMAKE_PROFILE"))]:
        del environment[key]
    environment.update({k: v for k, v in env.items() if v is not None})
    # the paper's models are hub names: online, the jobs would download them (a dry run runs none);
    # offline, the workflow would refuse names missing from the local cache
    environment["HF_HUB_OFFLINE"] = "0"
    if stand_ins is not None:
        environment["PATH"] = f"{stand_ins}{os.pathsep}{environment.get('PATH', '')}"
    process = subprocess.run(
        [*SNAKEMAKE, "--profile", profile, "--dry-run", *extra, "--config", f"results={results}", *config],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-4000:]
    assert "This was a dry-run" in output, output[-4000:]
    assert not results.exists(), "a dry run must not write results"
    return parse_jobs(output) if "--printshellcmds" not in extra else (parse_jobs(output), output)


def profile_set_resources(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text())["set-resources"]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """Dry runs of the embedded default and of the paper's experiment: between them, every rule."""
    folder = tmp_path_factory.mktemp("slurm")
    calls = recording_stand_ins(folder)
    default = dry_run("profiles/slurm", folder / "results", SLURM_ENV, folder / "bin")
    paper, output = dry_run("profiles/slurm", folder / "paper", SLURM_ENV, folder / "bin", "--configfile", PAPER,
                            "--printshellcmds")
    return SimpleNamespace(jobs=default + paper, paper=paper, paper_output=output, calls=calls)


def jobs_of(jobs, rule):
    found = [job for job in jobs if job["rule"] == rule]
    assert found, f"no {rule} job in the dry run"
    return found


def test_slurm_dry_run_needs_no_slurm_and_lists_every_rule(slurm_run):
    assert not slurm_run.calls.exists(), f"the dry run called SLURM: {slurm_run.calls.read_text()}"
    rules = {job["rule"] for job in slurm_run.jobs}
    assert GPU_RULES | CPU_RULES <= rules
    # every rule the profile sizes exists in the workflow (Snakemake ignores unknown names silently)
    assert set(profile_set_resources(SLURM_PROFILE)) <= rules


def test_slurm_train_is_one_job_with_eight_gpus(slurm_run):
    for job in jobs_of(slurm_run.jobs, "train"):
        resources = job["resources"]
        assert resources["gpu"] == 8, job
        assert resources["mem_mb"] == 480000 and resources["runtime"] == 720 and resources["cpus_per_task"] == 64, job
        assert resources["slurm_partition"] == "gpu_test" and resources["slurm_account"] == "acct_test", job


def test_slurm_jobs_get_the_resources_the_profile_sets(slurm_run):
    """Every number set per rule in the profile is the job's resource, overriding the rule's own."""
    for rule, wanted in profile_set_resources(SLURM_PROFILE).items():
        numbers = {k: v for k, v in wanted.items() if isinstance(v, int)}
        for job in jobs_of(slurm_run.jobs, rule):
            assert {k: job["resources"].get(k) for k in numbers} == numbers, job
    for rule in GPU_RULES:
        for job in jobs_of(slurm_run.jobs, rule):
            assert job["resources"]["gpu"] >= 1 and job["resources"]["slurm_partition"] == "gpu_test", job
            assert job["resources"]["runtime"] >= 60 and job["resources"]["mem_mb"] >= 32000, job


def test_slurm_cpu_rules_get_no_gpu(slurm_run):
    for rule in CPU_RULES:
        for job in jobs_of(slurm_run.jobs, rule):
            resources = job["resources"]
            assert resources.get("gpu", 0) == 0 and "gpu_model" not in resources, job
            assert "gpu" not in str(resources.get("gres", "")), job
            assert resources["slurm_partition"] == "cpu_test" and resources["slurm_account"] == "acct_test", job


def test_the_paper_experiment_dry_runs_on_slurm_with_every_job_sized(slurm_run):
    """conf/experiment/paper_llama3_8b.yaml: 3 iterations from RLHFlow/LLaMA3-SFT (no sft job), each
    sampling in 8 one-GPU shards with vLLM, annotated by the 8B pairwise preference model, trained
    on 8 GPUs with ZeRO-3; AlpacaEval 2.0, Arena-Hard and MT-Bench for pi_ref and each iteration."""
    jobs = slurm_run.paper
    counts = Counter(job["rule"] for job in jobs)
    assert counts == Counter({"train_prompts": 3, "sample": 24, "merge_samples": 3, "annotate": 3, "logps": 3,
                              "train": 3, "benchmark": 12, "report": 1, "all": 1})
    for job in jobs:
        gpus = job["resources"]["gpu"]
        assert gpus == {"train": 8}.get(job["rule"], 1 if job["rule"] in GPU_RULES else 0), job
        assert job["resources"]["slurm_partition"] == ("gpu_test" if gpus else "cpu_test"), job
    commands = slurm_run.paper_output
    for expected in ("dataset.path=RLHFlow/iterative-prompt-v1-iter3-20K", "policy=RLHFlow/LLaMA3-SFT", "sampler=vllm",
                     "shard=7 n_shards=8", "judge=pair_preference_llama3", "max_length=2048 max_prompt_length=1000",
                     "sampler.max_prompt_length=1000 sampler.max_length=2048",
                     "accelerate.commands.launch --config_file conf/accelerate/zero3.yaml",
                     "algo.eta=0.005 algo.tau=0.0016667", "optim.learning_rate=5e-7", "optim.gradient_accumulation_steps=8",
                     "eval=alpaca_eval_2", "eval=arena_hard_v0.1"):
        assert expected in commands, expected


def test_slurm_placeholders_when_account_and_partition_are_not_given(tmp_path):
    jobs = dry_run("profiles/slurm", tmp_path / "results", {})
    submitted = [job for job in jobs if job["rule"] != "all"]
    assert submitted
    for job in submitted:
        assert job["resources"]["slurm_account"] == "FILL_IN_ACCOUNT", job
        # the GPU partition falls back to the general one
        assert job["resources"]["slurm_partition"] == "FILL_IN_PARTITION", job


class _Resources(dict):
    __getattr__ = dict.__getitem__


def test_slurm_plugin_turns_the_resources_into_sbatch_flags(slurm_run):
    """The resource names are the plugin's: its own sbatch command line carries them (built as
    the plugin's executor builds it: get_submit_command, then set_gres_string for the GPUs)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    def sbatch(job):
        fake_job = SimpleNamespace(resources=_Resources(job["resources"]), threads=1)
        # -A and -p come from the executor's account and partition checks (they call SLURM): not here
        params = {"run_uuid": "run", "slurm_logfile": "log", "comment_str": "c", "workdir": "/w", "account": "", "partition": ""}
        return get_submit_command(fake_job, params) + set_gres_string(fake_job)

    train = sbatch(jobs_of(slurm_run.jobs, "train")[0])
    for flag in ("--gpus=8", "--mem 480000", "-t 720", "--cpus-per-task=64"):
        assert flag in train, train
    merge = sbatch(jobs_of(slurm_run.jobs, "merge_samples")[0])
    assert "--gpus" not in merge and "--gres" not in merge, merge
    assert "--mem 16000" in merge and "--ntasks=1" in merge, merge


def test_local_profile_queues_gpu_jobs_on_one_gpu(tmp_path):
    jobs = dry_run("profiles/local", tmp_path / "results", {}, config=("sample_shards=2", "evaluations=[heldout,alpaca_eval_2]"))
    profile = yaml.safe_load(LOCAL_PROFILE.read_text())
    assert profile["resources"]["gpu"] == 1 and profile["cores"] == "all"
    rules = {job["rule"] for job in jobs}
    assert GPU_RULES | CPU_RULES <= rules and set(profile["set-resources"]) <= rules
    for job in jobs:
        gpu = job["resources"].get("gpu", 0)
        assert gpu == (1 if job["rule"] in GPU_RULES else 0), job
        assert not any(name.startswith("slurm_") for name in job["resources"]), job


@pytest.mark.parametrize("name, kind", [("zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = ACCELERATE / f"{name}.yaml"
    assert f"accelerate launch --config_file conf/accelerate/{name}.yaml -m inpo.train" in path.read_text()
    config = load_config_from_file(str(path))  # rejects unknown top-level keys
    assert config.distributed_type.value == kind
    assert config.mixed_precision == "bf16" and config.num_processes == 8 and config.num_machines == 1
    # `accelerate launch` copies the nested keys onto its own options and ignores misspelt ones silently
    options = {action.dest for action in launch_command_parser()._actions}
    nested = config.deepspeed_config if kind == "DEEPSPEED" else config.fsdp_config
    names = {key if kind == "DEEPSPEED" or key.startswith("fsdp") else f"fsdp_{key}" for key in nested}
    assert names <= options, names - options
    if kind == "DEEPSPEED":
        assert nested["zero_stage"] == 3 and nested["zero3_save_16bit_model"] is True
        assert "gradient_accumulation_steps" not in nested  # left to optim.gradient_accumulation_steps
    else:
        assert nested["fsdp_version"] == 2 and nested["fsdp_reshard_after_forward"] is True
