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


rule extract_synthetic:
    input:
        city=SYNTH_DIR,
        clusters=clusters_file,
        weights=lambda wc: weights_inputs(model_cfg(wc)["arch"]),
    output:
        "results/descriptors/{role}_synthetic_{split}.hdf5",
    params:
        arch=lambda wc: model_cfg(wc)["arch"],
        k=lambda wc: model_cfg(wc)["num_clusters"],
        weights=lambda wc: weights_option(model_cfg(wc)["arch"]),
        dtype=config["evaluation"]["dtype"],
        workers=config["loader_workers"],
    threads: workflow.cores
    log:
        "results/logs/extract_{role}_synthetic_{split}.log",
    benchmark:
        "results/benchmarks/extract_{role}_synthetic_{split}.tsv"
    shell:
        "wakd --log-file {log} extract --arch {params.arch} --num-clusters {params.k} "
        "--clusters {input.clusters} {params.weights} --dataset synthetic --root {input.city} "
        "--split {wildcards.split} --dtype {params.dtype} --workers {params.workers} --out {output}"


rule evaluate_synthetic:
    input:
        "results/descriptors/{role}_synthetic_{split}.hdf5",
    output:
        csv="results/synthetic/{role}_{split}_recall.csv",
        predictions="results/synthetic/{role}_{split}_predictions.hdf5",
        figure="results/synthetic/{role}_{split}_predictions.png",
    params:
        model=lambda wc: model_label(wc.role),
        recall_values=recall_values(),
    log:
        "results/logs/evaluate_{role}_synthetic_{split}.log",
    benchmark:
        "results/benchmarks/evaluate_{role}_synthetic_{split}.tsv"
    shell:
        "wakd --log-file {log} evaluate --descriptors {input} --model {params.model} "
        "--recall-values {params.recall_values} --out {output.csv} --predictions {output.predictions} "
        "--figure {output.figure}"
