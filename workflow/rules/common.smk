# Config validation (defaults filled in by the schema) and the helpers every rule file uses.
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

SYNTH = config["synthetic"]
SYNTH_DIR = f"resources/synthetic/{SYNTH['preset']}-seed{SYNTH['seed']}"
SPLITS = ["train", "val", "test"]


def synth_size_option():
    """`--size HxW` when the config overrides the preset's image size."""
    return f"--size {SYNTH['size']}" if SYNTH["size"] else ""


def recall_values():
    return " ".join(str(n) for n in config["evaluation"]["recall_values"])


def default_targets():
    """What `snakemake --cores all` builds: the synthetic city end to end."""
    return [
        SYNTH_DIR,
        expand("results/synthetic/inspect_{split}.json", split=SPLITS),
        "results/synthetic_baseline_recall.csv",
    ]
