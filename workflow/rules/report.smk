rule summarize_synthetic:
    input:
        "results/synthetic_baseline_recall.csv",
        expand("results/synthetic/{role}_test_recall.csv", role=ROLES),
    output:
        csv="results/synthetic_recall.csv",
        figure="results/synthetic_recall.png",
    log:
        "results/logs/summarize_synthetic.log",
    benchmark:
        "results/benchmarks/summarize_synthetic.tsv"
    shell:
        "wakd --log-file {log} summarize --csv {input} --out {output.csv} --figure {output.figure}"
