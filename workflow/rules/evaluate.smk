rule baseline_synthetic:
    input:
        city=SYNTH_DIR,
    output:
        "results/synthetic_baseline_recall.csv",
    params:
        recall_values=recall_values(),
    log:
        "results/logs/baseline_synthetic.log",
    benchmark:
        "results/benchmarks/baseline_synthetic.tsv"
    shell:
        "wakd --log-file {log} baseline --dataset synthetic --split test --root {input.city} "
        "--recall-values {params.recall_values} --out {output}"
