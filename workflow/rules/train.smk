rule train:
    """Minimize the point's loss (conf/algo) from pi_t: pi_{t+1}. A killed job resumes from its checkpoint."""
    input:
        lambda wc: conf("train", f"algo/{parse_point(wc.point)['algo']}"),
        pairs=lambda wc: f"{R}/{stage_folder(wc.point, wc.t, 'logps')}/iter{wc.t}/logps/scored_pairs.jsonl",
        policy=lambda wc: model_input(policy_in(f"sweep/{wc.point}", wc.t)),
    output:
        policy=directory(f"{R}/sweep/{{point}}/iter{{t}}/train/policy"),
        summary=f"{R}/sweep/{{point}}/iter{{t}}/train/train_summary.json",
    params:
        algo=lambda wc: " ".join(train_overrides(parse_point(wc.point))),
        args=lambda wc, input, output: hydra_args(
            "train", os.path.dirname(output.summary), pairs=input.pairs, policy=policy_in(f"sweep/{wc.point}", wc.t),
            output=output.policy, work_dir=os.path.dirname(output.summary), iteration=wc.t,
            seed=parse_point(wc.point)["seed"], max_length=config["max_length"],
            max_prompt_length=config["max_prompt_length"]),
    log:
        f"{R}/logs/sweep/{{point}}/iter{{t}}/train.log",
    benchmark:
        f"{R}/benchmarks/sweep/{{point}}/iter{{t}}/train.tsv"
    threads: 2
    shell:
        "{TRAINER} -m inpo.train {params.algo} {params.args} > {log} 2>&1"
