# Teacher training and student distillation, on the synthetic city or on Pittsburgh 30k. torch
# threads = the rule's threads (Snakemake caps them at --cores locally; on SLURM they are the job's
# cpus-per-task): oversubscribed cores make a training step many times slower.
# A job killed by a time limit or preemption resumes when rerun (`--resume auto`) from its state
# under results/resume/ (Snakemake deletes a failed job's outputs, so the state is kept apart);
# wakd removes the state when the run ends, and refuses a state left by other options.


rule train_teacher:
    input:
        unpack(training_inputs("teacher")),
    output:
        best="results/train/{trainset}/teacher/model_best.pth.tar",
        last="results/train/{trainset}/teacher/checkpoint.pth.tar",
        history="results/train/{trainset}/teacher/history.csv",
        steps="results/train/{trainset}/teacher/steps.csv",
    log:
        "results/logs/train_teacher_{trainset}.log",
    benchmark:
        "results/benchmarks/train_teacher_{trainset}.tsv"
    conda:
        "../envs/wakd.yaml"
    threads: 8
    resources:
        gpu=gpus("train"),
        runtime=120,
        mem_mb=8000,
    params:
        launch=launcher("train"),
        code=lambda wc: code("train", wc.trainset),
        args=lambda wc: training("train", wc.trainset, "teacher"),
        out_dir=subpath(output.best, parent=True),
        state="results/resume/{trainset}/teacher",
        command="train",
        teacher="",
    shell:
        "{params.launch} --log-file {log} {params.command} {params.args} --clusters {input.clusters}"
        "{params.teacher} --threads {threads} --out-dir {params.out_dir} --state-dir {params.state} "
        "--resume auto"


# The no-KD student (`nokd`): no distillation, with its own recipe (common.smk::no_kd).


use rule train_teacher as distill_student with:
    input:
        unpack(training_inputs("student")),
    output:
        best="results/train/{trainset}/student_{variant}/model_best.pth.tar",
        last="results/train/{trainset}/student_{variant}/checkpoint.pth.tar",
        history="results/train/{trainset}/student_{variant}/history.csv",
        steps="results/train/{trainset}/student_{variant}/steps.csv",
    log:
        "results/logs/distill_student_{variant}_{trainset}.log",
    benchmark:
        "results/benchmarks/distill_student_{variant}_{trainset}.tsv"
    resources:
        gpu=gpus("distill"),
        runtime=120,
        mem_mb=8000,
    params:
        launch=launcher("distill"),
        code=lambda wc: code("distill", wc.trainset),
        args=lambda wc: training(
            "distill",
            wc.trainset,
            "student",
            **(no_kd(wc.trainset) if wc.variant == "nokd" else {}),
        ),
        out_dir=subpath(output.best, parent=True),
        state="results/resume/{trainset}/student_{variant}",
        command="distill",
        teacher=lambda wc, input: f" --teacher {input.teacher}",
