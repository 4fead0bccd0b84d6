"""The Snakemake workflow: the DAG through the Snakemake API, config validation, and the real
workflow run end to end on a shrunken config."""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import PrintDag, Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

from inpo.modeling import load_policy
from inpo.records import PAIR, PROMPT, SAMPLE, SCORED_PAIR, read_json, read_jsonl
from inpo.training import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
POINT = "sweep/algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667"  # the default experiment
SHARED = "shared/seed~0/judge~synthetic_preference"


def job_graph(config: dict, targets=()) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """(job id -> label, edges parent -> child) of the job DAG, from Snakemake's DOT output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(config=config),
                                snakefile=ROOT / "Snakefile", workdir=ROOT)
        # print_dag_as is given as a string: the default enum value prints nothing in Snakemake 9
        workflow.dag(DAGSettings(targets=list(targets), print_dag_as=str(PrintDag.DOT))).printdag()
    dot = out.getvalue()
    nodes = {m[0]: m[1].replace("\\n", " ") for m in re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M)}
    edges = set(re.findall(r"^\s*(\d+) -> (\d+)$", dot, re.M))
    return nodes, edges


def rule_of(label: str) -> str:
    return label.split(" ")[0]


def parents(nodes, edges, child, rule):
    return [p for p, c in edges if c == child and rule_of(nodes[p]) == rule]


def test_default_target_chains_three_iterations_and_evaluates_each(tmp_path):
    nodes, edges = job_graph({"results": str(tmp_path)})
    counts = Counter(rule_of(label) for label in nodes.values())
    assert counts == Counter({"train_prompts": 3, "sample": 3, "annotate": 3, "logps": 3, "train": 3, "evaluate": 4,
                              "sft": 1, "eval_prompts": 1, "baseline_answers": 1, "report": 1, "all": 1})
    (report,) = [n for n, label in nodes.items() if label == "report"]
    assert len(parents(nodes, edges, report, "evaluate")) == 4


def test_shared_work_is_done_once_per_sweep(tmp_path):
    sweep = {"algo": ["inpo", "inpo_nokl", "dpo"], "judge": ["synthetic_reward", "synthetic_preference"], "seed": [0, 1]}
    nodes, _ = job_graph({"results": str(tmp_path), "sweep": sweep})
    counts = Counter(rule_of(label) for label in nodes.values())
    points = 3 * 2 * 2
    # one SFT model, prompt set per iteration and SFT evaluation; iteration 1's samples once per
    # seed, its pairs and log-probs once per (seed, judge); everything else once per point
    assert counts == Counter({"sft": 1, "train_prompts": 3, "eval_prompts": 1, "baseline_answers": 1,
                              "sample": 2 + points * 2, "annotate": 4 + points * 2, "logps": 4 + points * 2,
                              "train": points * 3, "evaluate": 1 + points * 3, "report": 1, "all": 1})


def test_iteration_t_starts_from_iteration_t_minus_1(tmp_path):
    nodes, edges = job_graph({"results": str(tmp_path), "iterations": 3}, targets=[f"{tmp_path}/{POINT}/iter3/train/policy"])
    assert "evaluate" not in {rule_of(label) for label in nodes.values()}
    (last,) = [n for n, label in nodes.items() if rule_of(label) == "train" and not any(p == n for p, _ in edges)]
    chain, train = [], last
    while True:
        (sample,) = [s for s in parents(nodes, edges, parents(nodes, edges, parents(nodes, edges, train, "logps")[0], "annotate")[0], "sample")]
        (prompts,) = parents(nodes, edges, sample, "train_prompts")
        chain.append(nodes[prompts])
        previous = parents(nodes, edges, sample, "train")
        # the policy pi_t feeds sampling, the log-probs of pi_t and training alike
        assert previous == parents(nodes, edges, train, "train") == parents(nodes, edges, parents(nodes, edges, train, "logps")[0], "train")
        if not previous:
            assert parents(nodes, edges, sample, "sft")
            break
        train = previous[0]
    assert chain == ["train_prompts t: 3", "train_prompts t: 2", "train_prompts t: 1"]


@pytest.mark.parametrize(
    "config, message",
    [({"eta": 0}, r"eta.*exclusiveMinimum|exclusiveMinimum.*eta"), ({"eta": 0.1, "tau": 0.2}, r"tau must be <= eta"),
     ({"tau": -0.1}, r"minimum.*tau"), ({"iterations": 0}, r"minimum.*iterations"), ({"algo": "ppo"}, r"algo"),
     ({"reference": "RLHFlow/LLaMA3-SFT"}, r"evaluations: heldout .* needs reference=sft"),
     ({"train_prompts": "[a.jsonl]"}, r"train_prompts lists 1 datasets for iterations=3: one per iteration"),
     ({"evaluations": "[mmlu]"}, r"no conf/eval/mmlu.yaml"),
     ({"max_length": 100, "max_prompt_length": 100}, r"max_prompt_length=100 must be below max_length=100")],
)
def test_bad_config_fails_before_any_job(tmp_path, config, message):
    args = [f"{k}={v}" for k, v in {"results": str(tmp_path / "results"), **config}.items()]
    run = subprocess.run([*SNAKEMAKE, "--cores", "1", "--config", *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert re.search(message, run.stdout + run.stderr, re.S), run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def snakemake(*args, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "tests/data/workflow_tiny.yaml", *args],
        cwd=workdir, capture_output=True, text=True, timeout=900,
        env={**os.environ, "INPO_CONF_DIR": str(workdir / "conf")},
    )


@pytest.fixture
def workflow_copy(tmp_path):
    """The workflow's files in a fresh folder, so that a test may edit its configs."""
    for name in ("Snakefile", "workflow", "conf", "tests/data"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    return tmp_path


@pytest.mark.slow
def test_workflow_end_to_end(workflow_copy):
    results = workflow_copy / "results"
    run = snakemake(workdir=workflow_copy)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Report: results/report/report.md" in run.stdout + run.stderr

    assert len(read_jsonl(results / "prompts/train_iter1/prompts.jsonl", PROMPT)) == 32
    assert len(read_jsonl(results / "prompts/eval/prompts.jsonl", PROMPT)) == 8
    load_policy(results / "sft/model")
    samples = read_jsonl(results / "shared/seed~0/iter1/sample/samples.jsonl", SAMPLE)
    assert len(samples) == 32 and {len(s["responses"]) for s in samples} == {4}
    pairs = read_jsonl(results / SHARED / "iter1/annotate/pairs.jsonl", PAIR)
    assert read_json(results / SHARED / "iter1/annotate/annotation.json")["pairs"] == len(pairs) > 0
    assert len(read_jsonl(results / SHARED / "iter1/logps/scored_pairs.jsonl", SCORED_PAIR)) == len(pairs)
    load_policy(results / POINT / "iter1/train/policy")
    for metrics_file in (results / "sft/eval/iter0/metrics.json", results / POINT / "eval/iter1/metrics.json"):
        assert {"win_rate", "standard_error", "mean_length", "duality_gap"} <= set(read_json(metrics_file))
    rows = (results / "report/report.csv").read_text().splitlines()
    assert rows[0].startswith("algo,judge,eta,tau,beta,seed,setting,iteration,win_rate") and len(rows) == 3
    assert (results / "report/win_rate.png").exists() and (results / "report/summary.csv").exists()

    # every rule logs and benchmarks; every Hydra app saved its composed config beside its outputs
    assert len(list((results / "benchmarks").rglob("*.tsv"))) == len(list((results / "logs").rglob("*.log"))) == 11
    for folder in ["prompts/eval", "sft", "shared/seed~0/iter1/sample", f"{SHARED}/iter1/annotate",
                   f"{SHARED}/iter1/logps", f"{POINT}/iter1/train", f"{POINT}/eval/iter1", "report"]:
        assert (results / folder / ".hydra/config.yaml").exists(), folder
    assert "eta: 0.2" in (results / POINT / "iter1/train/.hydra/config.yaml").read_text()

    again = snakemake(workdir=workflow_copy)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    html = snakemake("--report", "report.html", workdir=workflow_copy)
    assert html.returncode == 0, html.stderr[-2000:]
    page = (workflow_copy / "report.html").read_text()
    assert "length_vs_tau.png" in page and "Duality gap of each policy" in page

    # editing a stage's config reruns that stage and what depends on it, nothing else
    train_config = workflow_copy / "conf/train.yaml"
    train_config.write_text(train_config.read_text().replace("weight_decay: 0.0", "weight_decay: 0.01"))
    dry = snakemake("-n", workdir=workflow_copy)
    planned = Counter(re.findall(r"^rule (\w+):", dry.stdout, re.M))
    assert planned == Counter({"train": 1, "evaluate": 1, "report": 1, "all": 1}), dry.stdout
    train_config.write_text(train_config.read_text().replace("weight_decay: 0.01", "weight_decay: 0.0"))

    # extending the sweep computes only the new points: a new algorithm reuses iteration 1's shared
    # pairs; a new seed samples its own
    for extension, expected in [
        ("sweep={algo: [inpo, inpo_nokl]}", {"train": 1, "evaluate": 1, "report": 1, "all": 1}),
        ("sweep={seed: [0, 1]}", {"sample": 1, "annotate": 1, "logps": 1, "train": 1, "evaluate": 1, "report": 1, "all": 1}),
    ]:
        dry = snakemake("-n", "--config", extension, workdir=workflow_copy)
        assert Counter(re.findall(r"^rule (\w+):", dry.stdout, re.M)) == Counter(expected), dry.stdout


BENCHMARK_FILES = ROOT.parent / "shared" / "benchmarks"


@pytest.mark.slow
@pytest.mark.skipif(not BENCHMARK_FILES.is_dir(), reason=f"the shared benchmark fixtures are absent ({BENCHMARK_FILES})")
def test_workflow_with_model_and_api_judges(workflow_copy, server):
    """One full iteration with real-model components: a (random, tiny) RLHFlow-style pairwise
    preference LM as the oracle instead of the synthetic one, sampling sharded over two jobs, and
    AlpacaEval 2.0 and Arena-Hard evaluations (a slice of the real questions) judged over HTTP by
    the local OpenAI-compatible server."""
    subprocess.run([sys.executable, "-m", "inpo.tiny_models", "kind=pair_preference", "output=tiny_judge"],
                   cwd=workflow_copy, check=True, capture_output=True)
    api = [f"judge.base_url={server.base_url}", "judge.api_key_env=null", "judge.model=judge-model", "eval.limit=3",
           "eval.generation.max_new_tokens=8"]
    overrides = {
        **yaml.safe_load((workflow_copy / "tests/data/workflow_tiny.yaml").read_text())["overrides"],
        "annotate": ["judge.model=tiny_judge", "judge.batch_size=64"],
        "alpaca_eval_2": [*api, f"eval.reference_outputs={BENCHMARK_FILES}/alpaca_eval_2/reference_outputs_gpt4_1106_preview.json"],
        "arena_hard_v0.1": [*api, f"eval.questions={BENCHMARK_FILES}/arena-hard-v0.1/question.jsonl",
                            f"eval.baseline_answers={BENCHMARK_FILES}/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl"],
    }
    run = snakemake("--config", "judge=pair_preference_llama3", "sample_shards=2", f"overrides={json.dumps(overrides)}",
                    "evaluations=[heldout,alpaca_eval_2,arena_hard_v0.1]", workdir=workflow_copy)
    assert run.returncode == 0, run.stderr[-3000:]
    results = workflow_copy / "results"
    shared, point = "shared/seed~0/judge~pair_preference_llama3", "sweep/algo~inpo/judge~pair_preference_llama3/seed~0/eta~0.2/tau~0.0667"
    shards = [read_jsonl(results / f"shared/seed~0/iter1/sample/shards/{k}.jsonl", SAMPLE) for k in range(2)]
    merged = read_jsonl(results / "shared/seed~0/iter1/sample/samples.jsonl", SAMPLE)
    assert [len(s) for s in shards] == [16, 16] and merged == shards[0] + shards[1]
    stats = read_json(results / shared / "iter1/annotate/annotation.json")
    pairs = read_jsonl(results / shared / "iter1/annotate/pairs.jsonl", PAIR)
    assert stats["judge"] == "pair_preference_lm" and stats["pairs"] == len(pairs) > 0
    # K = 4: at most 5 knockout comparisons per prompt, each one sequence per presentation order
    assert 0 < stats["oracle_calls"] <= 32 * 5 * 2 and stats["oracle_calls"] % 2 == 0
    assert all(0.5 < p["preference"] <= 1 for p in pairs)
    load_policy(results / point / "iter1/train/policy")

    # the benchmarks of pi_ref (iteration 0) and pi_2, in the official formats; 3 + 2 x 3 requests each
    assert len(server.state["requests"]) == 2 * 3 + 2 * 2 * 3
    for chain, t in (("reference", 0), (point, 1)):
        annotations = json.loads((results / chain / f"eval/alpaca_eval_2/iter{t}/annotations.json").read_text())
        assert len(annotations) == 3 and all(1 <= a["preference"] <= 2 for a in annotations)
        judgments = read_jsonl_lines(results / chain / f"eval/arena_hard_v0.1/iter{t}/model_judgment/judge-model")
        assert len(judgments) == 3 and all(len(j["games"]) == 2 for j in judgments)
    table = (results / "report/report.csv").read_text().splitlines()
    assert len(table) == 3
    for column in ("win_rate", "duality_gap", "alpaca_eval_2.win_rate", "alpaca_eval_2.standard_error",
                   "arena_hard_v0.1.score", "arena_hard_v0.1.ci_lower"):
        assert column in table[0].split(","), column
    assert "arena_hard_v0.1.score" in (results / "report/summary.md").read_text()


def read_jsonl_lines(folder: Path) -> list[dict]:
    """Every line of the one JSONL file in ``folder`` (Arena-Hard names it after the model)."""
    (path,) = folder.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_workflow_killed_during_train_resumes_training(workflow_copy):
    """Ctrl-C while `train` runs, then the same command again: training resumes from its checkpoint."""
    longer_training = ["--config", "overrides={train: [optim.epochs=60, optim.batch_size=2, optim.checkpoint_every=10]}"]
    command = [*SNAKEMAKE, "--cores", "2", "--configfile", "tests/data/workflow_tiny.yaml", *longer_training]
    env = {**os.environ, "INPO_CONF_DIR": str(workflow_copy / "conf")}
    first = subprocess.Popen(command, cwd=workflow_copy, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = workflow_copy / "results" / POINT / "iter1/train/checkpoints"
    deadline = time.time() + 600
    while latest_checkpoint(checkpoints) is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    first.wait(timeout=120)
    while time.time() < deadline:  # until the train job itself is gone, not only Snakemake
        try:
            os.killpg(first.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert not (workflow_copy / "results" / POINT / "iter1/train/policy").exists(), "training finished before the interrupt"
    step = json.loads((latest_checkpoint(checkpoints) / "progress.json").read_text())["step"]

    second = subprocess.run(command, cwd=workflow_copy, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    train_log = (workflow_copy / "results/logs" / POINT / "iter1/train.log").read_text()
    assert f"resuming from results/{POINT}/iter1/train/checkpoints/step-{step:07d} at optimizer step {step}" in train_log
    assert read_json(workflow_copy / "results" / POINT / "iter1/train/train_summary.json")["resumed_from_step"] == step
