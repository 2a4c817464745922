rule summarize:
    input:
        lambda wc: summary_inputs(wc.dataset),
    output:
        csv="results/{dataset}_recall.csv",
        figure="results/{dataset}_recall.png",
    log:
        "results/logs/summarize_{dataset}.log",
    benchmark:
        "results/benchmarks/summarize_{dataset}.tsv"
    conda:
        "../../environment.yml"
    params:
        code=code("summarize"),
    shell:
        "wakd --log-file {log} summarize --csv {input} --out {output.csv} --figure {output.figure}"
