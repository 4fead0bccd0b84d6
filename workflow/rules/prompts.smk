rule train_prompts:
    """A fresh training prompt set for iteration t."""
    input:
        conf("prompts", "task/sort"),
    output:
        f"{R}/prompts/train_iter{{t}}/prompts.jsonl",
    params:
        n=config["n_train_prompts"],
        seed=config["seed"],
        extra=overrides("prompts"),
    log:
        f"{R}/logs/train_prompts/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/train_prompts/iter{{t}}.tsv"
    resources:
        **resources_of("prompts"),
    shell:
        "{PYTHON} -m inpo.prompts output={output} split=train iteration={wildcards.t} n_prompts={params.n} "
        "seed={params.seed} hydra.run.dir=$(dirname {output}) {params.extra} > {log} 2>&1"


rule eval_prompts:
    """The held-out evaluation prompts."""
    input:
        conf("prompts", "task/sort"),
    output:
        f"{R}/prompts/eval/prompts.jsonl",
    params:
        n=config["n_eval_prompts"],
        seed=config["seed"],
        extra=overrides("prompts"),
    log:
        f"{R}/logs/eval_prompts.log",
    benchmark:
        f"{R}/benchmarks/eval_prompts.tsv"
    resources:
        **resources_of("prompts"),
    shell:
        "{PYTHON} -m inpo.prompts output={output} split=eval n_prompts={params.n} "
        "seed={params.seed} hydra.run.dir=$(dirname {output}) {params.extra} > {log} 2>&1"
