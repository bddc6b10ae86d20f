"""PyTorch peers of our ResNet-50 and EfficientNet-Lite0 for same-run comparisons.

Written here because torchvision cannot be installed beside the local CPU torch
wheel. Same layer shapes as the JAX encoders (checked by parameter count in the
benchmark output); used only by benchmarks.
"""

from __future__ import annotations

import math

from torch import nn

F = nn.functional


class Bottleneck(nn.Module):
    def __init__(self, cin, ch, stride):
        super().__init__()
        out = ch * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, stride, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, out, 1, bias=False), nn.BatchNorm2d(out))
        self.proj = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                     if stride != 1 or cin != out else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.proj(x))


class ResNet50(nn.Module):
    def __init__(self, num_classes=7):
        super().__init__()
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, depth in enumerate((3, 4, 6, 3)):
            for i in range(depth):
                layers.append(Bottleneck(cin, 64 * 2 ** stage, 2 if i == 0 and stage else 1))
                cin = 64 * 2 ** stage * 4
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.trunk(x).mean((2, 3)))


class SamePad(nn.Module):
    def __init__(self, k, s):
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):
            out = math.ceil(size / self.s)
            total = max((out - 1) * self.s + self.k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def conv_bn(cin, cout, k, s=1, groups=1, act=True):
    layers = [SamePad(k, s), nn.Conv2d(cin, cout, k, s, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, s, e):
        super().__init__()
        mid = cin * e
        self.body = nn.Sequential(*([conv_bn(cin, mid, 1)] if e != 1 else []),
                                  conv_bn(mid, mid, k, s, groups=mid), conv_bn(mid, cout, 1, act=False))
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
              (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))

    def __init__(self, num_classes=7):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2)], 32
        for k, s, e, cout, r in self.BLOCKS:
            for i in range(r):
                layers.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        layers.append(conv_bn(cin, 1280, 1))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.head(self.trunk(x).mean((2, 3)))


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
