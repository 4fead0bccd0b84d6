rule sft:
    """Build the tokenizer and a tiny Llama and train it on demonstrations: pi_ref = pi_1."""
    input:
        conf("sft", "task/sort", "model/tiny_llama"),
    output:
        model=directory(f"{R}/sft/model"),
        summary=f"{R}/sft/sft_summary.json",
    params:
        seed=config["seed"],
        extra=overrides("sft"),
    log:
        f"{R}/logs/sft.log",
    benchmark:
        f"{R}/benchmarks/sft.tsv"
    threads: 2
    resources:
        **resources_of("sft"),
    shell:
        "{PYTHON} -m inpo.sft output={output.model} work_dir={R}/sft seed={params.seed} "
        "hydra.run.dir={R}/sft {params.extra} > {log} 2>&1"
