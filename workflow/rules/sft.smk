rule sft:
    """Build the tokenizer and a tiny Llama and train it on demonstrations: pi_ref = pi_1."""
    input:
        conf("sft", "task/sort", "model/tiny_llama"),
    output:
        model=directory(f"{R}/sft/model"),
        summary=f"{R}/sft/sft_summary.json",
    params:
        args=lambda wc, output: hydra_args("sft", f"{R}/sft", output=output.model, work_dir=f"{R}/sft", seed=config["seed"]),
    log:
        f"{R}/logs/sft.log",
    benchmark:
        f"{R}/benchmarks/sft.tsv"
    threads: 2
    shell:
        "{TRAINER} -m inpo.sft {params.args} > {log} 2>&1"
