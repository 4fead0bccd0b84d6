rule report:
    """Tables (Markdown and CSV) and plots of every point's metrics per iteration.

    Its outputs are also the pages of Snakemake's HTML report: snakemake --report report.html
    """
    input:
        conf("report"),
        metrics=[f for point in POINTS for f in evaluations(point) + benchmark_evaluations(point)],
        annotations=[f"{annotate_folder(stage_folder(p, t, 'annotate'), t)}/annotation.json" for p in POINTS for t in ITERATIONS],
        training=[f"{train_folder(p, t)}/train_summary.json" for p in POINTS for t in ITERATIONS],
    output:
        markdown=f"{REPORT_DIR}/report.md",
        csv=report(f"{REPORT_DIR}/report.csv", caption="../report/table.rst", category="Tables"),
        summary=report(f"{REPORT_DIR}/summary.csv", caption="../report/summary.rst", category="Tables"),
        overview=report(f"{REPORT_DIR}/overview.png", caption="../report/overview.rst", category="Plots"),
        # the held-out evaluation's own plots
        **({} if not HELDOUT else dict(
            win_rate=report(f"{REPORT_DIR}/win_rate.png", caption="../report/win_rate.rst", category="Plots"),
            duality_gap=report(f"{REPORT_DIR}/duality_gap.png", caption="../report/duality_gap.rst", category="Plots"),
            length=report(f"{REPORT_DIR}/length_vs_tau.png", caption="../report/length_vs_tau.rst", category="Plots"),
        )),
    params:
        args=hydra_args("report", REPORT_DIR, results=R, iterations=config["iterations"], output_dir=REPORT_DIR,
                        points=POINTS, evaluations=config["evaluations"]),
        untracked=untracked_args("report"),
    log:
        f"{R}/logs/{REPORT_NAME}.log",
    benchmark:
        f"{R}/benchmarks/{REPORT_NAME}.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.report {params.args} {params.untracked} > {log:q} 2>&1"
