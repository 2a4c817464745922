"""``wakd export``: the whole descriptor network as one ONNX or TorchScript file.

The exported graph takes RGB images as floats in [0, 1], ``[B, 3, H, W]`` with a dynamic batch
dimension (H, W: the training size), applies the ImageNet normalisation, backbone, NetVLAD and the
optional PCA whitening, and returns L2-normalised descriptors ``[B, D]``. A JSON note beside the
file (``FILE.json``) says how to prepare the input. The export is checked against PyTorch on random
input (the maximum absolute difference is printed and recorded); an ONNX file is run with
onnxruntime when it is installed (``pip install -e ".[onnx]"``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from wakd.options import Options, option, parse_size
from wakd.utils import WakdError, write_via_memory

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")


@dataclass(kw_only=True)
class ExportConfig(Options):
    """export the descriptor network to ONNX or TorchScript

    One file holding normalisation, backbone, NetVLAD and PCA, input RGB floats in [0, 1] with a
    dynamic batch; checked against PyTorch on random input.
    """

    checkpoint: str = option(help="model_best.pth.tar of 'wakd train' / 'wakd distill'", path="in")
    format: str = option(help="onnx or torchscript", choices=FORMATS)
    out: str = option(help="file to write (.onnx or .pt)", path="out")
    pca: str | None = option(None, "PCA-whitening HDF5 of 'wakd pca' for this network", path="in")
    size: tuple[int, int] | None = option(None, "input HxW (default: the checkpoint's training size)",
                                          parse=parse_size, metavar="HxW")
    opset: int = option(18, "ONNX opset", low=13)
    tolerance: float = option(1e-3, "largest absolute difference to PyTorch accepted", low=0.0)


def run(cfg: ExportConfig) -> dict:
    """Export, check against PyTorch, write the file and its JSON note; return the check."""
    import torch

    from wakd.inference import load_model
    from wakd.provenance import run_info
    from wakd.utils import atomic_outputs

    model = load_model(cfg.checkpoint, cfg.pca).to(memory_format=torch.contiguous_format).float().eval()
    size = cfg.size or (tuple(model.size) if model.size else None)
    if size is None:
        raise WakdError(f"{cfg.checkpoint}: records no training size; give --size HxW")
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, *size, generator=gen)
    check = torch.rand(3, 3, *size, generator=gen)  # another batch size than the example's
    with torch.inference_mode():
        expected = model(check).numpy()
    out = Path(cfg.out)
    # both files are renamed into place only after the check passed (atomic_outputs): a failed
    # export leaves an earlier good one and its note as they were
    with atomic_outputs(out, f"{out}.json") as (tmp, tmp_note):
        if cfg.format == "torchscript":
            got = _torchscript(model, example, check, tmp)
            runtime = "torch.jit"
        else:
            got, runtime = _onnx(model, example, check, tmp, cfg.opset)
        diff = float(abs(got - expected).max()) if got is not None else None
        if diff is not None and diff > cfg.tolerance:
            raise WakdError(f"--out {out}: the export differs from PyTorch by {diff:.2e} (> --tolerance "
                            f"{cfg.tolerance:g}) on random input; not written")
        note = {"format": cfg.format,
                "input": {"name": "images", "shape": ["batch", 3, *size], "dtype": "float32", "layout": "NCHW",
                          "range": "[0, 1] RGB", "resize": f"{size[0]}x{size[1]} (height x width), bilinear",
                          "normalisation": "inside the graph (ImageNet mean/std)"},
                "output": {"name": "descriptors", "shape": ["batch", model.dim], "l2_normalised": True},
                "model": model.info, "check": {"runtime": runtime, "batch": 3, "max_abs_diff": diff},
                "provenance": run_info(cfg.record(), None)}
        tmp_note.write_text(json.dumps(note, indent=2, default=str) + "\n")
    print(f"{out}: {cfg.format}, input [batch, 3, {size[0]}, {size[1]}] RGB in [0, 1] -> [batch, {model.dim}]; "
          + (f"max abs difference to PyTorch {diff:.2e} ({runtime}, batch 3)" if diff is not None
             else "not checked: onnxruntime is not installed"))
    return note["check"]


def _torchscript(model, example, check, tmp: Path):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model, example, check_trace=False)
        write_via_memory(tmp, lambda buffer: torch.jit.save(traced, buffer))  # a full disk: one line, not an abort
        loaded = torch.jit.load(str(tmp))
    with torch.inference_mode():
        return loaded(check).numpy()


def _onnx(model, example, check, tmp: Path, opset: int):
    import warnings

    import torch

    try:
        import onnx  # noqa: F401 - torch's ONNX exporter writes through it
    except ImportError:
        raise WakdError("--format onnx: the onnx package is not installed; pip install -e '.[onnx]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import inspect

        # the TorchScript-based exporter (torch >= 2.5 defaults to the dynamo one, which needs onnxscript)
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        write_via_memory(tmp, lambda buffer: torch.onnx.export(
            model, (example,), buffer, input_names=["images"], output_names=["descriptors"],
            dynamic_axes={"images": {0: "batch"}, "descriptors": {0: "batch"}}, opset_version=opset, **legacy))
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed (pip install -e '.[onnx]'): the ONNX file is written "
                    "unchecked")
        return None, "none (onnxruntime not installed)"
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": check.numpy()})[0], f"onnxruntime {ort.__version__}"
