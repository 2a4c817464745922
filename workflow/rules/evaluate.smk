rule baseline_synthetic:
    input:
        city=SYNTH_DIR,
    output:
        "results/synthetic_baseline_recall.csv",
    log:
        "results/logs/baseline_synthetic.log",
    benchmark:
        "results/benchmarks/baseline_synthetic.tsv"
    conda:
        "../../environment.yml"
    params:
        code=code("baseline"),
        recall_values=recall_values(),
    shell:
        "wakd --log-file {log} baseline --dataset synthetic --split test --root {input.city} "
        "--recall-values {params.recall_values} --out {output}"


rule extract:
    input:
        data=lambda wc: dataset_inputs(wc.dataset, wc.split),
        clusters=lambda wc: clusters_path(trainset(wc.dataset), MODELS[wc.model]),
        checkpoint=lambda wc: checkpoint_path(trainset(wc.dataset), wc.model) or [],
        weights=lambda wc: weights_inputs(net(wc.dataset, MODELS[wc.model])),
    output:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    log:
        "results/logs/extract_{model}_{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/extract_{model}_{dataset}_{split}.tsv"
    conda:
        "../../environment.yml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=30,
        mem_mb=4000,
    params:
        device=device_option("extract"),
        code=code("extract"),
        root=lambda wc: dataset_root(wc.dataset),
        arch=lambda wc: net(wc.dataset, MODELS[wc.model])["arch"],
        k=lambda wc: net(wc.dataset, MODELS[wc.model])["num_clusters"],
        weights=lambda wc: weights_option(net(wc.dataset, MODELS[wc.model])),
        checkpoint=lambda wc, input: (
            f"--checkpoint {input.checkpoint}" if input.checkpoint else ""
        ),
        size=lambda wc: size_option(wc.dataset),
        dtype=config["evaluation"]["dtype"],
        workers=config["loader_workers"],
    shell:
        "wakd --log-file {log} extract {params.device} --arch {params.arch} --num-clusters {params.k} "
        "--clusters {input.clusters} {params.weights} {params.checkpoint} --dataset {wildcards.dataset} "
        "--root {params.root} --split {wildcards.split} {params.size} --dtype {params.dtype} "
        "--workers {params.workers} --out {output}"


rule evaluate:
    input:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    output:
        csv="results/{dataset}/{model}_{split}_recall.csv",
        predictions="results/{dataset}/{model}_{split}_predictions.hdf5",
        figure="results/{dataset}/{model}_{split}_predictions.png",
    log:
        "results/logs/evaluate_{model}_{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/evaluate_{model}_{dataset}_{split}.tsv"
    conda:
        "../../environment.yml"
    params:
        code=code("evaluate"),
        model=lambda wc: model_label(wc.dataset, wc.model),
        recall_values=recall_values(),
    shell:
        "wakd --log-file {log} evaluate --descriptors {input} --model {params.model} "
        "--recall-values {params.recall_values} --out {output.csv} --predictions {output.predictions} "
        "--figure {output.figure}"
