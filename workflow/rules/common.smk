# Config validation (defaults filled in by the schema) and the helpers every rule file uses.
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

SYNTH = config["synthetic"]
SYNTH_DIR = f"resources/synthetic/{SYNTH['preset']}-seed{SYNTH['seed']}"
SPLITS = ["train", "val", "test"]
ROLES = list(config["models"])  # teacher, student


wildcard_constraints:
    role="|".join(ROLES),
    split="train|val|test",


def synth_size_option():
    """`--size HxW` when the config overrides the preset's image size."""
    return f"--size {SYNTH['size']}" if SYNTH["size"] else ""


def recall_values():
    return " ".join(str(n) for n in config["evaluation"]["recall_values"])


def model_cfg(wildcards):
    return config["models"][wildcards.role]


def clusters_file(wildcards):
    m = model_cfg(wildcards)
    return f"results/clusters/{m['arch']}_synthetic_{m['num_clusters']}_desc_cen.hdf5"


def weights_option(arch):
    """`--weights PATH` for the first configured model of this backbone that names a weights file."""
    for m in config["models"].values():
        if m["arch"] == arch and m["weights"]:
            return f"--weights {m['weights']}"
    return ""


def weights_inputs(arch):
    return [m["weights"] for m in config["models"].values() if m["arch"] == arch and m["weights"]][:1]


def model_label(role):
    m = config["models"][role]
    return f"{role}-{m['arch']}-untrained"


def default_targets():
    """What `snakemake --cores all` builds: the synthetic city end to end."""
    return [
        SYNTH_DIR,
        expand("results/synthetic/inspect_{split}.json", split=SPLITS),
        "results/synthetic_recall.csv",
        "results/synthetic_recall.png",
        expand("results/synthetic/{role}_test_predictions.png", role=ROLES),
    ]
