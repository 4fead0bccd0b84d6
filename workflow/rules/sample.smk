def sample_args(wc, output, **shard):
    return hydra_args(
        "sample", os.path.dirname(output[0]), policy=policy_in(wc.chain, wc.t),
        prompts=f"{R}/prompts/train_iter{wc.t}/prompts.jsonl", output=output[0], sampler=config["sampler"],
        n_samples=config["n_samples"], iteration=wc.t, seed=segment(wc.chain, "seed"),
        **{"sampler.max_prompt_length": config["max_prompt_length"]}, **shard)


SAMPLE_INPUT = dict(
    policy=lambda wc: model_input(policy_in(wc.chain, wc.t)),
    prompts=f"{R}/prompts/train_iter{{t}}/prompts.jsonl",
)


if SHARDS == 1:

    rule sample:
        """K responses per training prompt from pi_t (iteration 1: shared by the points with the same seed)."""
        input:
            conf("sample", f"sampler/{config['sampler']}"),
            **SAMPLE_INPUT,
        output:
            f"{R}/{{chain}}/iter{{t}}/sample/samples.jsonl",
        params:
            args=lambda wc, output: sample_args(wc, output),
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/sample.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/iter{{t}}/sample.tsv"
        shell:
            "{PYTHON} -m inpo.sample {params.args} > {log} 2>&1"

else:

    rule sample:
        """Shard k of sample_shards: K responses per prompt of its block of the training prompts, from pi_t."""
        input:
            conf("sample", f"sampler/{config['sampler']}"),
            **SAMPLE_INPUT,
        output:
            f"{R}/{{chain}}/iter{{t}}/sample/shards/{{shard}}.jsonl",
        params:
            args=lambda wc, output: sample_args(wc, output, shard=int(wc.shard), n_shards=SHARDS),
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/sample/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/iter{{t}}/sample/{{shard}}.tsv"
        shell:
            "{PYTHON} -m inpo.sample {params.args} > {log} 2>&1"

    rule merge_samples:
        """The shards' samples, in prompt order."""
        input:
            [f"{R}/{{chain}}/iter{{t}}/sample/shards/{k}.jsonl" for k in range(SHARDS)],
        output:
            f"{R}/{{chain}}/iter{{t}}/sample/samples.jsonl",
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/merge_samples.log",
        shell:
            "{PYTHON} -m inpo.shards merge {output} {input} > {log} 2>&1"
