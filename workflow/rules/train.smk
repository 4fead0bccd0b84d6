def train_folder(point, t):
    return f"{R}/sweep/{point}/iter{t}/train"


def train_pairs(wc):
    return scored_pairs_file(stage_folder(wc.point, wc.t, "logps"), wc.t)


rule train:
    """Minimize the point's loss (conf/algo) from pi_t: pi_{t+1}. A killed job resumes from its checkpoint."""
    input:
        lambda wc: conf("train", f"algo/{parse_point(wc.point)['algo']}"),
        accelerate=ACCELERATE_INPUT,
        pairs=train_pairs,
        policy=lambda wc: model_input(policy_in(f"sweep/{wc.point}", wc.t)),
    output:
        policy=directory(f"{train_folder('{point}', '{t}')}/policy"),
        summary=f"{train_folder('{point}', '{t}')}/train_summary.json",
    params:
        algo=lambda wc: " ".join(train_overrides(parse_point(wc.point))),
        args=lambda wc: hydra_args(
            "train", train_folder(wc.point, wc.t), pairs=train_pairs(wc), policy=policy_in(f"sweep/{wc.point}", wc.t),
            output=f"{train_folder(wc.point, wc.t)}/policy", work_dir=train_folder(wc.point, wc.t), iteration=wc.t,
            seed=parse_point(wc.point)["seed"], max_length=config["max_length"],
            max_prompt_length=config["max_prompt_length"]),
        untracked=untracked_args("train"),
    log:
        f"{R}/logs/sweep/{{point}}/iter{{t}}/train.log",
    benchmark:
        f"{R}/benchmarks/sweep/{{point}}/iter{{t}}/train.tsv"
    threads: 2
    shell:
        "{STAGE_ENV} {TRAINER} -m inpo.train {params.algo} {params.args} {params.untracked} > {log:q} 2>&1"
