"""Building a full EmbedNet (backbone + NetVLAD + PCA) from local files.

:func:`network_from_checkpoint` is the one way from a checkpoint file to a network: the frozen
teacher of ``wakd distill``, ``--checkpoint`` of ``extract`` / ``pca`` (through
:func:`build_embednet`) and :func:`wakd.inference.load_model` (``index``, ``query``, ``export``).
:func:`fill_network` is the one way a network takes every tensor of a file: those, ``--init`` and
``--resume``. Files are read through :func:`wakd.models.weights.load_trusted` only.
"""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import torch

from wakd.models import ARCH_DEFAULTS
from wakd.models.backbones import create_model
from wakd.models.netvlad import EmbedNet, NetVLAD
from wakd.models.weights import load_option_checkpoint, load_state, load_trusted, load_weights, split_checkpoint
from wakd.utils import WakdError, check_array, require_file

log = logging.getLogger(__name__)


def read_clusters(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(centroids ``[K, D]``, descriptors ``[n, D]``) from a ``*_desc_cen.hdf5`` file.

    The layout is that of the reference pipeline's files (datasets ``centroids`` and
    ``descriptors``), so ``vgg16_pitts_64_desc_cen.hdf5`` from pytorch-NetVlad/OpenIBL works too.
    """
    require_file(path, "a *_desc_cen.hdf5 cluster file (wakd cluster)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("centroids", "descriptors") if k not in f]
            if missing:
                raise WakdError(f"{path}: HDF5 file lacks dataset(s) {', '.join(missing)} "
                                f"(found: {', '.join(f.keys()) or 'none'})")
            cen = check_array(np.asarray(f["centroids"], dtype=np.float32), f"{path}: /centroids", (None, None))
            desc = check_array(np.asarray(f["descriptors"], dtype=np.float32), f"{path}: /descriptors",
                               (None, cen.shape[1]))
    except OSError as exc:
        raise WakdError(f"{path}: not a readable HDF5 cluster file ({exc})") from None
    if len(desc) < 1:
        raise WakdError(f"{path}: /descriptors is empty; expected the sampled local features")
    return cen, desc


def build_embednet(arch: str, num_clusters: int = 64, clusters: str | os.PathLike | None = None,
                   weights: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                   pca: str | os.PathLike | None = None, **arch_kwargs) -> EmbedNet:
    """Build backbone + NetVLAD (+ PCA).

    Args:
        arch: registered backbone name.
        num_clusters: NetVLAD K.
        clusters: ``*_desc_cen.hdf5`` to initialise NetVLAD from (the paper's initialisation).
        weights: local pretrained weights for the backbone (torchvision or OpenIBL format).
        checkpoint: a full-model checkpoint (wakd or OpenIBL), loaded last.
        pca: a PCA-whitening HDF5 from ``wakd pca``.
        **arch_kwargs: options of the backbone factory (e.g. ``last_layer=4``).
    """
    if checkpoint is not None:  # the whole network comes from the file
        return network_from_checkpoint(checkpoint, flag="--checkpoint", arch=arch, num_clusters=num_clusters,
                                       arch_kwargs=arch_kwargs, pca=pca)[0]
    backbone = create_model(arch, **arch_kwargs)
    if weights is not None:
        load_weights(backbone, weights)
    else:
        log.warning("%s: no weights file given, the backbone starts from random initialisation", arch)
    return _embednet(backbone, arch, num_clusters, clusters, pca)


def _embednet(backbone, arch: str, num_clusters: int, clusters: str | os.PathLike | None = None,
              pca: str | os.PathLike | None = None) -> EmbedNet:
    """``backbone`` + NetVLAD (K ``num_clusters``, initialised from ``clusters`` if given) + PCA from ``pca``."""
    pool = NetVLAD(num_clusters, backbone.out_channels)
    if clusters is not None:
        centroids, descriptors = read_clusters(clusters)
        if centroids.shape != (num_clusters, backbone.out_channels):
            raise WakdError(f"{clusters}: centroids have shape {centroids.shape}; {arch} with K={num_clusters} "
                            f"needs ({num_clusters}, {backbone.out_channels})")
        alpha = pool.init_from_clusters(centroids, descriptors)
        log.info("NetVLAD initialised from %s (alpha %.1f)", clusters, alpha)
    pca_layer = None
    if pca is not None:
        from wakd.models.pca import load_pca_layer

        pca_layer = load_pca_layer(pca, expected_dim=pool.out_dim)
    return EmbedNet(backbone, pool, pca_layer)


#: the options that name a network's architecture, per caller: (backbone, K, backbone options)
OPTION_NAMES = {"--checkpoint": ("--arch", "--num-clusters", "the backbone options"),
                "--teacher": ("--teacher-arch", "--teacher-num-clusters", "--teacher-last-layer")}


def _contradicted(given: dict | None, recorded: object) -> dict:
    """The backbone options ``given`` away from their defaults that a checkpoint records otherwise (an
    option it does not record was at its default)."""
    if not given or not isinstance(recorded, dict):
        return {}
    return {k: v for k, v in given.items()
            if v != ARCH_DEFAULTS.get(k, object()) and recorded.get(k, ARCH_DEFAULTS.get(k)) != v}


def network_from_checkpoint(path: str | os.PathLike, *, flag: str = "", arch: str | None = None,
                            num_clusters: int | None = None, arch_kwargs: dict | None = None,
                            pca: str | os.PathLike | None = None, exact: bool = False, missing: str = "",
                            unrecorded: str = "") -> tuple[EmbedNet, dict]:
    """The network a checkpoint file holds, every tensor of it from the file (read once).

    A wakd checkpoint records its backbone, backbone options and K (``config``): those it records
    are used, and ``arch`` / ``num_clusters`` / ``arch_kwargs`` (those away from their defaults) given
    otherwise are refused, named by the options of ``flag`` (:data:`OPTION_NAMES`). A foreign checkpoint
    (OpenIBL / WAKD layout) needs them given. ``pca``: a whitening HDF5 of ``wakd pca`` appended to the network.

    Args:
        flag: the option naming the file (``--teacher``, ``--checkpoint``) that prefixes every refusal;
            empty for a file given as such (``wakd.load_model``).
        exact: also refuse tensors the network has no place for (a file of another network).
        missing: appended to the message for a file that is not there.
        unrecorded: the message for a file that does not record its network (default: which options to give).

    Returns:
        The network (train mode, as built) and what the file holds (``config``, ``epoch``, ...; ``{}`` for
        a bare state dict).
    """
    what = f"{flag} {path}" if flag else str(path)
    raw = load_option_checkpoint(flag, path, missing) if flag else load_trusted(path, "a weights-only checkpoint")
    saved = raw["config"] if isinstance(raw, dict) and isinstance(raw.get("config"), dict) else {}
    names = OPTION_NAMES.get(flag, ("arch", "num_clusters", "arch_kwargs"))
    noun = "teacher" if flag == "--teacher" else "network"
    for name, key, given in ((names[0], "arch", arch), (names[1], "num_clusters", num_clusters)):
        if given is not None and saved.get(key) is not None and given != saved[key]:
            raise WakdError(f"{name} {given}: {path} records a {saved.get('arch')} K={saved.get('num_clusters')} "
                            f"{noun} ({key} {saved[key]}); leave {name} out for a wakd checkpoint (it is read from "
                            f"the file), or give the {noun} it names")
    if wrong := _contradicted(arch_kwargs, saved.get("arch_kwargs")):
        recorded = saved["arch_kwargs"] or "at their defaults"
        raise WakdError(f"{names[2]} {wrong}: {path} records backbone options {recorded}; leave them out for a wakd "
                        "checkpoint (they are read from the file)")
    arch, num_clusters = saved.get("arch") or arch, saved.get("num_clusters") or num_clusters
    if not arch or not num_clusters:
        raise WakdError(unrecorded or f"{what}: the checkpoint does not record its architecture; give {names[0]} "
                                      f"and {names[1]}")
    state, config = split_checkpoint(raw, what)
    kwargs = saved["arch_kwargs"] if isinstance(saved.get("arch_kwargs"), dict) else (arch_kwargs or {})
    try:
        backbone = create_model(arch, **kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise WakdError(f"{what}: names backbone {arch!r} with {kwargs}, which wakd cannot build ({exc})") from None
    net = _embednet(backbone, arch, int(num_clusters), pca=pca)
    fill_network(net, state, config, what, f"a {arch} K={num_clusters} network", exact=exact,
                 from_elsewhere=("pca.",) if pca is not None else ())
    return net, raw if isinstance(raw, dict) else {}


def fill_network(model: torch.nn.Module, state: dict[str, torch.Tensor], config: dict | None, what: str,
                 network: str, exact: bool = False, from_elsewhere: tuple[str, ...] = ()) -> None:
    """Load ``state`` (read from ``what``) into ``model``, refusing a file that lacks any of its tensors
    (but those under ``from_elsewhere``), one of another shape, a different ``--input-norm``, and with
    ``exact`` one holding tensors ``model`` has no place for."""
    report = load_state(model, state, config, what, network)
    lacking = [k for k in report["missing"] if not k.startswith(from_elsewhere)]
    if lacking:
        raise WakdError(f"{what}: the checkpoint lacks {len(lacking)} tensor(s) of {network} (first: "
                        f"{', '.join(lacking[:4])})")
    if exact and report["unused"]:
        raise WakdError(f"{what}: holds {len(report['unused'])} tensor(s) that {network} has no place for (first: "
                        f"{', '.join(report['unused'][:4])}): the file is of another network")

