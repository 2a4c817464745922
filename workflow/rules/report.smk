rule summarize:
    input:
        lambda wc: summary_inputs(wc.dataset),
    output:
        csv=report(
            "results/{dataset}_recall.csv",
            caption="../report/recall.rst",
            category="Recall",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "file": "table"},
        ),
        info="results/{dataset}_recall.csv.info.json",
        figure=report(
            "results/{dataset}_recall.png",
            caption="../report/recall.rst",
            category="Recall",
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
