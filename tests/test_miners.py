"""Miners against brute-force loops (with exact ties), the semi-hard fallback, PKSampler, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fewshot.distances import pairwise
from fewshot.miners import (PKSampler, all_pairs, all_triplets, batch_hard, hardest_negative_pairs,
                            random_pairs, random_triplets, semi_hard)

# ---------------------------------------------------------------------------------------------
# Batches: singleton classes (anchors without a positive), one class (no negative), all
# singletons (no positive), and integer-valued embeddings, whose distances tie exactly.


def shuffled(labels: list[int], seed: int) -> torch.Tensor:
    labels = torch.tensor(labels)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


MIXED = shuffled([0] * 4 + [1] * 3 + [2] + [3] * 5 + [4], seed=0)  # classes 2 and 4: singletons
BATCHES = {
    "mixed": MIXED,
    "two items": torch.tensor([3, 3]),
    "one class": torch.zeros(6, dtype=torch.long),
    "all singletons": torch.arange(5),
    "pairs": torch.tensor([0, 1, 0, 1, 2, 2]),
}


def embeddings_for(labels: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "integer":  # coordinates in {0, 1, 2}: many exactly equal distances
        return torch.randint(0, 3, (len(labels), 2), generator=g).float()
    return torch.randn(len(labels), 4, generator=g)


CASES = [(name, kind) for name in BATCHES for kind in ("random", "integer")]


def as_lists(*tensors: torch.Tensor) -> list[tuple]:
    return list(zip(*(t.tolist() for t in tensors)))


# Brute force: one Python loop per anchor, over the same distance matrix; ties to the lower index.

def positives(y: list[int], a: int) -> list[int]:
    return [j for j in range(len(y)) if y[j] == y[a] and j != a]


def negatives(y: list[int], a: int) -> list[int]:
    return [j for j in range(len(y)) if y[j] != y[a]]


def farthest(d: list[float], js: list[int]) -> int:
    return min(js, key=lambda j: (-d[j], j))


def closest(d: list[float], js: list[int]) -> int:
    return min(js, key=lambda j: (d[j], j))


def brute_batch_hard(d: list[list[float]], y: list[int]) -> list[tuple]:
    return [(a, farthest(d[a], positives(y, a)), closest(d[a], negatives(y, a)))
            for a in range(len(y)) if positives(y, a) and negatives(y, a)]


def brute_semi_hard(d: list[list[float]], y: list[int]) -> list[tuple]:
    out = []
    for a in range(len(y)):
        neg = negatives(y, a)
        for p in positives(y, a):
            if not neg:
                continue
            farther = [j for j in neg if d[a][j] > d[a][p]]
            out.append((a, p, closest(d[a], farther) if farther else farthest(d[a], neg)))
    return out


def brute_hardest_negative_pairs(d: list[list[float]], y: list[int]) -> list[tuple]:
    n = len(y)
    pos = [(i, j, 1.0) for i in range(n) for j in range(i + 1, n) if y[i] == y[j]]
    neg = [(a, closest(d[a], negatives(y, a)), 0.0) for a in range(n) if negatives(y, a)]
    return pos + neg


def brute_all_pairs(y: list[int]) -> list[tuple]:
    n = len(y)
    return [(i, j, float(y[i] == y[j])) for i in range(n) for j in range(i + 1, n)]


def brute_all_triplets(y: list[int]) -> list[tuple]:
    return [(a, p, q) for a in range(len(y)) for p in positives(y, a) for q in negatives(y, a)]


# ---------------------------------------------------------------------------------------------
# Every miner against its brute force.


@pytest.mark.parametrize("name, kind", CASES)
def test_hard_miners_match_brute_force(name: str, kind: str) -> None:
    y = BATCHES[name]
    emb = embeddings_for(y, kind)
    d, yl = pairwise(emb).tolist(), y.tolist()
    assert as_lists(*batch_hard(emb, y)) == brute_batch_hard(d, yl)
    assert as_lists(*semi_hard(emb, y)) == brute_semi_hard(d, yl)
    assert as_lists(*hardest_negative_pairs(emb, y)) == brute_hardest_negative_pairs(d, yl)


@pytest.mark.parametrize("seed", range(5))
def test_hard_miners_match_brute_force_with_many_ties(seed: int) -> None:
    y = shuffled([0] * 6 + [1] * 6 + [2] * 5 + [3], seed)
    emb = embeddings_for(y, "integer", seed)
    d, yl = pairwise(emb).tolist(), y.tolist()
    n_ties = sum(len(row) - len(set(row)) for row in d)
    assert n_ties > 50  # the test is about ties
    assert as_lists(*batch_hard(emb, y)) == brute_batch_hard(d, yl)
    assert as_lists(*semi_hard(emb, y)) == brute_semi_hard(d, yl)
    assert as_lists(*hardest_negative_pairs(emb, y)) == brute_hardest_negative_pairs(d, yl)


def test_hard_miners_use_plain_euclidean_distances() -> None:
    emb = torch.randn(10, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    d = [[math.dist(u, v) for v in emb.tolist()] for u in emb.tolist()]
    assert as_lists(*batch_hard(emb, y)) == brute_batch_hard(d, y.tolist())
    assert as_lists(*semi_hard(emb, y)) == brute_semi_hard(d, y.tolist())


@pytest.mark.parametrize("name", BATCHES)
def test_all_pairs_and_all_triplets_match_brute_force(name: str) -> None:
    y = BATCHES[name]
    assert as_lists(*all_pairs(y)) == brute_all_pairs(y.tolist())
    assert as_lists(*all_triplets(y)) == brute_all_triplets(y.tolist())


def test_batch_hard_never_picks_the_anchor_as_its_positive() -> None:
    # all distances 0: a naive argmax over "distance × same-class mask" returns the anchor itself
    emb, y = torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])
    a, p, n = batch_hard(emb, y)
    assert a.tolist() == [0, 1, 2, 3]
    assert p.tolist() == [1, 0, 3, 2]
    assert n.tolist() == [2, 2, 0, 0]  # ties: the lower index


def test_hard_miners_accept_embeddings_that_require_grad() -> None:
    emb = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    for a, p, n in (batch_hard(emb, y), semi_hard(emb, y)):
        assert not a.requires_grad and a.dtype == p.dtype == n.dtype == torch.int64
        loss = (emb[a] - emb[p]).norm(dim=1).sum() - (emb[a] - emb[n]).norm(dim=1).sum()
        loss.backward()
    assert emb.grad is not None


# ---------------------------------------------------------------------------------------------
# The semi-hard rule on a batch worked out by hand.

# 1-D: anchor 0 at 0 with positives 1 (at 1) and 2 (at 3); negatives at −2, 2.5, −0.5, −1, 1.25.
SEMI_X = torch.tensor([[0.0], [1.0], [3.0], [-2.0], [2.5], [-0.5], [-1.0], [1.25]])
SEMI_Y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])


def test_semi_hard_rule_by_hand() -> None:
    a, p, n = semi_hard(SEMI_X, SEMI_Y)
    picks = {(ai, pi): ni for ai, pi, ni in as_lists(a, p, n) if ai == 0}
    # (0, 1): d_ap = 1; negatives at 2, 2.5, 0.5, 1 (not farther: equal), 1.25 → the one at 1.25
    # (0, 2): d_ap = 3; no negative is farther → the farthest negative, at 2.5
    assert picks == {(0, 1): 7, (0, 2): 4}


def test_semi_hard_2d_tie_goes_to_lower_index() -> None:
    # anchor (0, 0), positive (1, 0); negatives at (0, 2), (2, 0), (0, -2): all at 2, tied;
    # from anchor (1, 0): at √5, 1 (not farther than its positive) and √5, tied
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, -2.0]])
    y = torch.tensor([5, 5, 7, 8, 9])
    a, p, n = semi_hard(emb, y)
    assert as_lists(a, p, n) == [(0, 1, 2), (1, 0, 2)]


def test_semi_hard_falls_back_to_farthest_negative_when_none_is_farther() -> None:
    emb = torch.tensor([[0.0], [10.0], [1.0], [2.0], [-3.0]])
    y = torch.tensor([0, 0, 1, 1, 1])
    a, p, n = semi_hard(emb, y)
    assert as_lists(a, p, n)[:2] == [(0, 1, 4), (1, 0, 4)]  # farthest from 0: −3; from 10: −3


# ---------------------------------------------------------------------------------------------
# Random miners: valid, counted, seeded.


@pytest.mark.parametrize("name", ["mixed", "pairs", "all singletons"])
def test_random_pairs_valid_balanced_and_seeded(name: str) -> None:
    y = BATCHES[name]
    first, second, target = random_pairs(y, torch.Generator().manual_seed(3))
    yl = y.tolist()
    has_pos = any(positives(yl, a) for a in range(len(yl)))
    n_pairs = len(y) // 2
    assert len(first) == len(second) == len(target) == n_pairs
    assert int(target.sum()) == (n_pairs // 2 if has_pos else 0)
    for i, j, t in as_lists(first, second, target):
        assert i != j and (yl[i] == yl[j]) == (t == 1.0)
    again = random_pairs(y, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(again, (first, second, target)))


@pytest.mark.parametrize("name", ["mixed", "pairs", "one class", "all singletons", "two items"])
def test_random_triplets_valid_counted_and_seeded(name: str) -> None:
    y = BATCHES[name]
    valid = set(brute_all_triplets(y.tolist()))
    a, p, n = random_triplets(y, torch.Generator().manual_seed(4))
    assert len(a) == (len(y) // 3 if valid else 0)
    assert a.dtype == p.dtype == n.dtype == torch.int64
    assert set(as_lists(a, p, n)) <= valid
    again = random_triplets(y, torch.Generator().manual_seed(4))
    assert as_lists(*again) == as_lists(a, p, n)


def test_random_miners_reach_every_pair_and_triplet_and_seeds_differ() -> None:
    g = torch.Generator().manual_seed(0)
    seen_triplets, seen_pairs = set(), set()
    for _ in range(400):
        seen_triplets |= set(as_lists(*random_triplets(MIXED, g)))
        seen_pairs |= {(min(i, j), max(i, j), t) for i, j, t in as_lists(*random_pairs(MIXED, g))}
    assert {(a, p) for a, p, _ in seen_triplets} == {(a, p) for a, p, _ in brute_all_triplets(MIXED.tolist())}
    assert seen_pairs == set(brute_all_pairs(MIXED.tolist()))
    draws = [as_lists(*random_triplets(MIXED, torch.Generator().manual_seed(s))) for s in range(2)]
    assert draws[0] != draws[1]


# ---------------------------------------------------------------------------------------------
# Empty results: int64, shape (0,).


@pytest.mark.parametrize("name", ["one class", "all singletons"])
def test_no_valid_triplet_gives_empty_int64(name: str) -> None:
    y = BATCHES[name]
    emb = embeddings_for(y, "random")
    results = [batch_hard(emb, y), semi_hard(emb, y), all_triplets(y),
               random_triplets(y, torch.Generator().manual_seed(0))]
    for triplet in results:
        for idx in triplet:
            assert idx.dtype == torch.int64 and idx.shape == (0,)


def test_no_pair_gives_empty_int64_and_float_target() -> None:
    first, second, target = hardest_negative_pairs(torch.zeros(1, 3), torch.tensor([0]))
    assert first.dtype == second.dtype == torch.int64 and first.shape == second.shape == (0,)
    assert target.dtype.is_floating_point and target.shape == (0,)
    first, second, target = hardest_negative_pairs(torch.zeros(3, 3), torch.tensor([1, 1, 1]))
    assert as_lists(first, second, target) == [(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)]


def test_empty_batch_gives_empty_results() -> None:
    emb, y = torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    for result in (batch_hard(emb, y), semi_hard(emb, y), hardest_negative_pairs(emb, y)):
        assert [t.shape for t in result] == [(0,)] * 3
        assert result[0].dtype == result[1].dtype == torch.int64


# ---------------------------------------------------------------------------------------------
# PKSampler.

PK_LABELS = torch.tensor([0] * 10 + [1] * 10 + [2] * 2 + [3] * 7 + [4] * 1)


def test_pk_batches_hold_p_classes_times_k_items() -> None:
    sampler = PKSampler(PK_LABELS, p=3, k=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(PK_LABELS) // 12
    for batch in batches:
        assert len(batch) == 12 and all(isinstance(i, int) for i in batch)
        classes = PK_LABELS[batch].tolist()
        assert len(set(classes)) == 3
        assert all(classes.count(c) == 4 for c in set(classes))
        for c in set(classes):  # classes with ≥ k items: no repeats
            items = [i for i in batch if PK_LABELS[i] == c]
            if int((PK_LABELS == c).sum()) >= 4:
                assert len(set(items)) == 4


def test_pk_small_classes_are_drawn_with_replacement() -> None:
    sampler = PKSampler(PK_LABELS, p=5, k=4, seed=0)  # every batch holds all 5 classes
    for batch in sampler:
        assert [i for i in batch if PK_LABELS[i] == 4] == [29] * 4
        small = [i for i in batch if PK_LABELS[i] == 2]
        assert len(small) == 4 and set(small) <= {20, 21}


def test_pk_seeded_epochs() -> None:
    first, second = PKSampler(PK_LABELS, 2, 3, seed=7), PKSampler(PK_LABELS, 2, 3, seed=7)
    epochs = [list(first) for _ in range(3)]
    assert epochs == [list(second) for _ in range(3)]  # same seed, same epochs
    assert epochs[0] != epochs[1] != epochs[2]  # re-iterating: the next epoch
    assert list(PKSampler(PK_LABELS, 2, 3, seed=8)) != epochs[0]


def test_pk_length_and_dataloader() -> None:
    assert len(PKSampler(PK_LABELS, 5, 10)) == 1  # 30 // 50 = 0 → at least one batch
    assert len(PKSampler(PK_LABELS, 2, 2)) == 7
    data = TensorDataset(torch.arange(len(PK_LABELS)), PK_LABELS)
    loader = DataLoader(data, batch_sampler=PKSampler(PK_LABELS, 2, 5, seed=0))
    for idx, y in loader:
        assert torch.equal(y, PK_LABELS[idx]) and len(y.unique()) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"p": 6, "k": 2}, "p=6"), ({"p": 1, "k": 2}, "p=1"), ({"p": 0, "k": 2}, "p=0"),
    ({"p": 2, "k": 0}, "k=0"), ({"p": True, "k": 2}, "p=True"), ({"p": 2, "k": 2.0}, "k=2.0"),
    ({"p": 2, "k": 2, "seed": -1}, "seed=-1"),
])
def test_pk_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PKSampler(PK_LABELS, **kwargs)


def test_pk_bad_labels() -> None:
    with pytest.raises(ValueError, match="integers"):
        PKSampler(PK_LABELS.float(), 2, 2)
    with pytest.raises(ValueError, match="1-D"):
        PKSampler(PK_LABELS[None], 2, 2)
    with pytest.raises(TypeError, match="labels"):
        PKSampler(PK_LABELS.tolist(), 2, 2)


# ---------------------------------------------------------------------------------------------
# Bad input to the miners.

HARD_MINERS = [batch_hard, hardest_negative_pairs, semi_hard]


@pytest.mark.parametrize("miner", HARD_MINERS)
def test_hard_miners_bad_input(miner) -> None:
    emb, y = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="differ in length: 4 and 3"):
        miner(emb, y[:3])
    with pytest.raises(ValueError, match="labels must be integers"):
        miner(emb, y.float())
    with pytest.raises(ValueError, match=r"labels must be 1-D, got shape \(1, 4\)"):
        miner(emb, y[None])
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \(B, D\), got shape \(4,\)"):
        miner(emb[:, 0], y)
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \(B, D\), got shape \(4, 2, 1\)"):
        miner(emb[..., None], y)
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        miner(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0], [2.0, 2.0]]), y)
    with pytest.raises(TypeError, match="embeddings"):
        miner(emb.tolist(), y)


def test_semi_hard_takes_no_margin() -> None:
    """The pick does not depend on the loss's margin, so the miner does not take one."""
    with pytest.raises(TypeError):
        semi_hard(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), 0.2)


def test_label_miners_bad_labels() -> None:
    for miner in (all_pairs, all_triplets, random_pairs, random_triplets):
        with pytest.raises(ValueError, match="integers"):
            miner(torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match="1-D"):
            miner(torch.zeros(2, 2, dtype=torch.long))
