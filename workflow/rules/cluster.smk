rule cluster_synthetic:
    input:
        city=SYNTH_DIR,
        weights=lambda wc: weights_inputs(wc.arch),
    output:
        "results/clusters/{arch}_synthetic_{k}_desc_cen.hdf5",
    params:
        weights=lambda wc: weights_option(wc.arch),
        num_images=config["cluster"]["num_images"],
        per_image=config["cluster"]["per_image"],
        workers=config["loader_workers"],
    threads: workflow.cores
    log:
        "results/logs/cluster_{arch}_synthetic_{k}.log",
    benchmark:
        "results/benchmarks/cluster_{arch}_synthetic_{k}.tsv"
    shell:
        "wakd --log-file {log} cluster --arch {wildcards.arch} {params.weights} --dataset synthetic "
        "--root {input.city} --split train --num-clusters {wildcards.k} --num-images {params.num_images} "
        "--per-image {params.per_image} --workers {params.workers} --out {output}"
