if HELDOUT:

    rule baseline_answers:
        """The SFT model's answers to the held-out prompts: what every policy is compared with."""
        input:
            conf("sample", "sampler/hf"),
            policy=f"{R}/sft/model",
            prompts=f"{R}/prompts/eval/prompts.jsonl",
        output:
            f"{R}/eval/baseline/samples.jsonl",
        params:
            args=lambda wc, input, output: hydra_args(
                "sample", os.path.dirname(output[0]), policy=input.policy, prompts=input.prompts, output=output[0],
                n_samples=config["n_eval_samples"], iteration=0, seed=config["seed"]),
        log:
            f"{R}/logs/baseline_answers.log",
        benchmark:
            f"{R}/benchmarks/baseline_answers.tsv"
        shell:
            # iteration=0 keeps these samples' seed apart from every training iteration's
            "{PYTHON} -m inpo.sample {params.args} > {log} 2>&1"


    rule evaluate:
        """Win rate against the SFT answers, mean length, duality gap of the policy after iteration t (chain sft: the SFT model)."""
        input:
            conf("evaluate", f"judge/{config['eval_judge']}", "sampler/hf"),
            policy=lambda wc: evaluated_policy(wc.chain, wc.t),
            prompts=f"{R}/prompts/eval/prompts.jsonl",
            baseline=f"{R}/eval/baseline/samples.jsonl",
        output:
            metrics=f"{R}/{{chain}}/eval/iter{{t}}/metrics.json",
            answers=f"{R}/{{chain}}/eval/iter{{t}}/answers.jsonl",
        params:
            args=lambda wc, input, output: hydra_args(
                "evaluate", os.path.dirname(output.metrics), policy=input.policy, prompts=input.prompts,
                baseline=input.baseline, output_dir=os.path.dirname(output.metrics), judge=config["eval_judge"],
                n_samples=config["n_eval_samples"], iteration=wc.t, seed=config["seed"]),
        log:
            f"{R}/logs/{{chain}}/eval/iter{{t}}.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/eval/iter{{t}}.tsv"
        shell:
            "{PYTHON} -m inpo.evaluate {params.args} > {log} 2>&1"


rule benchmark:
    """A benchmark (conf/eval/<benchmark>.yaml) of pi_ref (chain reference, iteration 0) or of pi_{t+1}: the
    policy's answers, the judge's verdicts in the benchmark's official format, and its scores."""
    input:
        lambda wc: conf("evaluate", f"eval/{wc.benchmark}", f"sampler/{config['sampler']}"),
        policy=lambda wc: model_input(evaluated_policy(wc.chain, wc.t)),
    output:
        metrics=f"{R}/{{chain}}/eval/{{benchmark}}/iter{{t}}/metrics.json",
    params:
        # overrides: the workflow config's `overrides: {<benchmark>: [...]}`
        args=lambda wc, output: hydra_args(
            wc.benchmark, os.path.dirname(output.metrics), eval=wc.benchmark, policy=evaluated_policy(wc.chain, wc.t),
            output_dir=os.path.dirname(output.metrics), sampler=config["sampler"], iteration=wc.t,
            seed=config["seed"], **{"sampler.max_prompt_length": config["max_prompt_length"]}),
    log:
        f"{R}/logs/{{chain}}/eval/{{benchmark}}/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/eval/{{benchmark}}/iter{{t}}.tsv"
    shell:
        "{PYTHON} -m inpo.evaluate {params.args} > {log} 2>&1"
