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
        pca=lambda wc: pca_path(wc.dataset, wc.model) or [],
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
        device=run_options("extract"),
        code=code("extract"),
        root=lambda wc: dataset_root(wc.dataset),
        arch=lambda wc: net(wc.dataset, MODELS[wc.model])["arch"],
        arch_options=lambda wc: arch_options(net(wc.dataset, MODELS[wc.model])),
        k=lambda wc: net(wc.dataset, MODELS[wc.model])["num_clusters"],
        weights=lambda wc: weights_option(net(wc.dataset, MODELS[wc.model])),
        checkpoint=lambda wc, input: (
            f"--checkpoint {input.checkpoint}" if input.checkpoint else ""
        ),
        pca=lambda wc, input: f"--pca {input.pca}" if input.pca else "",
        size=lambda wc: size_option(wc.dataset),
        dtype=config["evaluation"]["dtype"],
        workers=config["loader_workers"],
    shell:
        "wakd --log-file {log} extract {params.device} --arch {params.arch} {params.arch_options} --num-clusters {params.k} "
        "--clusters {input.clusters} {params.weights} {params.checkpoint} {params.pca} --dataset {wildcards.dataset} "
        "--root {params.root} --split {wildcards.split} {params.size} --dtype {params.dtype} "
        "--workers {params.workers} --out {output}"


rule pca:
    input:
        data=lambda wc: dataset_inputs(wc.trainset, "train"),
        clusters=lambda wc: clusters_path(wc.trainset, MODELS[wc.model]),
        checkpoint=lambda wc: checkpoint_path(wc.trainset, wc.model),
    output:
        "results/pca/{model}_{trainset}_{dim}.hdf5",
    log:
        "results/logs/pca_{model}_{trainset}_{dim}.log",
    benchmark:
        "results/benchmarks/pca_{model}_{trainset}_{dim}.tsv"
    conda:
        "../../environment.yml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=30,
        mem_mb=8000,
    params:
        device=run_options("extract"),
        code=code("pca"),
        root=lambda wc: dataset_root(wc.trainset),
        arch=lambda wc: net(wc.trainset, MODELS[wc.model])["arch"],
        arch_options=lambda wc: arch_options(net(wc.trainset, MODELS[wc.model])),
        k=lambda wc: net(wc.trainset, MODELS[wc.model])["num_clusters"],
        size=lambda wc: size_option(wc.trainset),
        num_images=config["pca"]["num_images"],
        workers=config["loader_workers"],
    shell:
        "wakd --log-file {log} pca {params.device} --arch {params.arch} {params.arch_options} --num-clusters {params.k} "
        "--clusters {input.clusters} --checkpoint {input.checkpoint} --dataset {wildcards.trainset} "
        "--root {params.root} --split train {params.size} --num-images {params.num_images} "
        "--dim {wildcards.dim} --workers {params.workers} --out {output}"


rule evaluate:
    input:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    output:
        csv="results/{dataset}/{model}_{split}_recall.csv",
        predictions="results/{dataset}/{model}_{split}_predictions.hdf5",
        figure=report(
            "results/{dataset}/{model}_{split}_predictions.png",
            caption="../report/predictions.rst",
            category="Predictions",
            subcategory="{dataset}",
            labels={"model": "{model}", "split": "{split}"},
        ),
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
