"""Evaluation in one place: retrieval metrics (precision@1, R-precision, MAP@R) on hand-made
embeddings, the Evaluation dataclass, ``evaluate`` and its "mean ± CI", and bad numbers."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot.episodes import evaluate_episodes
from fewshot.evaluate import Evaluation, evaluate, pm, retrieval_metrics
from fewshot.tables import flat


def points(xs: list[float]) -> torch.Tensor:
    """1-D positions as 2-D embeddings on the x-axis."""
    return torch.tensor([[x, 0.0] for x in xs])


# references on a line: A at 1, 3, 5 and B at 2, 4
REF = points([1, 3, 5, 2, 4])
REF_Y = torch.tensor([0, 0, 0, 1, 1])


def test_single_query_map_at_r_differs_from_r_precision() -> None:
    # query A at 0: R = 3, nearest three are A(1), B(2), A(3)
    # P@1 = 1; R-precision = 2/3; MAP@R = (1/3)·(1/1 + 0 + 2/3) = 5/9
    m = retrieval_metrics(points([0]), torch.tensor([0]), REF, REF_Y)
    assert m["precision_at_1"] == pytest.approx(1.0)
    assert m["r_precision"] == pytest.approx(2 / 3)
    assert m["map_at_r"] == pytest.approx(5 / 9)


def test_three_queries_by_hand() -> None:
    # A at 0   : R=3, A B A    → P@1 1, RP 2/3, MAP (1 + 2/3)/3 = 5/9
    # B at 3.9 : R=2, B(4) A(3) → P@1 1, RP 1/2, MAP (1)/2       = 1/2
    # B at 2.9 : R=2, A(3) B(2) → P@1 0, RP 1/2, MAP (1/2)/2     = 1/4
    m = retrieval_metrics(points([0, 3.9, 2.9]), torch.tensor([0, 1, 1]), REF, REF_Y)
    assert m["precision_at_1"] == pytest.approx(2 / 3)
    assert m["r_precision"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert m["map_at_r"] == pytest.approx((5 / 9 + 1 / 2 + 1 / 4) / 3)
    assert set(m) == {"precision_at_1", "r_precision", "map_at_r"}


def test_perfect_ranking_scores_one() -> None:
    m = retrieval_metrics(points([0.9, 2.1]), torch.tensor([0, 1]), points([1, 1.1, 2, 2.2]),
                          torch.tensor([0, 0, 1, 1]))
    assert m == pytest.approx({"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0})


def test_same_set_leaves_each_query_out() -> None:
    # A at 0, 1, 4.5 and B at 4, 6; each point against the others (R: A → 2, B → 1)
    # a(0):   a(1) b(4)     → P@1 1, RP 1/2, MAP 1/2
    # a(1):   a(0) b(4)     → P@1 1, RP 1/2, MAP 1/2
    # a(4.5): b(4) b(6)     → 0, 0, 0
    # b(4):   a(4.5)        → 0, 0, 0
    # b(6):   a(4.5)        → 0, 0, 0
    x, y = points([0, 1, 4.5, 4, 6]), torch.tensor([0, 0, 0, 1, 1])
    m = retrieval_metrics(x, y, x, y, same_set=True)
    assert m == pytest.approx({"precision_at_1": 2 / 5, "r_precision": 1 / 5, "map_at_r": 1 / 5})
    # without leave-one-out every point would find itself first
    assert retrieval_metrics(x, y, x, y)["precision_at_1"] == pytest.approx(1.0)


def _naive(q, qy, ref, ry, same_set):
    p1, rp, mapr = [], [], []
    for i in range(len(q)):
        others = [j for j in range(len(ref)) if not (same_set and j == i)]
        d = {j: float(torch.dist(q[i], ref[j])) for j in others}
        order = sorted(others, key=d.get)
        r = sum(int(ry[j] == qy[i]) for j in others)
        hits = [int(ry[j] == qy[i]) for j in order[:r]]
        p1.append(hits[0])
        rp.append(sum(hits) / r)
        mapr.append(sum(sum(hits[:k + 1]) / (k + 1) for k in range(r) if hits[k]) / r)
    n = len(q)
    return {"precision_at_1": sum(p1) / n, "r_precision": sum(rp) / n, "map_at_r": sum(mapr) / n}


@pytest.mark.parametrize("same_set", [False, True])
def test_matches_a_naive_implementation_across_chunks(same_set: bool) -> None:
    g = torch.Generator().manual_seed(3)
    ref, ry = torch.randn(30, 3, generator=g), torch.arange(30) % 4
    q, qy = (ref, ry) if same_set else (torch.randn(17, 3, generator=g), torch.arange(17) % 4)
    expected = _naive(q, qy, ref, ry, same_set)
    for chunk in (5, 512):  # several chunks: the leave-one-out offset must follow the chunk
        got = retrieval_metrics(q, qy, ref, ry, same_set=same_set, chunk=chunk)
        assert got == pytest.approx(expected, abs=1e-6)
    assert 0 < expected["map_at_r"] < 1


def test_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 3), torch.tensor([0, 1]))


def test_missing_class_in_references() -> None:
    with pytest.raises(ValueError, match=r"\[7\]"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 7]), torch.zeros(3, 2), torch.tensor([0, 0, 1]))


def test_same_set_class_with_a_single_item_has_no_reference() -> None:
    x, y = torch.randn(3, 2), torch.tensor([0, 0, 5])
    with pytest.raises(ValueError, match=r"\[5\]"):
        retrieval_metrics(x, y, x, y, same_set=True)


def test_other_bad_inputs() -> None:
    with pytest.raises(ValueError, match="2 queries for 3 labels"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1, 1]), torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="float32"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0.0, 1.0]), torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same_set"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
                          same_set=True)

    with pytest.raises(ValueError, match="2 references for 3 labels"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="'dot'"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 2), torch.tensor([0, 1]),
                          metric="dot")


def test_empty_query_set() -> None:
    with pytest.raises(ValueError, match="query set is empty"):
        retrieval_metrics(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), REF, REF_Y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_embeddings(bad: float) -> None:
    q = points([0, 3.9])
    q[1, 1] = bad
    with pytest.raises(ValueError, match="query holds 1 NaN or infinite"):
        retrieval_metrics(q, torch.tensor([0, 1]), REF, REF_Y)
    ref = REF.clone()
    ref[2, 0] = bad
    with pytest.raises(ValueError, match="reference holds 1 NaN or infinite"):
        retrieval_metrics(points([0]), torch.tensor([0]), ref, REF_Y)


def test_cosine_ranks_by_direction() -> None:
    # references: class 0 along (1, 0) far out, class 1 along (0, 1) close in; the query (1, 0.1)
    # is nearer class 1 in Euclidean distance, but points the way of class 0
    ref = torch.tensor([[10.0, 0.0], [12.0, 0.5], [0.0, 1.0], [0.1, 1.2]])
    ref_y = torch.tensor([0, 0, 1, 1])
    q, qy = torch.tensor([[1.0, 0.1]]), torch.tensor([0])
    assert retrieval_metrics(q, qy, ref, ref_y)["precision_at_1"] == 0.0
    assert retrieval_metrics(q, qy, ref, ref_y, metric="cosine") == pytest.approx(
        {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0})


# ---------------------------------------------------------------------------------------------
# pm, Evaluation and evaluate

def test_pm() -> None:
    assert pm(0.6034, 0.0111) == "60.3 ± 1.1%"
    assert pm(0.6034, 0.0111, digits=2) == "60.34 ± 1.11%"
    assert pm(0.9123, 0.0042, percent=False, digits=3) == "0.912 ± 0.004"


def labelled_images(labels: torch.Tensor) -> torch.Tensor:
    """Images whose first pixel is 10·label: perfectly separable by ``x.flatten(1)[:, :2]``."""
    x = torch.zeros(len(labels), 1, 28, 28)
    x[:, 0, 0, 0] = 10.0 * labels.float()
    return x


def first_pixels(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)[:, :2]


LABELS = torch.arange(10).repeat(20)  # 20 per class (15 queries + up to 5 shots)
IMAGES = labelled_images(LABELS)


def test_evaluate_retrieval_and_fewshot() -> None:
    result = evaluate(first_pixels, query=(IMAGES[:40], LABELS[:40]), reference=(IMAGES[40:], LABELS[40:]),
                      fewshot_pool=(IMAGES, LABELS), settings=((5, 1), (3, 2)), episodes=20, seed=4)
    assert isinstance(result, Evaluation) and result.metric == "euclidean"
    assert result.precision_at_1 == result.r_precision == result.map_at_r == 1.0
    assert set(result.fewshot) == {(5, 1), (3, 2)}
    assert result.shot(5, 1).mean == 1.0 and len(result.shot(5, 1).accuracies) == 20
    assert result.fewshot_text(5, 1) == "100.0 ± 0.0%"
    row = flat(result)  # the command line's JSON of an evaluation
    assert row == {"metric": "euclidean", "precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0,
                   "fewshot_3way_2shot": 1.0, "fewshot_3way_2shot_ci95": 0.0,
                   "fewshot_5way_1shot": 1.0, "fewshot_5way_1shot_ci95": 0.0}
    assert str(result) == ("[euclidean] P@1 1.000, MAP@R 1.000; 3-way 2-shot 100.0 ± 0.0%; "
                           "5-way 1-shot 100.0 ± 0.0%")
    with pytest.raises(KeyError, match="5-way 5-shot was not measured"):
        result.shot(5, 5)


def test_evaluate_matches_the_parts() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(LABELS), 3, generator=g) + 0.5 * LABELS[:, None]
    table = lambda x: emb[: len(x)]  # noqa: E731  (the whole pool, in order, in one batch)
    q, r = (IMAGES[:50], LABELS[:50]), (IMAGES[50:], LABELS[50:])
    fixed = lambda x: emb[: len(x)] if len(x) == 50 else emb[50:]  # noqa: E731
    result = evaluate(fixed, query=q, reference=r, metric="cosine")
    expected = retrieval_metrics(emb[:50], LABELS[:50], emb[50:], LABELS[50:], metric="cosine")
    assert flat(result) == {"metric": "cosine", **expected}
    leave_one_out = evaluate(table, query=(IMAGES, LABELS))  # reference=None: queries among themselves
    assert leave_one_out.precision_at_1 == pytest.approx(
        retrieval_metrics(emb, LABELS, emb, LABELS, same_set=True)["precision_at_1"])
    shots = evaluate(table, fewshot_pool=(IMAGES, LABELS), settings=((4, 2),), episodes=15, seed=2)
    direct = evaluate_episodes(emb, IMAGES, LABELS, n_way=4, k_shot=2, episodes=15, seed=2)
    assert torch.equal(shots.shot(4, 2).accuracies, direct.accuracies)
    assert shots.precision_at_1 is None and "P@1" not in str(shots)


def test_evaluate_takes_its_episodes_and_seed() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(LABELS), 3, generator=g)
    table = lambda x: emb[: len(x)]  # noqa: E731
    with pytest.raises(ValueError, match="episodes= and seed="):
        evaluate(table, fewshot_pool=(IMAGES, LABELS), settings=((5, 1),))
    seed0 = evaluate(table, fewshot_pool=(IMAGES, LABELS), settings=((5, 1),), episodes=30, seed=0)
    seed5 = evaluate(table, fewshot_pool=(IMAGES, LABELS), settings=((5, 1),), episodes=30, seed=5)
    again = evaluate(table, fewshot_pool=(IMAGES, LABELS), settings=((5, 1),), episodes=30, seed=0)
    assert len(seed0.shot(5, 1).accuracies) == 30
    assert not torch.equal(seed0.shot(5, 1).accuracies, seed5.shot(5, 1).accuracies)
    assert torch.equal(seed0.shot(5, 1).accuracies, again.shot(5, 1).accuracies)


def test_evaluate_rejects_bad_numbers() -> None:
    bad_images = IMAGES.clone()
    bad_images[3, 0, 0, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(first_pixels, query=(bad_images, LABELS))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(first_pixels, fewshot_pool=(bad_images, LABELS), episodes=5, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda x: torch.full((len(x), 2), math.nan), query=(IMAGES, LABELS))
    with pytest.raises(ValueError, match="returned 199 rows for 200 images"):
        evaluate(lambda x: first_pixels(x)[1:], query=(IMAGES, LABELS))
    with pytest.raises(ValueError, match="'dot'"):
        evaluate(first_pixels, query=(IMAGES, LABELS), metric="dot")
    with pytest.raises(ValueError, match="no images to embed|query set is empty"):
        evaluate(first_pixels, query=(IMAGES[:0], LABELS[:0]), reference=(IMAGES, LABELS))
