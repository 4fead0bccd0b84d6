def train_prompt_source(t):
    """The dataset of iteration t's prompts, or none (the synthetic task)."""
    return None if config["train_prompts"] == "synthetic" else config["train_prompts"][int(t) - 1]


def train_prompt_input(wc):
    """A local dataset file is an input: editing it reruns the prompt set and what depends on it."""
    source = train_prompt_source(wc.t)
    return [source] if source is not None and is_local_path(source) else []


def prompts_file(split):
    """The prompt set of a split: train_iter<t> or eval."""
    return f"{R}/prompts/{split}/prompts.jsonl"


rule train_prompts:
    """A fresh training prompt set for iteration t (synthetic, or the iteration's dataset)."""
    input:
        conf("prompts", "task/sort"),
        dataset=train_prompt_input,
    output:
        prompts_file("train_iter{t}"),
    params:
        args=lambda wc: hydra_args("prompts", os.path.dirname(prompts_file(f"train_iter{wc.t}")),
                                   output=prompts_file(f"train_iter{wc.t}"),
                                   split="train", iteration=wc.t, n_prompts=config["n_train_prompts"],
                                   seed=config["seed"], **{"dataset.path": train_prompt_source(wc.t)}),
        untracked=untracked_args("prompts"),
    log:
        f"{R}/logs/train_prompts/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/train_prompts/iter{{t}}.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.prompts {params.args} {params.untracked} > {log:q} 2>&1"


rule eval_prompts:
    """The held-out evaluation prompts."""
    input:
        conf("prompts", "task/sort"),
    output:
        prompts_file("eval"),
    params:
        args=hydra_args("prompts", os.path.dirname(prompts_file("eval")), output=prompts_file("eval"), split="eval",
                        n_prompts=config["n_eval_prompts"], seed=config["seed"]),
        untracked=untracked_args("prompts"),
    log:
        f"{R}/logs/eval_prompts.log",
    benchmark:
        f"{R}/benchmarks/eval_prompts.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.prompts {params.args} {params.untracked} > {log:q} 2>&1"
