def samples_for_annotation(wc):
    # a shared chain (seed~S/judge~J, or seed~S/judge~J/pairing~P) annotates the samples of seed~S
    chain = wc.chain.rsplit("/judge~", 1)[0] if wc.chain.startswith("shared/") else wc.chain
    return samples_file(chain, wc.t)


def annotate_folder(chain, t):
    return f"{R}/{chain}/iter{t}/annotate"


rule annotate:
    """The oracle ranks each prompt's K responses into a (chosen, rejected) pair (SPPO's chains: pairing=sppo)."""
    input:
        lambda wc: conf("annotate", f"judge/{segment(wc.chain, 'judge')}"),
        samples=samples_for_annotation,
    output:
        pairs=f"{annotate_folder('{chain}', '{t}')}/pairs.jsonl",
        stats=f"{annotate_folder('{chain}', '{t}')}/annotation.json",
    params:
        args=lambda wc: hydra_args(
            "annotate", annotate_folder(wc.chain, wc.t), samples=samples_for_annotation(wc),
            output=f"{annotate_folder(wc.chain, wc.t)}/pairs.jsonl",
            stats=f"{annotate_folder(wc.chain, wc.t)}/annotation.json", judge=segment(wc.chain, "judge"),
            pairing=annotation_pairing(wc.chain)),
        untracked=untracked_args("annotate"),
    log:
        f"{R}/logs/{{chain}}/iter{{t}}/annotate.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/iter{{t}}/annotate.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.annotate {params.args} {params.untracked} > {log:q} 2>&1"
