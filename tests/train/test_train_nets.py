"""LightQNet and the branch network: the reference's parameter and multiply-add counts, BN folding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")

from facequal.train.framing import model_name  # noqa: E402
from facequal.train.nets import (  # noqa: E402
    BranchNet,
    LightQNet,
    count_macs,
    count_parameters,
    fold_bn,
    make_divisible,
)

# The reference models: parameters with BN folded (../shared/reference/README.md) and the
# multiply-adds of their ONNX graphs' Conv and MatMul nodes, counted exactly (the README rounds
# them to 37.2 / 12.9 / 6.9 M).
REFERENCE = {1.0: (423_409, 37_230_912), 0.5: (121_217, 12_847_968), 0.25: (41_625, 6_907_536)}
README_MACS = {1.0: 37.2e6, 0.5: 12.9e6, 0.25: 6.9e6}


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
def test_counts_match_the_reference(width: float) -> None:
    params, macs = REFERENCE[width]
    folded = fold_bn(LightQNet(width))
    assert count_parameters(folded) == params
    assert count_macs(folded) == macs
    assert count_macs(folded) == pytest.approx(README_MACS[width], rel=0.005)


def test_make_divisible_follows_mobilenet() -> None:
    assert make_divisible(16 * 0.25) == 8
    assert make_divisible(40 * 0.25) == 16   # 8 would lose more than 10%
    assert make_divisible(88 / 24 * 8) == 32
    assert make_divisible(576) == 576


def test_architecture_facts() -> None:
    net = LightQNet(1.0)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].stride == (1, 1)                       # stride-1 stem
    assert all(m.kernel_size in ((1, 1), (3, 3)) for m in convs)
    assert not any(isinstance(m, (torch.nn.Hardswish, torch.nn.Hardsigmoid)) for m in net.modules())
    assert sum(1 for m in net.modules() if type(m).__name__ == "InvertedResidual") == 11
    feats = net.features(torch.zeros(1, 3, 96, 96))
    assert feats.shape == (1, 576, 6, 6)                   # 6x6 average pool at 96x96


def test_a_stride_2_stem_quarters_the_cost_and_keeps_the_parameters() -> None:
    """stem_stride=2 (the dm025s2 recipe): same weights, every layer after the stem on a quarter
    of the pixels, 3x3 pooling at 96x96; anything else is refused."""
    one, two = fold_bn(LightQNet(0.25)), fold_bn(LightQNet(0.25, stem_stride=2))
    assert count_parameters(two) == count_parameters(one) == REFERENCE[0.25][0]
    assert count_macs(two) == pytest.approx(count_macs(one) / 4, rel=0.01)
    assert two.features(torch.zeros(1, 3, 96, 96)).shape == (1, 144, 3, 3)
    assert two(torch.zeros(2, 3, 96, 96)).shape == (2,)
    with pytest.raises(ValueError, match="stem_stride"):
        LightQNet(0.25, stem_stride=3)


def test_a_wider_stem_changes_the_stem_alone() -> None:
    """stem_channels=16 (the dm025s2c16 recipe): the stem's 8 filters become 16, the first block
    follows (it reads the stem), every later layer is the width's; bad counts are refused."""
    base, wide = fold_bn(LightQNet(0.25, stem_stride=2)), fold_bn(LightQNet(0.25, stem_stride=2, stem_channels=16))
    convs = [[m for m in n.modules() if isinstance(m, torch.nn.Conv2d)] for n in (base, wide)]
    assert (convs[0][0].out_channels, convs[1][0].out_channels) == (8, 16)
    assert [c.weight.shape for c in convs[0][3:]] == [c.weight.shape for c in convs[1][3:]]
    assert count_macs(base) < count_macs(wide) < 1.4 * count_macs(base)
    assert wide(torch.zeros(2, 3, 96, 96)).shape == (2,)
    assert model_name(0.25, 2, 4, 16) == "facequal-lightqnet-dm025s2c16x4"
    for bad in (4, 12, 72, 16.0):
        with pytest.raises(ValueError, match="stem_channels"):
            LightQNet(0.25, stem_stride=2, stem_channels=bad)


def test_forward_returns_logits_and_folding_is_exact() -> None:
    torch.manual_seed(0)
    net = LightQNet(0.5)
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.randn(4, 3, 96, 96)
    z = net(x)
    assert z.shape == (4,)
    assert (z.max() - z.min()) > 0  # depends on the input
    assert torch.allclose(fold_bn(net)(x), z, atol=1e-5)
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net.to(memory_format=torch.channels_last)(xl), z, atol=1e-5)


def test_branch_network() -> None:
    torch.manual_seed(0)
    feat = torch.randn(8, 256, 4, 4)
    b = BranchNet(256)
    assert b(feat).shape == (8,)
    assert torch.allclose(b(feat), b(feat.mean(dim=(2, 3))))  # pooled maps == pre-pooled features
    assert not b.bn2.affine and b.fc1.out_features == 256
    flat = BranchNet(256 * 16, pool="flatten")
    assert flat(feat).shape == (8,)
    # in training mode the last BN (no affine) standardises the batch's logits
    with torch.no_grad():
        out = b.train()(feat)
    assert abs(float(out.mean())) < 1e-5
