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
import torch
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import PrintDag, Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

from omegaconf import OmegaConf

from inpo import train
from inpo.modeling import load_policy
from inpo.records import PAIR, PROMPT, SAMPLE, SCORED_PAIR, read_json, read_jsonl
from inpo.sweep import step_size
from inpo.training import latest_checkpoint

from workflow_helpers import POINT, ROOT, SHARED, SNAKEMAKE, TINY, copy_workflow, planned, snakemake


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


SPPO_SWEEP = "sweep={algo: [inpo, sppo], beta: {sppo: [0.2]}}"
SPPO_SHARED = f"{SHARED}/pairing~sppo"


def test_sppo_shares_iteration_one_samples_but_annotates_its_own_pairs(workflow_copy):
    counts = planned("--config", "iterations=2", SPPO_SWEEP, workdir=workflow_copy)
    # iteration 1: one sample job for both points, two annotations (knockout, SPPO's) and their log-probs
    assert counts == Counter({"sft": 1, "train_prompts": 2, "eval_prompts": 1, "baseline_answers": 1, "sample": 1 + 2,
                              "annotate": 2 + 2, "logps": 2 + 2, "train": 4, "evaluate": 1 + 4, "report": 1, "all": 1})
    dry = snakemake("-n", "--printshellcmds", "--config", "iterations=1", SPPO_SWEEP, workdir=workflow_copy)
    annotate = [line for line in dry.stdout.splitlines() if "-m inpo.annotate" in line]
    sppo = [line for line in annotate if f"{SPPO_SHARED}/iter1/annotate/pairs.jsonl" in line]
    others = [line for line in annotate if SPPO_SHARED not in line]
    # each chain's pairing is a setting of its job (a params rerun trigger)
    assert len(sppo) == len(others) == 1 and "pairing=sppo" in sppo[0] and "pairing=auto" in others[0]


@pytest.mark.parametrize(
    "config, message",
    [({"eta": 0}, r"eta.*exclusiveMinimum|exclusiveMinimum.*eta"), ({"eta": 0.1, "tau": 0.2}, r"tau must be <= eta"),
     ({"tau": -0.1}, r"minimum.*tau"), ({"iterations": 0}, r"minimum.*iterations"), ({"algo": "ppo"}, r"algo"),
     ({"reference": "RLHFlow/LLaMA3-SFT"}, r"evaluations: heldout .* needs reference=sft"),
     ({"train_prompts": "[a.jsonl]"}, r"train_prompts lists 1 datasets for iterations=3: one per iteration"),
     ({"evaluations": "[mmlu]"}, r"evaluations: unknown value 'mmlu'; valid: heldout, alpaca_eval_2, arena_hard_v0.1, mt_bench"),
     ({"judge": "synthetic_preferenc"}, r"judge: unknown value 'synthetic_preferenc' \(did you mean 'synthetic_preference'\?\)"),
     ({"reference": "models/no/such", "evaluations": "[alpaca_eval_2]"}, r"reference='models/no/such': no such model folder"),
     ({"max_length": 100, "max_prompt_length": 100}, r"max_prompt_length=100 must be below max_length=100")],
)
def test_bad_config_fails_before_any_job(tmp_path, config, message):
    args = [f"{k}={v}" for k, v in {"results": str(tmp_path / "results"), **config}.items()]
    run = subprocess.run([*SNAKEMAKE, "--cores", "1", "--config", *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert re.search(message, run.stdout + run.stderr, re.S), run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


# A results folder whose name holds a space, a quote, a comma, '=' and non-ASCII: every stage's
# command line must carry it intact.
RESULTS = "runs/my run's, =1 é"
TINY_OVERRIDES = yaml.safe_load((ROOT / "tests/data/workflow_tiny.yaml").read_text())["overrides"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A copy of the workflow with the tiny config run to the end into RESULTS."""
    workdir = copy_workflow(tmp_path_factory.mktemp("finished"))
    run = snakemake("--config", f"results={RESULTS}", workdir=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Report: {RESULTS}/report/report.md" in run.stdout + run.stderr
    return workdir


def recorded_params(workdir: Path) -> dict[str, list]:
    """The params Snakemake recorded for each rule's jobs (its params rerun trigger compares them)."""
    recorded: dict[str, list] = {}
    for path in (workdir / ".snakemake/metadata").iterdir():
        record = json.loads(path.read_text())
        recorded.setdefault(record["rule"], []).append(record.get("params"))
    return recorded


@pytest.mark.slow
def test_workflow_end_to_end(finished):
    workflow_copy, results = finished, finished / RESULTS
    run = snakemake("--config", f"results={RESULTS}", workdir=workflow_copy)
    assert run.returncode == 0 and "Nothing to be done" in run.stdout + run.stderr

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
    train_config = OmegaConf.load(results / POINT / "iter1/train/.hydra/config.yaml")
    assert train_config.algo.eta == 0.2 and train_config.output == f"{RESULTS}/{POINT}/iter1/train/policy"
    # every job's settings are params Snakemake records, so that its params rerun trigger can fire
    for rule, params in recorded_params(workflow_copy).items():
        assert all(any("hydra.run.dir=" in p for p in job) for job in params), rule

    html = snakemake("--report", "report.html", "--config", f"results={RESULTS}", workdir=workflow_copy)
    assert html.returncode == 0, html.stderr[-2000:]
    page = (workflow_copy / "report.html").read_text()
    assert "length_vs_tau.png" in page and "Duality gap of each policy" in page

    # editing a stage's config reruns that stage and what depends on it, nothing else
    train_config = workflow_copy / "conf/train.yaml"
    train_config.write_text(train_config.read_text().replace("weight_decay: 0.0", "weight_decay: 0.01"))
    assert planned("--config", f"results={RESULTS}", workdir=workflow_copy) == Counter(RERUN_TRAIN)
    train_config.write_text(train_config.read_text().replace("weight_decay: 0.01", "weight_decay: 0.0"))

    # extending the sweep computes only the new points: a new algorithm reuses iteration 1's shared
    # pairs; a new seed samples its own
    for extension, expected in [
        ("sweep={algo: [inpo, inpo_nokl]}", {"train": 1, "evaluate": 1, "report": 1, "all": 1}),
        ("sweep={seed: [0, 1]}", {"sample": 1, "annotate": 1, "logps": 1, "train": 1, "evaluate": 1, "report": 1, "all": 1}),
    ]:
        assert planned("--config", f"results={RESULTS}", extension, workdir=workflow_copy) == Counter(expected)


@pytest.mark.slow
def test_sppo_and_a_scheduled_eta_run_two_iterations(workflow_copy):
    """SPPO and INPO with eta_schedule=theory, side by side for two iterations (training only)."""
    sppo = "algo~sppo/judge~synthetic_preference/seed~0/beta~0.2"
    inpo = "algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667/eta_schedule~theory"
    summaries = [f"results/sweep/{p}/iter2/train/train_summary.json" for p in (sppo, inpo)]
    sweep = "sweep={algo: [sppo, inpo], beta: {sppo: [0.2]}, eta_schedule: {inpo: [theory]}}"
    run = snakemake("--config", "iterations=2", sweep, "--", *summaries, workdir=workflow_copy)
    assert run.returncode == 0, run.stderr[-3000:]
    results = workflow_copy / "results"
    # K = 4 answers to each of 32 prompts: K(K-1) ordered comparisons per prompt, one oracle call each
    for chain, t in ((SPPO_SHARED, 1), (f"sweep/{sppo}", 2)):
        stats = read_json(results / chain / f"iter{t}/annotate/annotation.json")
        assert stats["pairing"] == "sppo" and stats["comparisons"] == stats["oracle_calls"] == 32 * 4 * 3
        assert all(p["chosen_winrate"] > p["rejected_winrate"]
                   for p in read_jsonl(results / chain / f"iter{t}/logps/scored_pairs.jsonl", SCORED_PAIR))
    assert read_json(results / SHARED / "iter1/annotate/annotation.json")["pairing"] == "knockout"
    for t in (1, 2):
        assert read_json(results / "sweep" / sppo / f"iter{t}/train/train_summary.json")["algo"]["beta"] == 0.2
        # eta_t = eta (t + 2) / 3: 0.2, then 0.2 * 4/3
        algo = read_json(results / "sweep" / inpo / f"iter{t}/train/train_summary.json")["algo"]
        assert algo["eta_schedule"] == "theory" and algo["eta"] == pytest.approx(0.2 * (t + 2) / 3) == step_size(inpo, t)


def with_overrides(**stages) -> str:
    """``overrides=`` for --config: the tiny config's overrides plus more for some stages."""
    return "overrides=" + json.dumps({**TINY_OVERRIDES, **{k: TINY_OVERRIDES.get(k, []) + v for k, v in stages.items()}})


RERUN_TRAIN = {"train": 1, "evaluate": 1, "report": 1, "all": 1}
RERUN_LOGPS = {"logps": 1, **RERUN_TRAIN}
RERUN_SAMPLE = {"sample": 1, "annotate": 1, **RERUN_LOGPS}
RERUN_EVALUATION = {"baseline_answers": 1, "evaluate": 2, "report": 1, "all": 1}
EVERY_JOB = {"train_prompts": 1, "eval_prompts": 1, "sft": 1, **RERUN_SAMPLE, **RERUN_EVALUATION}


@pytest.mark.slow
@pytest.mark.parametrize("change, expected", [
    pytest.param(["n_train_prompts=16"], {"train_prompts": 1, **RERUN_SAMPLE}, id="n_train_prompts"),
    pytest.param(["n_samples=3"], RERUN_SAMPLE, id="n_samples"),
    # the training samples are capped at it (sampler.max_length), so they are drawn again
    pytest.param(["max_length=64"], RERUN_SAMPLE, id="max_length"),
    # the prompt sets, the SFT model and the point's chain (seed~1) all depend on it
    pytest.param(["seed=1"], EVERY_JOB, id="seed"),
    pytest.param(["n_eval_samples=3"], RERUN_EVALUATION, id="n_eval_samples"),
    pytest.param([with_overrides(train=["optim.learning_rate=1e-4"])], RERUN_TRAIN, id="overrides.train"),
    # the sample stage's overrides apply to the SFT model's baseline answers too
    pytest.param([with_overrides(sample=["sampler.temperature=0.9"])], {**RERUN_SAMPLE, **RERUN_EVALUATION},
                 id="overrides.sample"),
    pytest.param([with_overrides(sft=["optim.learning_rate=1e-3"])], {"sft": 1, **RERUN_SAMPLE, **RERUN_EVALUATION},
                 id="overrides.sft"),
    pytest.param([with_overrides(train=["hydra.verbose=true", "optim.checkpoint_every=7"], sft=["hydra.verbose=true"])],
                 {}, id="logging-overrides"),
    pytest.param(["--cores", "1", "--printshellcmds"], {}, id="cores"),
])
def test_a_changed_setting_reruns_exactly_the_jobs_it_affects(finished, change, expected):
    assert planned("--config", f"results={RESULTS}", *change, workdir=finished) == Counter(expected)
    if not expected:
        dry = snakemake("-n", "--config", f"results={RESULTS}", *change, workdir=finished)
        assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    pytest.param(["reference=./models/sft", "evaluations=[alpaca_eval_2]"], r"reference='./models/sft': no such model folder",
                 id="reference-folder"),
    # HF_HUB_OFFLINE=1 in tests (conftest.py)
    pytest.param(["reference=models/sft", "evaluations=[alpaca_eval_2]"],
                 r"reference='models/sft': not a folder here, and as a hub name not in the local Hugging Face cache",
                 id="reference-hub-name"),
    pytest.param([with_overrides(train=["optim.learning_rate=-1e-4"])],
                 r"overrides.train=.*optim.learning_rate must be > 0, got -0.0001", id="learning_rate"),
    pytest.param(["judge=synthetic_preferenc"], r"judge: unknown value 'synthetic_preferenc'", id="judge"),
    pytest.param(["sampler=hff"], r"sampler: unknown value 'hff' \(did you mean 'hf'\?\)", id="sampler"),
    pytest.param(["overrides={trian: [optim.epochs=1]}"], r"overrides: unknown value 'trian' \(did you mean 'train'\?\)",
                 id="overrides-stage"),
])
def test_a_bad_setting_on_a_finished_run_stops_before_any_job_and_destroys_nothing(finished, change, message):
    results = finished / RESULTS
    kept = [results / "shared/seed~0/iter1/sample/samples.jsonl", results / POINT / "iter1/train/policy/model.safetensors"]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in kept]
    run = snakemake("--config", f"results={RESULTS}", *change, workdir=finished)
    assert run.returncode != 0 and re.search(message, run.stderr), run.stderr[-3000:]
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in kept] == before


@pytest.mark.slow
def test_lost_outputs_are_rebuilt(finished):
    results = finished / RESULTS
    policy, metrics = results / POINT / "iter1/train/policy", results / "sft/eval/iter0/metrics.json"
    shutil.rmtree(policy)
    metrics.unlink()
    assert planned("--config", f"results={RESULTS}", workdir=finished) == Counter({**RERUN_TRAIN, "evaluate": 2})
    run = snakemake("--config", f"results={RESULTS}", workdir=finished)
    assert run.returncode == 0, run.stderr[-3000:]
    load_policy(policy)
    assert read_json(metrics)["win_rate"] > 0


@pytest.mark.slow
def test_an_edited_local_prompt_dataset_reruns_its_prompt_set(workflow_copy):
    dataset = workflow_copy / "my prompts.jsonl"
    dataset.write_text('{"prompt": "sort 3 1"}\n{"prompt": "sort 2 5"}\n')
    config = ["--config", "iterations=1", f"train_prompts=[{dataset.name}]", "overrides={prompts: [dataset.messages_field=null]}"]
    target = "results/prompts/train_iter1/prompts.jsonl"
    run = snakemake(*config, "--", target, workdir=workflow_copy)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(read_jsonl(workflow_copy / target, PROMPT)) == 2
    with dataset.open("a") as f:
        f.write('{"prompt": "sort 9 8"}\n')
    assert planned(*config, "--", target, workdir=workflow_copy) == Counter({"train_prompts": 1})


def test_stages_read_the_configs_of_the_checkout_snakemake_runs(workflow_copy):
    """The copy's conf/ is used, not the one beside the installed package (INPO_CONF_DIR is unset)."""
    prompts_config = workflow_copy / "conf/prompts.yaml"
    prompts_config.write_text(prompts_config.read_text() + "\nmarker: this checkout\n")
    run = snakemake("--", "results/prompts/eval/prompts.jsonl", workdir=workflow_copy)
    assert run.returncode == 0, run.stderr[-3000:]
    assert OmegaConf.load(workflow_copy / "results/prompts/eval/.hydra/config.yaml").marker == "this checkout"


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
                            f"eval.baseline_answers={BENCHMARK_FILES}/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
                            "judge.judge_config=judge_config.yaml"],
    }
    shutil.copy(BENCHMARK_FILES / "arena-hard-v0.1/judge_config.yaml", workflow_copy / "judge_config.yaml")
    settings = ["--config", "judge=pair_preference_llama3", "sample_shards=2", f"overrides={json.dumps(overrides)}",
                "evaluations=[heldout,alpaca_eval_2,arena_hard_v0.1]"]
    run = snakemake(*settings, workdir=workflow_copy)
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
    beside_paper = (results / "report/benchmarks.md").read_text()
    assert "| paper: INPO | | 42.6 | 37.8 |" in beside_paper and "LC inpo:length_only" in beside_paper
    assert "| missing |" in beside_paper  # 3 answers, all losing: no LC fit, shown as missing, not left out
    # a benchmark's judge settings are its job's inputs: an edited judge_config.yaml reruns both Arena-Hard jobs
    judge_config = workflow_copy / "judge_config.yaml"
    judge_config.chmod(0o644)
    judge_config.write_text(judge_config.read_text().replace("max_tokens: 4096", "max_tokens: 2048"))
    assert planned(*settings, workdir=workflow_copy)["benchmark"] == 2
    # the benchmarks' settings, their per-benchmark overrides included, are params Snakemake records
    benchmark_params = recorded_params(workflow_copy)["benchmark"]
    assert len(benchmark_params) == 4 and all(any("eval.limit=3" in p for p in job) for job in benchmark_params)


def read_jsonl_lines(folder: Path) -> list[dict]:
    """Every line of the one JSONL file in ``folder`` (Arena-Hard names it after the model)."""
    (path,) = folder.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_workflow_killed_during_train_recovers_with_one_command(workflow_copy, tmp_path):
    """SIGKILL to the whole workflow while `train` runs (Snakemake's lock and incomplete markers stay
    behind), then the README's one command: training resumes from its checkpoint and ends with the
    weights of an uninterrupted run."""
    longer_training = ["--config", "overrides={train: [optim.epochs=20, optim.batch_size=2, optim.checkpoint_every=10]}"]
    resume = [sys.executable, "-m", "inpo.resume"]
    first = subprocess.Popen([*resume, "--cores", "2", *TINY, *longer_training], cwd=workflow_copy,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train_dir = workflow_copy / "results" / POINT / "iter1/train"
    deadline = time.time() + 600
    while latest_checkpoint(train_dir / "checkpoints") is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert not (train_dir / "policy").exists(), "training finished before the kill"
    assert list((workflow_copy / ".snakemake/locks").iterdir()), "the killed run left no lock to recover from"
    step = json.loads((latest_checkpoint(train_dir / "checkpoints") / "progress.json").read_text())["step"]

    second = snakemake(*longer_training, workdir=workflow_copy, command=resume)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "left by a killed run" in second.stderr
    train_log = (workflow_copy / "results/logs" / POINT / "iter1/train.log").read_text()
    assert f"resuming from results/{POINT}/iter1/train/checkpoints/step-{step:07d} at optimizer step {step}" in train_log
    summary = read_json(train_dir / "train_summary.json")
    assert summary["resumed_from_step"] == step < summary["steps"]
    assert not (train_dir / "checkpoints").exists(), "checkpoints are removed once the job's outputs are written"

    # the same training, uninterrupted (the job's own composed config, another folder)
    straight = OmegaConf.load(train_dir / ".hydra/config.yaml")
    straight.work_dir, straight.output = str(tmp_path / "straight"), str(tmp_path / "straight/policy")
    with contextlib.chdir(workflow_copy):
        assert train.run(straight)["resumed_from_step"] is None
    resumed, _ = load_policy(train_dir / "policy")
    uninterrupted, _ = load_policy(tmp_path / "straight/policy")
    for (name, p), q in zip(resumed.named_parameters(), uninterrupted.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
    assert summary["last_metrics"] == read_json(tmp_path / "straight/train_summary.json")["last_metrics"]
