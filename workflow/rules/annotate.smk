def samples_for_annotation(wc):
    # a shared chain (seed~S/judge~J) annotates the samples of seed~S
    chain = wc.chain.rsplit("/judge~", 1)[0] if wc.chain.startswith("shared/") else wc.chain
    return f"{R}/{chain}/iter{wc.t}/sample/samples.jsonl"


rule annotate:
    """The oracle ranks each prompt's K responses into a (chosen, rejected) pair."""
    input:
        lambda wc: conf("annotate", f"judge/{segment(wc.chain, 'judge')}"),
        samples=samples_for_annotation,
    output:
        pairs=f"{R}/{{chain}}/iter{{t}}/annotate/pairs.jsonl",
        stats=f"{R}/{{chain}}/iter{{t}}/annotate/annotation.json",
    params:
        args=lambda wc, input, output: hydra_args(
            "annotate", os.path.dirname(output.pairs), samples=input.samples, output=output.pairs, stats=output.stats,
            judge=segment(wc.chain, "judge")),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/annotate.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/annotate.tsv"
    shell:
        "{PYTHON} -m inpo.annotate {params.args} > {log} 2>&1"
