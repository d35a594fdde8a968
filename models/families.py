"""The standard CNN families users bring, defined here as torchvision defines them (same module
structure and names, so that what spikeport shows a user matches what they wrote), because
torchvision's wheels do not import beside the CPU torch build spikeport uses. Weights are random
unless trained; widths and depths are parameters, so that tests can run small members.

- ResNet-18 / -34: BasicBlock with one ``self.relu`` called twice, 1x1 downsampling shortcuts; a
  CIFAR stem (3x3 conv, no max-pool) or the ImageNet stem (7x7/2 conv, 3x3/2 max-pool).
- VGG-11 / -16 with BatchNorm: 3x3 conv-BN-ReLU stages and 2x2 max-pools; a CIFAR classifier (one
  linear layer) or torchvision's (adaptive 7x7 average pool and three linear layers).
- MobileNetV2: inverted residuals with ReLU6, depthwise convolutions, linear bottlenecks.
- SqueezeNet 1.1: Fire modules (squeeze, then 1x1 and 3x3 expansions concatenated), ceil-mode max-pools.
- GoogLeNet's Inception block: four branches (1x1; 1x1-3x3; 1x1-3x3; 3x3 max-pool-1x1) concatenated.
- DenseNet block: every layer (BN-ReLU-1x1-BN-ReLU-3x3) sees the concatenation of all before it.
- ShuffleNetV2 unit: channel split, a branch, concatenation and a channel shuffle.
- MNASNet's head: global average pooling written as ``x.mean([2, 3])``.
- The CIFAR ResNets of He et al. (ResNet-20/32/44/56) as the widely used PyTorch versions write them:
  plain ReLU, "option A" shortcuts (a strided slice and a zero channel pad inside a small module that
  calls a stored function), ``F.avg_pool2d(out, out.size()[3])`` and ``out.view(out.size(0), -1)``;
  module names as those versions have them (``conv1``, ``layer1.0.bn2``, ``linear``), so that their
  published weights load into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


# -- ResNet ----------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)  # the same module, called a second time


class ResNet(nn.Module):
    def __init__(self, layers: list[int], num_classes: int = 10, stem: str = "cifar", width: int = 64,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], 2)
        self.layer3 = self._make_layer(4 * width, layers[2], 2)
        self.layer4 = self._make_layer(8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(**kw) -> ResNet:
    return ResNet([2, 2, 2, 2], **kw)


def resnet34(**kw) -> ResNet:
    return ResNet([3, 4, 6, 3], **kw)


# -- VGG -------------------------------------------------------------------------------------------
VGG_CFGS = {"vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
            "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


class VGG(nn.Module):
    def __init__(self, cfg: str, num_classes: int = 10, classifier: str = "cifar", width: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG_CFGS[cfg]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = max(1, int(v * width))
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        if classifier == "imagenet":
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((7, 7))
            hidden = max(1, int(4096 * width))
            self.classifier = nn.Sequential(nn.Linear(c * 49, hidden), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(hidden, num_classes))
        else:
            self.avgpool = nn.Identity()
            self.classifier = nn.Sequential(nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg11_bn(**kw) -> VGG:
    return VGG("vgg11", **kw)


def vgg16_bn(**kw) -> VGG:
    return VGG("vgg16", **kw)


# -- MobileNetV2 -----------------------------------------------------------------------------------
def _conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, 1))
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS: ClassVar = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 3,
                 first_stride: int = 2) -> None:
        super().__init__()
        c = max(8, int(32 * width_mult))
        last = max(16, int(1280 * width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(in_channels, c, 3, first_stride)]
        for t, ch, n, s in self.SETTINGS:
            out = max(8, int(ch * width_mult))
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(_conv_bn_relu6(c, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- SqueezeNet 1.1 --------------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 (torchvision's ``squeezenet1_1``), ``width`` scaling every channel count."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()

        def w(v: int) -> int:
            return max(1, int(v * width))

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w(64), 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(w(64), w(16), w(64), w(64)), Fire(w(128), w(16), w(64), w(64)), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(w(128), w(32), w(128), w(128)), Fire(w(256), w(32), w(128), w(128)),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(w(256), w(48), w(192), w(192)), Fire(w(384), w(48), w(192), w(192)),
            Fire(w(384), w(64), w(256), w(256)), Fire(w(512), w(64), w(256), w(256)))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(w(512), num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


# -- GoogLeNet's Inception block --------------------------------------------------------------------
class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionNet(nn.Module):
    """A stem, one or two Inception blocks, global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16, blocks: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.conv1 = BasicConv2d(in_channels, 2 * w, kernel_size=3, padding=1)
        layers = [Inception(2 * w, w, w, 2 * w, w // 2, w, w)]
        for _ in range(blocks - 1):
            layers.append(Inception(5 * w, w, w, 2 * w, w // 2, w, w))
        self.inception = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(5 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.inception(self.conv1(x))), 1))


# -- DenseNet block ---------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNetBlock(nn.Module):
    """A DenseNet stem, one dense block and its transition, global average pooling and a classifier."""

    def __init__(self, num_classes: int = 10, growth: int = 8, layers: int = 4, bn_size: int = 2,
                 in_channels: int = 3) -> None:
        super().__init__()
        c = 2 * growth
        self.conv0 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(c)
        self.relu0 = nn.ReLU(inplace=True)
        self.denseblock1 = DenseBlock(layers, c, growth, bn_size)
        c += layers * growth
        self.norm5 = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.denseblock1(self.relu0(self.norm0(self.conv0(x))))
        x = F.relu(self.norm5(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


# -- ShuffleNetV2 unit ------------------------------------------------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                                         nn.BatchNorm2d(inp), nn.Conv2d(inp, branch, 1, bias=False),
                                         nn.BatchNorm2d(branch), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        cin = inp if stride > 1 else branch
        self.branch2 = nn.Sequential(nn.Conv2d(cin, branch, 1, bias=False), nn.BatchNorm2d(branch),
                                     nn.ReLU(inplace=True),
                                     nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False),
                                     nn.BatchNorm2d(branch), nn.Conv2d(branch, branch, 1, bias=False),
                                     nn.BatchNorm2d(branch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetUnits(nn.Module):
    """A stem, a stride-2 and a stride-1 ShuffleNetV2 unit, global average pooling and a classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(ShuffleUnit(width, 2 * width, 2), ShuffleUnit(2 * width, 2 * width, 1))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage2(self.conv1(x)).mean([2, 3]))


# -- MNASNet's head ---------------------------------------------------------------------------------
class MnasHead(nn.Module):
    """MNASNet's ending: a 1x1 conv-BN-ReLU, then ``x.mean([2, 3])`` and a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True), nn.Conv2d(width, 2 * width, 1, bias=False),
                                    nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))


# -- CIFAR ResNet with option-A shortcuts (He et al. 2016, section 4.2) --------------------------------
class FunctionLayer(nn.Module):
    """A module whose forward calls a stored function, as published CIFAR ResNets wrap their shortcut."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class OptionABlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:  # subsample by 2, pad the new channels with zeros
            pad = (planes - in_planes) // 2
            self.shortcut = FunctionLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNetA(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 16, 32, 64 channels, n blocks per stage, option-A shortcuts."""

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width]
        cin = width
        stages = []
        for i, p in enumerate(planes):
            blocks = [OptionABlock(cin, p, 1 if i == 0 else 2)] + [OptionABlock(p, p) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = p
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "resnet_cifar_a": CifarResNetA,
    "resnet18": resnet18, "resnet34": resnet34, "vgg11_bn": vgg11_bn, "vgg16_bn": vgg16_bn,
    "mobilenet_v2": MobileNetV2, "squeezenet1_1": SqueezeNet, "inception": InceptionNet,
    "densenet_block": DenseNetBlock, "shufflenet_v2_units": ShuffleNetUnits, "mnasnet_head": MnasHead,
}


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random statistics and affine parameters, as a trained network has (a
    fresh one is the identity, which hides what folding and conversion do)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1 + 0.1)
    return model.eval()
