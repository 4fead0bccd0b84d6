rule baseline_answers:
    """The SFT model's answers to the held-out prompts: what every policy is compared with."""
    input:
        conf("sample", "sampler/hf"),
        policy=f"{R}/sft/model",
        prompts=f"{R}/prompts/eval/prompts.jsonl",
    output:
        f"{R}/eval/baseline/samples.jsonl",
    params:
        k=config["n_eval_samples"],
        seed=config["seed"],
        extra=overrides("sample"),
    log:
        f"{R}/logs/baseline_answers.log",
    benchmark:
        f"{R}/benchmarks/baseline_answers.tsv"
    resources:
        **resources_of("sample"),
    shell:
        # iteration=0 keeps these samples' seed apart from every training iteration's.
        "{PYTHON} -m inpo.sample policy={input.policy} prompts={input.prompts} output={output} "
        "n_samples={params.k} iteration=0 seed={params.seed} hydra.run.dir=$(dirname {output}) {params.extra} > {log} 2>&1"


rule evaluate:
    """Win rate against the SFT answers, mean length, duality gap of the policy after iteration t (0 = SFT)."""
    input:
        conf("evaluate", f"judge/{config['eval_judge']}", "sampler/hf"),
        policy=lambda wc: evaluated_policy(wc.t),
        prompts=f"{R}/prompts/eval/prompts.jsonl",
        baseline=f"{R}/eval/baseline/samples.jsonl",
    output:
        metrics=f"{R}/eval/iter{{t}}/metrics.json",
        answers=f"{R}/eval/iter{{t}}/answers.jsonl",
    params:
        judge=config["eval_judge"],
        k=config["n_eval_samples"],
        seed=config["seed"],
        extra=overrides("evaluate"),
    log:
        f"{R}/logs/evaluate/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/iter{{t}}.tsv"
    resources:
        **resources_of("evaluate"),
    shell:
        "{PYTHON} -m inpo.evaluate policy={input.policy} prompts={input.prompts} baseline={input.baseline} "
        "output_dir=$(dirname {output.metrics}) judge={params.judge} n_samples={params.k} iteration={wildcards.t} "
        "seed={params.seed} hydra.run.dir=$(dirname {output.metrics}) {params.extra} > {log} 2>&1"
