"""Positive/negative pairs and (anchor, positive, negative) triplets, and how many there are.

Label convention for pairs, used everywhere in the book: **target 1 = same class (positive pair),
target 0 = different classes (negative pair)**. (Hadsell et al. 2006 use the opposite, Y = 0 for
similar; we follow the more common modern convention.)

Sampling is seeded: the same seed gives the same pairs. Training datasets can be re-drawn every
epoch with :meth:`PairDataset.resample`; evaluation sets stay fixed.
"""

from __future__ import annotations

from math import comb
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .config import DEFAULT_SEED
from .checks import check_images_labels, check_int, check_labels


class _ClassIndex:
    """Images grouped by class, for vectorised sampling: ``flat[offset[c] + j]`` is class c's j-th image."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.classes, self.class_of = labels.unique(return_inverse=True)
        self.sizes = torch.bincount(self.class_of, minlength=len(self.classes))
        self.offset = torch.cumsum(self.sizes, 0) - self.sizes
        self.flat = torch.argsort(self.class_of, stable=True)
        self.position = torch.empty_like(self.flat)  # position of each image inside its class
        self.position[self.flat] = torch.arange(len(labels)) - self.offset[self.class_of[self.flat]]

    def member(self, cls: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return self.flat[self.offset[cls] + j]

    def random_member(self, cls: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        u = torch.rand(len(cls), generator=g, dtype=torch.float64)
        return self.member(cls, (u * self.sizes[cls]).long().clamp_max(self.sizes[cls] - 1))

    def other_class(self, cls: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        shift = torch.randint(1, len(self.classes), (len(cls),), generator=g)
        return (cls + shift) % len(self.classes)


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    return check_labels(torch.as_tensor(labels))


def sample_pairs(labels: torch.Tensor, n_pairs: int, seed: int = DEFAULT_SEED
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n_pairs`` balanced pairs: the first half positive, the second half negative.

    Positives: a random first image, then a different image of its class.
    Negatives: a random first image, then an image of a random other class.

    Returns:
        ``first (P,)``, ``second (P,)`` indices into ``labels``, and ``target (P,)`` float:
        1 for same class, 0 for different.
    """
    labels = _check_labels(labels)
    check_int(n_pairs, "n_pairs", 2)
    ix = _ClassIndex(labels)
    if len(ix.classes) < 2:
        raise ValueError(f"pairs need at least 2 classes, got {ix.classes.tolist()}")
    if bool((ix.sizes < 2).all()):
        raise ValueError("positive pairs need a class with at least 2 images; every class has 1")
    g = torch.Generator().manual_seed(seed)
    n_pos, n_neg = n_pairs // 2, n_pairs - n_pairs // 2

    # positives: an anchor from a class with ≥ 2 images, then another image of that class
    eligible = torch.nonzero(ix.sizes[ix.class_of] >= 2).flatten()
    a = eligible[torch.randint(len(eligible), (n_pos,), generator=g)]
    cls = ix.class_of[a]
    u = torch.rand(n_pos, generator=g, dtype=torch.float64)
    j = (u * (ix.sizes[cls] - 1)).long().clamp_max(ix.sizes[cls] - 2)
    j = j + (j >= ix.position[a]).long()  # skip the anchor itself
    b = ix.member(cls, j)

    # negatives: an anchor, then an image of one of the other classes
    c = torch.randint(len(labels), (n_neg,), generator=g)
    d = ix.random_member(ix.other_class(ix.class_of[c], g), g)
    target = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)])
    return torch.cat([a, c]), torch.cat([b, d]), target


def sample_triplets(labels: torch.Tensor, n_triplets: int, seed: int = DEFAULT_SEED
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n_triplets`` random (anchor, positive, negative) index triplets.

    The positive is a different image of the anchor's class; the negative an image of another class.

    Returns:
        ``anchor (T,)``, ``positive (T,)``, ``negative (T,)`` indices into ``labels``.
    """
    labels = _check_labels(labels)
    check_int(n_triplets, "n_triplets", 1)
    first, second, _ = sample_pairs(labels, 2 * n_triplets, seed)
    anchor, positive = first[:n_triplets], second[:n_triplets]
    ix = _ClassIndex(labels)
    g = torch.Generator().manual_seed(seed + 1)
    negative = ix.random_member(ix.other_class(ix.class_of[anchor], g), g)
    return anchor, positive, negative


class PairDataset(Dataset):
    """Balanced positive/negative pairs of images, as a PyTorch dataset.

    Each item is ``(x1, x2, target)`` with ``x1, x2: (1, 28, 28)`` and ``target`` a float scalar,
    1.0 for same class, 0.0 for different.

    Args:
        images: ``(M, 1, 28, 28)``; labels: ``(M,)`` integers.
        n_pairs: pairs per epoch (default: one per image).
        seed: seeds the first draw; :meth:`resample` draws a new set (training), evaluation sets
            simply never call it.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_pairs: int | None = None,
                 seed: int = DEFAULT_SEED) -> None:
        check_images_labels(images, labels)
        self.images, self.labels = images, labels
        self.n_pairs = len(labels) if n_pairs is None else check_int(n_pairs, "n_pairs", 2)
        self.resample(seed)

    def resample(self, seed: int) -> None:
        """Draw a fresh set of pairs (the training loop calls this once per epoch)."""
        self.first, self.second, self.target = sample_pairs(self.labels, self.n_pairs, seed)

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[self.first[i]], self.images[self.second[i]], self.target[i]


class TripletDataset(Dataset):
    """Random (anchor, positive, negative) image triplets, as a PyTorch dataset.

    Each item is ``(anchor, positive, negative)``, each ``(1, 28, 28)``.

    Args:
        images: ``(M, 1, 28, 28)``; labels: ``(M,)`` integers.
        n_triplets: triplets per epoch (default: one per image).
        seed: seeds the first draw; :meth:`resample` draws a new set.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_triplets: int | None = None,
                 seed: int = DEFAULT_SEED) -> None:
        check_images_labels(images, labels)
        self.images, self.labels = images, labels
        self.n_triplets = len(labels) if n_triplets is None else check_int(n_triplets, "n_triplets", 1)
        self.resample(seed)

    def resample(self, seed: int) -> None:
        """Draw a fresh set of triplets (the training loop calls this once per epoch)."""
        self.anchor, self.positive, self.negative = sample_triplets(self.labels, self.n_triplets, seed)

    def __len__(self) -> int:
        return len(self.anchor)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[self.anchor[i]], self.images[self.positive[i]], self.images[self.negative[i]]


def count_pairs(class_sizes: Sequence[int]) -> tuple[int, int]:
    """Number of distinct unordered (positive, negative) pairs for classes of these sizes.

    Positives: Σ C(n_c, 2). Negatives: Σ_{c<c'} n_c·n_c'. Together C(n, 2) with n = Σ n_c.
    """
    sizes = [int(s) for s in class_sizes]
    if any(s < 0 for s in sizes):
        raise ValueError(f"class sizes must be ≥ 0, got {sizes}")
    n = sum(sizes)
    pos = sum(comb(s, 2) for s in sizes)
    return pos, comb(n, 2) - pos


def count_triplets(class_sizes: Sequence[int]) -> int:
    """Number of (anchor, positive, negative) triplets: Σ_c n_c·(n_c − 1)·(n − n_c).

    Anchor and positive are ordered (a ≠ p, same class); the negative is any image of another class.
    """
    sizes = [int(s) for s in class_sizes]
    if any(s < 0 for s in sizes):
        raise ValueError(f"class sizes must be ≥ 0, got {sizes}")
    n = sum(sizes)
    return sum(s * (s - 1) * (n - s) for s in sizes)
