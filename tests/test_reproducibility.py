"""Every random draw derives from the configured seed: two runs of every stage with the same config
give byte-identical outputs on the CPU (models' safetensors, JSONL, JSON, tokenizer files)."""

from accelerate.utils import set_seed

from inpo import annotate, evaluate, logps, prompts, sample, sft, tiny_models, train
from inpo.config import load_config

# Two SFT models with dropout, so that sft's and train's dropout masks are drawn (and must be seeded):
# the policy the other stages start from, trained enough to give the synthetic judge pairs (built once),
# and one trained for two steps only, to run the sft stage itself twice.
TINY_SFT = ["model.architecture.hidden_size=32", "model.architecture.intermediate_size=64",
            "model.architecture.num_hidden_layers=1", "+model.architecture.attention_dropout=0.1", "optim.batch_size=32",
            "optim.epochs=1", "report_to=none"]
POLICY_SFT = [*TINY_SFT, "n_demonstrations=1024", "optim.learning_rate=2e-2"]
TWO_STEPS_SFT = [*TINY_SFT, "n_demonstrations=64"]
TRAIN = {"full": [], "lora": ["lora.enabled=true", "lora.r=4", "lora.dropout=0.1", "disable_dropout=false"],
         "dropout": ["disable_dropout=false"]}


def run_every_stage(root, policy, reward_model, history: int):
    """sft, prompts, sample, annotate (the synthetic judge and a reward model), logps, train (full,
    LoRA, dropout on) and evaluate, chained as the workflow chains them from ``policy``, into ``root``.
    Each stage starts with the global RNGs seeded by ``history``, as if the process had drawn
    something else before: what a stage draws must come from its own seed. The trackers are off:
    their logs (TensorBoard's) hold wall-clock times and are no stage output."""

    def run(stage, *overrides):
        set_seed(history)
        stage.run(load_config(stage.__name__.split(".")[-1], list(overrides)))

    run(sft, f"output={root}/sft/model", f"work_dir={root}/sft", *TWO_STEPS_SFT)
    run(prompts, f"output={root}/train.jsonl", "n_prompts=12")
    run(prompts, f"output={root}/eval.jsonl", "split=eval", "n_prompts=4")
    run(sample, f"policy={policy}", f"prompts={root}/train.jsonl", f"output={root}/samples.jsonl", "n_samples=4",
        "sampler.max_new_tokens=12")
    for judge in (["judge=synthetic_preference"], ["judge=reward_llama3", f"judge.model={reward_model}"]):
        name = judge[0].split("=")[1]
        run(annotate, f"samples={root}/samples.jsonl", f"output={root}/{name}/pairs.jsonl",
            f"stats={root}/{name}/annotation.json", *judge)
    run(logps, f"pairs={root}/synthetic_preference/pairs.jsonl", f"ref_policy={policy}", f"policy={policy}",
        f"output={root}/scored.jsonl")
    for name, overrides in TRAIN.items():
        run(train, f"pairs={root}/scored.jsonl", f"policy={policy}", f"work_dir={root}/{name}", "report_to=none",
            "optim.epochs=1", "optim.batch_size=2", "optim.log_every=1", "optim.learning_rate=1e-2", *overrides)
    run(sample, f"policy={policy}", f"prompts={root}/eval.jsonl", "iteration=0", f"output={root}/baseline.jsonl",
        "n_samples=2", "sampler.max_new_tokens=12")
    run(evaluate, f"policy={root}/full/policy", f"prompts={root}/eval.jsonl", "iteration=1", f"baseline={root}/baseline.jsonl",
        f"output_dir={root}/eval", "n_samples=2", "sampler.max_new_tokens=12")


def test_two_runs_of_every_stage_give_the_same_bytes(tmp_path):
    reward_model = tiny_models.run(load_config("tiny_models", ["kind=reward_model", f"output={tmp_path}/reward_model"]))
    sft.run(load_config("sft", [f"output={tmp_path}/policy", f"work_dir={tmp_path}/policy_sft", *POLICY_SFT]))
    outputs = []
    for run, history in (("a", 1), ("b", 2)):
        run_every_stage(tmp_path / run, tmp_path / "policy", reward_model, history)
        outputs.append({str(p.relative_to(tmp_path / run)): p.read_bytes() for p in (tmp_path / run).rglob("*") if p.is_file()})
    first, second = outputs
    assert sorted(first) == sorted(second)
    for stage in ["sft/model", "samples.jsonl", "synthetic_preference/pairs.jsonl", "reward_llama3/pairs.jsonl",
                  "scored.jsonl", *(f"{n}/policy" for n in TRAIN), "eval/metrics.json"]:
        assert any(name.startswith(stage) for name in first), f"no output {stage}"
    # with dropout on, train draws masks (whose seeding this checks): its first step differs from the full run's
    assert first["dropout/train_log.jsonl"].splitlines()[0] != first["full/train_log.jsonl"].splitlines()[0]
    assert [name for name in sorted(first) if first[name] != second[name]] == []
