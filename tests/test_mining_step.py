"""The mined training step: finite gradients for every miner, and mined recipes that train and cache.

``metric_step(loss, miner)`` embeds a batch once, lets the miner pick indices, and applies the loss.
These tests run every miner of :mod:`fewshot.recipes` through it with the loss it is meant for, at the
edge cases: an anchor that coincides with its positive (distance zero, where a plain Euclidean
distance has no derivative without its epsilon) and batches with nothing to mine (the step must
return a zero that still has a graph, so ``backward`` works). Then ``train_method`` with each miner
and sampler for one epoch: it trains, and every miner/sampler gets its own cache entry.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fewshot import cache
from fewshot.losses import ContrastiveLoss, TripletLoss
from fewshot.models import EmbeddingNet, TripletNet
from fewshot.config import PROFILES
from fewshot.recipes import PAIR_MINERS, TRIPLET_MINERS, make_miner, train_method
from fewshot.run import Run
from fewshot.spec import SOFT
from fewshot.train import metric_step

SPEC = Run(torch.device("cpu"), PROFILES["quick"], 0, "").spec

TRIPLET_LOSSES = {"margin 1": TripletLoss(1.0), "soft, plain distances": TripletLoss("soft", squared=False)}


class Table(nn.Module):
    """An "embedding network" that looks its inputs up in a table: ``images`` are row indices.

    It lets a test place embeddings exactly (two rows equal: distance zero)."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(rows.clone().float())

    def get_embedding(self, images: torch.Tensor) -> torch.Tensor:
        return self.weight[images]


def run_step(miner_name: str, kind: str, loss: nn.Module, rows: torch.Tensor, labels: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One mined step on a :class:`Table`; returns the loss and the gradient of the table."""
    model = Table(rows)
    step = metric_step(loss, make_miner(miner_name, kind, seed=0))
    value = step(model, torch.arange(len(labels)), labels)
    value.backward()
    return value.detach(), model.weight.grad


def coincident_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """6 points in 3 classes. Item 1 sits exactly on item 0, its own class (d(a, p) = 0), and so
    does item 3 on item 2; item 4 sits on item 0 too but is of another class (d(a, n) = 0)."""
    rows = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return rows, labels


@pytest.mark.parametrize("loss_name", list(TRIPLET_LOSSES))
@pytest.mark.parametrize("miner_name", TRIPLET_MINERS)
def test_triplet_step_has_a_finite_gradient_at_zero_distance(miner_name: str, loss_name: str) -> None:
    rows, labels = coincident_batch()
    value, grad = run_step(miner_name, "triplet", TRIPLET_LOSSES[loss_name], rows, labels)
    assert grad is not None and torch.isfinite(grad).all() and torch.isfinite(value)
    if miner_name != "random":  # a few random triplets may all be satisfied already
        assert value > 0 and grad.abs().sum() > 0  # the coincident negative (item 4) costs


@pytest.mark.parametrize("miner_name", PAIR_MINERS)
def test_pair_step_has_a_finite_gradient_at_zero_distance(miner_name: str) -> None:
    rows, labels = coincident_batch()
    value, grad = run_step(miner_name, "siamese", ContrastiveLoss(1.0), rows, labels)
    assert grad is not None and torch.isfinite(grad).all() and torch.isfinite(value)
    if miner_name != "random":
        assert value > 0 and grad.abs().sum() > 0


def test_batch_hard_picks_the_coincident_items() -> None:
    """The edge case above is really exercised: batch-hard pairs item 4 with item 0 as a negative
    at distance zero, and the tie-free hardest positive of item 0 is item 1 (distance zero)."""
    rows, labels = coincident_batch()
    a, p, n = make_miner("batch_hard", "triplet", seed=0)(rows, labels)
    assert (a[0], p[0], n[0]) == (0, 1, 4)


@pytest.mark.parametrize("miner_name", TRIPLET_MINERS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["no positive", "no negative"])
def test_triplet_step_without_triplets_is_a_zero_with_a_graph(miner_name: str, labels: list) -> None:
    rows = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    value, grad = run_step(miner_name, "triplet", TripletLoss(1.0), rows, torch.tensor(labels))
    assert value == 0
    assert grad is not None and torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("miner_name", PAIR_MINERS)
def test_pair_step_without_pairs_is_a_zero_with_a_graph(miner_name: str) -> None:
    rows = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))
    value, grad = run_step(miner_name, "siamese", ContrastiveLoss(1.0), rows, torch.tensor([3]))
    assert value == 0
    assert grad is not None and torch.equal(grad, torch.zeros_like(grad))


def test_real_network_batch_hard_with_a_duplicated_image(small_train: tuple) -> None:
    """Through the book's CNN: the same image twice in a batch embeds to one point (d(a, p) = 0)."""
    images, labels = small_train
    x = torch.cat([images[:15], images[:1]])
    y = torch.cat([labels[:15], labels[:1]])
    torch.manual_seed(0)
    model = TripletNet(EmbeddingNet(2))
    for name, loss in TRIPLET_LOSSES.items():
        model.zero_grad()
        value = metric_step(loss, make_miner("batch_hard", "triplet", seed=0))(model, x, y)
        value.backward()
        grads = [q.grad for q in model.parameters() if q.grad is not None]
        assert torch.isfinite(value), name
        assert grads and all(torch.isfinite(g).all() for g in grads), name


CONFIGS = [  # (method, miner, sampler, margin, options)
    *[("triplet", m, s, None, None) for m in TRIPLET_MINERS for s in ("random", "pk")],
    ("triplet", "batch_hard", "pk", SOFT, {"squared": False}),
    *[("siamese", m, "random", None, None) for m in PAIR_MINERS],
    ("siamese", "hardest_negative", "pk", None, None),
]


def test_every_miner_and_sampler_trains_and_gets_its_own_cache_entry(small_train: tuple) -> None:
    images, labels = small_train
    seen: dict[tuple, tuple[str, str]] = {}
    for method, miner, sampler, margin, options in CONFIGS:
        start = len(cache.default().entries)
        spec = SPEC(method, 2, miner=miner, sampler=sampler, margin=margin, epochs=1, **(options or {}))
        model, history = train_method(spec, images, labels, progress=False)
        assert len(history.loss) == 1 and all(torch.isfinite(torch.tensor(history.loss)))
        assert model.get_embedding(images[:4]).shape == (4, 2)
        (entry,) = cache.default().entries[start:]
        assert not entry["cached"]
        assert entry["spec"]["miner"] == miner and entry["spec"]["sampler"] == sampler
        seen[(method, miner, sampler, margin)] = (entry["name"], entry["key"])
    keys = [key for _, key in seen.values()]
    assert len(set(keys)) == len(keys), "two different trainings share a cache key"
    names = {(cfg[0], cfg[1], cfg[2]): name for cfg, (name, _) in seen.items()}
    assert len(set(names.values())) == len(names), "two miners/samplers share a cache name"
    # the same spec again comes from the cache, under the same name and key
    start = len(cache.default().entries)
    train_method(SPEC("triplet", 2, miner="batch_hard", sampler="pk", epochs=1), images, labels,
                 progress=False)
    (entry,) = cache.default().entries[start:]
    assert entry["cached"]
    assert (entry["name"], entry["key"]) == seen[("triplet", "batch_hard", "pk", None)]
