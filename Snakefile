# wakd workflow: wiring only. Rules live in workflow/rules/, experiments in config/config.yaml,
# machines (SLURM) in profiles. Default target: the embedded synthetic city, end to end.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/ablation.smk"


rule all:
    default_target: True
    input:
        default_targets(),
