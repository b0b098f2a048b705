"""Input checks, in one place: every public function validates through these.

Each check raises ``TypeError`` or ``ValueError`` with a message that names the argument, the value it
got and what was expected. Nothing is silently clipped, dropped or replaced by a default.

This module is on the ground floor with :mod:`fewshot.config`: it imports nothing of the package.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (``bool`` is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer ≥ {minimum}")
    return int(value)


def check_number(value: object, name: str, minimum: float = 0.0, *, strict: bool = False) -> float:
    """``value`` as a finite float ≥ ``minimum`` (``> minimum`` when ``strict``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        ok = float(value) > minimum if strict else float(value) >= minimum
    if not ok:
        bound = f"> {minimum:g}" if strict else f"≥ {minimum:g}"
        raise ValueError(f"{name}={value!r}: expected a finite number {bound}")
    return float(value)


def check_choice(value: object, name: str, choices: tuple) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")


def check_tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Raise if ``tensor`` holds NaN or ±inf (floating tensors only; others pass)."""
    check_tensor(tensor, name)
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite value(s) (shape {tuple(tensor.shape)})")
    return tensor


def check_labels(labels: object, name: str = "labels") -> torch.Tensor:
    """``labels`` must be a 1-D tensor of integers."""
    labels = check_tensor(labels, name)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    return labels


def check_embeddings(embeddings: object, name: str = "embeddings") -> torch.Tensor:
    """``embeddings`` must be a finite 2-D floating tensor ``(B, D)``."""
    embeddings = check_tensor(embeddings, name)
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B, D), got shape {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    return check_finite(embeddings, name)


def check_images_labels(images: object, labels: object) -> None:
    """``images`` and ``labels`` must be tensors of equal length, labels 1-D integers, images finite."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"images and labels must be torch tensors, got {type(images).__name__} "
                        f"and {type(labels).__name__}")
    check_labels(labels)
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} images, "
                         f"{len(labels)} labels")
    check_finite(images, "images")


def check_same_length(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} differ in length: {len(a)} and {len(b)}")
