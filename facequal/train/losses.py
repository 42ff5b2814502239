"""Pairwise labels and the losses of the paper (Eq. 1-5), on logits.

Every quality output here is a **logit** ``z`` (``q = sigmoid(z)``): the minimum of two
qualities is the minimum of their logits (sigmoid is increasing), and the cross-entropy on it is
``binary_cross_entropy_with_logits``, stable for any ``z``.

Pairs are described by a boolean ``[M, M]`` mask over the batch: ``pair_mask`` sets it for
same-identity pairs with ``i < j`` (each unordered pair once, self pairs excluded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_KINDS = ("soft", "hard")
IDQ_VARIANTS = ("paper", "released")


def cosine_matrix(emb: torch.Tensor) -> torch.Tensor:
    """All pairwise cosines of a batch of embeddings ``[M, D]`` (normalised here, to be safe)."""
    e = F.normalize(emb.float(), dim=1)
    return e @ e.T


def pair_mask(identity: torch.Tensor, image: torch.Tensor | None = None,
              same_image_pairs: bool = False) -> torch.Tensor:
    """Boolean ``[M, M]``: same identity, ``i < j``.

    ``image`` holds the id of the source photo of each row (its variants -- flipped, degraded --
    share it); pairs of a photo with its own variant are left out unless ``same_image_pairs``.
    """
    identity = identity.reshape(-1)
    m = identity.numel()
    mask = (identity[:, None] == identity[None, :]) & torch.ones(m, m, dtype=torch.bool,
                                                                  device=identity.device).triu(1)
    if image is not None and not same_image_pairs:
        image = image.reshape(-1)
        mask &= image[:, None] != image[None, :]
    return mask


def pair_labels(cos: torch.Tensor, m: float, s: float, kind: str = "soft") -> torch.Tensor:
    """Pairwise binary pseudo-labels from teacher cosines.

    ``hard`` (Eq. 1): ``1{cos > m}``; ``soft`` (Eq. 2): ``sigmoid(s * (cos - m))``.
    """
    if kind == "hard":
        return (cos > m).to(cos.dtype)
    if kind == "soft":
        return torch.sigmoid(s * (cos - m))
    raise ValueError(f"label kind must be one of {LABEL_KINDS}, not {kind!r}")


def idq_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
             variant: str = "paper") -> torch.Tensor:
    """Identification quality loss (Eq. 3), averaged over the pairs in ``mask``.

    ``paper``: "loser takes all": for each pair ``(i, j)`` the pair's output is
    ``min(z_i, z_j)`` and only the lower-scored face gets the gradient (ties split it).

    ``released``: our reading of the authors' released trainer, which trains each sample
    against all of its pairs' labels rather than strictly the loser: every ordered pair
    ``(i, j)`` contributes ``BCE(z_i, t_ij)``, averaged over the ordered pairs (each unordered
    pair in ``mask`` counts for both of its faces).

    Returns 0 (with a gradient path) when the mask holds no pair.
    """
    i, j = mask.nonzero(as_tuple=True)
    if i.numel() == 0:
        return logits.sum() * 0.0
    t = labels[i, j].to(logits.dtype)
    if variant == "paper":
        z = torch.minimum(logits[i], logits[j])
        return F.binary_cross_entropy_with_logits(z, t)
    if variant == "released":
        z = torch.cat([logits[i], logits[j]])
        return F.binary_cross_entropy_with_logits(z, torch.cat([t, t]))
    raise ValueError(f"IDQ variant must be one of {IDQ_VARIANTS}, not {variant!r}")


def bernoulli_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                 reduction: str = "mean") -> torch.Tensor:
    """Distillation loss (Eq. 4): ``KL(Bernoulli(sigmoid(a)) || Bernoulli(sigmoid(z)))``.

    The teacher (branch) logits ``a`` are **detached** here: no gradient of this loss ever
    reaches the branch. ``reduction="mean"`` (the default, as in the authors' released trainer,
    which weights it by 20) averages over the batch; the paper's Eq. 4 is a **sum** over the M
    samples (``reduction="sum"``), so a paper lambda equals our lambda divided by the batch size.
    """
    a = teacher_logits.detach().to(student_logits.dtype)
    z = student_logits
    p = torch.sigmoid(a)
    kl = p * (F.logsigmoid(a) - F.logsigmoid(z)) + (1 - p) * (F.logsigmoid(-a) - F.logsigmoid(-z))
    if reduction == "mean":
        return kl.mean()
    if reduction == "sum":
        return kl.sum()
    if reduction == "none":
        return kl
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def rescale_cosine(cos: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Teacher cosines mapped from its observed range ``[lo, hi]`` onto ``[0, 1]`` (clamped)."""
    if not hi > lo:
        raise ValueError(f"need hi > lo, got lo={lo}, hi={hi}")
    return ((cos - lo) / (hi - lo)).clamp(0.0, 1.0)


def regression_loss(logits: torch.Tensor, cos: torch.Tensor, mask: torch.Tensor,
                    lo: float, hi: float) -> torch.Tensor:
    """The regression baseline (Table I, "Cosine / L2"), loser-takes-all like the IDQ loss.

    Squared error between ``min(sigmoid(z_i), sigmoid(z_j))`` and the pair's cosine rescaled
    from ``[lo, hi]`` to ``[0, 1]`` (dlib's raw cosines are nearly constant), averaged over pairs.
    """
    i, j = mask.nonzero(as_tuple=True)
    if i.numel() == 0:
        return logits.sum() * 0.0
    target = rescale_cosine(cos[i, j], lo, hi).to(logits.dtype)
    q = torch.sigmoid(torch.minimum(logits[i], logits[j]))
    return ((q - target) ** 2).mean()


def share_below_half(labels: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of pairs in ``mask`` whose label is below 0.5 (for the log)."""
    n = int(mask.sum())
    return float((labels[mask] < 0.5).sum()) / n if n else float("nan")
