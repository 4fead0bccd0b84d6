def scored_pairs_file(chain, t):
    return f"{R}/{chain}/iter{t}/logps/scored_pairs.jsonl"


rule logps:
    """Summed log-probs of chosen and rejected under pi_ref and pi_t, stored with the pairs."""
    input:
        conf("logps"),
        pairs=f"{annotate_folder('{chain}', '{t}')}/pairs.jsonl",
        ref=model_input(REFERENCE),
        policy=lambda wc: model_input(policy_in(wc.chain, wc.t)),
    output:
        scored_pairs_file("{chain}", "{t}"),
    params:
        args=lambda wc: hydra_args(
            "logps", os.path.dirname(scored_pairs_file(wc.chain, wc.t)),
            pairs=f"{annotate_folder(wc.chain, wc.t)}/pairs.jsonl", ref_policy=REFERENCE,
            policy=policy_in(wc.chain, wc.t), output=scored_pairs_file(wc.chain, wc.t),
            max_length=config["max_length"], max_prompt_length=config["max_prompt_length"]),
        untracked=untracked_args("logps"),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/logps.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/logps.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.logps {params.args} {params.untracked} > {log:q} 2>&1"
