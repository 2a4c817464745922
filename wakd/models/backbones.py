"""Backbone registry: convolutional trunks that turn an image into a local-feature map.

``create_model(name, **kw)`` builds a registered backbone; ``list_models()`` names them. Every
backbone reports ``out_channels`` and ``stride`` and keeps torchvision's module names, so a
torchvision state dict loads into it directly (see :mod:`wakd.models.weights`). Nothing is ever
downloaded: models start from random initialisation unless a local weights file is given.

Registered: ``vgg16`` (conv5_3 before its ReLU, stride 16, conv1-conv4 frozen by default),
``mobilenetv3_large`` / ``mobilenetv3_small`` (all layers trainable, a 1x1 conv + BN + hardswish
projection to 512 channels; ``output_stride=16`` drops the last stage, so small images keep a
useful map: 6x8 at 96x128), ``resnet18`` / ``resnet50`` / ``resnet152`` (cut after ``layer3``
(default) or ``layer4``; ``resnet18(width=0.375)`` has 3/8 of the channels, the demo student).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from wakd.utils import WakdError

_REGISTRY: dict[str, Callable[..., Backbone]] = {}


class Backbone(nn.Module):
    """A feature extractor with known output channels and stride.

    Attributes:
        name: registry name.
        out_channels: channels of the output feature map.
        stride: input pixels per feature-map cell.
    """

    input_norm = "none"  # "instance": each image's channels standardised first (set by create_model)

    def __init__(self, name: str, out_channels: int, stride: int) -> None:
        super().__init__()
        self.name, self.out_channels, self.stride = name, out_channels, stride

    def normalise_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the trunk takes it: with ``input_norm == "instance"``, every image's every channel at zero
        mean and unit variance (a parameter-free instance norm: the state dict is unchanged)."""
        return F.instance_norm(x) if self.input_norm == "instance" else x

    def freeze(self, prefixes: tuple[str, ...]) -> None:
        """Stop gradients to parameters whose names start with any of ``prefixes``."""
        for pname, p in self.named_parameters():
            if pname.startswith(prefixes):
                p.requires_grad_(False)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def register_model(name: str) -> Callable:
    """Decorator adding a backbone factory to the registry under ``name``."""

    def wrap(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def create_model(name: str, input_norm: str = "none", **kwargs) -> Backbone:
    """Build a registered backbone (random initialisation); ``input_norm="instance"`` standardises each
    image's channels before it (:meth:`Backbone.normalise_input`).

    Raises:
        WakdError: unknown name (the valid ones are listed) or a bad option.
    """
    if name not in _REGISTRY:
        raise WakdError(f"Unknown model ({name}); expected one of {', '.join(list_models())}")
    if input_norm not in ("none", "instance"):
        raise WakdError(f"model {name}: input_norm {input_norm!r}; expected none or instance")
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise WakdError(f"model {name}: {exc}") from None
    model.input_norm = input_norm
    return model


class _Sequential(Backbone):
    """``features`` (torchvision names) followed by an optional ``proj``."""

    def __init__(self, name: str, features: nn.Module, out_channels: int, stride: int,
                 proj: nn.Module | None = None) -> None:
        super().__init__(name, out_channels, stride)
        self.features = features
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalise_input(x))
        return x if self.proj is None else self.proj(x)


@register_model("vgg16")
def vgg16(train_conv5_only: bool = True) -> Backbone:
    """VGG16 cut at conv5_3 before its ReLU (512 channels, stride 16), as in NetVLAD.

    Args:
        train_conv5_only: freeze conv1-conv4 (features 0-23) so only conv5 trains.
    """
    features = tvm.vgg16(weights=None).features[:29]
    model = _Sequential("vgg16", features, 512, 16)
    if train_conv5_only:
        model.freeze(tuple(f"features.{i}." for i in range(24)))
    return model


# torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for 600-epoch ImageNet runs. In a
# short training run (and from scratch) the running statistics then lag the weights by hundreds of
# steps, so eval-mode descriptors (mining, validation, extraction) are far from what training
# optimised: a student trained from random weights stayed at chance recall. We use PyTorch's default
# 0.1; pretrained running statistics are loaded unchanged.
MOBILENET_BN_MOMENTUM = 0.1


def _set_bn_momentum(module: nn.Module, momentum: float) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
    return module


def _projection(in_ch: int, out_ch: int = 512) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.Hardswish())


# Where each MobileNetV3 reaches stride 16: features[:n] ends with the last stride-16 block
# (Large: 112 channels, Small: 48); the stages after it run at stride 32.
_MOBILENET_STRIDE16 = {"mobilenetv3_large": (13, 112), "mobilenetv3_small": (9, 48)}


def _mobilenet(name: str, net: nn.Module, last_channels: int, out_channels: int, output_stride: int) -> Backbone:
    if output_stride not in (16, 32):
        raise WakdError(f"model {name}: output_stride must be 16 or 32, got {output_stride}")
    features = _set_bn_momentum(net.features, MOBILENET_BN_MOMENTUM)
    if output_stride == 16:
        cut, last_channels = _MOBILENET_STRIDE16[name]
        features = features[:cut]
    return _Sequential(name, features, out_channels, output_stride, _projection(last_channels, out_channels))


@register_model("mobilenetv3_large")
def mobilenetv3_large(out_channels: int = 512, output_stride: int = 32) -> Backbone:
    """MobileNetV3-Large features (960 channels at stride 32, or 112 at stride 16 with the last stage
    dropped) projected to ``out_channels`` (BN momentum 0.1)."""
    return _mobilenet("mobilenetv3_large", tvm.mobilenet_v3_large(weights=None), 960, out_channels, output_stride)


@register_model("mobilenetv3_small")
def mobilenetv3_small(out_channels: int = 512, output_stride: int = 32) -> Backbone:
    """MobileNetV3-Small features (576 channels at stride 32, or 48 at stride 16 with the last stage
    dropped) projected to ``out_channels`` (BN momentum 0.1)."""
    return _mobilenet("mobilenetv3_small", tvm.mobilenet_v3_small(weights=None), 576, out_channels, output_stride)


class _ResNet(Backbone):
    """A torchvision ResNet cut after ``layer3`` or ``layer4`` (module names kept)."""

    def __init__(self, name: str, net: nn.Module, last_layer: int) -> None:
        if last_layer not in (3, 4):
            raise WakdError(f"model {name}: last_layer must be 3 or 4, got {last_layer}")
        layer = getattr(net, f"layer{last_layer}")
        channels = layer[-1].conv3.out_channels if hasattr(layer[-1], "conv3") else layer[-1].conv2.out_channels
        super().__init__(name, channels, 16 if last_layer == 3 else 32)
        for part in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            setattr(self, part, getattr(net, part))
        self.layer4 = net.layer4 if last_layer == 4 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalise_input(x)))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x if self.layer4 is None else self.layer4(x)


def _narrow_resnet18(width: float) -> nn.Module:
    """torchvision's ResNet18 with every layer's channels scaled by ``width`` (module names kept).

    ``width=0.5`` has 32/64/128/256 channels and a quarter of the convolution FLOPs; torchvision's
    ImageNet weights only fit ``width=1``.
    """
    from torchvision.models.resnet import BasicBlock, conv1x1

    net = tvm.resnet18(weights=None)
    if width == 1:
        return net
    if not 0 < width < 1:
        raise WakdError(f"model resnet18: width must be in (0, 1], got {width}")
    planes = [max(8, round(64 * width) * m) for m in (1, 2, 4, 8)]
    net.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(planes[0])
    inplanes = planes[0]
    for i, out in enumerate(planes):
        stride = 1 if i == 0 else 2
        down = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out)) if stride != 1 or inplanes != out \
            else None
        setattr(net, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, out, stride, down), BasicBlock(out, out)))
        inplanes = out
    for m in net.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


@register_model("resnet18")
def resnet18(last_layer: int = 3, width: float = 1.0) -> Backbone:
    """ResNet18 cut after layer3 (256 channels, stride 16) or layer4; ``width`` < 1 scales its channels."""
    return _ResNet("resnet18", _narrow_resnet18(width), last_layer)


@register_model("resnet50")
def resnet50(last_layer: int = 3) -> Backbone:
    return _ResNet("resnet50", tvm.resnet50(weights=None), last_layer)


@register_model("resnet152")
def resnet152(last_layer: int = 3) -> Backbone:
    return _ResNet("resnet152", tvm.resnet152(weights=None), last_layer)
