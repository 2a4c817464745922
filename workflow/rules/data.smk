rule synth:
    output:
        city=directory(SYNTH_DIR),
    log:
        "results/logs/synth.log",
    benchmark:
        "results/benchmarks/synth.tsv"
    conda:
        "../../environment.yml"
    threads: 4
    params:
        code=code("synth"),
        preset=SYNTH["preset"],
        seed=SYNTH["seed"],
        size=synth_size_option(),
    shell:
        "wakd --log-file {log} synth --out {output.city} --preset {params.preset} --seed {params.seed} "
        "{params.size} --workers {threads} --overwrite"


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
        "../../environment.yml"
    params:
        code=code("inspect"),
    shell:
        "wakd --log-file {log} data inspect --dataset synthetic --split {wildcards.split} "
        "--root {input.city} --out {output}"
