"""Distances, once, for the losses, the miners, the metrics, the episodes and verification.

Two metrics:

* ``"euclidean"``: ``d(x, y) = sqrt(‖x − y‖² + eps)``. The ``eps`` inside the root keeps the gradient
  finite when two embeddings coincide (``∂√u/∂u`` is infinite at 0).
* ``"cosine"``: ``d(x, y) = 1 − cos(x, y)``, in [0, 2]; used for nets trained with a margin-based
  softmax, whose embeddings carry identity in their direction only.

Row-wise functions take ``(B, D), (B, D) → (B,)``; matrix functions ``(N, D), (M, D) → (N, M)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_choice, check_tensor

METRICS = ("euclidean", "cosine")
EPS = 1e-9


def check_metric(metric: str) -> None:
    """Raise ``ValueError`` unless ``metric`` is ``"euclidean"`` or ``"cosine"``."""
    check_choice(metric, "metric", METRICS)


def check_widths(x1: object, x2: object, name1: str = "x1", name2: str = "x2", *,
                 same_rows: bool = True) -> None:
    """Both 2-D tensors of equal width ``D`` (and, when ``same_rows``, equal row count ``B``).

    Only shapes are read (no pass over the values), so the losses can call it every step. Without it a
    width mismatch fails deep inside torch, and ``(1, D)`` against ``(B, D)`` silently broadcasts.
    """
    for value, name in ((x1, name1), (x2, name2)):
        if check_tensor(value, name).ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows, D), got shape {tuple(value.shape)}")
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"{name1} and {name2} differ in width: shapes {tuple(x1.shape)} and "
                         f"{tuple(x2.shape)}, expected embeddings of the same dimension D")
    if same_rows and x1.shape[0] != x2.shape[0]:
        raise ValueError(f"{name1} and {name2} differ in rows: shapes {tuple(x1.shape)} and "
                         f"{tuple(x2.shape)}, expected one row of each per pair (B, D), (B, D)")


def squared_euclidean(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Row-wise ``‖x1 − x2‖²``: ``(B, D), (B, D) → (B,)``."""
    check_widths(x1, x2)
    return (x1 - x2).pow(2).sum(1)


def euclidean(x1: torch.Tensor, x2: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Row-wise ``sqrt(‖x1 − x2‖² + eps)``: ``(B, D), (B, D) → (B,)``."""
    return (squared_euclidean(x1, x2) + eps).sqrt()


def cosine(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine distance ``1 − cos(x1, x2)``: ``(B, D), (B, D) → (B,)``."""
    check_widths(x1, x2)
    return 1 - (F.normalize(x1, dim=1) * F.normalize(x2, dim=1)).sum(1)


def rowwise(x1: torch.Tensor, x2: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Row-wise distance under ``metric``: ``(B, D), (B, D) → (B,)``."""
    check_metric(metric)
    return euclidean(x1, x2) if metric == "euclidean" else cosine(x1, x2)


def pairwise(x: torch.Tensor, y: torch.Tensor | None = None, metric: str = "euclidean") -> torch.Tensor:
    """All distances between the rows of ``x (N, D)`` and ``y (M, D)`` under ``metric``: ``(N, M)``.

    Euclidean distances are computed exactly (no ``‖x‖² − 2x·y + ‖y‖²`` shortcut, whose rounding
    puts a non-zero distance between a row and itself) and without ``eps``: they rank and threshold.
    Losses that need gradients at zero distance use :func:`euclidean` on the picked rows.
    """
    check_metric(metric)
    y = x if y is None else y
    check_widths(x, y, "x", "y", same_rows=False)
    if metric == "cosine":
        return 1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
