# Config validation (defaults filled in by the schema) and the helpers every rule file uses.
import shlex
from argparse import Namespace
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wakd.data import DatasetError, locate_dataset
from wakd.fingerprint import PACKAGE_DIR, fingerprint

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as exc:
    # name the key: snakemake prints the schema's message alone
    bad = exc.__context__  # the jsonschema ValidationError snakemake caught
    if not hasattr(bad, "absolute_path"):
        raise
    key = ".".join(map(str, bad.absolute_path)) or "(the whole config)"
    raise WorkflowError(
        f"config key {key}: {bad.message} (config/config.yaml, --configfile, --config; "
        "schema: workflow/schemas/config.schema.yaml)"
    ) from None

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
# (a checkout), else from the installed package. A rule passes code(stage, dataset) as a parameter,
# so an edit to the code that stage runs on that dataset (its modules, their imports, the dataset's
# loader) reruns the stage (Snakemake's params trigger) and what depends on its outputs.
CODE_DIR = Path(workflow.basedir) / "wakd"


def code(stage, *datasets):
    where = CODE_DIR if CODE_DIR.is_dir() else PACKAGE_DIR
    return fingerprint(stage, where, datasets)


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


def launcher(stage):
    """`wakd`, or `torchrun` with one process per GPU for multi-GPU training stages."""
    n = gpus(stage)
    return f"torchrun --standalone --nproc_per_node {n} -m wakd" if n > 1 else "wakd"


# A rule's command-line options are built from config blocks whose keys are the options' names
# (the fields of the stage's options dataclass, wakd/stages/*.py): one `args` parameter per rule.
def options(*blocks, **values):
    """`--key value ...` of the merged blocks (later ones win); empty values are left out and lists
    are spread (`--recall-values 1 5 10`)."""
    merged = {}
    for block in (*blocks, values):
        merged.update(block)
    parts = []
    for key, value in merged.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def backbone(m):
    """Options naming a configured network's backbone (`arch_options:` such as `width`, `weights`)."""
    return {"arch": m["arch"], **m["arch_options"], "weights": m["weights"]}


def network(m):
    return {**backbone(m), "num_clusters": m["num_clusters"]}


def reading(dataset, split=None):
    return {"dataset": dataset, "root": dataset_root(dataset), "split": split}


def running(stage, dataset):
    """Device, precision, seed, image size and loader workers of a network stage. CPU stages say
    so (a GPU visible to a CPU job is not used behind the scheduler's back); GPU stages take the GPU
    torch sees (`auto`: CUDA if present, logged)."""
    return {
        "device": "auto" if gpus(stage) else "cpu",
        "precision": config["precision"],
        "seed": config["seed"],
        "size": setup(dataset)["size"],
        "workers": config["loader_workers"],
    }


def training(stage, trainset, role, **override):
    """All options of `wakd train` / `wakd distill` for the configured teacher or student."""
    m = net(trainset, role)
    init = init_checkpoint({**m["train"], **override}, f"results/train/{trainset}")
    return options(
        network(m),
        reading(trainset),
        running(stage, trainset),
        m["train"],
        override,
        {"init": init} if init else {},
    )


def init_checkpoint(block, folder):
    """`init` in a training block names the student variant (`student_nokd`) whose model_best starts
    every generation (`wakd distill --init`, the WAKD script's `--resume`): its path in `folder`.
    """
    name = block.get("init")
    return f"{folder}/{name}/model_best.pth.tar" if name else None


def student_variant_block(trainset, variant):
    """The training options of the pipeline's student `variant` (`kd`, `nokd`)."""
    m = net(trainset, "student")
    return {**m["train"], **(no_kd(trainset) if variant == "nokd" else {})}


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
    return (
        f"results/clusters/{net_name(m)}_{train_on}_{m['num_clusters']}_desc_cen.hdf5"
    )


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


def weights_inputs(m):
    return [m["weights"]] if m["weights"] else []


# What a stage reads, as named inputs (`input: unpack(...)`).
def training_inputs(role):
    """Training a teacher or student on `trainset`: both splits, its NetVLAD centres, its weights
    file if any, and (student) the trained teacher."""

    def inputs(wc):
        files = {
            "train": dataset_inputs(wc.trainset, "train"),
            "val": dataset_inputs(wc.trainset, "val"),
            "clusters": clusters_path(wc.trainset, role),
            "weights": weights_inputs(net(wc.trainset, role)),
        }
        if role == "student":
            files["teacher"] = checkpoint_path(wc.trainset, "teacher")
            init = init_checkpoint(
                student_variant_block(wc.trainset, wc.variant),
                f"results/train/{wc.trainset}",
            )
            if init:
                files["init"] = init
        return files

    return inputs


def network_inputs(wc):
    """Describing images with `model` (extract on `dataset`, or pca on `trainset`): the split, the
    network's centres, checkpoint, PCA (extract) and weights file, where it has them."""
    dataset = getattr(wc, "dataset", None) or wc.trainset
    train_on, role = trainset(dataset), MODELS[wc.model]
    files = {
        "data": dataset_inputs(dataset, getattr(wc, "split", "train")),
        "clusters": clusters_path(train_on, role),
        "checkpoint": checkpoint_path(train_on, wc.model) or [],
        "weights": weights_inputs(net(dataset, role)),
    }
    if "dataset" in wc.keys():
        files["pca"] = pca_path(dataset, wc.model) or []
    return files


def extract_options(wc, input):
    """Options of `wakd extract` (and of each shard's job) for `model` on a dataset split."""
    return options(
        network(net(wc.dataset, MODELS[wc.model])),
        reading(wc.dataset, wc.split),
        running("extract", wc.dataset),
        {"clusters": input.clusters, "checkpoint": input.checkpoint, "pca": input.pca},
        dtype=config["evaluation"]["dtype"],
    )


def datasets_with_shards(least):
    """Wildcard pattern of the datasets described by one job (`least` 1) or by shards (2)."""
    names = [d for d, n in config["shards"].items() if (n > 1) == (least > 1)]
    return "|".join(names) if names else "(?!)"


def shard_files(wc):
    """The shards that `gather` joins into one descriptor file."""
    n = config["shards"][wc.dataset]
    return [
        f"results/descriptors/shards/{wc.model}_{wc.dataset}_{wc.split}.{i}-of-{n}.hdf5"
        for i in range(1, n + 1)
    ]


def index_entry(name):
    if name not in config["index"]:
        raise WorkflowError(
            f"results/index/{name}.h5: no `index: {name}:` entry in the config "
            f"(configured: {', '.join(config['index']) or 'none'})"
        )
    return config["index"][name]


def index_path(name, key):
    """The path(s) of an `index:` entry ("{synthetic}": the embedded city's folder), as a list."""
    value = index_entry(name)[key]
    values = [value] if isinstance(value, str) else value
    return [v.replace("{synthetic}", SYNTH_DIR) for v in values if v]


def in_city(path):
    return Path(SYNTH_DIR) in (Path(path), *Path(path).parents)


def index_inputs(wc):
    """Indexing own photos: the folder and positions (or the city that holds them), the trained network."""
    entry = index_entry(wc.name)
    (folder,) = index_path(wc.name, "images")
    train_on = "synthetic" if entry["setup"] == "synthetic" else BENCHMARK_TRAIN
    return {
        "images": SYNTH_DIR if in_city(folder) else folder,
        "positions": [p for p in index_path(wc.name, "positions") if not in_city(p)],
        "checkpoint": checkpoint_path(train_on, entry["model"]),
        "pca": pca_path(train_on, entry["model"]) or [],
    }


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
        expand("results/synthetic/{model}_test_map.png", model=MODELS),
        "results/train/synthetic/curves.png",
        "results/synthetic/preview.png",
    ]


# The KD ablation (config `ablation:`, target results/synthetic_ablation.csv): runs of (city seed,
# training seed), each with its own teacher and every student variant distilled from it.
ABLATION = config["ablation"]
ABLATION_DIR = "results/ablation/city{city}/seed{seed}"
# Rows without a variant block: the networks as initialised and the teacher.
ABLATION_FIXED = ["teacher_init", "teacher", "student_init"]


def city_dir(city):
    """The folder of the city rendered with seed `city` (the configured preset and size)."""
    return f"resources/synthetic/{SYNTH['preset']}-seed{city}"


def ablation_runs():
    """(city, training seed) pairs: every seed on the first city, the first `other_city_seeds`
    seeds on each other city."""
    first, *others = [int(c) for c in ABLATION["cities"]]
    seeds = [int(s) for s in ABLATION["seeds"]]
    runs = [(first, s) for s in seeds]
    runs += [(c, s) for c in others for s in seeds[: int(ABLATION["other_city_seeds"])]]
    return list(dict.fromkeys(runs))


def ablation_arms():
    return [*ABLATION_FIXED, *ABLATION["variants"]]


def ablation_role(arm):
    return "teacher" if arm.startswith("teacher") else "student"


def variant_block(name):
    """The options of a student variant, laid over `models.synthetic.student.train`."""
    return ABLATION["variants"][name]


def ablation_init(wc, variant):
    """The checkpoint starting a variant's every generation (`init: <variant>`), in the run's folder."""
    if not variant:
        return None
    return init_checkpoint(
        {**net("synthetic", "student")["train"], **variant_block(variant)}, run_dir(wc)
    )


def run_dir(wc):
    return ABLATION_DIR.format(city=wc.city, seed=wc.seed)


def in_run(wc):
    """What makes a job part of run (city, seed): the city's folder and the training seed."""
    return {"root": city_dir(wc.city), "seed": int(wc.seed)}


def ablation_training(stage, role, wc, variant=None):
    """All options of `wakd train` / `wakd distill` for a network of the run `wc`."""
    m = net("synthetic", role)
    block = variant_block(variant) if variant else {}
    init = ablation_init(wc, variant)
    return options(
        network(m),
        reading("synthetic"),
        running(stage, "synthetic"),
        m["train"],
        block,
        {"init": init} if init else {},
        in_run(wc),
    )


def ablation_checkpoint(arm):
    """The trained weights of an arm, relative to its run folder (None: as initialised)."""
    return None if arm.endswith("_init") else f"{arm}/model_best.pth.tar"


def ablation_recall_files():
    return [
        f"results/ablation/city{c}/seed{s}/{arm}_test_recall.csv"
        for c, s in ablation_runs()
        for arm in ablation_arms()
    ]


def no_kd(trainset):
    """The options of the no-KD student: for the city, the ablation's `student_nokd` recipe
    (chosen by its own search on the validation split), else the student's with no KD terms.
    """
    block = (
        ABLATION["variants"].get("student_nokd", {}) if trainset == "synthetic" else {}
    )
    # no teacher, and a plain run: no generations, from the student's initial weights (the student
    # the authors' setup distils from, `init: student_nokd`)
    plain = {"generations": 1, "pos_num": 0, "init": None}
    return {**block, "kd_weight": 0.0, "rank_weight": 0.0, **plain}


def check_options():
    """Parse the config blocks that become command lines as their jobs will (`wakd synth` for the
    city, `wakd train` for teachers, `wakd distill` for students): a key that is not an option of
    the command, or a bad value, stops the workflow before any job runs, naming the config block.
    """
    from wakd.cli import parse_options
    from wakd.utils import WakdError

    checks = [("synthetic", "synth", options(SYNTH) + " --out x")]
    for name, train_on in (("synthetic", "synthetic"), ("benchmark", BENCHMARK_TRAIN)):
        for role, command in (("teacher", "train"), ("student", "distill")):
            args = training(command, train_on, role) + " --out-dir x"
            if role == "student":
                args += " --teacher x"
            checks.append((f"models.{name}.{role}", command, args))
    if ABLATION["variants"] and "student_nokd" not in ABLATION["variants"]:
        raise WorkflowError(
            "config ablation.variants: no student_nokd (the no-KD student, the baseline of the "
            "ablation's paired differences and the demo's no-KD recipe)"
        )
    for name in ("synthetic", "benchmark"):
        for role in ("teacher", "student"):
            init = config["models"][name][role]["train"].get("init")
            if init and (role == "teacher" or init != "student_nokd"):
                raise WorkflowError(
                    f"config models.{name}.{role}.train.init: {init!r}; expected student_nokd "
                    "(a student starts from the pipeline's no-KD student; a teacher has no init)"
                )
    for variant, block in ABLATION["variants"].items():
        if block.get("init") and block["init"] not in set(ABLATION["variants"]) - {
            variant
        }:
            raise WorkflowError(
                f"config ablation.variants.{variant}: init {block['init']!r} is not another "
                f"variant (expected one of {', '.join(sorted(ABLATION['variants']))})"
            )
    city, seed = ablation_runs()[0]
    for variant in ABLATION["variants"]:
        wc = Namespace(city=city, seed=seed)
        args = ablation_training("distill", "student", wc, variant)
        checks.append(
            (
                f"ablation.variants.{variant}",
                "distill",
                f"{args} --out-dir x --teacher x",
            )
        )
    for where, command, args in checks:
        try:
            parse_options(command, shlex.split(args))
        except WakdError as exc:
            raise WorkflowError(
                f"config {where}: {exc} (the options of `wakd {command}`)"
            )


check_options()
