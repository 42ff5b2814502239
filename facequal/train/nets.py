"""The student (LightQNet: MobileNetV3-small-lite) and the branch network on the teacher's features.

Both forwards return **logits** of shape ``[N]``; the sigmoid is applied outside (in the losses,
which work on logits for numerical stability, and in the exported ONNX graph).

LightQNet follows the reference models exactly (see ``../shared/reference/README.md``): ReLU
everywhere, no squeeze-excite, 3x3 depthwise kernels, a stride-1 stem, MobileNetV3-small's
11 inverted-residual blocks, a final 1x1 conv, global average pooling (6x6 at 96x96 input) and
one fully connected layer to a logit. ``stem_stride=2`` is our one departure, for speed: the stem
then halves the resolution, so every later layer runs on a quarter of the pixels (a quarter of
the multiply-adds; 3x3 pooling at the end). ``stem_channels`` widens the stem alone (at width
0.25 it has 8 filters; 16 keeps more of the detail a stride-2 stem throws away, at about a
third more cost). Channel counts follow TF-slim's MobileNetV3 rounding
(:func:`make_divisible`): with BN folded into the convolutions it has 423,409 / 121,217 / 41,625
parameters at width 1.0 / 0.5 / 0.25, like the reference.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from facequal.train.config import check_stem_channels

# MobileNetV3-small at width 1.0: (expansion channels, output channels, stride) per block.
# The expansion of a block is stored as a ratio to its input channels, as in TF-slim, so that a
# width multiplier scales it through the (rounded) input channels.
STEM_CHANNELS = 16
LAST_CHANNELS = 576
SMALL_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (16, 16, 2),
    (72, 24, 2),
    (88, 24, 1),
    (96, 40, 2),
    (240, 40, 1),
    (240, 40, 1),
    (120, 48, 1),
    (144, 48, 1),
    (288, 96, 2),
    (576, 96, 1),
    (576, 96, 1),
)
WIDTHS = (1.0, 0.5, 0.25)
STEM_STRIDES = (1, 2)  # 1: the paper's network; 2: a quarter of the cost (see the module docstring)
INPUT_SIZE = 96


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% below it (MobileNet's rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when it would not widen) -> 3x3 depthwise -> 1x1 linear projection."""

    def __init__(self, cin: int, expand: int, cout: int, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand != cin:
            layers.append(_conv_bn(cin, expand, 1))
        layers.append(_conv_bn(expand, expand, 3, stride=stride, groups=expand))
        layers.append(_conv_bn(expand, cout, 1, relu=False))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class LightQNet(nn.Module):
    """MobileNetV3-small-lite quality network; ``forward`` returns one logit per image, shape [N]."""

    def __init__(self, width: float = 1.0, stem_stride: int = 1, stem_channels: int | None = None) -> None:
        super().__init__()
        if stem_stride not in STEM_STRIDES:
            raise ValueError(f"stem_stride must be one of {STEM_STRIDES}, not {stem_stride!r}")
        check_stem_channels(stem_channels)
        self.width = float(width)
        self.stem_stride = int(stem_stride)
        cin = stem_channels or make_divisible(STEM_CHANNELS * width)
        self.stem_channels = cin
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, stride=self.stem_stride)]
        prev_in = STEM_CHANNELS  # width-1.0 input channels of the next block, for its expansion ratio
        for exp, out, stride in SMALL_BLOCKS:
            expand = make_divisible(cin * exp / prev_in)
            cout = make_divisible(out * width)
            layers.append(InvertedResidual(cin, expand, cout, stride))
            cin, prev_in = cout, out
        last = make_divisible(LAST_CHANNELS * width)
        layers.append(_conv_bn(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for convolutions, small normal for the head, BN at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(x).squeeze(1)


class BranchNet(nn.Module):
    """The branch network on the teacher's feature map (the released trainer's form).

    FC 256 + BN + ReLU, then FC 1 + BN without affine parameters; returns the logit, shape [N].

    Input: the teacher's features, either already pooled ``[N, C]`` or a map ``[N, C, H, W]``,
    which is global-average-pooled first. Pooling, not flattening, is the default: dlib's
    embedding is a linear map of exactly this pooled vector (its net ends in
    ``avg_pool_everything`` + fc), so the pooled features carry everything the teacher's
    similarities -- and so the labels -- are made of, at 1/16 of the size of the flattened
    4x4 map (a 16x smaller cache, 16x fewer branch weights to fit on ~20k images).
    ``pool="flatten"`` keeps the spatial layout instead (in_features must then be C*H*W).
    """

    def __init__(self, in_features: int, hidden: int = 256, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten', not {pool!r}")
        self.pool = pool
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(1, affine=False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.dim() == 4:
            feat = feat.mean(dim=(2, 3)) if self.pool == "avg" else feat.flatten(1)
        h = torch.relu(self.bn1(self.fc1(feat.float())))
        return self.bn2(self.fc2(h)).squeeze(1)


# -- BN folding and counting ---------------------------------------------------------------------


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, groups=conv.groups, bias=True)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every Conv2d+BatchNorm2d pair fused into one conv."""
    model = copy.deepcopy(model).eval()

    def fold_sequence(seq: nn.Sequential) -> nn.Sequential:
        items = list(seq)
        out: list[nn.Module] = []
        i = 0
        while i < len(items):
            if (isinstance(items[i], nn.Conv2d) and i + 1 < len(items)
                    and isinstance(items[i + 1], nn.BatchNorm2d)):
                out.append(_fold_conv_bn(items[i], items[i + 1]))
                i += 2
            else:
                if isinstance(items[i], nn.Sequential):
                    out.append(fold_sequence(items[i]))
                else:
                    visit(items[i])
                    out.append(items[i])
                i += 1
        return nn.Sequential(*out)

    def visit(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Sequential):
                setattr(module, name, fold_sequence(child))
            else:
                visit(child)

    visit(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (count a BN-folded model to compare with the reference)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = INPUT_SIZE) -> int:
    """Multiply-adds of one image through the convolutions and linear layers (hook-based)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out[0].numel() * k

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
