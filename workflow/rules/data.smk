rule synth:
    output:
        city=directory(SYNTH_DIR),
    log:
        "results/logs/synth.log",
    benchmark:
        "results/benchmarks/synth.tsv"
    conda:
        "../envs/wakd.yaml"
    threads: 4
    params:
        code=code("synth"),
        args=options(SYNTH),
    shell:
        "wakd --log-file {log} synth {params.args} --workers {threads} --overwrite --out {output.city}"


rule inspect_synthetic:
    input:
        city=SYNTH_DIR,
    output:
        "results/synthetic/inspect_{split}.json",
    log:
        "results/logs/inspect_synthetic_{split}.log",
    benchmark:
        "results/benchmarks/inspect_synthetic_{split}.tsv"
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("inspect", "synthetic"),
        args=lambda wc: options(reading("synthetic", wc.split)),
    shell:
        "wakd --log-file {log} data inspect {params.args} --out {output}"
