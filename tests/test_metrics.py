"""Retrieval metrics: precision@1, R-precision and MAP@R on hand-made embeddings."""

from __future__ import annotations

import pytest
import torch

from fewshot.metrics import retrieval_metrics


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
    with pytest.raises(ValueError, match="2 images, 3 labels"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1, 1]), torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="float32"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0.0, 1.0]), torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same_set"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
                          same_set=True)
