rule sample:
    """K responses per training prompt from pi_t."""
    input:
        conf("sample", "sampler/hf"),
        policy=lambda wc: policy_in(wc.t),
        prompts=f"{R}/prompts/train_iter{{t}}/prompts.jsonl",
    output:
        f"{R}/iter{{t}}/sample/samples.jsonl",
    params:
        k=config["n_samples"],
        seed=config["seed"],
        extra=overrides("sample"),
    log:
        f"{R}/logs/sample/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/sample/iter{{t}}.tsv"
    resources:
        **resources_of("sample"),
    shell:
        "{PYTHON} -m inpo.sample policy={input.policy} prompts={input.prompts} output={output} "
        "n_samples={params.k} iteration={wildcards.t} seed={params.seed} "
        "hydra.run.dir=$(dirname {output}) {params.extra} > {log} 2>&1"
