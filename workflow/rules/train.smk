rule train:
    """Minimize the INPO loss from pi_t: pi_{t+1}. A killed job resumes from its checkpoint."""
    input:
        conf("train", f"algo/{config['algo']}"),
        pairs=f"{R}/iter{{t}}/logps/scored_pairs.jsonl",
        policy=lambda wc: policy_in(wc.t),
    output:
        policy=directory(f"{R}/iter{{t}}/train/policy"),
        summary=f"{R}/iter{{t}}/train/train_summary.json",
    params:
        algo=config["algo"],
        eta=config["eta"],
        tau=config["tau"],
        seed=config["seed"],
        extra=overrides("train"),
    log:
        f"{R}/logs/train/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/train/iter{{t}}.tsv"
    threads: 2
    resources:
        **resources_of("train"),
    shell:
        "{PYTHON} -m inpo.train pairs={input.pairs} policy={input.policy} output={output.policy} "
        "work_dir=$(dirname {output.summary}) algo={params.algo} algo.eta={params.eta} algo.tau={params.tau} "
        "iteration={wildcards.t} seed={params.seed} hydra.run.dir=$(dirname {output.summary}) {params.extra} > {log} 2>&1"
