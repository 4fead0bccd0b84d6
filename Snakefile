# INPO workflow: SFT, then per iteration sample -> annotate -> logps -> train -> evaluate; report.
#   snakemake --cores all                      the embedded default (conf/workflow.yaml)
#   snakemake --cores all --config eta=0.1     any key of conf/workflow.yaml for one run
from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "conf/workflow.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/logps.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    """The report, and every point's trained policies and metrics: a lost one is rebuilt."""
    input:
        rules.report.output,
        rules.report.input.metrics,
        [f"{train_folder(p, t)}/policy" for p in POINTS for t in ITERATIONS],
    default_target: True


onsuccess:
    if os.path.exists(f"{REPORT_DIR}/report.md"):  # a run of some targets only may have made none
        print(f"\nINPO workflow done. Report: {REPORT_DIR}/report.md (table: report.csv, plots: *.png)")
