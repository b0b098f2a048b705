"""Few-shot episodes: seen/unseen classes, N-way K-shot sampling, nearest-prototype evaluation.

An *episode* picks ``n_way`` classes, then ``k_shot`` support and ``n_query`` query images of each
(no image in both). A query is classified by the nearest class *prototype*, the mean of that class's
support embeddings (Snell et al. 2017). Accuracy over many episodes is reported as a mean with a 95%
confidence interval, ``1.96 · std / sqrt(episodes)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import torch

from .checks import check_embeddings, check_images_labels, check_int, check_labels
from .config import DEFAULT_SEED, Profile
from .distances import check_metric, pairwise
from .models import EmbedFn, embed as embed_images

DEFAULT_UNSEEN: tuple[int, ...] = (5, 6, 7, 8, 9)


def split_classes(images: torch.Tensor, labels: torch.Tensor,
                  unseen: Sequence[int] = DEFAULT_UNSEEN
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split a dataset into seen classes (for training) and unseen classes (for evaluation).

    Returns:
        ``(seen_images, seen_labels), (unseen_images, unseen_labels)``; labels keep their values.
    """
    check_images_labels(images, labels)
    unseen_t = torch.as_tensor(list(unseen), dtype=labels.dtype)
    present = set(labels.unique().tolist())
    missing = [c for c in unseen_t.tolist() if c not in present]
    if missing:
        raise ValueError(f"unseen classes {missing} do not occur in labels (present: {sorted(present)})")
    is_unseen = torch.isin(labels, unseen_t)
    if is_unseen.all():
        raise ValueError(f"unseen={list(unseen)} covers every class: nothing is left to train on")
    return (images[~is_unseen], labels[~is_unseen]), (images[is_unseen], labels[is_unseen])


@dataclass
class Episode:
    """One N-way K-shot episode, as indices into the dataset it was drawn from.

    Attributes:
        classes: ``(N,)`` the original labels of the episode's classes, in episode order.
        support: ``(N*K,)`` dataset indices of the support images, class by class.
        support_y: ``(N*K,)`` episode labels 0..N-1 of the support images.
        query: ``(N*Q,)`` dataset indices of the query images.
        query_y: ``(N*Q,)`` episode labels 0..N-1 of the query images.
    """

    classes: torch.Tensor
    support: torch.Tensor
    support_y: torch.Tensor
    query: torch.Tensor
    query_y: torch.Tensor


class EpisodeSampler:
    """Draws N-way K-shot episodes from ``labels`` with a seeded generator.

    Args:
        labels: ``(M,)`` integer labels of the pool to draw from.
        n_way: classes per episode (≥ 2, ≤ number of classes).
        k_shot: support images per class (≥ 1).
        n_query: query images per class (≥ 1); every class needs ``k_shot + n_query`` images.
        seed: the same seed gives the same episodes.
    """

    def __init__(self, labels: torch.Tensor, n_way: int, k_shot: int, n_query: int = 15,
                 seed: int = DEFAULT_SEED) -> None:
        labels = check_labels(torch.as_tensor(labels))
        self.classes = labels.unique()
        for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
            check_int(value, name, low)
        if n_way > len(self.classes):
            raise ValueError(f"n_way={n_way} but the data has only {len(self.classes)} classes")
        self.by_class = [torch.nonzero(labels == c).flatten() for c in self.classes]
        need = k_shot + n_query
        small = {int(c): len(ix) for c, ix in zip(self.classes, self.by_class) if len(ix) < need}
        if small:
            raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = {need} images per class are "
                             f"needed, but these classes have fewer: {small}")
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.generator = torch.Generator().manual_seed(seed)

    def sample_many(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``count`` episodes at once.

        Returns:
            ``classes (count, N)`` positions into ``self.classes``, ``support (count, N, K)`` and
            ``query (count, N, Q)`` dataset indices.
        """
        g, n, k, q = self.generator, self.n_way, self.k_shot, self.n_query
        chosen = torch.rand(count, len(self.classes), generator=g).argsort(1)[:, :n]
        # each chosen class: a random permutation of its members (padding sorts last), first K+Q kept
        size = torch.tensor([len(ix) for ix in self.by_class])
        padded = torch.full((len(self.classes), int(size.max())), -1, dtype=torch.long)
        for c, ix in enumerate(self.by_class):
            padded[c, : len(ix)] = ix
        keys = torch.rand(count, n, padded.shape[1], generator=g)
        keys[torch.arange(padded.shape[1]) >= size[chosen][..., None]] = 2.0  # past the class's end
        pick = keys.argsort(2)[..., : k + q]
        members = torch.gather(padded[chosen], 2, pick)
        return chosen, members[..., :k], members[..., k:]

    def sample(self) -> Episode:
        """Draw one episode."""
        n, k, q = self.n_way, self.k_shot, self.n_query
        chosen, support, query = (t[0] for t in self.sample_many(1))
        return Episode(classes=self.classes[chosen],
                       support=support.flatten(), support_y=torch.arange(n).repeat_interleave(k),
                       query=query.flatten(), query_y=torch.arange(n).repeat_interleave(q))

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()


def prototypes(support: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> torch.Tensor:
    """The class prototypes: the mean support embedding of each class ``0..N-1``: ``(N, D)``.

    Raises ``ValueError`` if a class in ``0..n_way-1`` has no support embedding.
    """
    check_embeddings(support, "support")
    check_labels(support_y, "support_y")
    if len(support) != len(support_y):
        raise ValueError(f"{len(support)} support embeddings for {len(support_y)} labels")
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    missing = sorted(set(range(n_way)) - set(support_y.tolist()))
    if missing or int(support_y.min()) < 0:
        raise ValueError(f"the support set has no example of classes {missing or [int(support_y.min())]} "
                         f"(expected labels 0..{n_way - 1}, each at least once)")
    return torch.stack([support[support_y == c].mean(0) for c in range(n_way)])


def prototype_predict(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor,
                      metric: str = "euclidean") -> torch.Tensor:
    """Classify each query by its nearest class prototype (mean support embedding).

    Args:
        support: ``(N*K, D)`` support embeddings; ``support_y``: ``(N*K,)`` labels 0..N-1.
        query: ``(Q, D)`` query embeddings.
        metric: ``"euclidean"`` (nearest prototype) or ``"cosine"`` (smallest cosine distance).

    Returns:
        ``(Q,)`` predicted labels 0..N-1.
    """
    check_metric(metric)
    check_embeddings(query, "query")
    return pairwise(query, prototypes(support, support_y), metric).argmin(1)


@dataclass
class FewShotResult:
    """Accuracy over episodes: ``mean`` and ``ci95`` (half-width), plus every episode's accuracy."""

    mean: float
    ci95: float
    accuracies: torch.Tensor
    n_way: int
    k_shot: int

    def __str__(self) -> str:
        return (f"{self.n_way}-way {self.k_shot}-shot: {100 * self.mean:.1f}% ± {100 * self.ci95:.1f}% "
                f"(95% CI, {len(self.accuracies)} episodes)")


@torch.no_grad()
def evaluate_episodes(embed: EmbedFn | torch.nn.Module | torch.Tensor, images: torch.Tensor,
                      labels: torch.Tensor, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                      episodes: int = 300, metric: str = "euclidean", seed: int = DEFAULT_SEED,
                      batch_size: int = 1024) -> FewShotResult:
    """Few-shot accuracy of an embedding on episodes drawn from ``(images, labels)``.

    Every image is embedded once; then all episodes are drawn and classified by nearest prototype
    at once (:meth:`EpisodeSampler.sample_many`; :func:`prototype_predict` does one episode).

    Args:
        embed: a model with ``get_embedding``, a function ``(B, ...) → (B, D)`` (e.g.
            ``lambda x: x.flatten(1)`` for raw pixels), or precomputed embeddings ``(M, D)``.
        images, labels: the pool, usually the unseen classes' test images.
        n_way, k_shot, n_query, episodes, seed: the episodes (see :class:`EpisodeSampler`);
            a notebook passes ``run.seed`` and ``run.profile.episodes``.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        A :class:`FewShotResult`.
    """
    check_images_labels(images, labels)
    episodes = check_int(episodes, "episodes")
    check_metric(metric)
    sampler = EpisodeSampler(labels, n_way, k_shot, n_query, seed=seed)
    if isinstance(embed, torch.Tensor):
        if len(embed) != len(labels):
            raise ValueError(f"{len(embed)} embeddings for {len(labels)} labels")
        emb = check_embeddings(embed.float().cpu(), "embeddings")
    else:
        emb = embed_images(embed, images, batch_size)
    _, support, query = sampler.sample_many(episodes)  # (E, N, K), (E, N, Q)
    protos = emb[support].mean(2)  # (E, N, D)
    queries = emb[query].flatten(1, 2)  # (E, N*Q, D)
    # one episode at a time through distances.pairwise: exact Euclidean distances, the same
    # numbers as verification and retrieval use (no matrix-product shortcut)
    pred = torch.stack([pairwise(q, p, metric).argmin(1) for q, p in zip(queries, protos)])
    truth = torch.arange(n_way).repeat_interleave(n_query)
    accs = (pred == truth).float().mean(1)
    std = accs.std().item() if episodes > 1 else 0.0
    return FewShotResult(mean=accs.mean().item(), ci95=1.96 * std / math.sqrt(episodes),
                         accuracies=accs, n_way=n_way, k_shot=k_shot)


class EpisodeBatches:
    """Episodes as training batches (a ``batch_sampler`` for :func:`fewshot.train.fit`).

    Each batch is one N-way episode of ``N·(K+Q)`` dataset indices laid out class by class: each
    class's K support images, then its Q queries (what :func:`fewshot.train.episode_step` expects).
    One epoch is ``episodes`` episodes; each iteration draws new ones from the same seeded stream.
    """

    def __init__(self, labels: torch.Tensor, n_way: int, k_shot: int, n_query: int,
                 episodes: int, seed: int = DEFAULT_SEED) -> None:
        self.sampler = EpisodeSampler(labels, n_way, k_shot, n_query, seed=seed)
        self.episodes = check_int(episodes, "episodes")

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[list[int]]:
        _, support, query = self.sampler.sample_many(self.episodes)  # (E, N, K), (E, N, Q)
        for episode in torch.cat([support, query], dim=2):  # (N, K+Q)
            yield episode.flatten().tolist()


class RunLike(Protocol):
    """What :func:`pixel_baseline` reads of a :class:`fewshot.run.Run` (which sits above this
    module, so it is named by its shape): its seed, its profile and its MNIST splits."""

    seed: int
    profile: Profile

    def mnist(self, split: str) -> tuple[torch.Tensor, torch.Tensor]: ...


def pixel_baseline(run: RunLike, k_shot: int = 1, n_way: int = 5,
                   unseen: Sequence[int] = DEFAULT_UNSEEN) -> FewShotResult:
    """Chapter 1's baseline: nearest prototype in raw pixel space on the unseen test digits.

    Everything comes from ``run``: its test digits, ``run.profile.episodes`` episodes and its
    seed, so every chapter that calls it gets the same numbers.
    """
    x, y = run.mnist("test")
    _, (ux, uy) = split_classes(x, y, unseen)
    return evaluate_episodes(lambda im: im.flatten(1), ux, uy, n_way=n_way, k_shot=k_shot,
                             episodes=run.profile.episodes, seed=run.seed)
