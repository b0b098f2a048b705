"""Speed of the package's miners against per-anchor Python loops and pytorch-metric-learning.

Run: ``python benchmarks/bench_miners.py``. For batches of B = 128 and 512 embeddings (D = 32, 10
classes) it prints one Markdown table: the median time of a baseline, of the ``fewshot`` miner on
the same batch, and their ratio. Baselines:

* a per-anchor Python loop as older tutorials write it (the distance matrix computed once, then one
  iteration per anchor, or per anchor–positive pair for semi-hard, with tensor operations inside;
  Python lists for "all triplets"); its picks are checked to equal the vectorised miner's before
  anything is timed;
* pytorch-metric-learning's ``BatchHardMiner`` and ``TripletMarginMiner(type_of_triplets="semihard")``
  with ``LpDistance(normalize_embeddings=False)`` (plain Euclidean, like ours). Below the table it
  reports whether their picks agree with ours where the definitions agree.

pytorch-metric-learning is needed only here (``pip install pytorch-metric-learning``); without it the
PML rows are skipped. One thread, so the numbers do not depend on other jobs' use of the cores. Not
part of the tests: timings depend on the machine.
"""

from __future__ import annotations

import statistics
import timeit
from typing import Callable

import torch

from fewshot.distances import pairwise
from fewshot.miners import all_triplets, batch_hard, hardest_negative_pairs, semi_hard

try:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner
except ImportError:  # benchmark-only dependency
    LpDistance = None

MARGIN = 1.0  # the book's MNIST triplet margin, unnormalised embeddings
D, N_CLASSES = 32, 10
Index = torch.Tensor


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median of ``repeat`` single calls after a warm-up call (3 calls if the warm-up took > 1 s)."""
    if timeit.timeit(fn, number=1) > 1.0:
        repeat = min(repeat, 3)
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeat))


def make_batch(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``b`` embeddings ``(b, D)`` from 10 overlapping Gaussian classes, labels ``(b,)``."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(b) % N_CLASSES)[torch.randperm(b, generator=g)]
    centres = 0.5 * torch.randn(N_CLASSES, D, generator=g)
    return centres[labels] + 0.3 * torch.randn(b, D, generator=g), labels


# ---------------------------------------------------------------------------------------------
# Per-anchor loops, as tutorials write them (same rules and tie-breaks as the package's miners).


def loop_batch_hard(emb: torch.Tensor, labels: torch.Tensor) -> tuple[Index, Index, Index]:
    d = pairwise(emb.detach())
    anchors, pos, neg = [], [], []
    for i in range(len(labels)):
        is_pos = labels == labels[i]
        is_pos[i] = False
        pos_idx, neg_idx = torch.nonzero(is_pos).flatten(), torch.nonzero(labels != labels[i]).flatten()
        if len(pos_idx) == 0 or len(neg_idx) == 0:
            continue
        anchors.append(i)
        pos.append(int(pos_idx[d[i, pos_idx].argmax()]))
        neg.append(int(neg_idx[d[i, neg_idx].argmin()]))
    return torch.tensor(anchors), torch.tensor(pos), torch.tensor(neg)


def loop_semi_hard(emb: torch.Tensor, labels: torch.Tensor) -> tuple[Index, Index, Index]:
    d = pairwise(emb.detach())
    anchors, pos, neg = [], [], []
    for i in range(len(labels)):
        is_pos = labels == labels[i]
        is_pos[i] = False
        pos_idx, neg_idx = torch.nonzero(is_pos).flatten(), torch.nonzero(labels != labels[i]).flatten()
        if len(neg_idx) == 0:
            continue
        d_an = d[i, neg_idx]
        for p in pos_idx.tolist():
            farther = d_an > d[i, p]
            if farther.any():
                n = neg_idx[farther][d_an[farther].argmin()]
            else:
                n = neg_idx[d_an.argmax()]
            anchors.append(i)
            pos.append(p)
            neg.append(int(n))
    return torch.tensor(anchors), torch.tensor(pos), torch.tensor(neg)


def loop_hardest_negative_pairs(emb: torch.Tensor, labels: torch.Tensor
                                ) -> tuple[Index, Index, torch.Tensor]:
    d = pairwise(emb.detach())
    pos_pairs, neg_pairs = [], []
    for i in range(len(labels)):
        later = torch.nonzero(labels[i + 1:] == labels[i]).flatten() + i + 1
        pos_pairs.extend((i, j) for j in later.tolist())
        neg_idx = torch.nonzero(labels != labels[i]).flatten()
        if len(neg_idx):
            neg_pairs.append((i, int(neg_idx[d[i, neg_idx].argmin()])))
    pairs = torch.tensor(pos_pairs + neg_pairs).reshape(-1, 2)
    target = torch.cat([torch.ones(len(pos_pairs)), torch.zeros(len(neg_pairs))])
    return pairs[:, 0], pairs[:, 1], target


def loop_all_triplets(labels: torch.Tensor) -> tuple[Index, Index, Index]:
    """Python lists, as tutorials build "all triplets" (then one tensor at the end)."""
    y = labels.tolist()
    triplets = []
    for a in range(len(y)):
        pos = [j for j in range(len(y)) if y[j] == y[a] and j != a]
        neg = [j for j in range(len(y)) if y[j] != y[a]]
        triplets.extend((a, p, n) for p in pos for n in neg)
    t = torch.tensor(triplets).reshape(-1, 3)
    return t[:, 0], t[:, 1], t[:, 2]


# ---------------------------------------------------------------------------------------------
# Agreement with pytorch-metric-learning where the definitions agree.


def agree_batch_hard(emb: torch.Tensor, labels: torch.Tensor, pml: tuple, ours: tuple) -> str:
    """Same anchors; per anchor the same p and n, or a different index at the same distance."""
    d = pairwise(emb)
    if not torch.equal(pml[0], ours[0]):
        return f"anchors differ ({len(pml[0])} PML vs {len(ours[0])} ours)"
    a = ours[0]
    same_idx = (pml[1] == ours[1]) & (pml[2] == ours[2])
    same_dist = (torch.isclose(d[a, pml[1]], d[a, ours[1]], atol=1e-5)
                 & torch.isclose(d[a, pml[2]], d[a, ours[2]], atol=1e-5))
    return (f"{int(same_idx.sum())}/{len(a)} anchors same (a, p, n); "
            f"{int((same_dist & ~same_idx).sum())} more tie at equal distance; "
            f"{int((~same_dist).sum())} disagree")


def agree_semi_hard(emb: torch.Tensor, labels: torch.Tensor, pml: tuple, ours: tuple,
                    slack: float = 1e-4) -> str:
    """Ours inside the margin ⊂ PML's set; per (a, p) PML covers, ours is its closest negative."""
    b = len(labels)
    d = pairwise(emb)
    a, p, n = ours
    d_ap, d_an = d[a, p], d[a, n]
    inside = (d_an > d_ap + slack) & (d_an < d_ap + MARGIN - slack)  # away from rounding at edges
    pml_keys = (pml[0] * b + pml[1]) * b + pml[2]
    in_pml = torch.isin(((a * b + p) * b + n)[inside], pml_keys)
    # the closest of PML's negatives for each (a, p) it covers
    closest = torch.full((b * b,), float("inf")).scatter_reduce(
        0, pml[0] * b + pml[1], d[pml[0], pml[2]], "amin")
    covered = torch.isfinite(closest[a * b + p])
    same_pick = torch.isclose(d_an[covered], closest[a * b + p][covered], atol=1e-5)
    return (f"{int(in_pml.sum())}/{int(inside.sum())} of our triplets inside the margin are in "
            f"PML's set ({len(pml[0])} triplets); for {int(same_pick.sum())}/{int(covered.sum())} "
            f"(a, p) pairs PML covers, ours is its closest negative")


# ---------------------------------------------------------------------------------------------


def main() -> None:
    torch.set_num_threads(1)
    rows, notes = [], []
    for b in (128, 512):
        emb, labels = make_batch(b)
        slow_repeat = 5 if b == 128 else 3
        tasks = [
            ("batch_hard", lambda: batch_hard(emb, labels), lambda: loop_batch_hard(emb, labels)),
            ("semi_hard", lambda: semi_hard(emb, labels), lambda: loop_semi_hard(emb, labels)),
            ("hardest_negative_pairs", lambda: hardest_negative_pairs(emb, labels),
             lambda: loop_hardest_negative_pairs(emb, labels)),
            ("all_triplets", lambda: all_triplets(labels), lambda: loop_all_triplets(labels)),
        ]
        for name, ours, loop in tasks:
            for u, v in zip(ours(), loop()):
                assert torch.equal(u, v.to(u.dtype)), f"{name}: loop and miner disagree at B={b}"
            t_loop, t_ours = median_time(loop, slow_repeat), median_time(ours, 15)
            rows.append((name, b, "per-anchor loop", t_loop, t_ours))
        if LpDistance is None:
            continue
        lp = LpDistance(normalize_embeddings=False)
        pml_hard = BatchHardMiner(distance=lp)
        pml_semi = TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard", distance=lp)
        for name, ours, pml, agree in (
            ("batch_hard", lambda: batch_hard(emb, labels), lambda: pml_hard(emb, labels),
             agree_batch_hard),
            ("semi_hard", lambda: semi_hard(emb, labels), lambda: pml_semi(emb, labels),
             agree_semi_hard),
        ):
            rows.append((name, b, "PML miner", median_time(pml, 15), median_time(ours, 15)))
            notes.append(f"- {name}, B = {b}: {agree(emb, labels, pml(), ours())}")

    print(f"Miners, D = {D}, {N_CLASSES} classes, median times, 1 thread\n")
    print("| miner | B | baseline | baseline (ms) | fewshot (ms) | speed-up |")
    print("|---|--:|---|--:|--:|--:|")
    for name, b, base, t_base, t_ours in rows:
        print(f"| {name} | {b} | {base} | {1e3 * t_base:.2f} | {1e3 * t_ours:.2f} "
              f"| {t_base / t_ours:.1f}× |")
    if LpDistance is None:
        print("\npytorch-metric-learning is not installed: PML rows skipped "
              "(pip install pytorch-metric-learning).")
    else:
        print(f"\nAgreement with pytorch-metric-learning (LpDistance, not normalised; "
              f"margin {MARGIN}):")
        print("\n".join(notes))


if __name__ == "__main__":
    main()
