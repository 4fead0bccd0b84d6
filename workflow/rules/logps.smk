rule logps:
    """Summed log-probs of chosen and rejected under pi_ref and pi_t, stored with the pairs."""
    input:
        conf("logps"),
        pairs=f"{R}/{{chain}}/iter{{t}}/annotate/pairs.jsonl",
        ref=f"{R}/sft/model",
        policy=lambda wc: policy_in(wc.chain, wc.t),
    output:
        f"{R}/{{chain}}/iter{{t}}/logps/scored_pairs.jsonl",
    params:
        args=lambda wc, input, output: hydra_args(
            "logps", os.path.dirname(output[0]), pairs=input.pairs, ref_policy=input.ref, policy=input.policy,
            output=output[0]),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/logps.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/logps.tsv"
    shell:
        "{PYTHON} -m inpo.logps {params.args} > {log} 2>&1"
