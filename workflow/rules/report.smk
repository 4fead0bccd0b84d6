rule report:
    """One table (Markdown and CSV) and a plot per metric, per iteration."""
    input:
        conf("report"),
        metrics=expand(f"{R}/eval/iter{{t}}/metrics.json", t=[0] + ITERATIONS),
        annotations=expand(f"{R}/iter{{t}}/annotate/annotation.json", t=ITERATIONS),
        training=expand(f"{R}/iter{{t}}/train/train_summary.json", t=ITERATIONS),
    output:
        markdown=f"{REPORT_DIR}/report.md",
        csv=f"{REPORT_DIR}/report.csv",
    params:
        extra=overrides("report"),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    resources:
        **resources_of("report"),
    shell:
        "{PYTHON} -m inpo.report results={R} iterations={config[iterations]} output_dir={REPORT_DIR} "
        "hydra.run.dir={REPORT_DIR} {params.extra} > {log} 2>&1"
