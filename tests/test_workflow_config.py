"""inpo.workflow_config: the workflow config's checks and the stages' command lines, checked
against Hydra's own override parser and the shell's own word splitting."""

import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from inpo.workflow_config import (WorkflowConfigError, check_workflow_config, hydra_command, hydra_value, is_local_path,
                                  split_overrides)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
NAMES = ["runs/my run's, =1", "a\\", "a\\'b", "runs/é ü/日本", "x=1,2", "~a/b", "a b\\\\", "'", "\\", 'a"b', "a$b",
         "[x]", "a:b", "tab\there", "results"]


@pytest.mark.parametrize("name", NAMES)
def test_a_value_reaches_hydra_intact(name):
    override = OverridesParser.create().parse_override(f"output={hydra_value(name)}")
    assert override.value() == name


def test_numbers_and_lists_keep_their_hydra_types():
    parser = OverridesParser.create()
    assert parser.parse_override(f"seed={hydra_value('0')}").value() == 0
    assert parser.parse_override(f"x={hydra_value(None)}").value() is None
    assert parser.parse_override(f"points={hydra_value(['algo~inpo/seed~0', 'b'])}").value() == ["algo~inpo/seed~0", "b"]


def test_an_interpolation_in_a_name_is_refused():
    with pytest.raises(WorkflowConfigError, match=r"interpolation"):
        hydra_value("runs/${oops}")


def test_the_shell_passes_every_argument_as_one_word():
    settings = {"output": "runs/my run's, =1/out.jsonl", "seed": 0}
    words = shlex.split(hydra_command(settings, ["optim.learning_rate=1e-4"]))
    assert words == ["output='runs/my run\\'s, =1/out.jsonl'", "seed=0", "optim.learning_rate=1e-4"]
    parser = OverridesParser.create()
    assert parser.parse_override(words[0]).value() == settings["output"]


def test_logging_overrides_are_apart_from_those_that_change_results():
    tracked, untracked = split_overrides(["optim.learning_rate=1e-4", "hydra.verbose=true", "optim.checkpoint_every=3",
                                          "hydra/job_logging=disabled", "+hydra.job_logging.root.level=ERROR"])
    assert tracked == ["optim.learning_rate=1e-4"]
    assert untracked == ["hydra.verbose=true", "optim.checkpoint_every=3", "hydra/job_logging=disabled",
                         "+hydra.job_logging.root.level=ERROR"]


@pytest.mark.parametrize("name, local", [("RLHFlow/LLaMA3-SFT", False), ("gpt2", False), ("results/sft/model", True),
                                         ("./model", True), ("/abs/model", True), ("my_prompts.jsonl", True),
                                         ("data/prompts.parquet", True), ("~/models/x", True)])
def test_local_paths_are_told_from_hub_names(name, local):
    assert is_local_path(name) == local


@pytest.fixture(autouse=True)
def hub_online(monkeypatch):
    """As on a machine that may reach the hub: a hub name is the job's to download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def default_config(**changes) -> dict:
    config = yaml.safe_load((CONF / "workflow.yaml").read_text())
    config.update(changes)
    return config


@pytest.mark.parametrize("changes, message", [
    ({"judge": "synthetic_preferenc"}, r"judge: unknown value 'synthetic_preferenc' \(did you mean 'synthetic_preference'\?\); "
                                       r"valid: alpaca_eval_gpt4_turbo, .*synthetic_reward"),
    ({"eval_judge": "synthetic"}, r"eval_judge: unknown value 'synthetic'"),
    ({"sampler": "hff"}, r"sampler: unknown value 'hff' \(did you mean 'hf'\?\); valid: hf, vllm"),
    ({"sweep": {"judge": ["synthetic_reward", "synthetic_preferenc"]}}, r"sweep.judge: unknown value 'synthetic_preferenc'"),
    ({"evaluations": ["heldout", "alpaca_eval"]}, r"evaluations: unknown value 'alpaca_eval' \(did you mean 'alpaca_eval_2'\?\)"),
    ({"overrides": {"trian": ["optim.epochs=1"]}}, r"overrides: unknown value 'trian' \(did you mean 'train'\?\); valid: prompts"),
    ({"accelerate_config": "conf/accelerate/zero2.yaml"}, r"accelerate_config='conf/accelerate/zero2.yaml': no such file"),
    ({"reference": "/no/such/model", "evaluations": ["alpaca_eval_2"]}, r"reference='/no/such/model': no such model folder"),
    ({"reference": "RLHFlow/LLaMA3-SFT"}, r"evaluations: heldout .* needs reference=sft"),
    ({"train_prompts": ["prompts_1.jsonl"], "iterations": 1}, r"train_prompts\[0\] \(iteration 1\): no such file 'prompts_1.jsonl'"),
    ({"results": "runs/{x}"}, r"results='runs/\{x\}': a folder name cannot hold '\{' or '\}'"),
    ({"results": "runs/a\nb"}, r"cannot hold '\\n'"),
    ({"overrides": {"train": ["optim.learning_rat=1e-4"]}}, r"overrides.train=\['optim.learning_rat=1e-4'\]: .*learning_rat"),
    ({"overrides": {"train": ["optim.learning_rate=-1e-4"]}}, r"overrides.train=.*optim.learning_rate must be > 0, got -0.0001"),
    ({"overrides": {"sft": ["optim.epochs=0"]}}, r"overrides.sft=.*optim.epochs must be > 0"),
    ({"overrides": {"annotate": ["judge=nope"]}}, r"overrides.annotate=.*nope"),
    ({"sweep": {"algo": ["inpo", "sppo"]}, "overrides": {"annotate": ["pairing=knockout"]}},
     r"overrides.annotate: pairing=knockout would apply to SPPO's pairs too, which need pairing=sppo"),
    ({"overrides": {"sample": ["sampler.temperature=0"]}}, r"overrides.sample=.*greedy decoding, .* but 8 were asked for"),
    ({"overrides": {"evaluate": ["sampler.temperature=0", "n_samples=2"]}}, r"overrides.evaluate=.*but 2 were asked for"),
    ({"evaluations": ["alpaca_eval_2"], "reference": "RLHFlow/LLaMA3-SFT", "overrides": {"alpaca_eval_2": ["eval.limt=3"]}},
     r"overrides.alpaca_eval_2=.*limt"),
])
def test_a_bad_setting_is_named_with_the_valid_ones(changes, message):
    with pytest.raises(WorkflowConfigError, match=message):
        check_workflow_config(default_config(**changes), CONF)


def test_sppo_takes_annotate_overrides_other_than_the_pairing():
    check_workflow_config(default_config(algo="sppo", beta=0.2, overrides={"annotate": ["mask_truncated_completions=true"]}), CONF)


def test_a_hub_name_must_be_in_the_cache_when_the_hub_is_offline(monkeypatch):
    config = default_config(reference="RLHFlow/LLaMA3-SFT", evaluations=["alpaca_eval_2"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkflowConfigError, match=r"not in the local Hugging Face cache while HF_HUB_OFFLINE is set; "
                                                  r"download it first \(huggingface-cli download RLHFlow/LLaMA3-SFT\)"):
        check_workflow_config(config, CONF)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_workflow_config(config, CONF)


def test_the_shipped_configs_pass(tmp_path):
    check_workflow_config(default_config(), CONF)
    for extra in ("conf/sweeps/table1.yaml", "conf/sweeps/convergence.yaml", "conf/sweeps/convergence_random_pairs.yaml",
                  "tests/data/workflow_tiny.yaml", "conf/experiment/paper_llama3_8b.yaml"):
        check_workflow_config(default_config(**yaml.safe_load((ROOT / extra).read_text())), CONF)
    dataset = tmp_path / "prompts.jsonl"
    dataset.write_text('{"prompt": "sort 3 1"}\n')
    check_workflow_config(default_config(train_prompts=[str(dataset)], iterations=1), CONF)
