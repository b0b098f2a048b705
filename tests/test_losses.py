"""Contrastive, triplet, supervised contrastive and prototypical losses: hand-computed values and
brute-force loops, reductions (the mean over active terms too), gradients at zero distance, bad
inputs (NaN embeddings, margins and empty batches included)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from fewshot.losses import (ContrastiveLoss, SupConLoss, TripletLoss, contrastive_loss,
                            prototypical_loss, supervised_contrastive, triplet_loss)


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


# ---------------------------------------------------------------------------------------------
# "mean_active": the mean over the terms with a positive loss only


def test_mean_active_by_hand() -> None:
    # contrastive: per-pair losses 12.5 (same, d = 5), 0.5 (different, d = 1 < m = 2) and 0
    # (different, d = 3 beyond the margin): the active mean skips the zero
    out1, out2 = t([[0, 0], [1, 1], [0, 0]]), t([[3, 4], [1, 2], [0, 3]])
    target = torch.tensor([1, 0, 0])
    active = contrastive_loss(out1, out2, target, 2.0, reduction="mean_active")
    assert active.item() == pytest.approx((12.5 + 0.5) / 2)
    assert contrastive_loss(out1, out2, target, 2.0).item() == pytest.approx(13.0 / 3)
    module = ContrastiveLoss(2.0, "mean_active")
    assert module(out1, out2, target).item() == pytest.approx(6.5)
    assert module.active == (2, 3)
    # triplet: d² gaps 1 − 4 + 1 = −2 (inactive) and 1 − 0.25 + 1 = 1.75 (active)
    a, p, n = t([[0, 0], [0, 0]]), t([[1, 0], [1, 0]]), t([[2, 0], [0.5, 0]])
    assert triplet_loss(a, p, n, 1.0, reduction="mean_active").item() == pytest.approx(1.75)
    assert triplet_loss(a, p, n, 1.0, reduction="mean").item() == pytest.approx(0.875)


def test_mean_active_against_brute_force() -> None:
    g = torch.Generator().manual_seed(3)
    a, p, n = (torch.randn(50, 4, generator=g) for _ in range(3))
    terms = triplet_loss(a, p, n, 1.0, reduction="none")
    positive = [v for v in terms.tolist() if v > 0]
    assert 0 < len(positive) < 50  # some active, some not: the two means differ
    expected = sum(positive) / len(positive)
    assert triplet_loss(a, p, n, 1.0, reduction="mean_active").item() == pytest.approx(expected, rel=1e-5)


def test_mean_active_with_nothing_active_is_zero_with_a_gradient() -> None:
    a = torch.zeros(3, 2, requires_grad=True)
    p, n = torch.zeros(3, 2), torch.full((3, 2), 10.0)  # every negative far beyond the margin
    loss = triplet_loss(a, p, n, 1.0, reduction="mean_active")
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(a.grad, torch.zeros(3, 2))


# ---------------------------------------------------------------------------------------------
# empty batches: a ValueError naming the argument, not a NaN


def test_empty_batches_rejected() -> None:
    empty, one = torch.empty(0, 4), torch.zeros(1, 4)
    with pytest.raises(ValueError, match=r"out1 is an empty batch \(shape \(0, 4\)\)"):
        contrastive_loss(empty, empty, torch.empty(0))
    with pytest.raises(ValueError, match="anchor is an empty batch"):
        triplet_loss(empty, empty, empty)
    with pytest.raises(ValueError, match="anchor is an empty batch"):
        TripletLoss(1.0, "mean_active")(empty, empty, empty)
    with pytest.raises(ValueError, match="embeddings is an empty batch"):
        supervised_contrastive(empty, torch.empty(0, dtype=torch.long))
    with pytest.raises(ValueError, match="support"):
        prototypical_loss(torch.empty(2, 0, 4), torch.zeros(2, 1, 4))
    assert contrastive_loss(one, one, torch.tensor([1])).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# supervised contrastive (Khosla et al. 2020, eq. 2)


def supcon_brute_force(emb: torch.Tensor, labels: torch.Tensor, tau: float) -> list[float | None]:
    """Eq. 2 with explicit loops: one value per anchor, None for anchors without positives."""
    z = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in emb.tolist()]
    dot = [[sum(u * v for u, v in zip(zi, zj)) / tau for zj in z] for zi in z]
    out = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            out.append(None)
            continue
        log_denominator = math.log(sum(math.exp(dot[i][a]) for a in others))
        out.append(-sum(dot[i][p] - log_denominator for p in positives) / len(positives))
    return out


def test_supervised_contrastive_by_hand() -> None:
    # z = (1, 0), (0, 1), (−1, 0) after normalising; labels 0, 0, 1; τ = 1
    # anchor 0: positive 1 (z·z = 0), negative 2 (−1): −log(e⁰ / (e⁰ + e⁻¹)) = log(1 + e⁻¹)
    # anchor 1: positive 0 (0), negative 2 (0): −log(1/2) = log 2
    # anchor 2: no positive in the batch: no term
    emb, labels = t([[2, 0], [0, 3], [-1, 0]]), torch.tensor([0, 0, 1])
    per_anchor = supervised_contrastive(emb, labels, temperature=1.0, reduction="none")
    torch.testing.assert_close(per_anchor, t([math.log(1 + math.exp(-1)), math.log(2), 0.0]))
    mean = supervised_contrastive(emb, labels, temperature=1.0)
    assert mean.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2)
    total = SupConLoss(1.0, "sum")(emb, labels)
    assert total.item() == pytest.approx(math.log(1 + math.exp(-1)) + math.log(2))


@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_supervised_contrastive_against_brute_force(tau: float) -> None:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(12, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])  # class 3 has a single item
    expected = supcon_brute_force(emb, labels, tau)
    got = supervised_contrastive(emb, labels, temperature=tau, reduction="none")
    for value, want in zip(got.tolist(), expected):
        assert value == pytest.approx(0.0 if want is None else want, rel=1e-9, abs=1e-12)
    terms = [v for v in expected if v is not None]
    mean = supervised_contrastive(emb, labels, temperature=tau)
    assert mean.item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_supervised_contrastive_nan_free_with_singletons() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 3])):
        loss = supervised_contrastive(emb, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
        emb.grad = None
    # no positive pair at all: zero, still differentiable
    assert supervised_contrastive(emb, torch.tensor([0, 1, 2, 3])).item() == 0.0


def test_supervised_contrastive_learns_the_right_direction() -> None:
    # pulling a positive closer (and nothing else changing) must lower the loss
    labels = torch.tensor([0, 0, 1, 1])
    far = t([[1, 0], [0, 1], [-1, 0.1], [-1, -0.1]])
    near = t([[1, 0], [1, 0.1], [-1, 0.1], [-1, -0.1]])
    assert supervised_contrastive(near, labels) < supervised_contrastive(far, labels)


def test_supervised_contrastive_bad_inputs() -> None:
    emb = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="temperature"):
        supervised_contrastive(emb, torch.tensor([0, 0, 1]), temperature=0.0)
    with pytest.raises(ValueError, match="labels"):
        supervised_contrastive(emb, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        supervised_contrastive(emb, torch.tensor([0, 0, 1]), reduction="mean_active")
    with pytest.raises(ValueError, match="embeddings"):
        supervised_contrastive(torch.full((3, 2), float("nan")), torch.tensor([0, 0, 1]))


def test_contrastive_on_normalised_embeddings_by_hand() -> None:
    # (3, 0) and (0, 4) normalise to (1, 0) and (0, 1): d = √2 whatever their lengths
    out1, out2 = t([[3, 0], [3, 0]]), t([[0, 4], [0, 4]])
    same = contrastive_loss(out1, out2, torch.tensor([1, 1]), 2.0, "none", normalize=True)
    torch.testing.assert_close(same, t([1.0, 1.0]))  # ½·(√2)²
    different = ContrastiveLoss(2.0, "none", normalize=True)(out1, out2, torch.tensor([0, 0]))
    torch.testing.assert_close(different, t([0.5 * (2 - math.sqrt(2)) ** 2] * 2))
    assert contrastive_loss(out1, out2, torch.tensor([1, 1]), 2.0, "none")[0].item() == \
        pytest.approx(12.5, rel=1e-6)  # without: d = 5
