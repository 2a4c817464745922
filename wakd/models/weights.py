"""Loading weights from local files only, safely (``torch.load(weights_only=True)``).

Accepted files:

* a torchvision state dict (``vgg16-397923af.pth``, ``mobilenet_v3_large-8738ca79.pth``, ...):
  keys as in torchvision (``features.0.weight``); classifier keys are reported as unused;
* an OpenIBL / WAKD checkpoint (``.pth.tar``) holding ``{"state_dict": ...}`` with keys possibly
  prefixed ``module.`` (DataParallel) and named ``base_model.*`` / ``net_vlad.*``; OpenIBL's VGG
  trunk ``base.N.*`` maps onto ``features.N.*``;
* a wakd checkpoint (``{"model": state_dict, ...}``).

A file holding anything but tensors (e.g. a pickle that would run code) is refused.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from wakd.utils import WakdError

log = logging.getLogger(__name__)

# (prefix in the file, prefix in our modules), tried in order after stripping "module."
_ALIASES = (("base_model.base.", "backbone.features."), ("base_model.", "backbone."), ("net_vlad.", "pool."),
            ("encoder.", "backbone.features."))


def load_trusted(path: str | os.PathLike, what: str = "a plain state dict of tensors") -> object:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain values only, never
    arbitrary pickled objects.

    Raises:
        WakdError: missing file, or refused content (naming the first line of torch's reason).
    """
    path = Path(path)
    if not path.is_file():
        raise WakdError(f"{path}: no such file; expected {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WakdError(f"{path}: refused: not {what} (torch.load with weights_only=True failed: {first})") from None


def load_option_checkpoint(flag: str, path: str | os.PathLike, missing: str = "") -> object:
    """:func:`load_trusted` of the checkpoint an option names, every refusal prefixed with the option
    (``--teacher``, ``--resume``); ``missing`` is appended to the message for a file that is not there."""
    if not os.path.isfile(path):
        raise WakdError(f"{flag} {path}: no such checkpoint{missing}")
    try:
        return load_trusted(path, "a weights-only checkpoint")
    except WakdError as exc:
        raise WakdError(f"{flag} {exc}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from ``path`` without unpickling arbitrary objects.

    Raises:
        WakdError: missing file, refused content, or no state dict inside.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensor state dict of ``path`` and the options it records (a wakd checkpoint's ``config``, else None)."""
    return split_checkpoint(load_trusted(path, "a plain state dict of tensors"), path)


def split_checkpoint(obj: object, path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """:func:`read_checkpoint` of an object already read by :func:`load_trusted` (``path`` names it in errors)."""
    config = obj.get("config") if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WakdError(f"{path}: expected a state dict (name -> tensor), or a checkpoint with 'state_dict' "
                        f"or 'model'; got {type(obj).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}, config


def check_input_norm(model: nn.Module, config: dict | None, path: str | os.PathLike) -> None:
    """Refuse weights trained with another ``--input-norm`` than ``model``'s (a parameter-free option: no tensor
    shape would tell)."""
    if not config or not isinstance(config.get("arch_kwargs"), dict):
        return
    recorded = config["arch_kwargs"].get("input_norm", "none")
    mine = getattr(getattr(model, "backbone", model), "input_norm", "none")
    if recorded != mine:
        raise WakdError(f"{path}: trained with --input-norm {recorded}, but this network is built with --input-norm "
                        f"{mine}; expected the backbone options it was trained with")


def _candidates(key: str):
    yield key
    for old, new in _ALIASES:
        if key.startswith(old):
            yield new + key[len(old):]
    if key.startswith("base."):  # OpenIBL's VGG trunk
        yield "backbone.features." + key[len("base."):]


def _rename(key: str, target: set[str], scope: str) -> str:
    """Map a file key onto the model's key space (``scope``: 'backbone.' for a full EmbedNet)."""
    for cand in _candidates(key):
        for name in (cand, scope + cand, cand.removeprefix("backbone.")):
            if name in target:
                return name
    return key


def load_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load a local weights file into ``model`` (a backbone or a full EmbedNet).

    Matching tensors are copied; keys the model lacks are reported as unused, model tensors the
    file lacks as missing (they keep their initialisation).

    Returns:
        ``{"loaded": [...], "missing": [...], "unused": [...]}``.

    Raises:
        WakdError: refused file, a shape mismatch (named), or no tensor matching the model at all.
    """
    state, config = read_checkpoint(path)
    return load_state(model, state, config, path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], config: dict | None,
               path: str | os.PathLike, network: str = "") -> dict[str, list[str]]:
    """:func:`load_weights` of a state dict already read (:func:`read_checkpoint`) from ``path``
    (``network``: what the model is, named when a tensor does not fit it)."""
    check_input_norm(model, config, path)
    own = model.state_dict()
    target = set(own)
    scope = "backbone." if any(k.startswith("backbone.") for k in target) else ""
    mapped, unused = {}, []
    for key, tensor in state.items():
        name = _rename(key, target, scope)
        if name not in target:
            unused.append(key)
            continue
        if own[name].shape != tensor.shape:
            raise WakdError(f"{path}: its tensors do not fit {network or 'the model'}: '{key}' has shape "
                            f"{tuple(tensor.shape)} but the model's '{name}' has {tuple(own[name].shape)} "
                            "(wrong architecture or options?)")
        mapped[name] = tensor
    if not mapped:
        raise WakdError(f"{path}: no tensor matches the model ({type(model).__name__}); first keys in the file: "
                        f"{', '.join(list(state)[:5])}")
    model.load_state_dict(mapped, strict=False)
    missing = sorted(target - set(mapped) - {k for k in target if k.endswith("num_batches_tracked")})
    log.info("loaded %d tensors from %s; %d missing%s; %d unused%s", len(mapped), path, len(missing),
             f" ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''})" if missing else "",
             len(unused), f" ({', '.join(unused[:6])}{', ...' if len(unused) > 6 else ''})" if unused else "")
    return {"loaded": sorted(mapped), "missing": missing, "unused": unused}
