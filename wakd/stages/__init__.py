"""The pipeline's stages: one module per ``wakd`` command.

Each stage module declares its options once, as a keyword-only dataclass built from the shared
option groups of :mod:`wakd.options`, and does the whole stage in ``run(cfg)``: reading inputs,
building models, writing outputs and their provenance. :mod:`wakd.cli` only generates the
subcommands from :data:`COMMANDS` and calls ``run``; a Snakemake rule calls the subcommand; the
rule's code fingerprint (:mod:`wakd.fingerprint`) is the closure of the stage module's imports.

===================  ========================  ===========================================
command              module                    what it writes
===================  ========================  ===========================================
synth, synth-preview :mod:`.synth`             the synthetic city (Pittsburgh layout)
data inspect         :mod:`.inspect`           a split's summary (JSON)
baseline             :mod:`.baseline`          Recall@N of simple descriptors (CSV)
cluster              :mod:`.cluster`           NetVLAD centres (``*_desc_cen.hdf5``)
train                :mod:`.train`             teacher checkpoints, history
distill              :mod:`.distill`           student checkpoints, history, steps
pca                  :mod:`.pca`               PCA whitening (HDF5)
extract              :mod:`.extract`           descriptors (HDF5, :mod:`wakd.descriptors`)
gather               :mod:`.gather`            descriptors joined from ``extract --shard``
evaluate             :mod:`.evaluate`          Recall@N table, predictions, figure
summarize            :mod:`.summarize`         combined table, Recall@N figure
ablation             :mod:`.ablation`          the KD ablation table: mean, CI, paired differences
curves               :mod:`.curves`            training curves of runs (PNG)
index                :mod:`.index`             an index of anyone's photos (:mod:`wakd.index`)
query                :mod:`.query`             the index's closest photos to query images
export               :mod:`.export`            the network as ONNX / TorchScript
===================  ========================  ===========================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A ``wakd`` subcommand: ``name`` (two words for a nested one), the module holding its options
    dataclass ``config`` and its ``function``, and the pipeline ``stage`` it implements."""

    name: str
    module: str
    config: str
    function: str = "run"
    stage: str | None = None

    def load(self) -> tuple[type, Callable]:
        """(the options dataclass, the function running the command), importing only this module."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config), getattr(mod, self.function)


COMMANDS: tuple[Command, ...] = (
    Command("synth", "wakd.stages.synth", "SynthConfig", stage="synth"),
    Command("synth-preview", "wakd.stages.synth", "PreviewConfig", "run_preview", stage="synth"),
    Command("data inspect", "wakd.stages.inspect", "InspectConfig", stage="inspect"),
    Command("baseline", "wakd.stages.baseline", "BaselineConfig", stage="baseline"),
    Command("cluster", "wakd.stages.cluster", "ClusterConfig", stage="cluster"),
    Command("train", "wakd.stages.train", "TrainConfig", stage="train"),
    Command("distill", "wakd.stages.distill", "DistillConfig", stage="distill"),
    Command("pca", "wakd.stages.pca", "PcaConfig", stage="pca"),
    Command("extract", "wakd.stages.extract", "ExtractConfig", stage="extract"),
    Command("gather", "wakd.stages.gather", "GatherConfig", stage="gather"),
    Command("evaluate", "wakd.stages.evaluate", "EvaluateConfig", stage="evaluate"),
    Command("summarize", "wakd.stages.summarize", "SummarizeConfig", stage="summarize"),
    Command("ablation", "wakd.stages.ablation", "AblationConfig", stage="ablation"),
    Command("curves", "wakd.stages.curves", "CurvesConfig", stage="curves"),
    Command("index", "wakd.stages.index", "IndexConfig", stage="index"),
    Command("query", "wakd.stages.query", "QueryConfig"),
    Command("export", "wakd.stages.export", "ExportConfig"),
    Command("fingerprint", "wakd.fingerprint", "FingerprintConfig"),
)

#: pipeline stage -> the modules it runs (what its code fingerprint hashes, with their imports)
STAGES: dict[str, tuple[str, ...]] = {}
for _c in COMMANDS:
    if _c.stage and _c.module not in STAGES.get(_c.stage, ()):
        STAGES[_c.stage] = (*STAGES.get(_c.stage, ()), _c.module)
