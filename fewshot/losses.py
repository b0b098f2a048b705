"""Contrastive, triplet and supervised contrastive losses, with the formula beside the code.

The contrastive and triplet losses keep the tutorial's call shapes (``loss(out1, out2, target)``,
``loss(anchor, positive, negative)``) and take ``reduction='mean' | 'mean_active' | 'sum' |
'none'``. ``'mean_active'`` averages over the *active* terms only, the pairs or triplets whose loss
is still positive (Hermans et al.'s "batch all" average, and pytorch-metric-learning's default): as
training succeeds, most terms reach zero, and a plain mean over all of them shrinks the gradient
with them, while the mean over the active ones keeps its size. Every loss checks its inputs: empty
batches, shape mismatches, NaN or infinite embeddings, bad targets and negative margins raise
``ValueError`` naming the value.

Conventions:

* distances are Euclidean on the raw (not L2-normalised) embeddings (:mod:`fewshot.distances`);
* contrastive: **target 1 = same class**, 0 = different (Hadsell et al. use the opposite);
* contrastive uses the plain distance ``d``; triplet uses the *squared* distance ``d²`` (FaceNet)
  unless ``squared=False`` (Hermans et al.'s batch-hard loss uses the plain distance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (check_choice, check_embeddings, check_labels, check_number,
                     check_same_length)
from .distances import euclidean, squared_euclidean

REDUCTIONS = ("mean", "mean_active", "sum", "none")
DEFAULT_TEMPERATURE = 0.1  # supervised contrastive (Khosla et al. 2020 use 0.1)
Margin = float | str  # a number ≥ 0, or "soft" for the triplet loss


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "mean_active":  # mean over the terms with a positive loss; 0 when none is
        return loss.sum() / (loss > 0).sum().clamp(min=1)
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_common(margin: Margin, reduction: str, soft_ok: bool = False) -> None:
    if not (soft_ok and margin == "soft"):
        check_number(margin, "margin", 0.0)
    check_choice(reduction, "reduction", REDUCTIONS)


def active_fraction(loss: torch.Tensor) -> float:
    """The fraction of terms of a per-term loss (``reduction='none'``) that are still positive."""
    return float((loss > 0).float().mean()) if loss.numel() else 0.0


def _check_not_empty(t: torch.Tensor, name: str) -> None:
    if len(t) == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(t.shape)}): a loss needs at least "
                         "one row")


def _check_embeddings(**named: torch.Tensor) -> None:
    for name, t in named.items():
        check_embeddings(t, name)
        _check_not_empty(t, name)
    shapes = {name: tuple(t.shape) for name, t in named.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"embeddings must all have the same shape (B, D), got {shapes}")


def contrastive_loss(out1: torch.Tensor, out2: torch.Tensor, target: torch.Tensor,
                     margin: float = 1.0, reduction: str = "mean",
                     normalize: bool = False) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006).

    For each pair with distance ``d = ‖out1 − out2‖₂``::

        L = ½·d²                  if target = 1 (same class: pull together)
        L = ½·max(0, m − d)²      if target = 0 (different: push apart, up to the margin m)

    Args:
        out1, out2: ``(B, D)`` embeddings of the two sides of each pair.
        target: ``(B,)`` 1 for same class, 0 for different (any numeric dtype, values 0/1 only).
        margin: ``m ≥ 0``; different pairs farther apart than ``m`` cost nothing.
        reduction: ``'mean'`` (default), ``'mean_active'`` (over the pairs with a positive loss),
            ``'sum'`` or ``'none'`` (per-pair ``(B,)``).
        normalize: L2-normalise both embeddings first, so that ``d`` lies in [0, 2] and the
            margin is on the unit sphere (the distance a cosine evaluation ranks by).
    """
    _check_common(margin, reduction)
    _check_embeddings(out1=out1, out2=out2)
    target = torch.as_tensor(target, device=out1.device)
    if target.shape != (len(out1),):
        raise ValueError(f"target must have shape ({len(out1)},), got {tuple(target.shape)}")
    if not torch.all((target == 0) | (target == 1)):
        raise ValueError(f"target must hold only 0 (different) and 1 (same), got {target.unique().tolist()}")
    target = target.to(out1.dtype)
    if normalize:
        out1, out2 = F.normalize(out1, dim=1), F.normalize(out2, dim=1)
    d = euclidean(out1, out2)  # eps inside the root: finite gradient at d = 0
    loss = target * 0.5 * d.pow(2) + (1 - target) * 0.5 * torch.relu(margin - d).pow(2)
    return _reduce(loss, reduction)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: Margin = 1.0, reduction: str = "mean", squared: bool = True) -> torch.Tensor:
    """Triplet loss (Schroff, Kalenichenko & Philbin 2015, FaceNet)::

        L = max(0, d(a, p) − d(a, n) + m)       with d = ‖·‖²  (squared=True, FaceNet)
        L = softplus(d(a, p) − d(a, n))         margin="soft" (Hermans, Beyer & Leibe 2017)

    The anchor should be closer to the positive (same class) than to the negative (other class)
    by at least the margin ``m``; triplets that already are cost nothing. The soft margin never
    reaches zero: it keeps pulling, ever more gently, instead of stopping at a fixed gap.

    Args:
        anchor, positive, negative: ``(B, D)`` embeddings.
        margin: ``m ≥ 0`` (FaceNet: 0.2 on L2-normalised embeddings; MNIST demos: 1.0 on raw ones),
            or ``"soft"``.
        reduction: ``'mean'`` (default), ``'mean_active'`` (over the triplets with a positive loss;
            with the soft margin every triplet is active), ``'sum'`` or ``'none'`` (per-triplet
            ``(B,)``).
        squared: squared Euclidean distances (default) or plain ones (``sqrt(‖·‖² + eps)``).
    """
    _check_common(margin, reduction, soft_ok=True)
    _check_embeddings(anchor=anchor, positive=positive, negative=negative)
    dist = squared_euclidean if squared else euclidean
    gap = dist(anchor, positive) - dist(anchor, negative)
    loss = F.softplus(gap) if margin == "soft" else torch.relu(gap + margin)
    return _reduce(loss, reduction)


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` as a module: ``ContrastiveLoss(margin)(out1, out2, target)``.

    After each call, ``active`` holds ``(pairs with a positive loss, pairs)``."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean", normalize: bool = False) -> None:
        super().__init__()
        _check_common(margin, reduction)
        self.margin, self.reduction, self.normalize = margin, reduction, bool(normalize)

    def forward(self, out1: torch.Tensor, out2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = contrastive_loss(out1, out2, target, self.margin, "none", self.normalize)
        self.active = (int((terms > 0).sum()), terms.numel())  # read by train.metric_step
        return terms if self.reduction == "none" else _reduce(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}, normalize={self.normalize}"


class TripletLoss(nn.Module):
    """:func:`triplet_loss` as a module: ``TripletLoss(margin)(anchor, positive, negative)``.

    After each call, ``active`` holds ``(triplets with a positive loss, triplets)``."""

    def __init__(self, margin: Margin = 1.0, reduction: str = "mean", squared: bool = True) -> None:
        super().__init__()
        _check_common(margin, reduction, soft_ok=True)
        self.margin, self.reduction, self.squared = margin, reduction, squared

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        terms = triplet_loss(anchor, positive, negative, self.margin, "none", self.squared)
        self.active = (int((terms > 0).sum()), terms.numel())  # read by train.metric_step
        return terms if self.reduction == "none" else _reduce(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin!r}, reduction={self.reduction!r}, squared={self.squared}"


def prototypical_loss(support: torch.Tensor, query: torch.Tensor,
                      reduction: str = "mean") -> torch.Tensor:
    """Prototypical-network loss (Snell, Swersky & Zemel 2017) for one episode::

        c_n = mean_k support[n, k]                      (the class prototypes)
        logits[q, n] = −‖query[q] − c_n‖²
        L = cross_entropy(logits, true class of q)

    Args:
        support: ``(N, K, D)``: K support embeddings of each of the N classes.
        query: ``(N, Q, D)``: Q query embeddings of each class, in the same class order.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'`` (per-query ``(N·Q,)``).
    """
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if support.ndim != 3 or query.ndim != 3 or support.shape[0] != query.shape[0] \
            or support.shape[2] != query.shape[2]:
        raise ValueError(f"support (N, K, D) and query (N, Q, D) must agree in N and D, got "
                         f"{tuple(support.shape)} and {tuple(query.shape)}")
    check_embeddings(support.flatten(0, 1), "support")
    check_embeddings(query.flatten(0, 1), "query")
    _check_not_empty(support.flatten(0, 1), "support")
    _check_not_empty(query.flatten(0, 1), "query")
    n_way, n_query = query.shape[:2]
    prototypes = support.mean(1)  # (N, D)
    q = query.flatten(0, 1)  # (N·Q, D)
    logits = -(q[:, None, :] - prototypes[None, :, :]).pow(2).sum(2)  # (N·Q, N)
    target = torch.arange(n_way, device=q.device).repeat_interleave(n_query)
    return F.cross_entropy(logits, target, reduction=reduction)


def supervised_contrastive(embeddings: torch.Tensor, labels: torch.Tensor,
                           temperature: float = DEFAULT_TEMPERATURE,
                           reduction: str = "mean") -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2, "L_out"): NT-Xent with labels.

    On L2-normalised embeddings ``z``, for each anchor ``i`` with positives ``P(i)`` (the other
    items of its class in the batch) and ``A(i)`` every item but ``i``::

        L_i = −1/|P(i)| · Σ_{p ∈ P(i)} log( exp(z_i·z_p / τ) / Σ_{a ∈ A(i)} exp(z_i·z_a / τ) )

    Every other item of the batch is a negative, every same-class item a positive: one softmax
    over the batch per anchor, with the temperature ``τ`` setting how sharply the nearest
    negatives dominate. Anchors without a positive in the batch (a class with one item) have no
    term: they are left out of the mean (``'none'`` gives them 0), so the loss is never NaN;
    with no positive pair at all it is 0 (and keeps the graph).

    Args:
        embeddings: ``(B, D)`` embeddings (normalised here; any length).
        labels: ``(B,)`` integer class labels.
        temperature: ``τ > 0`` (Khosla et al.: 0.1).
        reduction: ``'mean'`` (default: over the anchors that have a positive), ``'sum'`` or
            ``'none'`` (per-anchor ``(B,)``).
    """
    check_number(temperature, "temperature", 0.0, strict=True)
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    check_embeddings(embeddings, "embeddings")
    _check_not_empty(embeddings, "embeddings")
    labels = check_labels(labels)
    check_same_length(embeddings, labels, "embeddings", "labels")
    labels = labels.to(embeddings.device)
    z = F.normalize(embeddings, dim=1)
    logits = z @ z.T / temperature  # (B, B)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))  # A(i): every item but i
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye  # P(i)
    n_pos = positive.sum(1)
    # the -inf diagonal is never a positive: zero it before summing (0 · -inf would be NaN)
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(1) / n_pos.clamp(min=1)
    if reduction == "none":
        return per_anchor
    if reduction == "sum":
        return per_anchor.sum()
    return per_anchor.sum() / (n_pos > 0).sum().clamp(min=1)


class SupConLoss(nn.Module):
    """:func:`supervised_contrastive` as a module: ``SupConLoss(0.1)(embeddings, labels)``."""

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, reduction: str = "mean") -> None:
        super().__init__()
        check_number(temperature, "temperature", 0.0, strict=True)
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.temperature, self.reduction = temperature, reduction

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supervised_contrastive(embeddings, labels, self.temperature, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
