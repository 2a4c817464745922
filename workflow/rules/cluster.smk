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
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("cluster"),
        runtime=30,
        mem_mb=4000,
    params:
        code=lambda wc: code("cluster", wc.trainset),
        args=lambda wc: options(
            backbone(named_net(wc.trainset, wc.net)),
            reading(wc.trainset, "train"),
            running("cluster", wc.trainset),
            config["cluster"],
            num_clusters=wc.k,
        ),
    shell:
        "wakd --log-file {log} cluster {params.args} --out {output}"
