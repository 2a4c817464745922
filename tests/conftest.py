"""Shared fixtures: small files in the real dataset layouts, written here with scipy and PIL."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

PITTS_ORDER = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries",
               "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")
TOKYOTM_ORDER = ("whichSet", "dbImageFns", "utmDb", "dbTimeStamp", "qImageFns", "utmQ", "qTimeStamp",
                 "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")


def cell(strings):
    """A MATLAB N x 1 cell array of char rows, as scipy.io.savemat writes it."""
    arr = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        arr[i, 0] = s
    return arr


def write_db_struct(path: Path, values: dict, order=PITTS_ORDER, names=None) -> Path:
    """Write ``dbStruct`` like the MATLAB originals: a 1x1 struct, cells N x 1, utm 2 x N."""
    names = names or order
    struct = np.empty((1, 1), dtype=[(n, object) for n in names])
    for name, key in zip(names, order):
        v = values[key]
        if key.endswith("ImageFns"):
            v = cell(v)
        elif key.startswith("utm"):
            v = np.asarray(v, dtype=np.float64).reshape(-1, 2).T
        elif key.endswith("TimeStamp"):
            v = np.asarray(v, dtype=np.float64).reshape(1, -1)
        elif key != "whichSet":
            v = np.array([[float(v)]])
        struct[0, 0][name] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"dbStruct": struct})
    return path


def write_image(path: Path, value: int = 128, size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def pitts_values(split="test"):
    """Two panoramas (2 yaws each) 100 m apart and three queries: near pano 0, near pano 1, far."""
    db = ["000/000000_pitch1_yaw1.jpg", "000/000000_pitch1_yaw2.jpg",
          "000/000001_pitch1_yaw1.jpg", "000/000001_pitch1_yaw2.jpg"]
    utm_db = [[585000.0, 4477000.0]] * 2 + [[585100.0, 4477000.0]] * 2
    q = ["000/000000_pitch1_yaw3.jpg", "000/000001_pitch1_yaw4.jpg", "000/000002_pitch1_yaw1.jpg"]
    utm_q = [[585008.0, 4477000.0], [585100.0, 4477020.0], [585500.0, 4477500.0]]
    return {"whichSet": split, "dbImageFns": db, "utmDb": utm_db, "qImageFns": q, "utmQ": utm_q,
            "numImages": len(db), "numQueries": len(q), "posDistThr": 25, "posDistSqThr": 625,
            "nonTrivPosDistSqThr": 100}


def make_pitts_root(root: Path, scale="30k", split="test", values=None, layout="openibl") -> Path:
    """A data root holding one Pittsburgh split in the OpenIBL layout (or the original one)."""
    values = values or pitts_values(split)
    if layout == "openibl":
        base = root / "pitts" / "raw"
        mat, db_dir, q_dir = base / f"pitts{scale}_{split}.mat", base / "Pittsburgh/images", base / "Pittsburgh/queries"
    else:
        mat, db_dir, q_dir = (root / "Pittsburgh/datasets" / f"pitts{scale}_{split}.mat", root / "Pittsburgh",
                              root / "Pittsburgh/queries_real")
    write_db_struct(mat, values)
    for folder, names in ((db_dir, values["dbImageFns"]), (q_dir, values["qImageFns"])):
        for p in names:
            if ".." not in p:  # never write outside the test folder
                write_image(folder / p)
    return root


@pytest.fixture
def pitts_root(tmp_path):
    return make_pitts_root(tmp_path / "data")


@pytest.fixture(scope="session", autouse=True)
def precision_cache(tmp_path_factory):
    """`--precision auto` measurements go to a cache of this test session (and its subprocesses),
    not to the user's ~/.cache/wakd."""
    folder = tmp_path_factory.mktemp("wakd-cache")
    old = os.environ.get("WAKD_CACHE")
    os.environ["WAKD_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("WAKD_CACHE", None)
    else:
        os.environ["WAKD_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """The ``tiny`` synthetic city, rendered once per test session."""
    from wakd.synth.generate import generate

    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(out, preset="tiny", seed=0, workers=min(2, os.cpu_count() or 1))
    return out


REPO = Path(__file__).resolve().parents[1]
# The tiny pipeline (every stage in seconds) that the workflow and SLURM tests run.
TINY_CONFIG = REPO / ".test/config/config.yaml"


def slurm_cluster_possible() -> bool:
    """Whether tests/test_slurm.py can bring up its one-node cluster here (Linux, root, apt-get)."""
    import shutil
    import sys

    return sys.platform == "linux" and os.geteuid() == 0 and bool(shutil.which("apt-get"))


def pytest_collection_modifyitems(config, items):
    """The SLURM test runs last: it waits for the pipeline :func:`slurm_pipeline` started with the session."""
    slurm = [item for item in items if item.get_closest_marker("slurm")]
    items[:] = [item for item in items if not item.get_closest_marker("slurm")] + slurm


@pytest.fixture(scope="session", autouse=True)
def slurm_pipeline(request, tmp_path_factory):
    """The tiny pipeline on a one-node SLURM cluster (tests/slurm_pipeline.py), started in the background
    when the session begins if a SLURM test is selected and the cluster can be brought up here; else None."""
    if not any(item.get_closest_marker("slurm") for item in request.session.items) or not slurm_cluster_possible():
        yield None
        return
    from slurm_pipeline import SlurmPipeline

    run = SlurmPipeline(tmp_path_factory.mktemp("slurm-run"))
    yield run
    run.stop()


def tiny_workflow_config() -> dict:
    """The tiny pipeline's config, ``.test/config/config.yaml``, as a fresh dict the caller may change."""
    import yaml

    return yaml.safe_load(TINY_CONFIG.read_text())


def workflow_copy(dest: Path, config: dict) -> Path:
    """Copy the workflow, ``.test/`` and library to ``dest`` and write ``config`` as ``config/tiny.yaml`` there."""
    import shutil

    import yaml

    dest.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "config", ".test", "wakd", "profiles", "slurm", "environment.yml"):
        src = REPO / item
        if src.is_symlink():  # `slurm` -> profiles/slurm, so that `snakemake --profile slurm` works
            (dest / item).symlink_to(src.readlink())
        else:
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    (dest / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    return dest


# a trained tiny teacher and the student's NetVLAD centres, shared by the distillation tests
@pytest.fixture(scope="session")
def trained_teacher(tiny_city, tmp_path_factory):
    from wakd.stages.cluster import ClusterConfig
    from wakd.stages.cluster import run as run_cluster
    from wakd.stages.train import TrainConfig, train

    base = tmp_path_factory.mktemp("teacher")
    clu = base / "resnet18_8.hdf5"
    run_cluster(ClusterConfig(arch="resnet18", dataset="synthetic", root=str(tiny_city),
                              out=str(clu), num_clusters=8, num_images=60, per_image=20, workers=0))
    train(TrainConfig(arch="resnet18", dataset="synthetic", root=str(tiny_city), out_dir=str(base / "run"),
                      num_clusters=8, clusters=str(clu), epochs=1, optimizer="adam", lr=1e-3, weight_decay=0.0,
                      tuples_per_batch=4, neg_num=4, neg_pool=60, cache_size=40, queries_per_epoch=32, workers=0,
                      precision="fp32", recall_values=(1, 5)))
    return base / "run/model_best.pth.tar"


@pytest.fixture(scope="session")
def student_clusters(tiny_city, tmp_path_factory):
    from wakd.stages.cluster import ClusterConfig
    from wakd.stages.cluster import run as run_cluster

    out = tmp_path_factory.mktemp("sclu") / "mobilenetv3_small_8.hdf5"
    run_cluster(ClusterConfig(arch="mobilenetv3_small", dataset="synthetic", root=str(tiny_city),
                              out=str(out), num_clusters=8, num_images=60, per_image=6,
                workers=0))
    return out


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict's names and tensor bytes: equal digests = bitwise equal weights."""
    import hashlib

    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def teacher_clusters(tiny_city, tmp_path_factory):
    """NetVLAD centres (K = 8) of a resnet18 on the tiny city: 100 images x 20 locations."""
    from wakd.stages.cluster import ClusterConfig
    from wakd.stages.cluster import run as run_cluster

    out = tmp_path_factory.mktemp("clu") / "resnet18_synthetic_8_desc_cen.hdf5"
    run_cluster(ClusterConfig(arch="resnet18", dataset="synthetic", root=str(tiny_city), out=str(out),
                              num_clusters=8, num_images=100, per_image=20, workers=0))
    return out
