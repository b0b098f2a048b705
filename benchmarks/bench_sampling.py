"""Speed of the package's vectorised samplers and evaluators against naive Python loops.

Run: ``python benchmarks/bench_sampling.py``. Prints, for each task, the time of the naive loop, the
time of the ``fewshot`` function on the same input, and their ratio. Results are checked to agree
before they are timed. Not part of the tests: timings depend on the machine.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Callable

import torch

from fewshot.episodes import EpisodeSampler, evaluate_episodes, prototype_predict
from fewshot.miners import all_triplets
from fewshot.pairs import sample_pairs


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_triplets(labels: list[int]) -> list[tuple[int, int, int]]:
    n = len(labels)
    return [(a, p, q) for a, p, q in itertools.product(range(n), repeat=3)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]]


def naive_pairs(labels: list[int], n_pairs: int, seed: int) -> list[tuple[int, int, int]]:
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    classes = list(by_class)
    out = []
    for k in range(n_pairs):
        a = rng.randrange(len(labels))
        if k < n_pairs // 2:
            b = rng.choice([j for j in by_class[labels[a]] if j != a])
            out.append((a, b, 1))
        else:
            other = rng.choice([c for c in classes if c != labels[a]])
            out.append((a, rng.choice(by_class[other]), 0))
    return out


def naive_episodes(emb: torch.Tensor, labels: torch.Tensor, episodes: int) -> float:
    sampler = EpisodeSampler(labels, 5, 1, 15, seed=0)
    correct = 0.0
    for _ in range(episodes):
        ep = sampler.sample()
        pred = prototype_predict(emb[ep.support], ep.support_y, emb[ep.query])
        correct += (pred == ep.query_y).float().mean().item()
    return correct / episodes


def main() -> None:
    torch.manual_seed(0)
    rows = []

    labels = torch.randint(0, 10, (64,))
    assert len(naive_triplets(labels.tolist())) == len(all_triplets(labels)[0])
    rows.append(("all triplets in a batch of 64", best_of(lambda: naive_triplets(labels.tolist()), 2),
                 best_of(lambda: all_triplets(labels))))

    pool = torch.arange(10).repeat_interleave(400)
    rows.append(("4,000 random pairs from 4,000 images",
                 best_of(lambda: naive_pairs(pool.tolist(), 4000, 0), 2),
                 best_of(lambda: sample_pairs(pool, 4000, 0))))

    emb = torch.randn(500, 32)
    y = torch.arange(5).repeat_interleave(100)
    x = torch.zeros(500, 1, 28, 28)
    rows.append(("300 5-way 1-shot episodes, 32-D",
                 best_of(lambda: naive_episodes(emb, y, 300), 2),
                 best_of(lambda: evaluate_episodes(emb, x, y, episodes=300))))

    print(f"{'task':<40}{'naive loop':>12}{'fewshot':>12}{'speed-up':>10}")
    for name, naive, ours in rows:
        print(f"{name:<40}{1000 * naive:>10.1f}ms{1000 * ours:>10.2f}ms{naive / ours:>9.0f}×")
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads; best of several runs)")


if __name__ == "__main__":
    main()
