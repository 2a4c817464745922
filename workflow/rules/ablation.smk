# The KD ablation: `snakemake --cores all results/synthetic_ablation.csv`. Per run (city seed, training
# seed; config `ablation:`) one teacher, then every student variant (`ablation.variants`: blocks of
# `wakd distill` options over the student's) from the same NetVLAD centres with the same steps and
# the same validation-only choice of model_best; each network (and the teacher and student as
# initialised) described and evaluated on the run's test split; one table of means, 95 % intervals and
# paired differences to the no-KD student over the runs. A new seed or variant runs only its own jobs.


wildcard_constraints:
    city=r"\d+",
    seed=r"\d+",
    role="teacher|student",


rule ablation_cluster:
    input:
        city=lambda wc: city_dir(wc.city),
        weights=lambda wc: weights_inputs(net("synthetic", wc.role)),
    output:
        f"{ABLATION_DIR}/clusters/{{role}}_desc_cen.hdf5",
    log:
        "results/logs/ablation/cluster_{role}_city{city}_seed{seed}.log",
    benchmark:
        "results/benchmarks/ablation/cluster_{role}_city{city}_seed{seed}.tsv"
    conda:
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("cluster"),
        runtime=30,
        mem_mb=4000,
    params:
        code=code("cluster", "synthetic"),
        args=lambda wc: options(
            backbone(net("synthetic", wc.role)),
            reading("synthetic", "train"),
            running("cluster", "synthetic"),
            config["cluster"],
            in_run(wc),
            num_clusters=net("synthetic", wc.role)["num_clusters"],
        ),
    shell:
        "wakd --log-file {log} cluster {params.args} --out {output}"


use rule train_teacher as ablation_teacher with:
    input:
        city=lambda wc: city_dir(wc.city),
        clusters=f"{ABLATION_DIR}/clusters/teacher_desc_cen.hdf5",
        weights=weights_inputs(net("synthetic", "teacher")),
    output:
        best=f"{ABLATION_DIR}/teacher/model_best.pth.tar",
        last=f"{ABLATION_DIR}/teacher/checkpoint.pth.tar",
        history=f"{ABLATION_DIR}/teacher/history.csv",
        steps=f"{ABLATION_DIR}/teacher/steps.csv",
    log:
        "results/logs/ablation/train_teacher_city{city}_seed{seed}.log",
    benchmark:
        "results/benchmarks/ablation/train_teacher_city{city}_seed{seed}.tsv"
    params:
        launch=launcher("train"),
        code=code("train", "synthetic"),
        args=lambda wc: ablation_training("train", "teacher", wc),
        out_dir=lambda wc, output: str(Path(output.best).parent),
        state=f"results/resume/ablation/city{{city}}/seed{{seed}}/teacher",
        command="train",
        teacher="",


use rule distill_student as ablation_student with:
    input:
        city=lambda wc: city_dir(wc.city),
        clusters=f"{ABLATION_DIR}/clusters/student_desc_cen.hdf5",
        weights=weights_inputs(net("synthetic", "student")),
        teacher=f"{ABLATION_DIR}/teacher/model_best.pth.tar",
        init=lambda wc: ablation_init(wc, wc.variant) or [],
    output:
        best=f"{ABLATION_DIR}/{{variant}}/model_best.pth.tar",
        last=f"{ABLATION_DIR}/{{variant}}/checkpoint.pth.tar",
        history=f"{ABLATION_DIR}/{{variant}}/history.csv",
        steps=f"{ABLATION_DIR}/{{variant}}/steps.csv",
    log:
        "results/logs/ablation/distill_{variant}_city{city}_seed{seed}.log",
    benchmark:
        "results/benchmarks/ablation/distill_{variant}_city{city}_seed{seed}.tsv"
    wildcard_constraints:
        variant="|".join(ABLATION["variants"]) or "(?!)",
    params:
        launch=launcher("distill"),
        code=code("distill", "synthetic"),
        args=lambda wc: ablation_training("distill", "student", wc, wc.variant),
        out_dir=lambda wc, output: str(Path(output.best).parent),
        state=f"results/resume/ablation/city{{city}}/seed{{seed}}/{{variant}}",
        command="distill",
        teacher=lambda wc, input: f" --teacher {input.teacher}",


rule ablation_extract:
    input:
        city=lambda wc: city_dir(wc.city),
        clusters=lambda wc: f"{run_dir(wc)}/clusters/{ablation_role(wc.arm)}_desc_cen.hdf5",
        checkpoint=lambda wc: (
            f"{run_dir(wc)}/{ablation_checkpoint(wc.arm)}"
            if ablation_checkpoint(wc.arm)
            else []
        ),
    output:
        f"{ABLATION_DIR}/descriptors/{{arm}}_test.hdf5",
    log:
        "results/logs/ablation/extract_{arm}_city{city}_seed{seed}.log",
    benchmark:
        "results/benchmarks/ablation/extract_{arm}_city{city}_seed{seed}.tsv"
    wildcard_constraints:
        arm="|".join(ablation_arms()),
    conda:
        "../envs/wakd.yaml"
    threads: 4
    resources:
        gpu=gpus("extract"),
        runtime=30,
        mem_mb=4000,
    params:
        code=code("extract", "synthetic"),
        args=lambda wc, input: options(
            network(net("synthetic", ablation_role(wc.arm))),
            reading("synthetic", "test"),
            running("extract", "synthetic"),
            in_run(wc),
            {"clusters": input.clusters, "checkpoint": input.checkpoint},
            dtype=config["evaluation"]["dtype"],
        ),
    shell:
        "wakd --log-file {log} extract {params.args} --out {output}"


rule ablation_evaluate:
    input:
        f"{ABLATION_DIR}/descriptors/{{arm}}_test.hdf5",
    output:
        csv=f"{ABLATION_DIR}/{{arm}}_test_recall.csv",
        info=f"{ABLATION_DIR}/{{arm}}_test_recall.csv.info.json",
    log:
        "results/logs/ablation/evaluate_{arm}_city{city}_seed{seed}.log",
    benchmark:
        "results/benchmarks/ablation/evaluate_{arm}_city{city}_seed{seed}.tsv"
    wildcard_constraints:
        arm="|".join(ablation_arms()),
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("evaluate"),
        args=lambda wc: options(
            model=f"{wc.arm}@city{wc.city}-seed{wc.seed}",
            recall_values=config["evaluation"]["recall_values"],
        ),
    shell:
        "wakd --log-file {log} evaluate --descriptors {input} {params.args} --out {output.csv}"


rule ablation_table:
    input:
        ablation_recall_files(),
    output:
        csv=report(
            "results/synthetic_ablation.csv",
            caption="../report/ablation.rst",
            category="KD ablation",
            labels={"file": "table"},
        ),
        info="results/synthetic_ablation.csv.info.json",
        figure=report(
            "results/synthetic_ablation.png",
            caption="../report/ablation.rst",
            category="KD ablation",
            labels={"file": "figure"},
        ),
    log:
        "results/logs/ablation_table.log",
    benchmark:
        "results/benchmarks/ablation_table.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("ablation"),
    shell:
        "wakd --log-file {log} ablation --recall {input} --baseline student_nokd --teacher teacher "
        "--out {output.csv} --figure {output.figure}"
