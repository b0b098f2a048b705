"""Seen/unseen split, N-way K-shot episode sampling, prototypes, evaluation, episode batches, and the
pixel baseline following the run seed."""

from __future__ import annotations

import math
import re

import pytest
import torch

import fewshot
from fewshot.episodes import (EpisodeBatches, EpisodeSampler, FewShotResult, evaluate_episodes,
                              pixel_baseline, prototype_predict, prototypes, split_classes)


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


# ---------------------------------------------------------------------------------------------
# bad numbers and missing classes

def test_prototypes_by_hand_and_missing_class() -> None:
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    torch.testing.assert_close(prototypes(support, torch.tensor([0, 0, 1])), torch.tensor([[1.0, 0.0], [10.0, 10.0]]))
    with pytest.raises(ValueError, match=r"no example of classes \[1\]"):
        prototypes(support, torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match=r"\[2\]"):
        prototypes(support, torch.tensor([0, 0, 1]), n_way=3)


def test_prototype_predict_support_missing_a_class() -> None:
    # labels 0 and 2: class 1 has no support example, so "predict 2" would be silently shifted
    support = torch.tensor([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    with pytest.raises(ValueError, match=r"no example of classes \[1\]"):
        prototype_predict(support, torch.tensor([0, 0, 2]), torch.tensor([[8.0, 8.0]]))
    with pytest.raises(ValueError, match="-1"):
        prototype_predict(support, torch.tensor([0, -1, 1]), torch.tensor([[8.0, 8.0]]))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_prototype_predict_rejects_non_finite(bad: float) -> None:
    support, support_y, query = torch.zeros(2, 2), torch.tensor([0, 1]), torch.ones(3, 2)
    with pytest.raises(ValueError, match="query holds 1 NaN"):
        prototype_predict(support, support_y, query.index_put((torch.tensor(1), torch.tensor(0)), torch.tensor(bad)))
    with pytest.raises(ValueError, match="support holds 1 NaN"):
        prototype_predict(support.index_put((torch.tensor(0), torch.tensor(1)), torch.tensor(bad)), support_y, query)


def test_evaluate_rejects_nan_images_and_embeddings() -> None:
    labels = shuffled_labels(10, 20)
    x = labelled_images(labels)
    bad_x = x.clone()
    bad_x[3, 0, 5, 5] = math.nan
    with pytest.raises(ValueError, match="images holds 1 NaN"):
        evaluate_episodes(lambda b: b.flatten(1), bad_x, labels, episodes=5)
    emb = torch.randn(len(labels), 4)
    emb[7, 2] = math.inf
    with pytest.raises(ValueError, match="embeddings holds 1 NaN or infinite"):
        evaluate_episodes(emb, x, labels, episodes=5)

    def nan_after_first_batch(b: torch.Tensor) -> torch.Tensor:
        out = b.flatten(1)[:, :2].clone()
        out[-1, 0] = math.nan
        return out

    with pytest.raises(ValueError, match="embeddings holds"):
        evaluate_episodes(nan_after_first_batch, x, labels, episodes=5)


def test_evaluate_rejects_an_embedding_with_the_wrong_row_count() -> None:
    labels = shuffled_labels(10, 20)
    with pytest.raises(ValueError, match="returned 199 rows for 200 images"):
        evaluate_episodes(lambda b: b.flatten(1)[1:], labelled_images(labels), labels, episodes=5)


# ---------------------------------------------------------------------------------------------
# EpisodeBatches: episodes as training batches

def test_episode_batches_layout_and_seed() -> None:
    labels = shuffled_labels(8, 20)
    batches = EpisodeBatches(labels, n_way=4, k_shot=2, n_query=3, episodes=6, seed=1)
    assert len(batches) == 6
    epoch = list(batches)
    assert len(epoch) == 6
    for batch in epoch:
        assert len(batch) == 4 * 5 and len(set(batch)) == 20
        per_class = labels[torch.tensor(batch)].view(4, 5)  # class by class: K support, then Q queries
        assert (per_class == per_class[:, :1]).all()
        assert len(set(per_class[:, 0].tolist())) == 4
    again = list(EpisodeBatches(labels, 4, 2, 3, episodes=6, seed=1))
    assert again == epoch
    assert list(batches) != epoch  # the next epoch draws new episodes from the same stream
    assert list(EpisodeBatches(labels, 4, 2, 3, episodes=6, seed=2)) != epoch
    with pytest.raises(ValueError, match="episodes=0"):
        EpisodeBatches(labels, 4, 2, 3, episodes=0)


# ---------------------------------------------------------------------------------------------
# the pixel baseline follows the run seed

def test_pixel_baseline_follows_the_run_seed(mnist: dict) -> None:
    from dataclasses import replace

    def few(run):  # 40 episodes: quick
        return replace(run, profile=replace(run.profile, episodes=40))

    a = pixel_baseline(few(fewshot.setup(0, verbose=False)))
    b = pixel_baseline(few(fewshot.setup(5, verbose=False)))
    c = pixel_baseline(few(fewshot.setup(0, verbose=False)))
    assert torch.equal(a.accuracies, c.accuracies)  # setup(0) reproduces the numbers
    assert not torch.equal(a.accuracies, b.accuracies)  # setup(5) changes them
    assert (a.n_way, a.k_shot, len(a.accuracies)) == (5, 1, 40)
    assert 0.2 < a.mean < 1  # raw pixels beat chance on unseen digits
