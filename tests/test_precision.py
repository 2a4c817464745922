"""`--precision auto` by measurement: a timed probe per network, input size and machine, cached."""

import json
import logging

import pytest
import torch

from wakd import device as dev
from wakd.device import cache_file, measure_precision, resolve_precision

CPU = torch.device("cpu")


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WAKD_CACHE", str(tmp_path))
    return tmp_path / "precision.json"


@pytest.mark.parametrize("fp32,bf16,choice", [(10.0, 5.0, "bf16"), (10.0, 9.5, "fp32"), (10.0, 20.0, "fp32")])
def test_bf16_only_when_measured_at_least_10_percent_faster(fresh_cache, monkeypatch, fp32, bf16, choice):
    timed = []

    def fake(probe, x, device, precision, train, repeats):
        timed.append((precision, tuple(x.shape), train))
        return {"fp32": fp32, "bf16": bf16}[precision]

    monkeypatch.setattr(dev, "_probe_ms", fake)
    assert resolve_precision(CPU, "auto", model=_net(), size=(32, 40), train=True) == choice
    assert timed == [("fp32", (4, 3, 32, 40), True), ("bf16", (4, 3, 32, 40), True)]
    entry = next(iter(json.loads(fresh_cache.read_text()).values()))
    assert entry == {"choice": choice, "ms": {"fp32": fp32, "bf16": bf16}}


def test_the_choice_is_cached_per_network_size_and_mode(fresh_cache, monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(dev, "_probe_ms", lambda *a: calls.append(a[3]) or {"fp32": 10.0, "bf16": 5.0}[a[3]])
    net = _net()
    assert measure_precision(net, CPU, (32, 40)) == "bf16" and len(calls) == 2
    with caplog.at_level(logging.INFO, logger="wakd.device"):
        assert measure_precision(_net(), CPU, (32, 40)) == "bf16"  # same structure, other weights: cached
    assert len(calls) == 2 and "measured before" in caplog.text
    measure_precision(net, CPU, (32, 40), train=True)  # training is timed apart
    measure_precision(net, CPU, (48, 40))  # so is another size
    wider = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Flatten())
    measure_precision(wider, CPU, (32, 40))  # and another network
    assert len(calls) == 8 and len(json.loads(cache_file().read_text())) == 4
    # explicit precisions are never measured; without a network, auto follows the device's bf16 units
    assert resolve_precision(CPU, "fp32", model=net, size=(32, 40)) == "fp32"
    assert resolve_precision(CPU, "auto") == ("bf16" if dev.bf16_is_fast(CPU) else "fp32")
    assert len(calls) == 8


def test_the_probe_leaves_the_network_as_it_was(fresh_cache):
    net = _net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    choice = measure_precision(net, CPU, (32, 40), train=True, repeats=1)
    assert choice in ("fp32", "bf16") and not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics included
    assert all(p.grad is None for p in net.parameters())
    ms = next(iter(json.loads(fresh_cache.read_text()).values()))["ms"]
    assert set(ms) == {"fp32", "bf16"} and all(v > 0 for v in ms.values())
