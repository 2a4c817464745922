rule summarize:
    input:
        lambda wc: summary_inputs(wc.dataset),
    output:
        csv=report(
            "results/{dataset}_recall.csv",
            caption="../report/recall.rst",
            category="Evaluation per condition",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "file": "table"},
        ),
        info="results/{dataset}_recall.csv.info.json",
        figure=report(
            "results/{dataset}_recall.png",
            caption="../report/recall.rst",
            category="Evaluation per condition",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "file": "curves"},
        ),
    log:
        "results/logs/summarize_{dataset}.log",
    benchmark:
        "results/benchmarks/summarize_{dataset}.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("summarize"),
    shell:
        "wakd --log-file {log} summarize --csv {input} --out {output.csv} --figure {output.figure}"


rule curves:
    input:
        teacher="results/train/{trainset}/teacher/history.csv",
        student_kd="results/train/{trainset}/student_kd/history.csv",
        student_nokd="results/train/{trainset}/student_nokd/history.csv",
    output:
        report(
            "results/train/{trainset}/curves.png",
            caption="../report/curves.rst",
            category="Training and distillation",
            subcategory="{trainset}",
            labels={"trainset": "{trainset}", "file": "curves"},
        ),
    log:
        "results/logs/curves_{trainset}.log",
    benchmark:
        "results/benchmarks/curves_{trainset}.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("curves"),
    shell:
        "wakd --log-file {log} curves --history {input.teacher} {input.student_kd} {input.student_nokd} "
        "--labels teacher student_kd student_nokd --out {output}"
