"""Networks: the project's edge U-Net, a W-Net of two stacked U-Nets, and PaddleSeg's U-Net (the seed
baseline).

The U-Nets use 2x2 transposed convolutions to up-sample: PaddleSeg's bilinear up-sampling exports to a
PIR attribute that Paddle Inference's oneDNN path rejects (../shared/STACK.md).

The W-Net follows Little W-Net (Galdran et al. 2022): blocks with a 1x1 residual shortcut, a 3x3 conv
"bridge" on every skip, LeakyReLU; the second U-Net reads the image plus the first one's vessel
probability. Training supervises both outputs (``forward_all``); ``forward`` - what export traces - gives
the second output only, so the exported graph keeps one input and one probability output.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

ARCHS = ("vessel-unet", "wnet", "seed-unet")
ACTIVATIONS = ("relu", "leaky")


def _act(name: str) -> nn.Layer:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky":
        return nn.LeakyReLU(0.01)
    raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


class ConvBNReLU(nn.Sequential):
    """A conv (3x3 unless told) + BN + activation; ``stride`` s with kernel 3s is a 3x3 conv on the
    image folded s x s into channels (space-to-depth), in one exportable op."""

    def __init__(self, cin: int, cout: int, act: str = "relu", stride: int = 1):
        k = 3 * stride
        super().__init__(
            nn.Conv2D(cin, cout, k, stride=stride, padding=(k - stride) // 2, bias_attr=False),
            nn.BatchNorm2D(cout),
            _act(act),
        )


class Block(nn.Sequential):
    """Two 3x3 conv + BN + activation; with ``residual`` a 1x1 conv + BN shortcut is added. A
    Sequential, so the parameter names of the plain block stay those of the shipped models.
    ``stride`` > 1 makes the first conv a space-to-depth stem (see ConvBNReLU)."""

    def __init__(self, cin: int, cout: int, act: str = "relu", residual: bool = False, stride: int = 1):
        super().__init__(ConvBNReLU(cin, cout, act, stride), ConvBNReLU(cout, cout, act))
        self.shortcut = (
            nn.Sequential(nn.Conv2D(cin, cout, stride, stride=stride, bias_attr=False), nn.BatchNorm2D(cout))
            if residual
            else None
        )

    def forward(self, x):
        y = self[1](self[0](x))
        return y + self.shortcut(x) if self.shortcut is not None else y


class VesselUNet(nn.Layer):
    """U-Net with ``depth`` down-samplings and ``base`` channels at its top level.

    With ``s2d`` > 1 the top level runs at 1/s2d resolution: its first conv reads the image folded s2d x s2d
    into channels (space-to-depth) and the head unfolds the logits (depth-to-space), so no layer streams
    narrow full-size activations through memory while the CPU's vector and matrix units sit empty (issue
    #34). Both folds are written as a strided conv (kernel 3*s2d) and a transposed conv (kernel s2d), which
    compute exactly what pixel-(un)shuffle + 3x3 / 1x1 convs would: Paddle 3.3.1 cannot save
    pixel_unshuffle in a legacy program, which ONNX export needs. ``refine`` adds one 3x3 conv at full
    resolution after the unfold."""

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 2,
        base: int = 16,
        depth: int = 3,
        act: str = "relu",
        residual: bool = False,
        bridge: bool = False,
        s2d: int = 1,
        refine: int = 0,
    ):
        super().__init__()
        if depth < 1 or base < 1 or s2d < 1 or refine < 0:
            raise ValueError("depth, base and s2d must be positive, refine not negative")
        if refine and s2d == 1:
            raise ValueError(
                "refine needs s2d > 1 (it is the one full-resolution layer after depth-to-space)"
            )
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.LayerList()
        cin = in_channels
        for i, w in enumerate(widths[:-1]):
            self.down.append(Block(cin, w, act, residual, stride=s2d if i == 0 else 1))
            cin = w
        self.bottom = Block(widths[-2], widths[-1], act, residual)
        self.up = nn.LayerList()
        self.dec = nn.LayerList()
        # A 3x3 conv on each skip before it meets the up-sampled path (Little W-Net's "bridge").
        self.bridge = (
            nn.LayerList([ConvBNReLU(widths[i - 1], widths[i - 1], act) for i in range(depth, 0, -1)])
            if bridge
            else None
        )
        for i in range(depth, 0, -1):
            self.up.append(nn.Conv2DTranspose(widths[i], widths[i - 1], 2, stride=2))
            self.dec.append(Block(widths[i - 1] * 2, widths[i - 1], act, residual))
        out = refine or num_classes
        self.head = (
            nn.Conv2DTranspose(widths[0], out, s2d, stride=s2d) if s2d > 1 else nn.Conv2D(widths[0], out, 1)
        )
        self.refine = (
            nn.Sequential(ConvBNReLU(refine, refine, act), nn.Conv2D(refine, num_classes, 1))
            if refine
            else None
        )
        self.pad_multiple = s2d * 2**depth

    def forward(self, x):
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        # No strict=: Paddle's dygraph-to-static tracing turns zip into convert_zip, which refuses it.
        for i, (up, dec, skip) in enumerate(zip(self.up, self.dec, reversed(skips))):  # noqa: B905
            if self.bridge is not None:
                skip = self.bridge[i](skip)
            x = dec(paddle.concat([up(x), skip], axis=1))
        x = self.head(x)
        return self.refine(x) if self.refine is not None else x


def vessel_probability(logits):
    """The vessel class's softmax probability, N x 1 x H x W. (sigmoid(l1 - l0) is the same number and
    would spare ONNX Runtime a channel-axis Softmax that costs ~10 % of a small-model run here, but Paddle
    3.3.1 refuses sigmoid and exp while saving a legacy program: docs/findings/latency.md.)"""
    return F.softmax(logits, axis=1)[:, 1:2]


class WNet(nn.Layer):
    """Two stacked U-Nets: the second reads the image and the first one's vessel probability."""

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 2,
        base: int = 8,
        depth: int = 2,
        act: str = "leaky",
        residual: bool = True,
        bridge: bool = True,
        s2d: int = 1,
        refine: int = 0,
    ):
        super().__init__()
        # With s2d both U-Nets fold the image (issue 34); refine (one full-resolution conv) ends the second.
        self.first = VesselUNet(in_channels, num_classes, base, depth, act, residual, bridge, s2d)
        self.second = VesselUNet(
            in_channels + 1, num_classes, base, depth, act, residual, bridge, s2d, refine
        )
        self.pad_multiple = self.first.pad_multiple

    def forward_all(self, x):
        """Logits of both U-Nets (training supervises both)."""
        a = self.first(x)
        b = self.second(paddle.concat([x, vessel_probability(a)], axis=1))
        return a, b

    def forward(self, x):
        return self.forward_all(x)[1]


class SeedUNet(nn.Layer):
    """PaddleSeg's U-Net (13.4 M parameters), as trained by the seed tutorial."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2):
        super().__init__()
        from paddleseg.models import UNet

        self.net = UNet(num_classes=num_classes, in_channels=in_channels, use_deconv=False)
        self.pad_multiple = 16

    def forward(self, x):
        return self.net(x)[0]


class Outputs(nn.Layer):
    """Every supervised output of a network, the model's own last: what a training step computes. A
    Layer, so ``paddle.jit.to_static`` can trace it (a W-Net's ``forward_all`` is not its ``forward``)."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(self.net.forward_all(x)) if hasattr(self.net, "forward_all") else (self.net(x),)


class VesselProbability(nn.Layer):
    """What we export: the vessel-class probability, N x 1 x H x W in [0, 1]."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return vessel_probability(self.net(x))


def build_model(
    arch: str = "vessel-unet",
    in_channels: int = 4,
    base: int = 16,
    depth: int = 3,
    num_classes: int = 2,
    act: str = "relu",
    residual: bool = False,
    bridge: bool = False,
    s2d: int = 1,
    refine: int = 0,
) -> nn.Layer:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose from {', '.join(ACTIVATIONS)}")
    if arch == "vessel-unet":
        return VesselUNet(in_channels, num_classes, base, depth, act, residual, bridge, s2d, refine)
    if arch == "wnet":
        return WNet(in_channels, num_classes, base, depth, act, residual, bridge, s2d, refine)
    if s2d != 1 or refine:
        raise ValueError(f"s2d and refine are settings of the vessel-unet and wnet architectures, not {arch}")
    if arch == "seed-unet":
        return SeedUNet(in_channels, num_classes)
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def network_from_config(model_cfg, in_channels: int) -> nn.Layer:
    """The network a ``ModelConfig`` describes (one place for every caller that rebuilds one)."""
    m = model_cfg
    return build_model(
        m.arch,
        in_channels,
        m.base,
        m.depth,
        act=m.act,
        residual=m.residual,
        bridge=m.bridge,
        s2d=m.s2d,
        refine=m.refine,
    )


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
        cin_per_group = (
            int(layer.weight.shape[1]) if isinstance(layer, nn.Conv2D) else int(layer.weight.shape[1])
        )
        if isinstance(layer, nn.Conv2DTranspose):
            # Each input pixel scatters Cin x Cout_per_group x k products.
            n_in = int(inputs[0].shape[2] * inputs[0].shape[3])
            total[0] += n_in * int(layer.weight.shape[0]) * cin_per_group * k
        else:
            n_out = int(output.shape[1] * output.shape[2] * output.shape[3])
            total[0] += n_out * cin_per_group * k

    hooks = [
        conv.register_forward_post_hook(conv_hook)
        for conv in net.sublayers()
        if isinstance(conv, (nn.Conv2D, nn.Conv2DTranspose))
    ]
    was_training = net.training
    net.eval()
    with paddle.no_grad():
        net(paddle.zeros([1, in_channels, height, width]))
    for h in hooks:
        h.remove()
    if was_training:
        net.train()
    return total[0]
