# Teacher training and student distillation, on the synthetic city or on Pittsburgh 30k. torch
# threads = the rule's threads (Snakemake caps them at --cores locally; on SLURM they are the job's
# cpus-per-task): oversubscribed cores make a training step many times slower.


rule train_teacher:
    input:
        train=lambda wc: dataset_inputs(wc.trainset, "train"),
        val=lambda wc: dataset_inputs(wc.trainset, "val"),
        clusters=lambda wc: clusters_path(wc.trainset, "teacher"),
        weights=lambda wc: weights_inputs(net(wc.trainset, "teacher")),
    output:
        best="results/train/{trainset}/teacher/model_best.pth.tar",
        last="results/train/{trainset}/teacher/checkpoint.pth.tar",
        history="results/train/{trainset}/teacher/history.csv",
    log:
        "results/logs/train_teacher_{trainset}.log",
    benchmark:
        "results/benchmarks/train_teacher_{trainset}.tsv"
    conda:
        "../../environment.yml"
    threads: 8
    resources:
        gpu=gpus("train"),
        runtime=120,
        mem_mb=8000,
    params:
        launch=launcher("train"),
        device=run_options("train"),
        code=code("train"),
        root=lambda wc: dataset_root(wc.trainset),
        arch=lambda wc: net(wc.trainset, "teacher")["arch"],
        arch_options=lambda wc: arch_options(net(wc.trainset, "teacher")),
        k=lambda wc: net(wc.trainset, "teacher")["num_clusters"],
        weights=lambda wc: weights_option(net(wc.trainset, "teacher")),
        size=lambda wc: size_option(wc.trainset),
        options=lambda wc: cli_options(net(wc.trainset, "teacher")["train"]),
        out_dir=subpath(output.best, parent=True),
        workers=config["loader_workers"],
    shell:
        "{params.launch} --log-file {log} train {params.device} --arch {params.arch} {params.arch_options} --num-clusters {params.k} "
        "--clusters {input.clusters} {params.weights} --dataset {wildcards.trainset} --root {params.root} "
        "{params.size} {params.options} --threads {threads} --workers {params.workers} --out-dir {params.out_dir}"


rule distill_student:
    input:
        train=lambda wc: dataset_inputs(wc.trainset, "train"),
        val=lambda wc: dataset_inputs(wc.trainset, "val"),
        clusters=lambda wc: clusters_path(wc.trainset, "student"),
        teacher="results/train/{trainset}/teacher/model_best.pth.tar",
        weights=lambda wc: weights_inputs(net(wc.trainset, "student")),
    output:
        best="results/train/{trainset}/student_{variant}/model_best.pth.tar",
        last="results/train/{trainset}/student_{variant}/checkpoint.pth.tar",
        history="results/train/{trainset}/student_{variant}/history.csv",
        steps="results/train/{trainset}/student_{variant}/steps.csv",
    log:
        "results/logs/distill_student_{variant}_{trainset}.log",
    benchmark:
        "results/benchmarks/distill_student_{variant}_{trainset}.tsv"
    conda:
        "../../environment.yml"
    threads: 8
    resources:
        gpu=gpus("distill"),
        runtime=120,
        mem_mb=8000,
    params:
        launch=launcher("distill"),
        device=run_options("distill"),
        code=code("distill"),
        root=lambda wc: dataset_root(wc.trainset),
        arch=lambda wc: net(wc.trainset, "student")["arch"],
        arch_options=lambda wc: arch_options(net(wc.trainset, "student")),
        k=lambda wc: net(wc.trainset, "student")["num_clusters"],
        weights=lambda wc: weights_option(net(wc.trainset, "student")),
        size=lambda wc: size_option(wc.trainset),
        # the ablation student: the same options, no distillation
        options=lambda wc: cli_options(
            net(wc.trainset, "student")["train"],
            **({"kd_weight": 0.0, "soft_weight": 0.0} if wc.variant == "nokd" else {}),
        ),
        out_dir=subpath(output.best, parent=True),
        workers=config["loader_workers"],
    shell:
        "{params.launch} --log-file {log} distill {params.device} --arch {params.arch} {params.arch_options} --num-clusters {params.k} "
        "--clusters {input.clusters} {params.weights} --teacher {input.teacher} --dataset {wildcards.trainset} "
        "--root {params.root} {params.size} {params.options} --threads {threads} --workers {params.workers} "
        "--out-dir {params.out_dir}"
