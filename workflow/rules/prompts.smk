def train_prompt_source(t):
    """The dataset of iteration t's prompts, or none (the synthetic task)."""
    return None if config["train_prompts"] == "synthetic" else config["train_prompts"][int(t) - 1]


rule train_prompts:
    """A fresh training prompt set for iteration t (synthetic, or the iteration's dataset)."""
    input:
        conf("prompts", "task/sort"),
    output:
        f"{R}/prompts/train_iter{{t}}/prompts.jsonl",
    params:
        args=lambda wc, output: hydra_args("prompts", os.path.dirname(output[0]), output=output[0], split="train",
                                           iteration=wc.t, n_prompts=config["n_train_prompts"], seed=config["seed"],
                                           **{"dataset.path": train_prompt_source(wc.t)}),
    log:
        f"{R}/logs/train_prompts/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/train_prompts/iter{{t}}.tsv"
    shell:
        "{PYTHON} -m inpo.prompts {params.args} > {log} 2>&1"


rule eval_prompts:
    """The held-out evaluation prompts."""
    input:
        conf("prompts", "task/sort"),
    output:
        f"{R}/prompts/eval/prompts.jsonl",
    params:
        args=lambda wc, output: hydra_args("prompts", os.path.dirname(output[0]), output=output[0], split="eval",
                                           n_prompts=config["n_eval_prompts"], seed=config["seed"]),
    log:
        f"{R}/logs/eval_prompts.log",
    benchmark:
        f"{R}/benchmarks/eval_prompts.tsv"
    shell:
        "{PYTHON} -m inpo.prompts {params.args} > {log} 2>&1"
