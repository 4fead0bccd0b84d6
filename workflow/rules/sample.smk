rule sample:
    """K responses per training prompt from pi_t (iteration 1: shared by the points with the same seed)."""
    input:
        conf("sample", "sampler/hf"),
        policy=lambda wc: policy_in(wc.chain, wc.t),
        prompts=f"{R}/prompts/train_iter{{t}}/prompts.jsonl",
    output:
        f"{R}/{{chain}}/iter{{t}}/sample/samples.jsonl",
    params:
        args=lambda wc, input, output: hydra_args(
            "sample", os.path.dirname(output[0]), policy=input.policy, prompts=input.prompts, output=output[0],
            n_samples=config["n_samples"], iteration=wc.t, seed=segment(wc.chain, "seed")),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/sample.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/sample.tsv"
    shell:
        "{PYTHON} -m inpo.sample {params.args} > {log} 2>&1"
