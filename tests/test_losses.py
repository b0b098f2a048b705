"""Contrastive, triplet and prototypical losses: hand-computed values, reductions, gradients at zero
distance, bad inputs (NaN embeddings and margins included)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from fewshot.losses import (ContrastiveLoss, TripletLoss, contrastive_loss, prototypical_loss,
                            triplet_loss)


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# contrastive: L = ½d² (target 1, same) or ½max(0, m − d)² (target 0, different)

def test_contrastive_two_point_batch_by_hand() -> None:
    # pair 0: same class, d = ‖(3, 4)‖ = 5 → ½·25 = 12.5
    # pair 1: different, d = 1 inside margin 2 → ½·(2 − 1)² = 0.5
    out1, out2 = t([[0, 0], [1, 1]]), t([[3, 4], [1, 2]])
    loss = ContrastiveLoss(margin=2.0, reduction="none")(out1, out2, torch.tensor([1, 0]))
    torch.testing.assert_close(loss, t([12.5, 0.5]))
    # the same distances with the labels swapped: target 1 really means "same"
    swapped = ContrastiveLoss(margin=2.0, reduction="none")(out1, out2, torch.tensor([0, 1]))
    torch.testing.assert_close(swapped, t([0.0, 0.5]))


@pytest.mark.parametrize("distance, expected", [
    (0.5, 0.5 * 1.5 ** 2),   # inside the margin: pushed apart
    (2.0, 0.0),              # exactly at the margin
    (5.0, 0.0),              # beyond the margin: costs nothing
])
def test_contrastive_negative_pairs_and_margin(distance: float, expected: float) -> None:
    out1, out2 = t([[0, 0], [1, 1]]), t([[0, distance], [1 + distance, 1]])
    loss = contrastive_loss(out1, out2, torch.tensor([0.0, 0.0]), margin=2.0, reduction="none")
    torch.testing.assert_close(loss, t([expected, expected]))


def test_contrastive_same_pair_ignores_margin() -> None:
    out1, out2 = t([[0, 0], [0, 0]]), t([[0, 3], [0, 0]])
    for margin in (0.0, 1.0, 10.0):
        loss = contrastive_loss(out1, out2, torch.tensor([1, 1]), margin=margin, reduction="none")
        torch.testing.assert_close(loss, t([4.5, 0.0]))


@pytest.mark.parametrize("reduction, expected", [("mean", 6.5), ("sum", 13.0)])
def test_contrastive_reductions(reduction: str, expected: float) -> None:
    out1, out2 = t([[0, 0], [1, 1]]), t([[3, 4], [1, 2]])  # per-pair losses 12.5 and 0.5
    target = torch.tensor([1, 0])
    for loss in (ContrastiveLoss(2.0, reduction)(out1, out2, target),
                 contrastive_loss(out1, out2, target, 2.0, reduction)):
        assert loss.shape == ()
        assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_none_reduction_shape() -> None:
    out = ContrastiveLoss(reduction="none")(torch.randn(7, 3), torch.randn(7, 3), torch.randint(0, 2, (7,)))
    assert out.shape == (7,)
    assert ContrastiveLoss().reduction == "mean"


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_contrastive_gradient_finite_at_zero_distance(target: float) -> None:
    out1 = t([[0.3, -1.2], [2.0, 0.5]]).requires_grad_()
    out2 = out1.detach().clone().requires_grad_()  # exactly equal embeddings
    loss = ContrastiveLoss(margin=1.0)(out1, out2, torch.full((2,), target))
    loss.backward()
    expected = 0.0 if target == 1 else 0.5  # ½d² = 0, or ½m² with m = 1
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    for grad in (out1.grad, out2.grad):
        assert grad is not None and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------
# triplet: L = max(0, ‖a − p‖² − ‖a − n‖² + m), squared distances

@pytest.mark.parametrize("negative, margin, expected", [
    ((0.5, 0.0), 1.0, 1.0 - 0.25 + 1.0),  # negative closer than the positive
    ((1.2, 0.0), 1.0, 1.0 - 1.44 + 1.0),  # farther, but inside the margin (plain distances: 0.8)
    ((2.0, 0.0), 3.0, 0.0),               # exactly at the margin: 1 − 4 + 3 = 0
    ((2.5, 0.0), 1.0, 0.0),               # beyond (squared: 1 − 6.25 + 1 < 0)
])
def test_triplet_by_hand(negative: tuple, margin: float, expected: float) -> None:
    a, p, n = t([[0, 0]]), t([[1, 0]]), t([list(negative)])
    assert triplet_loss(a, p, n, margin=margin).item() == pytest.approx(expected, abs=1e-6)
    assert TripletLoss(margin)(a, p, n).item() == pytest.approx(expected, abs=1e-6)


def test_triplet_uses_squared_distances() -> None:
    # ‖a−p‖ = 2, ‖a−n‖ = 2.5, m = 1: squared 4 − 6.25 + 1 < 0 → 0; plain distances would give 0.5
    assert triplet_loss(t([[0, 0]]), t([[2, 0]]), t([[2.5, 0]]), margin=1.0).item() == 0.0


@pytest.mark.parametrize("reduction, expected", [
    ("none", [0.56, 0.0, 1.75]), ("mean", 2.31 / 3), ("sum", 2.31)])
def test_triplet_reductions(reduction: str, expected) -> None:
    a = t([[0, 0], [0, 0], [0, 0]])
    p = t([[1, 0], [1, 0], [1, 0]])
    n = t([[1.2, 0], [3, 0], [0.5, 0]])
    for loss in (TripletLoss(1.0, reduction)(a, p, n), triplet_loss(a, p, n, 1.0, reduction)):
        if reduction == "none":
            assert loss.shape == (3,)
            torch.testing.assert_close(loss, t(expected))
        else:
            assert loss.shape == ()
            assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_gradient_finite_when_all_equal() -> None:
    a = t([[0.5, 1.0, -2.0], [1.0, 1.0, 1.0]]).requires_grad_()
    p = a.detach().clone().requires_grad_()
    n = a.detach().clone().requires_grad_()
    loss = TripletLoss(margin=0.7)(a, p, n)
    loss.backward()
    assert loss.item() == pytest.approx(0.7)
    for grad in (a.grad, p.grad, n.grad):
        assert grad is not None and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------
# bad inputs: ValueError naming the bad value, for both forms

def _contrastive_forms(margin: float = 1.0, reduction: str = "mean"):
    yield lambda x1, x2, y: contrastive_loss(x1, x2, y, margin, reduction)
    yield lambda x1, x2, y: ContrastiveLoss(margin, reduction)(x1, x2, y)


def _triplet_forms(margin: float = 1.0, reduction: str = "mean"):
    yield lambda a, p, n: triplet_loss(a, p, n, margin, reduction)
    yield lambda a, p, n: TripletLoss(margin, reduction)(a, p, n)


def test_contrastive_rejects_shape_mismatch() -> None:
    for form in _contrastive_forms():
        with pytest.raises(ValueError, match=re.escape("(2, 3)")):
            form(torch.zeros(2, 2), torch.zeros(2, 3), torch.tensor([1, 0]))
        with pytest.raises(ValueError, match=re.escape("(2,)")):  # 1-D embeddings
            form(torch.zeros(2), torch.zeros(2), torch.tensor([1, 0]))


def test_contrastive_rejects_targets_other_than_0_1() -> None:
    for form in _contrastive_forms():
        with pytest.raises(ValueError, match="0.5"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1.0, 0.5]))
        with pytest.raises(ValueError, match="-1"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([-1, 1]))


def test_contrastive_rejects_target_of_wrong_length() -> None:
    for form in _contrastive_forms():
        with pytest.raises(ValueError, match=re.escape("(3,)")):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1, 0, 1]))


def test_negative_margin_rejected() -> None:
    for form in [*_contrastive_forms(margin=-0.5)]:
        with pytest.raises(ValueError, match="-0.5"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1, 0]))
    for form in [*_triplet_forms(margin=-0.5)]:
        with pytest.raises(ValueError, match="-0.5"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2))
    # a zero margin is allowed
    assert contrastive_loss(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([0, 0]), margin=0).item() == 0.0


def test_unknown_reduction_rejected() -> None:
    for form in [*_contrastive_forms(reduction="avg")]:
        with pytest.raises(ValueError, match="'avg'"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1, 0]))
    for form in [*_triplet_forms(reduction="avg")]:
        with pytest.raises(ValueError, match="'avg'"):
            form(torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2))


def test_triplet_rejects_shape_mismatch() -> None:
    for form in _triplet_forms():
        with pytest.raises(ValueError, match=re.escape("(3, 2)")):
            form(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3, 2))
        with pytest.raises(ValueError, match=re.escape("(2, 4)")):
            form(torch.zeros(2, 2), torch.zeros(2, 4), torch.zeros(2, 2))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_embeddings_rejected_naming_the_argument(bad: float) -> None:
    good = torch.zeros(2, 2)
    broken = torch.ones(2, 2)
    broken[1, 0] = bad
    for form in _contrastive_forms():
        with pytest.raises(ValueError, match="out2 holds 1 NaN or infinite"):
            form(good, broken, torch.tensor([1, 0]))
        with pytest.raises(ValueError, match="out1 holds 1 NaN or infinite"):
            form(broken, good, torch.tensor([1, 0]))
    for form in _triplet_forms():
        with pytest.raises(ValueError, match="negative holds 1 NaN or infinite"):
            form(good, good, broken)
        with pytest.raises(ValueError, match="anchor holds 1 NaN or infinite"):
            form(broken, good, good)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1.0", None])
def test_non_finite_or_non_numeric_margin_rejected(bad) -> None:
    with pytest.raises(ValueError, match=re.escape(f"margin={bad!r}")):
        ContrastiveLoss(bad)
    with pytest.raises(ValueError, match=re.escape(f"margin={bad!r}")):
        TripletLoss(bad)
    with pytest.raises(ValueError, match=re.escape(f"margin={bad!r}")):
        contrastive_loss(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1, 0]), margin=bad)
    with pytest.raises(ValueError, match=re.escape(f"margin={bad!r}")):
        triplet_loss(torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2), margin=bad)
    with pytest.raises(ValueError, match="margin='soft'"):  # soft is for the triplet loss only
        ContrastiveLoss("soft")


def test_soft_margin_and_plain_distances_by_hand() -> None:
    # ‖a−p‖ = 1, ‖a−n‖ = 2: squared gap 1 − 4 = −3, plain gap 1 − 2 = −1
    a, p, n = t([[0, 0]]), t([[1, 0]]), t([[2, 0]])
    assert triplet_loss(a, p, n, margin="soft").item() == pytest.approx(math.log1p(math.exp(-3)), rel=1e-5)
    assert triplet_loss(a, p, n, margin="soft", squared=False).item() == pytest.approx(
        math.log1p(math.exp(-1)), rel=1e-4)
    assert triplet_loss(a, p, n, margin=1.5, squared=False).item() == pytest.approx(0.5, abs=1e-4)
    assert TripletLoss("soft", squared=False)(a, p, n).item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-4)


def test_prototypical_loss_by_hand() -> None:
    # two classes, K = 2: prototypes (1, 0) and (5, 0); one query per class at (1, 0) and (4, 0)
    support = t([[[0, 0], [2, 0]], [[5, 0], [5, 0]]])
    query = t([[[1, 0]], [[4, 0]]])
    # query 0: −d² = [0, −16] → CE = log(1 + e^−16); query 1: −d² = [−9, −1] → CE = log(1 + e^−8)
    expected = t([math.log1p(math.exp(-16)), math.log1p(math.exp(-8))])
    torch.testing.assert_close(prototypical_loss(support, query, reduction="none"), expected)
    assert prototypical_loss(support, query).item() == pytest.approx(expected.mean().item(), rel=1e-5)
    swapped = prototypical_loss(support, query.flip(0), reduction="none")  # wrong class order: large
    assert (swapped > 5).all()


def test_prototypical_loss_bad_inputs() -> None:
    with pytest.raises(ValueError, match=re.escape("(2, 2, 2) and (3, 1, 2)")):
        prototypical_loss(torch.zeros(2, 2, 2), torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match=re.escape("(2, 2) and (2, 1, 2)")):
        prototypical_loss(torch.zeros(2, 2), torch.zeros(2, 1, 2))
    support = torch.zeros(2, 2, 2)
    support[1, 1, 0] = math.nan
    with pytest.raises(ValueError, match="support holds 1 NaN"):
        prototypical_loss(support, torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="query holds"):
        prototypical_loss(torch.zeros(2, 2, 2), torch.full((2, 1, 2), math.inf))
    with pytest.raises(ValueError, match="'avg'"):
        prototypical_loss(torch.zeros(2, 2, 2), torch.zeros(2, 1, 2), reduction="avg")
