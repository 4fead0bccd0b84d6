rule sft:
    """Build the tokenizer and a tiny Llama and train it on demonstrations: pi_ref = pi_1."""
    input:
        conf("sft", "task/sort", "model/tiny_llama"),
        accelerate=ACCELERATE_INPUT,
    output:
        model=directory(f"{R}/sft/model"),
        summary=f"{R}/sft/sft_summary.json",
    params:
        args=hydra_args("sft", f"{R}/sft", output=f"{R}/sft/model", work_dir=f"{R}/sft", seed=config["seed"]),
        untracked=untracked_args("sft"),
    log:
        f"{R}/logs/sft.log",
    benchmark:
        f"{R}/benchmarks/sft.tsv"
    threads: 2
    shell:
        "{STAGE_ENV} {TRAINER} -m inpo.sft {params.args} {params.untracked} > {log:q} 2>&1"
