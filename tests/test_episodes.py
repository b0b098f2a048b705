"""Seen/unseen split, N-way K-shot episode sampling, prototype classification and evaluation."""

from __future__ import annotations

import math
import re

import pytest
import torch

from fewshot.episodes import (EpisodeSampler, FewShotResult, evaluate_episodes, prototype_predict,
                              split_classes)


def shuffled_labels(n_classes: int = 8, per_class: int = 20, seed: int = 0) -> torch.Tensor:
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def labelled_images(labels: torch.Tensor) -> torch.Tensor:
    """Images whose first pixel is 10·label: perfectly separable by ``x.flatten(1)[:, :1]``."""
    x = torch.zeros(len(labels), 1, 28, 28)
    x[:, 0, 0, 0] = 10.0 * labels.float()
    return x


# ---------------------------------------------------------------------------------------------
# split_classes

def test_split_classes_default_unseen_5_to_9() -> None:
    labels = shuffled_labels(10, 6)
    x = labelled_images(labels)
    (sx, sy), (ux, uy) = split_classes(x, labels)
    assert set(sy.tolist()) == {0, 1, 2, 3, 4}
    assert set(uy.tolist()) == {5, 6, 7, 8, 9}
    assert len(sy) + len(uy) == len(labels) and len(sy) == 30
    # images stay aligned with their labels
    assert torch.equal(sx[:, 0, 0, 0], 10.0 * sy.float())
    assert torch.equal(ux[:, 0, 0, 0], 10.0 * uy.float())


def test_split_classes_custom_unseen() -> None:
    labels = shuffled_labels(4, 3)
    (_, sy), (_, uy) = split_classes(labelled_images(labels), labels, unseen=[0, 3])
    assert set(sy.tolist()) == {1, 2} and set(uy.tolist()) == {0, 3}


def test_split_classes_errors() -> None:
    labels = shuffled_labels(4, 3)
    x = labelled_images(labels)
    with pytest.raises(ValueError, match=r"\[11\]"):
        split_classes(x, labels, unseen=[2, 11])
    with pytest.raises(ValueError, match="every class"):
        split_classes(x, labels, unseen=[0, 1, 2, 3])


# ---------------------------------------------------------------------------------------------
# EpisodeSampler

@pytest.mark.parametrize("n_way, k_shot, n_query", [(5, 1, 15), (5, 3, 4), (2, 5, 1), (8, 10, 10)])
def test_episode_properties(n_way: int, k_shot: int, n_query: int) -> None:
    labels = shuffled_labels(8, 20)
    sampler = EpisodeSampler(labels, n_way, k_shot, n_query, seed=1)
    for _ in range(25):
        ep = sampler.sample()
        assert len(ep.classes) == n_way and len(set(ep.classes.tolist())) == n_way
        assert ep.support.shape == (n_way * k_shot,) and ep.query.shape == (n_way * n_query,)
        assert len(set(ep.support.tolist()) | set(ep.query.tolist())) == n_way * (k_shot + n_query)
        assert not set(ep.support.tolist()) & set(ep.query.tolist())
        assert torch.equal(ep.support_y, torch.arange(n_way).repeat_interleave(k_shot))
        assert torch.equal(ep.query_y, torch.arange(n_way).repeat_interleave(n_query))
        # class by class: episode label i ↔ original class ep.classes[i]
        assert torch.equal(labels[ep.support], ep.classes[ep.support_y])
        assert torch.equal(labels[ep.query], ep.classes[ep.query_y])


def test_episodes_cover_all_classes_eventually() -> None:
    sampler = EpisodeSampler(shuffled_labels(8, 20), 3, 1, 1, seed=0)
    seen = {c for _ in range(60) for c in sampler.sample().classes.tolist()}
    assert seen == set(range(8))


def _episodes(seed: int, n: int = 5) -> list[tuple]:
    sampler = EpisodeSampler(shuffled_labels(), 5, 2, 3, seed=seed)
    return [tuple(t.tolist() for t in (e.classes, e.support, e.query)) for e in
            (sampler.sample() for _ in range(n))]


def test_sampler_is_seeded() -> None:
    assert _episodes(7) == _episodes(7)
    assert _episodes(7) != _episodes(8)
    it = iter(EpisodeSampler(shuffled_labels(), 5, 2, 3, seed=7))
    assert [tuple(t.tolist() for t in (e.classes, e.support, e.query)) for e in
            (next(it) for _ in range(5))] == _episodes(7)


def test_sample_many_properties() -> None:
    labels = shuffled_labels(8, 20)
    sampler = EpisodeSampler(labels, 4, 2, 3, seed=2)
    chosen, support, query = sampler.sample_many(30)
    assert chosen.shape == (30, 4) and support.shape == (30, 4, 2) and query.shape == (30, 4, 3)
    for e in range(30):
        assert len(set(chosen[e].tolist())) == 4
        classes = sampler.classes[chosen[e]]
        assert torch.equal(labels[support[e]], classes[:, None].expand(4, 2))
        assert torch.equal(labels[query[e]], classes[:, None].expand(4, 3))
        indices = support[e].flatten().tolist() + query[e].flatten().tolist()
        assert len(set(indices)) == len(indices) == 20
    again = EpisodeSampler(labels, 4, 2, 3, seed=2).sample_many(30)
    assert all(torch.equal(a, b) for a, b in zip((chosen, support, query), again))


def test_sampler_errors_name_the_value() -> None:
    labels = shuffled_labels(8, 20)
    with pytest.raises(ValueError, match="n_way=9"):
        EpisodeSampler(labels, 9, 1, 1)
    with pytest.raises(ValueError, match="n_way=1"):
        EpisodeSampler(labels, 1, 1, 1)
    with pytest.raises(ValueError, match="21"):  # 10 + 11 > 20 images per class
        EpisodeSampler(labels, 5, 10, 11)
    with pytest.raises(ValueError, match="k_shot=0"):
        EpisodeSampler(labels, 5, 0, 5)
    with pytest.raises(ValueError, match="n_query=0"):
        EpisodeSampler(labels, 5, 1, 0)
    with pytest.raises(ValueError, match="float32"):
        EpisodeSampler(labels.float(), 5, 1, 1)
    # one class smaller than the rest is named with its size
    small = torch.cat([labels, torch.full((3,), 8)])
    with pytest.raises(ValueError, match=re.escape("{8: 3}")):
        EpisodeSampler(small, 5, 2, 2)


# ---------------------------------------------------------------------------------------------
# prototypes and evaluation

def test_prototype_predict_euclidean_and_cosine() -> None:
    # prototypes: class 0 = mean((0,0),(2,0)) = (1,0); class 1 = mean((10,10),(10,10)) = (10,10)
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [10.0, 10.0]])
    support_y = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[3.0, 2.0], [9.0, 8.0], [0.5, -0.1]])
    # (3,2): distance 2.83 to (1,0) vs 10.6 to (10,10); cosine 0.83 vs 0.98
    assert prototype_predict(support, support_y, query, "euclidean").tolist() == [0, 1, 0]
    assert prototype_predict(support, support_y, query, "cosine").tolist() == [1, 1, 0]
    assert prototype_predict(support, support_y, query).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="'manhattan'"):
        prototype_predict(support, support_y, query, "manhattan")


def test_prototype_uses_the_mean_not_the_nearest_support() -> None:
    # class 0: (0,0), (4,0) → prototype (2,0); class 1: (5,0), (13,0) → prototype (9,0).
    # The query (4.6,0) is nearest to the single support image (5,0) of class 1,
    # but nearer to class 0's prototype (2.6 vs 4.4).
    support = torch.tensor([[0.0, 0.0], [4.0, 0.0], [5.0, 0.0], [13.0, 0.0]])
    assert prototype_predict(support, torch.tensor([0, 0, 1, 1]), torch.tensor([[4.6, 0.0]])).tolist() == [0]


def test_evaluate_separable_embeddings_is_perfect() -> None:
    labels = shuffled_labels(10, 20)
    x = labelled_images(labels)
    result = evaluate_episodes(lambda b: b.flatten(1)[:, :1], x, labels, n_way=5, k_shot=1,
                               n_query=5, episodes=40)
    assert result.mean == 1.0 and result.ci95 == 0.0
    assert len(result.accuracies) == 40 and (result.n_way, result.k_shot) == (5, 1)
    onehot = torch.nn.functional.one_hot(labels).float()
    pre = evaluate_episodes(onehot, x, labels, n_way=3, k_shot=2, episodes=20)
    assert pre.mean == 1.0 and pre.ci95 == 0.0 and (pre.n_way, pre.k_shot) == (3, 2)


def test_evaluate_random_embeddings_near_chance() -> None:
    labels = shuffled_labels(10, 20)
    emb = torch.randn(len(labels), 16, generator=torch.Generator().manual_seed(0))
    result = evaluate_episodes(emb, labelled_images(labels), labels, n_way=5, k_shot=1, episodes=50)
    assert 0.05 < result.mean < 0.5  # chance is 0.2
    acc = result.accuracies
    assert result.mean == pytest.approx(acc.mean().item())
    assert result.ci95 == pytest.approx(1.96 * acc.std().item() / math.sqrt(50))
    # same seed → same episodes → same accuracies
    again = evaluate_episodes(emb, labelled_images(labels), labels, n_way=5, k_shot=1, episodes=50)
    assert torch.equal(again.accuracies, acc)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_evaluate_agrees_with_prototype_predict(metric: str) -> None:
    labels = shuffled_labels(6, 20)
    emb = torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(1)) + labels[:, None] * 0.3
    result = evaluate_episodes(emb, labelled_images(labels), labels, n_way=3, k_shot=2, n_query=4,
                               episodes=25, metric=metric, seed=9)
    _, support, query = EpisodeSampler(labels, 3, 2, 4, seed=9).sample_many(25)
    expected = []
    for e in range(25):
        pred = prototype_predict(emb[support[e].flatten()], torch.arange(3).repeat_interleave(2),
                                 emb[query[e].flatten()], metric)
        expected.append((pred == torch.arange(3).repeat_interleave(4)).float().mean())
    torch.testing.assert_close(result.accuracies, torch.stack(expected))
    assert 0 < result.mean < 1


def test_evaluate_errors() -> None:
    labels = shuffled_labels(10, 20)
    x = labelled_images(labels)
    with pytest.raises(ValueError, match="episodes=0"):
        evaluate_episodes(lambda b: b.flatten(1), x, labels, episodes=0)
    with pytest.raises(ValueError, match="199 embeddings"):
        evaluate_episodes(torch.zeros(199, 2), x, labels)
    with pytest.raises(ValueError, match="'dot'"):
        evaluate_episodes(torch.zeros(200, 2), x, labels, metric="dot")


def test_fewshot_result_str() -> None:
    r = FewShotResult(mean=0.875, ci95=0.0123, accuracies=torch.ones(3), n_way=5, k_shot=1)
    assert str(r) == "5-way 1-shot: 87.5% ± 1.2% (95% CI, 3 episodes)"
