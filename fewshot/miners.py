"""Miners: which pairs and triplets of a batch to learn from.

A batch of images is embedded once; a miner looks at the batch's labels (and, for hard mining, its
embeddings) and returns **indices into the batch**. The loss is then applied as
``loss_fn(emb[a], emb[p], emb[n])`` for triplets or ``loss_fn(emb[i], emb[j], target)`` for pairs,
so any miner works with any loss (the split pytorch-metric-learning makes between miners and losses).

Pairs: ``(first, second, target)``, **target 1 = same class**, 0 = different.
Triplets: ``(anchor, positive, negative)``; anchor and positive share a class, the negative does not.

* :func:`all_pairs`, :func:`all_triplets`: every pair / valid triplet in the batch ("batch all").
* :func:`random_pairs`, :func:`random_triplets`: a few random ones per batch: the naive baseline,
  as many pairs (B/2) or triplets (B/3) as a batch of B images could feed as separate inputs.
* :func:`batch_hard`: per anchor, the farthest positive and the closest negative (Hermans et al. 2017).
* :func:`semi_hard`: per (anchor, positive), the closest negative farther than the positive; the
  farthest negative when none is (FaceNet's semi-hard rule as TensorFlow Addons implements it).
* :func:`hardest_negative_pairs`: every positive pair plus each anchor's closest negative (contrastive).
* :class:`PKSampler`: batches of P classes × K items, so every anchor has positives and negatives.

Hard miners rank plain Euclidean distances ``d = ‖x − y‖₂`` (:func:`fewshot.distances.pairwise` on
detached embeddings, one ``(B, B)`` matrix per batch). Ties go to the lower index (``argmin`` and
``argmax`` return the first occurrence), so every miner is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from .checks import check_embeddings, check_int, check_labels, check_same_length
from .distances import pairwise

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _empty(device: torch.device) -> torch.Tensor:
    return torch.empty(0, dtype=torch.long, device=device)


def all_pairs(labels: torch.Tensor) -> Pairs:
    """Every unordered pair inside a batch: ``B·(B−1)/2`` pairs from ``B`` labelled items.

    Returns:
        ``first, second`` ``(P,)`` indices into the batch (``first < second``) and ``target (P,)``
        float, 1 for same class, 0 for different.
    """
    labels = check_labels(labels)
    first, second = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
    return first, second, (labels[first] == labels[second]).float()


def all_triplets(labels: torch.Tensor) -> Triplets:
    """Every valid (anchor, positive, negative) triplet inside a batch ("batch all").

    Anchor and positive are different items of one class (ordered); the negative is any item of
    another class.

    Returns:
        ``anchor, positive, negative`` ``(T,)`` indices into the batch (empty if no class has two items).
    """
    labels = check_labels(labels)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchor, positive = torch.nonzero(same & ~eye, as_tuple=True)
    which, negative = torch.nonzero(~same[anchor], as_tuple=True)
    return anchor[which], positive[which], negative


def _random_choice(mask: torch.Tensor, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each row index in ``rows``, a uniformly random column where ``mask[row]`` is True."""
    keys = torch.rand(len(rows), mask.shape[1], generator=g).to(mask.device)
    keys[~mask[rows]] = -1.0
    return keys.argmax(1)


def random_pairs(labels: torch.Tensor, generator: torch.Generator | None = None) -> Pairs:
    """``B // 2`` random pairs from a batch, half positive and half negative where the batch allows.

    Each pair's first item is a random item of the batch; its partner is a random item of the same
    class (positive) or of another class (negative). Positives are drawn only from items that have a
    same-class partner; if none has, every pair is negative.
    """
    labels = check_labels(labels)
    g = generator or torch.Generator().manual_seed(0)
    n = len(labels)
    diff = labels[:, None] != labels[None, :]
    same = ~diff & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    has_pos, has_neg = same.any(1), diff.any(1)
    n_pairs = n // 2
    n_pos = n_pairs // 2 if bool(has_pos.any()) else 0
    n_neg = n_pairs - n_pos if bool(has_neg.any()) else 0
    firsts, seconds, targets = [], [], []
    for count, eligible, mask, value in ((n_pos, has_pos, same, 1.0), (n_neg, has_neg, diff, 0.0)):
        if count == 0:
            continue
        pool = torch.nonzero(eligible).flatten()
        first = pool[torch.randint(len(pool), (count,), generator=g).to(pool.device)]
        firsts.append(first)
        seconds.append(_random_choice(mask, first, g))
        targets.append(torch.full((count,), value, device=labels.device))
    if not firsts:
        return _empty(labels.device), _empty(labels.device), torch.empty(0, device=labels.device)
    return torch.cat(firsts), torch.cat(seconds), torch.cat(targets)


def random_triplets(labels: torch.Tensor, generator: torch.Generator | None = None) -> Triplets:
    """``B // 3`` random valid triplets from a batch (fewer only if none is valid: then empty).

    The anchor is a random item that has a same-class partner and an item of another class; the
    positive a random other item of its class, the negative a random item of another class.
    """
    labels = check_labels(labels)
    g = generator or torch.Generator().manual_seed(0)
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    same = (labels[:, None] == labels[None, :]) & ~eye
    other = labels[:, None] != labels[None, :]
    pool = torch.nonzero(same.any(1) & other.any(1)).flatten()
    if len(pool) == 0 or n < 3:
        return _empty(labels.device), _empty(labels.device), _empty(labels.device)
    anchor = pool[torch.randint(len(pool), (n // 3,), generator=g).to(pool.device)]
    return anchor, _random_choice(same, anchor, g), _random_choice(other, anchor, g)


# ---------------------------------------------------------------------------------------------
# Hard mining: rank the batch's distances. Shapes: B items, D dimensions.


def _distances_and_masks(embeddings: torch.Tensor, labels: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate, then ``d (B, B)`` plain Euclidean, ``positive (B, B)`` (same class, not self) and
    ``negative (B, B)`` (other class) masks."""
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels)
    check_same_length(embeddings, labels, "embeddings", "labels")
    labels = labels.to(embeddings.device)
    d = pairwise(embeddings.detach())  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    return d, same & ~eye, ~same


def batch_hard(embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
    """One triplet per anchor: its hardest positive and hardest negative (Hermans et al. 2017).

    ``p = argmax_{j: y_j = y_a, j ≠ a} d(a, j)``, ``n = argmin_{j: y_j ≠ y_a} d(a, j)``.

    Args:
        embeddings: ``(B, D)``; only ranked (detached), so gradients flow through the loss only.
        labels: ``(B,)`` integer class labels.

    Returns:
        ``anchor, positive, negative`` ``(A,)`` int64 indices, one row per anchor that has both a
        positive and a negative (ascending anchors); empty if none has.
    """
    d, positive, negative = _distances_and_masks(embeddings, labels)
    if len(d) == 0:
        return _empty(d.device), _empty(d.device), _empty(d.device)
    anchor = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
    hardest_positive = d.masked_fill(~positive, -float("inf")).argmax(1)  # (B,)
    hardest_negative = d.masked_fill(~negative, float("inf")).argmin(1)  # (B,)
    return anchor, hardest_positive[anchor], hardest_negative[anchor]


def semi_hard(embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
    """One triplet per ordered (anchor, positive) pair, its negative chosen by FaceNet's semi-hard rule.

    As TensorFlow Addons' ``triplet_semihard_loss`` picks it:
    ``n = argmin_{j: y_j ≠ y_a, d(a, j) > d(a, p)} d(a, j)`` (the closest negative farther than the
    positive); when no negative is farther, ``n = argmax_{j: y_j ≠ y_a} d(a, j)`` (the farthest).

    The loss's margin α does not change the pick, as in TF Addons, so the miner does not take it:
    the closest negative beyond the positive is the one most likely to lie inside the margin, so
    when it does, the triplet is semi-hard in FaceNet's sense (``d_ap < d_an < d_ap + α``); when it
    does not, no negative does and the triplet's loss is 0. Nothing is dropped, so the loss is
    averaged over every (anchor, positive) pair, as TF Addons does.

    Args:
        embeddings: ``(B, D)``, detached for ranking.
        labels: ``(B,)`` integer class labels.

    Returns:
        ``anchor, positive, negative`` ``(T,)`` int64 indices, ordered by anchor then positive;
        pairs whose anchor has no negative are left out (empty if no triplet is valid).
    """
    d, positive, negative = _distances_and_masks(embeddings, labels)
    if len(d) == 0:
        return _empty(d.device), _empty(d.device), _empty(d.device)
    n_neg = negative.sum(1)  # (B,)
    anchor, pos = torch.nonzero(positive & (n_neg > 0)[:, None], as_tuple=True)  # (T,) each
    if len(anchor) == 0:
        return anchor, pos, pos.clone()
    # each anchor's negatives by distance (stable: ties keep the lower index first), others last
    d_neg, order = d.masked_fill(~negative, float("inf")).sort(dim=1, stable=True)  # (B, B)
    # d(a, p) laid out as (B, K): row a holds its K positives' distances (inf padding)
    counts = torch.bincount(anchor, minlength=len(d))
    rank = torch.arange(len(anchor), device=d.device) - (counts.cumsum(0) - counts)[anchor]
    d_ap = d.new_full((len(d), int(counts.max())), float("inf"))
    d_ap[anchor, rank] = d[anchor, pos]
    # position of the first negative strictly farther than d(a, p); = n_neg[a] when none is
    first_farther = torch.searchsorted(d_neg, d_ap, right=True)[anchor, rank]  # (T,)
    closest_farther = order[anchor, first_farther.clamp(max=len(d) - 1)]
    farthest = d.masked_fill(~negative, -float("inf")).argmax(1)[anchor]
    return anchor, pos, torch.where(first_farther < n_neg[anchor], closest_farther, farthest)


def hardest_negative_pairs(embeddings: torch.Tensor, labels: torch.Tensor) -> Pairs:
    """Pairs for the contrastive loss: every positive pair and each anchor's closest negative.

    Returns:
        ``first, second`` ``(P,)`` int64 indices and ``target (P,)`` float (1 = same class). First
        the positive pairs (unordered, ``first < second``, row-major), then one negative pair
        ``(a, argmin_{j: y_j ≠ y_a} d(a, j))`` per anchor ``a`` that has a negative (ascending
        ``a``; two items that are each other's closest negative give two pairs).
    """
    d, positive, negative = _distances_and_masks(embeddings, labels)
    if len(d) == 0:
        return _empty(d.device), _empty(d.device), torch.empty(0, device=d.device)
    first_pos, second_pos = torch.nonzero(positive.triu(1), as_tuple=True)
    anchor = torch.nonzero(negative.any(1)).flatten()
    closest = d[anchor].masked_fill(~negative[anchor], float("inf")).argmin(1)
    target = torch.cat([torch.ones(len(first_pos), device=d.device),
                        torch.zeros(len(anchor), device=d.device)])
    return torch.cat([first_pos, anchor]), torch.cat([second_pos, closest]), target


# ---------------------------------------------------------------------------------------------
# Batches that hard mining can use.


class PKSampler(Sampler[list[int]]):
    """Batch sampler: every batch holds ``p`` distinct classes × ``k`` items (``p·k`` indices).

    Use as ``DataLoader(dataset, batch_sampler=PKSampler(labels, p, k))``. The ``p`` classes are
    drawn uniformly without replacement per batch; each class's ``k`` items without replacement,
    or with replacement when the class has fewer than ``k`` items. An epoch has
    ``max(1, len(labels) // (p·k))`` batches (about ``len(labels)`` items).

    Seeded: epoch ``e`` (counted from 0, one per ``iter()``) draws from a generator seeded with
    ``seed + e``, so the same seed gives the same sequence of epochs, and re-iterating gives the
    next epoch.

    Args:
        labels: ``(N,)`` integer labels of the dataset.
        p: classes per batch, ≥ 2 (one class gives no negative, so no triplet).
        k: items per class, ≥ 1 (``k = 1`` gives no positive pair; use ``k ≥ 2`` for triplets).
        seed: base seed.
    """

    def __init__(self, labels: torch.Tensor, p: int, k: int, seed: int = 0) -> None:
        labels = check_labels(labels).cpu()
        self.p = check_int(p, "p", 2)
        self.k = check_int(k, "k", 1)
        self.seed = check_int(seed, "seed", 0)
        classes = torch.unique(labels)
        if self.p > len(classes):
            raise ValueError(f"p={p}: expected at most the number of classes in labels "
                             f"({len(classes)})")
        self.members = [torch.nonzero(labels == c).flatten() for c in classes]
        self.n_batches = max(1, len(labels) // (self.p * self.k))
        self.epoch = 0

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for _ in range(self.n_batches):
            batch = []
            for c in torch.randperm(len(self.members), generator=g)[: self.p].tolist():
                items = self.members[c]
                if len(items) >= self.k:
                    pick = torch.randperm(len(items), generator=g)[: self.k]
                else:
                    pick = torch.randint(len(items), (self.k,), generator=g)
                batch.extend(items[pick].tolist())
            yield batch
