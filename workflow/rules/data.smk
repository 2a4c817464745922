# The configured city (SYNTH_DIR), or another seed of it (the KD ablation's other cities).
rule synth:
    output:
        city=directory("resources/synthetic/{preset}-seed{city}"),
    log:
        "results/logs/synth_{preset}-seed{city}.log",
    benchmark:
        "results/benchmarks/synth_{preset}-seed{city}.tsv"
    wildcard_constraints:
        preset="tiny|demo|large",
        city=r"\d+",
    conda:
        "../envs/wakd.yaml"
    threads: 4
    params:
        code=code("synth"),
        args=lambda wc: options(SYNTH, preset=wc.preset, seed=wc.city),
    shell:
        "wakd --log-file {log} synth {params.args} --workers {threads} --overwrite --out {output.city}"


rule preview_synthetic:
    input:
        city=SYNTH_DIR,
    output:
        report(
            "results/synthetic/preview.png",
            caption="../report/city.rst",
            category="The city",
            labels={"file": "preview"},
        ),
    log:
        "results/logs/preview_synthetic.log",
    conda:
        "../envs/wakd.yaml"
    params:
        code=code("synth"),
    shell:
        "wakd --log-file {log} synth-preview --root {input.city} --out {output}"


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
