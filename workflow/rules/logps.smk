rule logps:
    """Summed log-probs of chosen and rejected under pi_ref and pi_t, stored with the pairs."""
    input:
        conf("logps"),
        pairs=f"{R}/{{chain}}/iter{{t}}/annotate/pairs.jsonl",
        ref=model_input(REFERENCE),
        policy=lambda wc: model_input(policy_in(wc.chain, wc.t)),
    output:
        f"{R}/{{chain}}/iter{{t}}/logps/scored_pairs.jsonl",
    params:
        args=lambda wc, input, output: hydra_args(
            "logps", os.path.dirname(output[0]), pairs=input.pairs, ref_policy=REFERENCE, policy=policy_in(wc.chain, wc.t),
            output=output[0], max_length=config["max_length"], max_prompt_length=config["max_prompt_length"]),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/logps.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/logps.tsv"
    shell:
        "{PYTHON} -m inpo.logps {params.args} > {log} 2>&1"
