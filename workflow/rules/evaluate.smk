rule baseline_synthetic:
    input:
        city=SYNTH_DIR,
    output:
        csv="results/synthetic_baseline_recall.csv",
        info="results/synthetic_baseline_recall.csv.info.json",
    log:
        "results/logs/baseline_synthetic.log",
    benchmark:
        "results/benchmarks/baseline_synthetic.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("baseline", "synthetic"),
        args=options(
            reading("synthetic", "test"),
            recall_values=config["evaluation"]["recall_values"],
        ),
    shell:
        "wakd --log-file {log} baseline {params.args} --out {output.csv}"


# Descriptors of a split: one `extract` job, or (config `shards: {dataset: N}`, N > 1) N
# `extract_shard` jobs, each describing a contiguous part on its own GPU(s), joined by `gather`.
rule extract:
    input:
        unpack(network_inputs),
    output:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    log:
        "results/logs/extract_{model}_{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/extract_{model}_{dataset}_{split}.tsv"
    wildcard_constraints:
        dataset=datasets_with_shards(1),
    conda:
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=30,
        mem_mb=4000,
    params:
        code=lambda wc: code("extract", wc.dataset),
        args=extract_options,
        shard="",
    shell:
        "wakd --log-file {log} extract {params.args}{params.shard} --out {output}"


# One part of a sharded extraction (`evaluation.shards`), joined by `gather`.
use rule extract as extract_shard with:
    output:
        temp(
            "results/descriptors/shards/{model}_{dataset}_{split}.{shard}-of-{shards}.hdf5"
        ),
    log:
        "results/logs/extract_{model}_{dataset}_{split}.{shard}-of-{shards}.log",
    benchmark:
        "results/benchmarks/extract_{model}_{dataset}_{split}.{shard}-of-{shards}.tsv"
    wildcard_constraints:
        dataset=datasets_with_shards(2),
        shard=r"\d+",
        shards=r"\d+",
    params:
        code=lambda wc: code("extract", wc.dataset),
        args=extract_options,
        shard=lambda wc: f" --shard {wc.shard}/{wc.shards}",


rule gather:
    input:
        shard_files,
    output:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    log:
        "results/logs/gather_{model}_{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/gather_{model}_{dataset}_{split}.tsv"
    wildcard_constraints:
        dataset=datasets_with_shards(2),
    conda:
        "../envs/wakd.yaml"
    resources:
        runtime=30,
        mem_mb=2000,
    params:
        code=code("gather"),
    shell:
        "wakd --log-file {log} gather --shards {input} --out {output}"


rule pca:
    input:
        unpack(network_inputs),
    output:
        "results/pca/{model}_{trainset}_{dim}.hdf5",
    log:
        "results/logs/pca_{model}_{trainset}_{dim}.log",
    benchmark:
        "results/benchmarks/pca_{model}_{trainset}_{dim}.tsv"
    conda:
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=30,
        mem_mb=8000,
    params:
        code=lambda wc: code("pca", wc.trainset),
        args=lambda wc, input: options(
            network(net(wc.trainset, MODELS[wc.model])),
            reading(wc.trainset, "train"),
            running("extract", wc.trainset),
            config["pca"],
            clusters=input.clusters,
            checkpoint=input.checkpoint,
            dim=wc.dim,
        ),
    shell:
        "wakd --log-file {log} pca {params.args} --out {output}"


rule evaluate:
    input:
        "results/descriptors/{model}_{dataset}_{split}.hdf5",
    output:
        csv="results/{dataset}/{model}_{split}_recall.csv",
        info="results/{dataset}/{model}_{split}_recall.csv.info.json",
        predictions="results/{dataset}/{model}_{split}_predictions.hdf5",
        figure=report(
            "results/{dataset}/{model}_{split}_predictions.png",
            caption="../report/predictions.rst",
            category="Predictions",
            subcategory="{dataset}",
            labels={"model": "{model}", "split": "{split}"},
        ),
        map=report(
            "results/{dataset}/{model}_{split}_map.png",
            caption="../report/map.rst",
            category="Maps",
            subcategory="{dataset}",
            labels={"model": "{model}", "split": "{split}"},
        ),
    log:
        "results/logs/evaluate_{model}_{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/evaluate_{model}_{dataset}_{split}.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("evaluate"),
        args=lambda wc: options(
            model=model_label(wc.dataset, wc.model),
            recall_values=config["evaluation"]["recall_values"],
        ),
    shell:
        "wakd --log-file {log} evaluate --descriptors {input} {params.args} --out {output.csv} "
        "--predictions {output.predictions} --figure {output.figure} --map {output.map}"


# Own photos: an index built with a trained network (config `index:`), for `wakd query`.
rule index:
    input:
        unpack(index_inputs),
    output:
        "results/index/{name}.h5",
    log:
        "results/logs/index_{name}.log",
    benchmark:
        "results/benchmarks/index_{name}.tsv"
    conda:
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=60,
        mem_mb=4000,
    params:
        code=code("index"),
        args=lambda wc, input: options(
            {k: index_path(wc.name, k) for k in ("images", "positions")},
            {"checkpoint": input.checkpoint, "pca": input.pca},
            device="auto" if gpus("extract") else "cpu",
            precision=config["precision"],
            workers=config["loader_workers"],
        ),
    shell:
        "wakd --log-file {log} index {params.args} --out {output}"
