rule logps:
    """Summed log-probs of chosen and rejected under pi_ref and pi_t, stored with the pairs."""
    input:
        conf("logps"),
        pairs=f"{R}/iter{{t}}/annotate/pairs.jsonl",
        ref=f"{R}/sft/model",
        policy=lambda wc: policy_in(wc.t),
    output:
        f"{R}/iter{{t}}/logps/scored_pairs.jsonl",
    params:
        extra=overrides("logps"),
    log:
        f"{R}/logs/logps/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/logps/iter{{t}}.tsv"
    resources:
        **resources_of("logps"),
    shell:
        "{PYTHON} -m inpo.logps pairs={input.pairs} ref_policy={input.ref} policy={input.policy} output={output} "
        "hydra.run.dir=$(dirname {output}) {params.extra} > {log} 2>&1"
