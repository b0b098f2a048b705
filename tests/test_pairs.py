"""Pair and triplet sampling, their datasets, and the pair/triplet counts."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fewshot.miners import all_pairs, all_triplets
from fewshot.pairs import (PairDataset, TripletDataset, count_pairs, count_triplets, sample_pairs,
                           sample_triplets)

# class 0 has a single image: it can never anchor a positive pair
LABELS = torch.tensor([0] + [1] * 2 + [2] * 5 + [3] * 4)[torch.randperm(12, generator=torch.Generator().manual_seed(0))]


def fake_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_pairs", [2, 7, 300])
def test_sample_pairs_balanced_and_correct(n_pairs: int) -> None:
    first, second, target = sample_pairs(LABELS, n_pairs, seed=3)
    n_pos = n_pairs // 2
    assert first.shape == second.shape == target.shape == (n_pairs,)
    assert target.dtype.is_floating_point
    assert torch.equal(target, torch.cat([torch.ones(n_pos), torch.zeros(n_pairs - n_pos)]))
    pos, neg = slice(0, n_pos), slice(n_pos, None)
    assert torch.equal(LABELS[first[pos]], LABELS[second[pos]])
    assert (first[pos] != second[pos]).all()
    assert (LABELS[first[neg]] != LABELS[second[neg]]).all()
    for idx in (first, second):
        assert idx.min() >= 0 and idx.max() < len(LABELS)


def test_sample_pairs_reach_every_positive_and_class() -> None:
    first, second, _ = sample_pairs(LABELS, 4000, seed=0)
    pos = {tuple(sorted(p)) for p in zip(first[:2000].tolist(), second[:2000].tolist())}
    n_pos, _ = count_pairs([1, 2, 5, 4])
    assert len(pos) == n_pos  # every positive pair shows up
    assert set(LABELS[second[2000:]].tolist()) == {0, 1, 2, 3}


def test_sample_pairs_seeded() -> None:
    a = sample_pairs(LABELS, 50, seed=5)
    b = sample_pairs(LABELS, 50, seed=5)
    c = sample_pairs(LABELS, 50, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_sample_triplets() -> None:
    anchor, positive, negative = sample_triplets(LABELS, 500, seed=2)
    assert anchor.shape == positive.shape == negative.shape == (500,)
    assert torch.equal(LABELS[anchor], LABELS[positive])
    assert (anchor != positive).all()
    assert (LABELS[anchor] != LABELS[negative]).all()
    again = sample_triplets(LABELS, 500, seed=2)
    assert all(torch.equal(x, y) for x, y in zip((anchor, positive, negative), again))
    other = sample_triplets(LABELS, 500, seed=3)
    assert not torch.equal(anchor, other[0])


def test_pair_dataset() -> None:
    x = fake_images(len(LABELS))
    ds = PairDataset(x, LABELS, n_pairs=10, seed=0)
    assert len(ds) == 10
    x1, x2, target = ds[0]
    assert x1.shape == x2.shape == (1, 28, 28) and target.shape == () and target.item() == 1.0
    assert torch.equal(x1, x[ds.first[0]]) and torch.equal(x2, x[ds.second[0]])
    assert ds[9][2].item() == 0.0
    b1, b2, bt = ds[torch.tensor([0, 5, 9])]  # fit() indexes with a tensor of indices
    assert b1.shape == b2.shape == (3, 1, 28, 28) and bt.shape == (3,)
    assert len(PairDataset(x, LABELS)) == len(LABELS)  # default: one pair per image
    before = (ds.first.clone(), ds.second.clone())
    ds.resample(1)
    assert len(ds) == 10
    assert not (torch.equal(before[0], ds.first) and torch.equal(before[1], ds.second))
    ds.resample(0)
    assert torch.equal(before[0], ds.first) and torch.equal(before[1], ds.second)


def test_triplet_dataset() -> None:
    x = fake_images(len(LABELS))
    ds = TripletDataset(x, LABELS, n_triplets=8, seed=0)
    assert len(ds) == 8
    a, p, n = ds[3]
    assert a.shape == p.shape == n.shape == (1, 28, 28)
    assert torch.equal(a, x[ds.anchor[3]]) and torch.equal(n, x[ds.negative[3]])
    ba, bp, bn = ds[torch.arange(4)]
    assert ba.shape == bp.shape == bn.shape == (4, 1, 28, 28)
    assert len(TripletDataset(x, LABELS)) == len(LABELS)
    before = ds.anchor.clone()
    ds.resample(1)
    assert len(ds) == 8 and not torch.equal(before, ds.anchor)


def _brute_force(sizes: list[int]) -> tuple[int, int, int]:
    labels = [c for c, s in enumerate(sizes) for _ in range(s)]
    idx = range(len(labels))
    pos = sum(labels[i] == labels[j] for i, j in itertools.combinations(idx, 2))
    neg = sum(labels[i] != labels[j] for i, j in itertools.combinations(idx, 2))
    trip = sum(1 for a, p, n in itertools.product(idx, idx, idx)
               if a != p and labels[a] == labels[p] and labels[n] != labels[a])
    return pos, neg, trip


@pytest.mark.parametrize("sizes", [[1, 2, 3], [0, 4], [2, 2, 2], [5], [3, 1, 4, 2], [1, 1]])
def test_counts_match_brute_force(sizes: list[int]) -> None:
    pos, neg, trip = _brute_force(sizes)
    assert count_pairs(sizes) == (pos, neg)
    assert count_triplets(sizes) == trip


def test_all_pairs_and_triplets_enumerate_everything() -> None:
    """The in-batch enumeration (now :mod:`fewshot.miners`) agrees with the counts here."""
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    first, second, target = all_pairs(labels)
    pairs = list(zip(first.tolist(), second.tolist()))
    assert pairs == list(itertools.combinations(range(6), 2))  # every unordered pair once
    assert torch.equal(target, (labels[first] == labels[second]).float())
    assert (int(target.sum()), int((1 - target).sum())) == count_pairs([2, 1, 3])
    a, p, n = all_triplets(labels)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    expected = {(i, j, k) for i, j, k in itertools.product(range(6), repeat=3)
                if i != j and labels[i] == labels[j] and labels[k] != labels[i]}
    assert got == expected and len(a) == count_triplets([2, 1, 3])
    assert len(all_triplets(torch.tensor([0, 1, 2]))[0]) == 0


def test_counts_reject_negative_sizes() -> None:
    with pytest.raises(ValueError, match="-1"):
        count_pairs([3, -1])
    with pytest.raises(ValueError, match="-1"):
        count_triplets([3, -1])


@pytest.mark.parametrize("n_pairs", [1, 0, -2, 2.0])
def test_n_pairs_too_small(n_pairs) -> None:
    with pytest.raises(ValueError, match=f"n_pairs={n_pairs!r}"):
        sample_pairs(LABELS, n_pairs)
    with pytest.raises(ValueError, match=f"n_pairs={n_pairs!r}"):  # never silently "one per image"
        PairDataset(fake_images(len(LABELS)), LABELS, n_pairs=n_pairs)


@pytest.mark.parametrize("n_triplets", [0, -1, 1.0])
def test_n_triplets_too_small(n_triplets) -> None:
    with pytest.raises(ValueError, match=f"n_triplets={n_triplets!r}"):
        sample_triplets(LABELS, n_triplets)
    with pytest.raises(ValueError, match=f"n_triplets={n_triplets!r}"):
        TripletDataset(fake_images(len(LABELS)), LABELS, n_triplets=n_triplets)


def test_one_class_only() -> None:
    with pytest.raises(ValueError, match="2 classes"):
        sample_pairs(torch.tensor([4, 4, 4]), 4)
    with pytest.raises(ValueError, match="2 classes"):
        sample_triplets(torch.tensor([4, 4, 4]), 4)


def test_every_class_has_one_image() -> None:
    with pytest.raises(ValueError, match="every class has 1"):
        sample_pairs(torch.tensor([0, 1, 2]), 4)
    with pytest.raises(ValueError, match="every class has 1"):
        TripletDataset(fake_images(3), torch.tensor([0, 1, 2]))


def test_datasets_check_images_and_labels() -> None:
    for cls in (PairDataset, TripletDataset):
        with pytest.raises(ValueError, match="11 images, 12 labels"):
            cls(fake_images(11), LABELS)
        with pytest.raises(ValueError, match="float32"):
            cls(fake_images(12), LABELS.float())
        for bad in (math.nan, math.inf):
            x = fake_images(12)
            x[4, 0, 1, 1] = bad
            with pytest.raises(ValueError, match="images holds 1 NaN or infinite"):
                cls(x, LABELS)


def test_samplers_reject_float_labels() -> None:
    """Like EpisodeSampler and the datasets, the samplers refuse float labels (0.1 + 0.2 != 0.3)."""
    with pytest.raises(ValueError, match="float"):
        sample_pairs(LABELS.float(), 10)
    with pytest.raises(ValueError, match="float"):
        sample_triplets(LABELS.float(), 10)
