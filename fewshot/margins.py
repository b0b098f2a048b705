"""Margin-based softmax heads: NormFace, CosFace, ArcFace and SphereFace, with the formula beside the code.

Every head maps embeddings to class logits with one call shape, then a plain cross-entropy::

    logits = head(embeddings, labels)          # (B, D), (B,) → (B, C)
    loss = F.cross_entropy(logits, labels)

With ``labels`` the margin is applied to each row's *target* class only (the other logits are the
plain ones); without labels (prediction) the head returns the plain logits ``s·cos θ_j`` (SphereFace:
``‖x‖·cos θ_j``). θ_j is the angle between the embedding ``x`` and the class weight ``W_j``.

==============  =====================================  =========================================
head            target logit                           defaults
==============  =====================================  =========================================
NormSoftmax     ``s·cos θ_y``                          no margin (the reference)
CosFace         ``s·(cos θ_y − m)``                    ``m = 0.35`` (cosine units)
ArcFace         ``s·cos(θ_y + m)``                     ``m = 0.5`` (**radians**)
SphereFace      ``‖x‖·ψ(θ_y)``, λ-blended              ``m = 4`` (integer), ``lam = 0.0``
==============  =====================================  =========================================

The scale ``s`` has no default on purpose: the papers' ``s = 64`` suits 512-D face embeddings but
does not train 2-D or 3-D ones; :func:`scale_lower_bound` and :func:`max_margin_2d` give the CosFace
paper's bounds for a small embedding.

**Pitfall**: each head owns its class weights ``head.weight`` ``(C, D)``, an ``nn.Parameter``. An
optimiser built from the embedding net alone never updates them (the loss still falls a little, so
nothing looks broken). Give both to the optimiser, e.g. wrap them in one model so
``model.parameters()`` covers both::

    model = nn.ModuleDict({"net": net, "head": head})
    optimizer = torch.optim.Adam(model.parameters())

Warm-up: CosFace and ArcFace read an attribute ``margin_scale`` in [0, 1] (default 1.0) that multiplies
``m``, so a recipe can ramp the margin in from 0; SphereFace anneals ``lam`` instead
(:func:`sphereface_lambda`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (check_embeddings, check_int, check_labels, check_number, check_same_length,
                     check_tensor)

EPS = 1e-12  # keeps sin θ = sqrt(1 − cos²θ) off 0, so its gradient stays finite at cos θ = ±1


# ---------------------------------------------------------------------------------------------------
# Settings for small embeddings (CosFace paper, Wang et al. 2018, section 3.3/3.4)
# ---------------------------------------------------------------------------------------------------

def scale_lower_bound(n_classes: int, p: float = 0.99) -> float:
    """Smallest scale ``s`` at which a class centre can reach posterior ``p`` (CosFace paper)::

        s ≥ (C − 1)/C · ln((C − 1)·p / (1 − p))

    C = 10: 6.1 at p = 0.99, 4.0 at p = 0.9. ``p`` must lie in (1/C, 1): at or below chance every
    scale qualifies.
    """
    c = check_int(n_classes, "n_classes", minimum=2)
    p = check_number(p, "p", minimum=1.0 / c, strict=True)
    if p >= 1.0:
        raise ValueError(f"p={p!r}: expected a probability in (1/C, 1) = ({1.0 / c:g}, 1)")
    return (c - 1) / c * math.log((c - 1) * p / (1 - p))


def max_margin_2d(n_classes: int) -> float:
    """Largest feasible CosFace margin (cosine units) for 2-D embeddings, C classes on a circle::

        m ≤ 1 − cos(2π/C)

    ≈ 0.191 for 10 classes, ≈ 0.691 for 5.
    """
    c = check_int(n_classes, "n_classes", minimum=2)
    return 1.0 - math.cos(2 * math.pi / c)


# ---------------------------------------------------------------------------------------------------
# What all heads share: the class weights, the input checks and cos θ
# ---------------------------------------------------------------------------------------------------

class MarginHead(nn.Module):
    """Base of the heads: owns ``weight (C, D)`` and checks inputs. Subclasses define ``forward``.

    ``weight`` is initialised with Xavier-uniform from torch's global RNG (seed it for repeatable runs).
    """

    def __init__(self, embed_dim: int, n_classes: int) -> None:
        super().__init__()
        self.embed_dim = check_int(embed_dim, "embed_dim", minimum=1)
        self.n_classes = check_int(n_classes, "n_classes", minimum=2)
        self.weight = nn.Parameter(torch.empty(self.n_classes, self.embed_dim))  # (C, D)
        nn.init.xavier_uniform_(self.weight)

    def check(self, embeddings: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Raise ``ValueError`` on embeddings that are not finite ``(B, D)`` or labels not in [0, C)."""
        check_embeddings(embeddings)
        if embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"embeddings have width D={embeddings.shape[1]}, "
                             f"expected embed_dim={self.embed_dim}")
        if labels is None:
            return
        check_labels(labels)
        check_same_length(embeddings, labels, "embeddings", "labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got values from "
                             f"{int(labels.min())} to {int(labels.max())}")

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``cos θ_j = normalise(x)·normalise(W_j)``: ``(B, D) → (B, C)``, in [−1, 1] up to rounding.

        Not clamped: the heads below stay finite (values and gradients) even at |cos θ| = 1 + ε.
        """
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, n_classes={self.n_classes}"


def _target_mask(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` boolean mask, True at each row's target class."""
    return F.one_hot(labels.long(), like.shape[1]).bool().to(like.device)


class _ScaledMarginHead(MarginHead):
    """Shared by CosFace and ArcFace: a scale ``s > 0``, a margin ``m ≥ 0`` and its warm-up factor."""

    def __init__(self, embed_dim: int, n_classes: int, scale: float, margin: float) -> None:
        super().__init__(embed_dim, n_classes)
        self.scale = check_number(scale, "scale", minimum=0.0, strict=True)
        self.margin = check_number(margin, "margin", minimum=0.0)
        self.margin_scale = 1.0

    @property
    def margin_scale(self) -> float:
        """Warm-up factor in [0, 1]: the margin used is ``margin_scale·m`` (default 1.0)."""
        return self._margin_scale

    @margin_scale.setter
    def margin_scale(self, value: float) -> None:
        value = check_number(value, "margin_scale", minimum=0.0)
        if value > 1.0:
            raise ValueError(f"margin_scale={value!r}: expected a number in [0, 1]")
        self._margin_scale = value

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}, margin={self.margin:g}"


# ---------------------------------------------------------------------------------------------------
# The heads
# ---------------------------------------------------------------------------------------------------

class NormSoftmax(MarginHead):
    """NormFace (Wang et al. 2017): the margin-free reference, features and weights normalised::

        logit_j = s·cos θ_j,   cos θ_j = normalise(x)·normalise(W_j)

    Args:
        embed_dim: ``D``; n_classes: ``C ≥ 2``; scale: ``s > 0`` (no default: see the module docstring).
    Call: ``head(embeddings (B, D), labels (B,) | None) → logits (B, C)`` (labels are only checked).
    """

    def __init__(self, embed_dim: int, n_classes: int, scale: float) -> None:
        super().__init__(embed_dim, n_classes)
        self.scale = check_number(scale, "scale", minimum=0.0, strict=True)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check(embeddings, labels)
        return self.scale * self.cosine(embeddings)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}"


class CosFace(_ScaledMarginHead):
    """CosFace / LMCL (Wang et al. 2018): subtract the margin from the target cosine::

        logit_y = s·(cos θ_y − m)        (target class, labels given)
        logit_j = s·cos θ_j              (every other class; all classes without labels)

    Args:
        embed_dim: ``D``; n_classes: ``C ≥ 2``; scale: ``s > 0`` (paper: 64 for 512-D faces);
        margin: ``m ≥ 0`` in cosine units (default 0.35; in 2-D at most :func:`max_margin_2d`).
    Attribute ``margin_scale`` in [0, 1] multiplies ``m`` (warm-up). Call: ``(B, D), (B,) → (B, C)``.
    """

    def __init__(self, embed_dim: int, n_classes: int, scale: float, margin: float = 0.35) -> None:
        super().__init__(embed_dim, n_classes, scale, margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check(embeddings, labels)
        cos = self.cosine(embeddings)                                   # (B, C)
        if labels is None:
            return self.scale * cos
        m = self.margin * self.margin_scale
        return self.scale * (cos - m * _target_mask(labels, cos).to(cos.dtype))


class ArcFace(_ScaledMarginHead):
    """ArcFace / additive angular margin (Deng et al. 2019): add the margin to the target *angle*::

        logit_y = s·cos(θ_y + m)               if θ_y + m ≤ π   (i.e. cos θ_y > cos(π − m))
        logit_y = s·(cos θ_y − m·sin m)        otherwise, where cos(θ + m) would rise again
        logit_j = s·cos θ_j                    (every other class; all classes without labels)

    ``cos(θ + m) = cos θ·cos m − sin θ·sin m`` with ``sin θ = sqrt(max(1 − cos²θ, eps))``: no
    ``acos``, and gradients stay finite at cos θ = ±1. The fallback and threshold follow insightface and
    pytorch-metric-learning.

    Args:
        embed_dim: ``D``; n_classes: ``C ≥ 2``; scale: ``s > 0`` (paper: 64 for 512-D faces);
        margin: ``m`` in **radians**, 0 ≤ m < π (default 0.5). pytorch-metric-learning's
        ``ArcFaceLoss`` takes it in *degrees* (its default 28.6° = 0.5 rad).
    Attribute ``margin_scale`` in [0, 1] multiplies ``m`` (warm-up). Call: ``(B, D), (B,) → (B, C)``.
    """

    def __init__(self, embed_dim: int, n_classes: int, scale: float, margin: float = 0.5) -> None:
        super().__init__(embed_dim, n_classes, scale, margin)
        if self.margin >= math.pi:
            raise ValueError(f"margin={margin!r}: expected radians in [0, π); "
                             f"degrees? {margin!r}° = {math.radians(self.margin):.3f} rad")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check(embeddings, labels)
        cos = self.cosine(embeddings)                                   # (B, C)
        if labels is None:
            return self.scale * cos
        m = self.margin * self.margin_scale
        sin = (1 - cos * cos).clamp(min=EPS).sqrt()
        cos_plus_m = cos * math.cos(m) - sin * math.sin(m)              # cos(θ + m)
        target = torch.where(cos > math.cos(math.pi - m), cos_plus_m, cos - m * math.sin(m))
        return self.scale * torch.where(_target_mask(labels, cos), target, cos)


def psi(theta: torch.Tensor, m: int) -> torch.Tensor:
    """SphereFace's monotone angular function, decreasing on [0, π]::

        ψ(θ) = (−1)ᵏ·cos(mθ) − 2k   for θ ∈ [kπ/m, (k+1)π/m],  k = 0 … m−1

    ``m = 1`` gives ``cos θ``. ``theta``: a tensor of any shape, radians in [0, π] (float32's
    rounding of π is accepted).
    """
    m = check_int(m, "m", minimum=1)
    check_tensor(theta, "theta")
    if theta.numel() and (float(theta.min()) < 0 or float(theta.max()) > math.pi + 1e-6):
        raise ValueError(f"theta must lie in [0, π], got values from {float(theta.min()):g} "
                         f"to {float(theta.max()):g}")
    k = torch.floor(theta.detach() * m / math.pi).clamp(0, m - 1)
    sign = 1 - 2 * torch.remainder(k, 2)                                # (−1)ᵏ
    return sign * torch.cos(m * theta) - 2 * k


def sphereface_lambda(step: int, base: float = 1000.0, gamma: float = 0.12, power: float = 1.0,
                      minimum: float = 5.0) -> float:
    """SphereFace reference λ schedule (``head.lam`` at training step ``step``)::

        λ = max(minimum, base·(1 + gamma·step)^(−power))   = max(5, 1000/(1 + 0.12·step)) by default
    """
    step = check_int(step, "step", minimum=0)
    base = check_number(base, "base", minimum=0.0)
    gamma = check_number(gamma, "gamma", minimum=0.0)
    power = check_number(power, "power", minimum=0.0)
    minimum = check_number(minimum, "minimum", minimum=0.0)
    return max(minimum, base * (1 + gamma * step) ** (-power))


class SphereFace(MarginHead):
    """SphereFace / A-Softmax (Liu et al. 2017): weights normalised, feature norm kept::

        logit_y = (λ·‖x‖·cos θ_y + ‖x‖·ψ(θ_y)) / (1 + λ)   (target class, labels given)
        logit_j = ‖x‖·cos θ_j                              (every other class; all without labels)

    ψ is :func:`psi`; here ``cos(mθ)`` is the Chebyshev polynomial ``T_m(cos θ)`` (as the reference
    code), so no ``acos`` enters the gradient. λ = 0 is the pure ψ form; a large λ is almost plain
    softmax. The training loop anneals the attribute ``lam`` (float ≥ 0, default 0.0), e.g. with
    :func:`sphereface_lambda`.

    Args:
        embed_dim: ``D``; n_classes: ``C ≥ 2``; margin: ``m``, a positive integer (default 4).
    Call: ``head(embeddings (B, D), labels (B,) | None) → logits (B, C)``.
    """

    def __init__(self, embed_dim: int, n_classes: int, margin: int = 4) -> None:
        super().__init__(embed_dim, n_classes)
        self.margin = check_int(margin, "margin", minimum=1)
        self.lam = 0.0

    @property
    def lam(self) -> float:
        """Softmax blending weight λ ≥ 0 (0: pure ψ)."""
        return self._lam

    @lam.setter
    def lam(self, value: float) -> None:
        self._lam = check_number(value, "lam", minimum=0.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check(embeddings, labels)
        cos = self.cosine(embeddings)                                   # (B, C)
        norm = embeddings.norm(dim=1, keepdim=True)                     # (B, 1)
        if labels is None:
            return norm * cos
        m = self.margin
        cheb_prev, cheb = torch.ones_like(cos), cos                     # T_0, T_1
        for _ in range(m - 1):
            cheb_prev, cheb = cheb, 2 * cos * cheb - cheb_prev          # T_{n+1} = 2c·T_n − T_{n−1}
        k = torch.floor(torch.acos(cos.detach().clamp(-1, 1)) * m / math.pi).clamp(0, m - 1)
        psi_cos = (1 - 2 * torch.remainder(k, 2)) * cheb - 2 * k        # ψ(θ) from cos θ
        target = (self.lam * cos + psi_cos) / (1 + self.lam)
        return norm * torch.where(_target_mask(labels, cos), target, cos)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, lam={self.lam:g}"


HEADS: dict[str, type[MarginHead]] = {
    "normsoftmax": NormSoftmax,
    "cosface": CosFace,
    "arcface": ArcFace,
    "sphereface": SphereFace,
}
