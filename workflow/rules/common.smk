# Config validation (defaults filled in by the schema) and the helpers every rule file uses.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wakd.data import DatasetError, locate_dataset
from wakd.fingerprint import PACKAGE_DIR, fingerprint

validate(config, schema="../schemas/config.schema.yaml")

SYNTH = config["synthetic"]
SYNTH_DIR = f"resources/synthetic/{SYNTH['preset']}-seed{SYNTH['seed']}"
SPLITS = ["train", "val", "test"]
DATA_ROOT = config["data_root"]
# Public benchmarks (evaluated on their test split) and the dataset their networks are trained on
# (Pittsburgh 30k, as in NetVLAD / OpenIBL / WAKD). The synthetic city trains and tests on itself.
BENCHMARKS = ["pitts30k", "pitts250k", "tokyo247"]
BENCHMARK_TRAIN = "pitts30k"
# What each results table compares: the teacher as initialised (ImageNet weights or random, plus
# NetVLAD from k-means), the trained teacher, the student distilled from it, and the same student
# trained without distillation (the ablation).
MODELS = {
    "teacher_init": "teacher",
    "teacher": "teacher",
    "student_kd": "student",
    "student_nokd": "student",
}


wildcard_constraints:
    model="|".join(MODELS),
    variant="kd|nokd",
    split="train|val|test",
    dataset="|".join(["synthetic", *BENCHMARKS]),
    trainset=f"synthetic|{BENCHMARK_TRAIN}",
    dim=r"\d+",
    k=r"\d+",
    net=r"[A-Za-z0-9_]+(-[A-Za-z0-9_.]+)*",


# The library code each stage runs: hashed from the wakd/ beside this Snakefile when there is one
# (a checkout), else from the installed package. A rule passes code("stage") as a parameter, so an
# edit to that code reruns the stage (Snakemake's params trigger) and what depends on its outputs.
CODE_DIR = Path(workflow.basedir) / "wakd"


def code(stage):
    return fingerprint(stage, CODE_DIR if CODE_DIR.is_dir() else PACKAGE_DIR)


def setup(dataset):
    """The networks and settings of a dataset: `synthetic` for the city, `benchmark` otherwise."""
    return config["models"]["synthetic" if dataset == "synthetic" else "benchmark"]


def trainset(dataset):
    return "synthetic" if dataset == "synthetic" else BENCHMARK_TRAIN


def dataset_root(dataset):
    return SYNTH_DIR if dataset == "synthetic" else DATA_ROOT


def dataset_inputs(dataset, split):
    """The files a stage reading `dataset` depends on; fails at once, saying where the data goes."""
    if dataset == "synthetic":
        return [SYNTH_DIR]
    try:
        return [str(locate_dataset(dataset, split, DATA_ROOT))]
    except DatasetError as exc:
        raise WorkflowError(
            f"{dataset} is not in the data root '{DATA_ROOT}' (config key data_root): {exc}"
        )


def gpus(stage):
    return config["gpus"][stage]


def run_options(stage):
    """Device, precision and seed of a stage. CPU stages say so (a GPU visible to a CPU job is not
    used behind the scheduler's back); GPU stages take the GPU torch sees (`auto`: CUDA if present,
    logged). Precision and seed come from the config (`precision`, `seed`)."""
    device = "--device auto" if gpus(stage) else "--device cpu"
    return f"{device} --precision {config['precision']} --seed {config['seed']}"


def launcher(stage):
    """`wakd`, or `torchrun` with one process per GPU for multi-GPU training stages."""
    n = gpus(stage)
    return (
        f"torchrun --standalone --nproc_per_node {n} -m wakd.cli" if n > 1 else "wakd"
    )


def synth_size_option():
    """`--size HxW` when the config overrides the preset's rendered image size."""
    return f"--size {SYNTH['size']}" if SYNTH["size"] else ""


def size_option(dataset):
    """`--size HxW` resizing every image the networks see, when the setup asks for it."""
    size = setup(dataset)["size"]
    return f"--size {size}" if size else ""


def recall_values():
    return " ".join(str(n) for n in config["evaluation"]["recall_values"])


def net(dataset, role):
    """Config of the teacher or student used for `dataset`."""
    return setup(dataset)[role]


def net_name(m):
    """A configured backbone's name in file names: the arch, plus its options (`resnet18-width0.375`)."""
    opts = sorted(m["arch_options"].items())
    return m["arch"] + "".join(f"-{k.replace('_', '')}{v}" for k, v in opts)


def named_net(dataset, name):
    """The configured network (teacher first) whose `net_name` is `name`."""
    return next(
        net(dataset, r)
        for r in ("teacher", "student")
        if net_name(net(dataset, r)) == name
    )


def clusters_path(train_on, role):
    m = net(train_on, role)
    return f"results/clusters/{net_name(m)}_{train_on}_{m['num_clusters']}_desc_cen.hdf5"


def checkpoint_path(train_on, model):
    """The trained weights behind a result row (None: evaluated as initialised)."""
    if model == "teacher_init":
        return None
    return f"results/train/{train_on}/{model}/model_best.pth.tar"


def pca_path(dataset, model):
    """The PCA-whitening file applied to a trained model's descriptors (None: no PCA)."""
    dim = setup(dataset)["pca_dim"]
    if not dim or model == "teacher_init":
        return None
    return f"results/pca/{model}_{trainset(dataset)}_{dim}.hdf5"


def arch_options(m):
    """Backbone options of a configured network (`arch_options:`, e.g. `--output-stride 16`)."""
    return cli_options(m["arch_options"])


def weights_option(m):
    return f"--weights {m['weights']}" if m["weights"] else ""


def weights_inputs(m):
    return [m["weights"]] if m["weights"] else []


def cli_options(options, **override):
    """`--key value` for each entry of a config block of command options (keys with underscores)."""
    merged = {**options, **override}
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in merged.items())


def model_label(dataset, model):
    return f"{model}-{net(dataset, MODELS[model])['arch']}"


def summary_inputs(dataset):
    rows = expand(f"results/{dataset}/{{model}}_test_recall.csv", model=MODELS)
    return (
        ["results/synthetic_baseline_recall.csv"] if dataset == "synthetic" else []
    ) + rows


def default_targets():
    """What `snakemake --cores all` builds: the synthetic city end to end."""
    return [
        SYNTH_DIR,
        expand("results/synthetic/inspect_{split}.json", split=SPLITS),
        "results/synthetic_recall.csv",
        "results/synthetic_recall.png",
        expand("results/synthetic/{model}_test_predictions.png", model=MODELS),
    ]
