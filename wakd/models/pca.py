"""PCA whitening of global descriptors (32,768-d NetVLAD -> 4,096-d), as in NetVLAD (fitted by ``wakd pca``).

Fitted on descriptors of up to 10,000 training images. With more dimensions than samples
(D > n) the dual (Gram) form is used: eigenvectors of the ``n x n`` matrix ``Xc Xc^T`` give the
principal directions ``U = Xc^T V / sqrt(lambda)``, so no ``D x D`` matrix is ever formed.
Whitening divides each kept component by the square root of its variance (``lambda / (n - 1)``).
Applied as a linear layer ``W x + b`` (``W = diag(1/sqrt(var)) U^T``, ``b = -W mean``), then L2.

HDF5 layout: ``mean [D]``, ``components [k, D]`` (unit rows, by decreasing variance),
``variances [k]``; attribute ``num_samples``.
"""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import torch
from torch import nn

from wakd.utils import WakdError, atomic_path, check_array, hdf5_file, require_file

log = logging.getLogger(__name__)


def fit_pca(x: np.ndarray | torch.Tensor, dim: int, dual: bool | None = None,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of the rows of ``x``.

    Args:
        x: ``[n, D]`` samples.
        dim: components to keep (at most ``min(n - 1, D)``).
        dual: force the dual (True) or primal (False) form; default: dual when ``D > n``.
        device: where to compute the Gram / covariance matrix.

    Returns:
        (mean ``[D]``, components ``[dim, D]``, variances ``[dim]``), float64.
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x).to(device)
    n, d = x.shape
    if dim > min(n - 1, d):
        raise WakdError(f"PCA: cannot keep {dim} components from {n} samples of dimension {d} "
                        f"(at most {min(n - 1, d)}); use more images or a smaller --dim")
    mean = x.mean(0)
    xc = x - mean
    dual = d > n if dual is None else dual
    if dual:
        gram = (xc @ xc.T).double()
        lam, v = torch.linalg.eigh(gram)
        lam, v = lam.flip(0)[:dim], v.flip(1)[:, :dim]
        comps = (xc.T.double() @ v) / lam.clamp_min(1e-12).sqrt()  # [D, dim], unit columns
    else:
        cov = (xc.T @ xc).double()
        lam, u = torch.linalg.eigh(cov)
        lam, comps = lam.flip(0)[:dim], u.flip(1)[:, :dim]
    var = lam / (n - 1)
    return mean.double().cpu().numpy(), comps.T.contiguous().cpu().numpy(), var.cpu().numpy()


def pca_linear(mean: np.ndarray, components: np.ndarray, variances: np.ndarray, eps: float = 1e-12) -> nn.Linear:
    """The whitening projection as an ``nn.Linear`` (``D -> k``)."""
    w = components / np.sqrt(variances + eps)[:, None]
    layer = nn.Linear(components.shape[1], components.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w).float())
        layer.bias.copy_(torch.from_numpy(-(w @ mean)).float())
    return layer


def save_pca(path: str | os.PathLike, mean: np.ndarray, components: np.ndarray, variances: np.ndarray,
             num_samples: int, attrs: dict | None = None) -> None:
    """Write the whitening file (atomically); ``attrs`` are added to its attributes."""
    with atomic_path(path) as tmp:
        with hdf5_file(tmp) as f:
            f.create_dataset("mean", data=mean.astype(np.float32))
            f.create_dataset("components", data=components.astype(np.float32))
            f.create_dataset("variances", data=variances.astype(np.float64))
            f.attrs.update({"num_samples": num_samples, **(attrs or {})})


def load_pca_layer(path: str | os.PathLike, expected_dim: int | None = None) -> nn.Linear:
    """Read a PCA HDF5 written by :func:`save_pca` as a linear layer."""
    require_file(path, "a PCA-whitening HDF5 file (wakd pca)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("mean", "components", "variances") if k not in f]
            if missing:
                raise WakdError(f"{path}: PCA file lacks dataset(s) {', '.join(missing)}")
            mean = check_array(np.asarray(f["mean"], dtype=np.float64), f"{path}: /mean", (None,))
            comps = check_array(np.asarray(f["components"], dtype=np.float64), f"{path}: /components",
                                (None, len(mean)))
            var = check_array(np.asarray(f["variances"], dtype=np.float64), f"{path}: /variances", (len(comps),))
    except OSError as exc:
        raise WakdError(f"{path}: not a readable PCA HDF5 file ({exc})") from None
    if len(comps) < 1:
        raise WakdError(f"{path}: /components is empty; expected at least one component")
    if expected_dim is not None and comps.shape[1] != expected_dim:
        raise WakdError(f"{path}: PCA input dimension {comps.shape[1]} does not match the descriptor's "
                        f"{expected_dim}")
    return pca_linear(mean, comps, var)
