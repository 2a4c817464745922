rule cluster:
    input:
        data=lambda wc: dataset_inputs(wc.trainset, "train"),
        weights=lambda wc: weights_inputs(named_net(wc.trainset, wc.net)),
    output:
        "results/clusters/{net}_{trainset}_{k}_desc_cen.hdf5",
    log:
        "results/logs/cluster_{net}_{trainset}_{k}.log",
    benchmark:
        "results/benchmarks/cluster_{net}_{trainset}_{k}.tsv"
    conda:
        "../../environment.yml"
    threads: 4
    resources:
        gpu=gpus("cluster"),
        runtime=30,
        mem_mb=4000,
    params:
        device=run_options("cluster"),
        code=code("cluster"),
        root=lambda wc: dataset_root(wc.trainset),
        weights=lambda wc: weights_option(named_net(wc.trainset, wc.net)),
        arch=lambda wc: named_net(wc.trainset, wc.net)["arch"],
        arch_options=lambda wc: arch_options(named_net(wc.trainset, wc.net)),
        size=lambda wc: size_option(wc.trainset),
        num_images=config["cluster"]["num_images"],
        per_image=config["cluster"]["per_image"],
        workers=config["loader_workers"],
    shell:
        "wakd --log-file {log} cluster {params.device} --arch {params.arch} {params.arch_options} {params.weights} "
        "--dataset {wildcards.trainset} --root {params.root} --split train --num-clusters {wildcards.k} "
        "--num-images {params.num_images} --per-image {params.per_image} {params.size} "
        "--workers {params.workers} --out {output}"
