"""Networks: the project's edge U-Net and PaddleSeg's U-Net (the seed baseline).

The edge U-Net uses 2x2 transposed convolutions to up-sample: PaddleSeg's bilinear up-sampling
exports to a PIR attribute that Paddle Inference's oneDNN path rejects (../shared/STACK.md).
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

ARCHS = ("vessel-unet", "seed-unet")


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU())


class Block(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout))


class VesselUNet(nn.Layer):
    """U-Net with ``depth`` down-samplings and ``base`` channels at full resolution."""

    def __init__(self, in_channels: int = 4, num_classes: int = 2, base: int = 16, depth: int = 3):
        super().__init__()
        if depth < 1 or base < 1:
            raise ValueError("depth and base must be positive")
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.LayerList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(Block(cin, w))
            cin = w
        self.bottom = Block(widths[-2], widths[-1])
        self.up = nn.LayerList()
        self.dec = nn.LayerList()
        for i in range(depth, 0, -1):
            self.up.append(nn.Conv2DTranspose(widths[i], widths[i - 1], 2, stride=2))
            self.dec.append(Block(widths[i - 1] * 2, widths[i - 1]))
        self.head = nn.Conv2D(widths[0], num_classes, 1)
        self.pad_multiple = 2**depth

    def forward(self, x):
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(paddle.concat([up(x), skip], axis=1))
        return self.head(x)


class SeedUNet(nn.Layer):
    """PaddleSeg's U-Net (13.4 M parameters), as trained by the seed tutorial."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2):
        super().__init__()
        from paddleseg.models import UNet

        self.net = UNet(num_classes=num_classes, in_channels=in_channels, use_deconv=False)
        self.pad_multiple = 16

    def forward(self, x):
        return self.net(x)[0]


class VesselProbability(nn.Layer):
    """What we export: the vessel-class probability, N x 1 x H x W in [0, 1]."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return F.softmax(self.net(x), axis=1)[:, 1:2]


def build_model(arch: str = "vessel-unet", in_channels: int = 4, base: int = 16, depth: int = 3, num_classes: int = 2) -> nn.Layer:
    if arch == "vessel-unet":
        return VesselUNet(in_channels, num_classes, base, depth)
    if arch == "seed-unet":
        return SeedUNet(in_channels, num_classes)
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def count_params(net: nn.Layer) -> int:
    return int(sum(p.numel().item() for p in net.parameters() if not p.stop_gradient))


def count_macs(net: nn.Layer, in_channels: int, height: int, width: int) -> int:
    """Multiply-accumulates of Conv2D / Conv2DTranspose layers for one image.

    ``paddle.flops`` raises a TypeError on Paddle 3.3.1 for these models (STACK.md), so we count with
    forward hooks on the layers that hold virtually all the work.
    """
    total = [0]

    def conv_hook(layer, inputs, output):
        k = int(layer.weight.shape[2] * layer.weight.shape[3])
        cin_per_group = int(layer.weight.shape[1]) if isinstance(layer, nn.Conv2D) else int(layer.weight.shape[1])
        if isinstance(layer, nn.Conv2DTranspose):
            # Each input pixel scatters Cin x Cout_per_group x k products.
            n_in = int(inputs[0].shape[2] * inputs[0].shape[3])
            total[0] += n_in * int(layer.weight.shape[0]) * cin_per_group * k
        else:
            n_out = int(output.shape[1] * output.shape[2] * output.shape[3])
            total[0] += n_out * cin_per_group * k

    hooks = [l.register_forward_post_hook(conv_hook) for l in net.sublayers() if isinstance(l, (nn.Conv2D, nn.Conv2DTranspose))]
    was_training = net.training
    net.eval()
    with paddle.no_grad():
        net(paddle.zeros([1, in_channels, height, width]))
    for h in hooks:
        h.remove()
    if was_training:
        net.train()
    return total[0]
