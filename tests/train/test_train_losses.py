"""Pairwise labels and losses on tiny hand-checked tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")

from facequal.train import losses  # noqa: E402


def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_pair_mask_same_identity_upper_triangle() -> None:
    ident = torch.tensor([0, 0, 1, 0, 1])
    m = losses.pair_mask(ident)
    assert m.tolist() == [
        [False, True, False, True, False],
        [False, False, False, True, False],
        [False, False, False, False, True],
        [False, False, False, False, False],
        [False, False, False, False, False],
    ]
    image = torch.tensor([7, 7, 8, 9, 10])  # rows 0 and 1 are variants of one photo
    m2 = losses.pair_mask(ident, image)
    assert not m2[0, 1] and m2[0, 3]
    assert losses.pair_mask(ident, image, same_image_pairs=True)[0, 1]


def test_labels() -> None:
    cos = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    hard = losses.pair_labels(cos, m=0.93, s=100, kind="hard")
    assert hard[0, 1] == 1.0
    soft = losses.pair_labels(cos, m=0.93, s=100, kind="soft")
    assert soft[0, 1].item() == pytest.approx(1 / (1 + math.exp(-100 * 0.02)), rel=1e-5)
    assert losses.pair_labels(torch.tensor([0.4]), 0.4, 16)[0].item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        losses.pair_labels(cos, 0.4, 16, kind="fuzzy")


def test_idq_paper_value_and_loser_takes_all_gradient() -> None:
    z = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)
    ident = torch.tensor([0, 0, 0])
    labels = torch.tensor([[0, 0.9, 0.2], [0.9, 0, 0.6], [0.2, 0.6, 0]])
    loss = losses.idq_loss(z, labels, losses.pair_mask(ident), "paper")
    # pairs (0,1): min = -1 vs 0.9; (0,2): min = 0.5 vs 0.2; (1,2): min = -1 vs 0.6
    want = (_bce(-1.0, 0.9) + _bce(0.5, 0.2) + _bce(-1.0, 0.6)) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    # face 0 is never the lower of a pair: no gradient; the others get sigmoid(z) - t summed / |P|
    sig = torch.sigmoid(torch.tensor([-1.0, 0.5]))
    assert z.grad[0].item() == 0.0
    assert z.grad[1].item() == pytest.approx(((sig[0] - 0.9) + (sig[0] - 0.6)).item() / 3, rel=1e-5)
    assert z.grad[2].item() == pytest.approx((sig[1] - 0.2).item() / 3, rel=1e-5)


def test_idq_only_same_identity_pairs_and_empty_mask() -> None:
    z = torch.tensor([0.3, -0.2, 1.0, 2.0], requires_grad=True)
    ident = torch.tensor([0, 1, 0, 1])
    labels = torch.full((4, 4), 0.7)
    loss = losses.idq_loss(z, labels, losses.pair_mask(ident))
    assert loss.item() == pytest.approx((_bce(0.3, 0.7) + _bce(-0.2, 0.7)) / 2, rel=1e-6)
    loss.backward()
    assert z.grad[2] == 0 and z.grad[3] == 0
    empty = losses.idq_loss(z, labels, losses.pair_mask(torch.tensor([0, 1, 2, 3])))
    assert empty.item() == 0.0 and empty.requires_grad


def test_idq_stable_for_large_logits() -> None:
    z = torch.tensor([80.0, -90.0], requires_grad=True)
    loss = losses.idq_loss(z, torch.tensor([[0, 1.0], [1.0, 0]]), losses.pair_mask(torch.tensor([0, 0])))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(90.0, rel=1e-4)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_idq_released_trains_every_face_against_its_pairs() -> None:
    z = torch.tensor([2.0, -1.0], requires_grad=True)
    labels = torch.tensor([[0, 0.8], [0.8, 0]])
    loss = losses.idq_loss(z, labels, losses.pair_mask(torch.tensor([0, 0])), "released")
    assert loss.item() == pytest.approx((_bce(2.0, 0.8) + _bce(-1.0, 0.8)) / 2, rel=1e-6)
    loss.backward()
    assert z.grad[0] != 0 and z.grad[1] != 0  # both faces, not just the loser


def test_bernoulli_kl_value_reduction_and_no_gradient_to_the_branch() -> None:
    a = torch.tensor([0.5, -2.0, 1.0], requires_grad=True)   # branch
    z = torch.tensor([0.0, -1.0, 1.0], requires_grad=True)   # student
    kl = losses.bernoulli_kl(a, z, "none")

    def ref(ai: float, zi: float) -> float:
        p, q = 1 / (1 + math.exp(-ai)), 1 / (1 + math.exp(-zi))
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    for k in range(3):
        assert kl[k].item() == pytest.approx(ref(a[k].item(), z[k].item()), abs=1e-6)
    assert kl[2].item() == pytest.approx(0.0, abs=1e-7)
    mean = losses.bernoulli_kl(a, z).item()
    assert losses.bernoulli_kl(a, z, "sum").item() == pytest.approx(3 * mean, rel=1e-6)
    losses.bernoulli_kl(a, z).backward()
    assert a.grad is None  # detached: the branch gets nothing from the distillation
    assert torch.allclose(z.grad, (torch.sigmoid(z) - torch.sigmoid(a)).detach() / 3, atol=1e-6)


def test_regression_baseline() -> None:
    z = torch.tensor([0.0, 1.0], requires_grad=True)
    cos = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    loss = losses.regression_loss(z, cos, losses.pair_mask(torch.tensor([0, 0])), lo=0.9, hi=1.0)
    assert loss.item() == pytest.approx((0.5 - 0.5) ** 2, abs=1e-7)
    cos2 = torch.tensor([[1.0, 0.99], [0.99, 1.0]])
    loss2 = losses.regression_loss(z, cos2, losses.pair_mask(torch.tensor([0, 0])), lo=0.9, hi=1.0)
    assert loss2.item() == pytest.approx((0.5 - 0.9) ** 2, rel=1e-5)
    loss2.backward()
    assert z.grad[1] == 0 and z.grad[0] != 0  # loser takes all here too
    assert losses.rescale_cosine(torch.tensor([0.5, 1.5]), 0.9, 1.0).tolist() == [0.0, 1.0]
