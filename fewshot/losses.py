"""Contrastive and triplet losses, with the formula beside the code.

Both take ``reduction='mean' | 'sum' | 'none'`` and check their inputs (shape mismatches, bad targets,
negative margins raise ``ValueError`` naming the value).

Conventions:

* distances are Euclidean on the raw (not L2-normalised) embeddings;
* contrastive: **target 1 = same class**, 0 = different (Hadsell et al. use the opposite);
* contrastive uses the plain distance ``d``; triplet (FaceNet) uses the *squared* distance ``d²``.
"""

from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("mean", "sum", "none")
EPS = 1e-9  # inside the square root: keeps ∂d/∂x finite when two embeddings coincide


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_common(margin: float, reduction: str) -> None:
    if not isinstance(margin, (int, float)) or margin < 0:
        raise ValueError(f"margin={margin!r}: expected a number ≥ 0")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: expected one of {REDUCTIONS}")


def _check_embeddings(**named: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in named.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise ValueError(f"embeddings must all have the same shape (B, D), got {shapes}")


def euclidean(x1: torch.Tensor, x2: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Row-wise distance ``sqrt(‖x1 − x2‖² + eps)``: ``(B, D), (B, D) → (B,)``."""
    return ((x1 - x2).pow(2).sum(1) + eps).sqrt()


def contrastive_loss(out1: torch.Tensor, out2: torch.Tensor, target: torch.Tensor,
                     margin: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006).

    For each pair with distance ``d = ‖out1 − out2‖₂``::

        L = ½·d²                  if target = 1 (same class: pull together)
        L = ½·max(0, m − d)²      if target = 0 (different: push apart, up to the margin m)

    Args:
        out1, out2: ``(B, D)`` embeddings of the two sides of each pair.
        target: ``(B,)`` 1 for same class, 0 for different (any numeric dtype, values 0/1 only).
        margin: ``m ≥ 0``; different pairs farther apart than ``m`` cost nothing.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'`` (per-pair ``(B,)``).
    """
    _check_common(margin, reduction)
    _check_embeddings(out1=out1, out2=out2)
    target = torch.as_tensor(target, device=out1.device)
    if target.shape != (len(out1),):
        raise ValueError(f"target must have shape ({len(out1)},), got {tuple(target.shape)}")
    if not torch.all((target == 0) | (target == 1)):
        raise ValueError(f"target must hold only 0 (different) and 1 (same), got {target.unique().tolist()}")
    target = target.to(out1.dtype)
    d = euclidean(out1, out2)
    loss = target * 0.5 * d.pow(2) + (1 - target) * 0.5 * torch.relu(margin - d).pow(2)
    return _reduce(loss, reduction)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Triplet loss (Schroff, Kalenichenko & Philbin 2015, FaceNet), squared distances::

        L = max(0, ‖a − p‖² − ‖a − n‖² + m)

    The anchor should be closer to the positive (same class) than to the negative (other class)
    by at least the margin ``m``; triplets that already are cost nothing.

    Args:
        anchor, positive, negative: ``(B, D)`` embeddings.
        margin: ``m ≥ 0`` (FaceNet: 0.2 on L2-normalised embeddings; MNIST demos: 1.0 on raw ones).
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'`` (per-triplet ``(B,)``).
    """
    _check_common(margin, reduction)
    _check_embeddings(anchor=anchor, positive=positive, negative=negative)
    d_ap = (anchor - positive).pow(2).sum(1)
    d_an = (anchor - negative).pow(2).sum(1)
    return _reduce(torch.relu(d_ap - d_an + margin), reduction)


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` as a module: ``ContrastiveLoss(margin)(out1, out2, target)``."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_common(margin, reduction)
        self.margin, self.reduction = margin, reduction

    def forward(self, out1: torch.Tensor, out2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(out1, out2, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class TripletLoss(nn.Module):
    """:func:`triplet_loss` as a module: ``TripletLoss(margin)(anchor, positive, negative)``."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_common(margin, reduction)
        self.margin, self.reduction = margin, reduction

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        return triplet_loss(anchor, positive, negative, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"
