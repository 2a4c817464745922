"""Device and precision: bf16 autocast or fp32, channels_last everywhere.

``precision="auto"`` is decided by measurement where the network and its input size are known: a
short timed probe (:func:`measure_precision`: a few forward passes, or forward + backward for
training, of a copy of the network at batch 4 in fp32 and in bf16) picks bf16 only when it is at
least 10 % faster, and the choice is cached per machine, torch version, network and input size in
``$WAKD_CACHE/precision.json`` (default ``~/.cache/wakd``). CPU flags alone do not decide it: on an
EPYC with AVX512-BF16 bf16 made a ResNet18 1.9x faster but a MobileNetV3-Small 2x *slower*; on an
AVX2-only EPYC it made both ~8x slower. Without a network (or input size) at hand, ``auto`` falls
back to the flags: bf16 on CUDA GPUs with bf16 and on CPUs with AMX/AVX512-BF16, else fp32.
channels_last is used everywhere: it also speeds up fp32 oneDNN convolutions on CPU (VGG16 96x128:
96 -> 44 ms per image on an AVX2 EPYC).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch

from wakd.utils import WakdError, atomic_path

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WakdError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise WakdError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up convolutions on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, c, lambda: False)() for c in checks)


def resolve_precision(device: torch.device, precision: str = "auto", model: torch.nn.Module | None = None,
                      size: tuple[int, int] | None = None, train: bool = False) -> str:
    """``auto`` -> ``bf16`` or ``fp32``: measured for ``model`` at ``size`` when both are given
    (:func:`measure_precision`), else ``bf16`` where the device has fast bf16 units."""
    if precision not in ("auto", "bf16", "fp32"):
        raise WakdError(f"precision {precision!r}: expected auto, bf16 or fp32")
    if precision == "auto":
        if model is not None and size is not None:
            return measure_precision(model, device, size, train)
        precision = "bf16" if bf16_is_fast(device) else "fp32"
        log.info("precision auto -> %s on %s (by the device's bf16 support; no network to time)", precision, device)
    return precision


def machine_key(device: torch.device) -> str:
    """What a precision measurement depends on besides the network: the device (GPU name, or CPU
    model and bf16 units), the threads and the torch version."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        model = ""
        try:
            model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name")), "")
        except OSError:
            pass
        what = f"{model or 'cpu'} bf16={int(bf16_is_fast(device))} threads={torch.get_num_threads()}"
    return f"{what} torch={torch.__version__}"


def network_key(model: torch.nn.Module) -> str:
    """The network's structure: its class and every parameter's name and shape (not the values)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, p in model.named_parameters():
        h.update(f"{name}{tuple(p.shape)}".encode())
    return h.hexdigest()[:16]


def _probe_ms(probe: torch.nn.Module, x: torch.Tensor, device: torch.device, precision: str, train: bool,
              repeats: int) -> float:
    """Best of ``repeats`` timed passes (after one warm-up), in milliseconds."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if not train:
                stack.enter_context(torch.no_grad())
            stack.enter_context(autocast(device, precision))
            y = probe(x)
            if train and y.requires_grad:
                y.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    return round(1000 * min(times), 1)


def cache_file() -> Path:
    return Path(os.environ.get("WAKD_CACHE") or Path.home() / ".cache" / "wakd") / "precision.json"


def measure_precision(model: torch.nn.Module, device: torch.device, size: tuple[int, int], train: bool = False,
                      batch: int = 4, repeats: int = 3) -> str:
    """``bf16`` if bf16 autocast runs ``model`` (a copy; forward, + backward with ``train``) at
    least 10 % faster than fp32 at ``size``, else ``fp32``; cached per machine (:func:`cache_file`)."""
    key = f"{machine_key(device)} | {network_key(model)} {size[0]}x{size[1]} {'train' if train else 'infer'}"
    path = cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache and cache[key].get("choice") in ("bf16", "fp32"):
        log.info("precision auto -> %s (measured before on this machine: %s)", cache[key]["choice"],
                 ", ".join(f"{k} {v} ms" for k, v in cache[key]["ms"].items()))
        return cache[key]["choice"]
    probe = prepare(copy.deepcopy(model), device).train(train)
    gen = torch.Generator().manual_seed(0)  # not the global generator: the run's random stream stays the same
    x = to_input(torch.rand(batch, 3, *size, generator=gen), device)
    ms = {}
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            continue
        ms[precision] = _probe_ms(probe, x, device, precision, train, repeats)
    choice = "bf16" if ms.get("bf16", float("inf")) < 0.9 * ms["fp32"] else "fp32"
    log.info("precision auto -> %s (measured %s, batch %d at %dx%d: %s)", choice, "fwd+bwd" if train else "fwd",
             batch, *size, ", ".join(f"{k} {v} ms" for k, v in ms.items()))
    cache[key] = {"choice": choice, "ms": ms}
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    except Exception as exc:  # noqa: BLE001 - a read-only or shared home: measure again next time
        log.warning("precision cache %s not written (%s)", path, exc)
    return choice


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast context for ``precision`` (``auto``, ``bf16`` or ``fp32``) on ``device``."""
    precision = resolve_precision(device, precision) if precision == "auto" else precision
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise WakdError(f"precision {precision!r}: expected bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to ``device`` in channels_last memory format (faster convolutions with bf16)."""
    return model.to(device=device, memory_format=torch.channels_last)


def to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
