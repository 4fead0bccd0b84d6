rule annotate:
    """The oracle ranks each prompt's K responses into a (chosen, rejected) pair."""
    input:
        conf("annotate", f"judge/{config['judge']}"),
        samples=f"{R}/iter{{t}}/sample/samples.jsonl",
    output:
        pairs=f"{R}/iter{{t}}/annotate/pairs.jsonl",
        stats=f"{R}/iter{{t}}/annotate/annotation.json",
    params:
        judge=config["judge"],
        extra=overrides("annotate"),
    log:
        f"{R}/logs/annotate/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/annotate/iter{{t}}.tsv"
    resources:
        **resources_of("annotate"),
    shell:
        "{PYTHON} -m inpo.annotate samples={input.samples} output={output.pairs} stats={output.stats} "
        "judge={params.judge} hydra.run.dir=$(dirname {output.pairs}) {params.extra} > {log} 2>&1"
