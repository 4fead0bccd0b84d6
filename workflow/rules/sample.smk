def samples_file(chain, t):
    return f"{R}/{chain}/iter{t}/sample/samples.jsonl"


def shard_file(chain, t, shard):
    return f"{R}/{chain}/iter{t}/sample/shards/{shard}.jsonl"


def sample_args(wc, **shard):
    output = shard_file(wc.chain, wc.t, wc.shard) if shard else samples_file(wc.chain, wc.t)
    return hydra_args(
        "sample", os.path.dirname(output), policy=policy_in(wc.chain, wc.t), prompts=prompts_file(f"train_iter{wc.t}"),
        output=output, sampler=config["sampler"], n_samples=config["n_samples"], iteration=wc.t,
        seed=segment(wc.chain, "seed"), **shard,
        # the answers fit logps' and train's max_length whole: never cut there, ended or marked cut here
        **{"sampler.max_prompt_length": config["max_prompt_length"], "sampler.max_length": config["max_length"]})


SAMPLE_INPUT = dict(
    policy=lambda wc: model_input(policy_in(wc.chain, wc.t)),
    prompts=prompts_file("train_iter{t}"),
)


if SHARDS == 1:

    rule sample:
        """K responses per training prompt from pi_t (iteration 1: shared by the points with the same seed)."""
        input:
            conf("sample", f"sampler/{config['sampler']}"),
            **SAMPLE_INPUT,
        output:
            samples_file("{chain}", "{t}"),
        params:
            args=lambda wc: sample_args(wc),
            untracked=untracked_args("sample"),
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/sample.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/iter{{t}}/sample.tsv"
        shell:
            "{STAGE_ENV} {PYTHON} -m inpo.sample {params.args} {params.untracked} > {log:q} 2>&1"

else:

    rule sample:
        """Shard k of sample_shards: K responses per prompt of its block of the training prompts, from pi_t."""
        input:
            conf("sample", f"sampler/{config['sampler']}"),
            **SAMPLE_INPUT,
        output:
            shard_file("{chain}", "{t}", "{shard}"),
        params:
            args=lambda wc: sample_args(wc, shard=int(wc.shard), n_shards=SHARDS),
            untracked=untracked_args("sample"),
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/sample/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/iter{{t}}/sample/{{shard}}.tsv"
        shell:
            "{STAGE_ENV} {PYTHON} -m inpo.sample {params.args} {params.untracked} > {log:q} 2>&1"

    rule merge_samples:
        """The shards' samples, in prompt order."""
        input:
            [shard_file("{chain}", "{t}", k) for k in range(SHARDS)],
        output:
            samples_file("{chain}", "{t}"),
        log:
            f"{R}/logs/{{chain}}/iter{{t}}/merge_samples.log",
        shell:
            "{STAGE_ENV} {PYTHON} -m inpo.shards merge {output:q} {input:q} > {log:q} 2>&1"
