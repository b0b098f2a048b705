"""Margin heads: logits against their formulas on 2-D embeddings at known angles, gradients at
cos θ = ±1, SphereFace's ψ and λ, that the class weights train, the CosFace bounds and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fewshot.margins import (HEADS, ArcFace, CosFace, NormSoftmax, SphereFace, max_margin_2d, psi,
                             scale_lower_bound, sphereface_lambda)

PI = math.pi
# Class weights on the unit circle at known angles φ_j (C = 3), in float64 so formulas match tightly.
PHI = torch.tensor([0.0, 2 * PI / 3, -2 * PI / 3], dtype=torch.float64)


def make_head(name: str, **kwargs) -> torch.nn.Module:
    """A float64 head of ``name`` on 2-D embeddings and 3 classes, weights at angles PHI (norm 1.7)."""
    defaults = {"embed_dim": 2, "n_classes": 3}
    if name != "sphereface":
        defaults["scale"] = 8.0
    head = HEADS[name](**{**defaults, **kwargs}).double()
    with torch.no_grad():
        head.weight.copy_(1.7 * torch.stack([PHI.cos(), PHI.sin()], dim=1))  # norm must not matter
    return head


def at_angles(theta: torch.Tensor, radius: float = 2.5) -> torch.Tensor:
    """Embeddings ``(B, 2)`` of norm ``radius`` at angle ``theta`` from class 0's weight."""
    return radius * torch.stack([theta.cos(), theta.sin()], dim=1)


def true_cos(theta: torch.Tensor) -> torch.Tensor:
    """cos θ_j for embeddings at angle ``theta``: ``(B, C)``."""
    return torch.cos(theta[:, None] - PHI[None, :])


THETAS = torch.tensor([0.0, 1e-4, 0.3, 1.0, 2.0, PI - 0.6, PI - 0.4, PI - 0.05, PI],
                      dtype=torch.float64)
LABELS0 = torch.zeros(len(THETAS), dtype=torch.long)  # target = class 0, so θ_y = THETAS


# ------------------------------------------------------------------------------- formulas

def test_normsoftmax_is_scaled_cosine_with_or_without_labels():
    head = make_head("normsoftmax")
    x = at_angles(THETAS)
    expected = 8.0 * true_cos(THETAS)
    torch.testing.assert_close(head(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(head(x, LABELS0), expected, atol=1e-12, rtol=0)


def test_cosface_subtracts_margin_from_target_only():
    head = make_head("cosface", margin=0.35)
    x = at_angles(THETAS)
    plain = 8.0 * true_cos(THETAS)
    logits = head(x, LABELS0)
    torch.testing.assert_close(logits[:, 0], 8.0 * (THETAS.cos() - 0.35), atol=1e-12, rtol=0)
    torch.testing.assert_close(logits[:, 1:], plain[:, 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(head(x), plain, atol=1e-12, rtol=0)


def test_cosface_margin_goes_to_each_rows_own_target():
    head = make_head("cosface", margin=0.2)
    theta = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    labels = torch.tensor([2, 0, 1])
    diff = head(at_angles(theta)) - head(at_angles(theta), labels)
    torch.testing.assert_close(diff, 8.0 * 0.2 * F.one_hot(labels, 3).double(), atol=1e-12, rtol=0)


def arcface_expected(theta: torch.Tensor, m: float, s: float = 8.0) -> torch.Tensor:
    return torch.where(theta + m <= PI, s * torch.cos(theta + m), s * (theta.cos() - m * math.sin(m)))


def test_arcface_target_logit_including_fallback_past_pi():
    m = 0.5
    head = make_head("arcface", margin=m)
    x = at_angles(THETAS)
    logits = head(x, LABELS0)
    torch.testing.assert_close(logits[:, 0], arcface_expected(THETAS, m), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 1:], 8.0 * true_cos(THETAS)[:, 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(head(x), 8.0 * true_cos(THETAS), atol=1e-12, rtol=0)
    # the fallback really triggers: past θ = π − m the logit is NOT s·cos(θ + m) (which rises again)
    past = THETAS + m > PI
    assert past.sum() >= 3
    assert (logits[past, 0] - 8.0 * torch.cos(THETAS[past] + m)).abs().min() > 0.01
    # and before it, it is exactly the angular margin (θ near 0 included)
    torch.testing.assert_close(logits[~past, 0], 8.0 * torch.cos(THETAS[~past] + m), atol=1e-5, rtol=0)


def test_arcface_target_logit_decreases_with_angle():
    theta = torch.linspace(0, PI, 2001, dtype=torch.float64)
    logits = make_head("arcface", margin=0.5)(at_angles(theta), torch.zeros(2001, dtype=torch.long))
    assert bool((logits[1:, 0] <= logits[:-1, 0] + 1e-9).all())


@pytest.mark.parametrize("name", ["cosface", "arcface"])
def test_margin_scale_ramps_the_margin(name):
    head = make_head(name, margin=0.4)
    x = at_angles(THETAS)
    head.margin_scale = 0.0
    torch.testing.assert_close(head(x, LABELS0), head(x), atol=1e-12, rtol=0)
    head.margin_scale = 0.5
    half = make_head(name, margin=0.2)
    torch.testing.assert_close(head(x, LABELS0), half(x, LABELS0), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="margin_scale"):
        head.margin_scale = 1.5
    with pytest.raises(ValueError, match="margin_scale"):
        head.margin_scale = -0.1


# ------------------------------------------------------------------------------- SphereFace

@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sphereface_lambda_zero_is_pure_psi(m):
    head = make_head("sphereface", margin=m)
    assert head.lam == 0.0
    x = at_angles(THETAS, radius=2.5)
    logits = head(x, LABELS0)
    torch.testing.assert_close(logits[:, 0], 2.5 * psi(THETAS, m), atol=1e-12, rtol=0)
    torch.testing.assert_close(logits[:, 1:], 2.5 * true_cos(THETAS)[:, 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(head(x), 2.5 * true_cos(THETAS), atol=1e-12, rtol=0)


def test_sphereface_lambda_blends_and_large_lambda_is_plain_softmax():
    head = make_head("sphereface", margin=4)
    x = at_angles(THETAS, radius=3.0)
    head.lam = 5.0
    expected = 3.0 * (5.0 * THETAS.cos() + psi(THETAS, 4)) / 6.0
    torch.testing.assert_close(head(x, LABELS0)[:, 0], expected, atol=1e-12, rtol=0)
    head.lam = 1e7
    torch.testing.assert_close(head(x, LABELS0), 3.0 * true_cos(THETAS), atol=1e-5, rtol=0)
    head.lam = 0.0
    assert (head(x, LABELS0)[1:, 0] - 3.0 * THETAS[1:].cos()).abs().max() > 0.1  # λ matters
    with pytest.raises(ValueError, match="lam"):
        head.lam = -1.0


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_decreases_monotonically_on_0_pi(m):
    theta = torch.linspace(0, PI, 10001, dtype=torch.float64)
    values = psi(theta, m)
    assert bool((values[1:] < values[:-1]).all())
    assert values[0].item() == pytest.approx(1.0)
    assert values[-1].item() == pytest.approx(1 - 2 * m)  # ψ(π) = −(2m − 1)


def test_psi_is_cos_for_m_1_and_matches_pieces_for_m_4():
    theta = torch.linspace(0, PI, 501, dtype=torch.float64)
    torch.testing.assert_close(psi(theta, 1), theta.cos(), atol=1e-12, rtol=0)
    # m = 4, third piece k = 2: θ ∈ [π/2, 3π/4], ψ = cos 4θ − 4
    t = torch.tensor([0.6 * PI], dtype=torch.float64)
    torch.testing.assert_close(psi(t, 4), torch.cos(4 * t) - 4, atol=1e-12, rtol=0)
    # m = 4, second piece k = 1: ψ = −cos 4θ − 2
    t = torch.tensor([0.3 * PI], dtype=torch.float64)
    torch.testing.assert_close(psi(t, 4), -torch.cos(4 * t) - 2, atol=1e-12, rtol=0)


def test_sphereface_lambda_schedule():
    assert sphereface_lambda(0) == pytest.approx(1000.0)
    assert sphereface_lambda(10) == pytest.approx(1000.0 / 2.2)
    assert sphereface_lambda(10_000) == 5.0
    assert sphereface_lambda(10, base=100.0, gamma=0.1, power=2.0, minimum=0.0) == pytest.approx(25.0)
    values = [sphereface_lambda(s) for s in range(0, 3000, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ------------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", list(HEADS))
def test_gradients_finite_at_cos_plus_minus_one(name):
    head = make_head(name)
    # rows along class 0's weight (cos θ = 1), opposite it (cos θ = −1), for targets 0 and 1
    x = torch.tensor([[2.0, 0.0], [-3.0, 0.0], [2.0, 0.0], [-3.0, 0.0]], dtype=torch.float64,
                     requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    cos = head.cosine(x.detach())
    assert cos[0, 0].item() == 1.0 and cos[1, 0].item() == -1.0  # exactly on the edge
    for lab in (labels, None):
        logits = head(x, lab)
        loss = F.cross_entropy(logits, labels)
        x.grad, head.weight.grad = None, None
        loss.backward()
        assert torch.isfinite(x.grad).all(), f"{name}: non-finite embedding gradient"
        assert torch.isfinite(head.weight.grad).all(), f"{name}: non-finite weight gradient"
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(HEADS))
def test_gradients_finite_at_edge_in_float32(name):
    torch.manual_seed(0)
    kwargs = {} if name == "sphereface" else {"scale": 16.0}
    head = HEADS[name](3, 4, **kwargs)
    x = torch.cat([head.weight.detach() * 2.0, -head.weight.detach()]).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    F.cross_entropy(head(x, labels), labels).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


# ------------------------------------------------------------------------------- weights

@pytest.mark.parametrize("name", list(HEADS))
def test_weight_is_a_parameter_and_one_adam_step_moves_it(name):
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 2)
    kwargs = {} if name == "sphereface" else {"scale": 4.0}
    head = HEADS[name](2, 5, **kwargs)
    assert tuple(head.weight.shape) == (5, 2)
    assert any(p is head.weight for p in head.parameters())
    x, y = torch.randn(32, 6), torch.randint(0, 5, (32,))
    before_w, before_net = head.weight.detach().clone(), net.weight.detach().clone()
    optimizer = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-2)
    loss = F.cross_entropy(head(net(x), y), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(head.weight.detach(), before_w)
    assert not torch.equal(net.weight.detach(), before_net)


def test_weights_follow_global_seed():
    torch.manual_seed(3)
    a = CosFace(4, 3, scale=8.0).weight.detach().clone()
    torch.manual_seed(3)
    b = CosFace(4, 3, scale=8.0).weight.detach().clone()
    assert torch.equal(a, b)


def test_heads_registry():
    assert HEADS == {"normsoftmax": NormSoftmax, "cosface": CosFace, "arcface": ArcFace,
                     "sphereface": SphereFace}
    assert CosFace(2, 3, scale=1.0).margin == 0.35
    assert ArcFace(2, 3, scale=1.0).margin == 0.5
    assert SphereFace(2, 3).margin == 4 and SphereFace(2, 3).lam == 0.0


# ------------------------------------------------------------------------------- bounds

def test_cosface_paper_bounds():
    assert scale_lower_bound(10, 0.99) == pytest.approx(6.11, abs=0.01)
    assert scale_lower_bound(10, 0.9) == pytest.approx(3.95, abs=0.01)
    assert scale_lower_bound(10) == scale_lower_bound(10, 0.99)
    assert max_margin_2d(10) == pytest.approx(0.191, abs=1e-3)
    assert max_margin_2d(5) == pytest.approx(0.691, abs=1e-3)
    with pytest.raises(ValueError, match="p="):
        scale_lower_bound(10, 1.0)
    with pytest.raises(ValueError, match="p="):
        scale_lower_bound(10, 0.05)
    with pytest.raises(ValueError, match="n_classes"):
        max_margin_2d(1)


# ------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("embeddings, labels, match", [
    (torch.zeros(4, 3), None, "embed_dim"),                                  # wrong width
    (torch.zeros(4), None, "2-D"),                                           # not 2-D
    (torch.zeros(2, 4, 2), None, "2-D"),
    (torch.tensor([[1.0, float("nan")]]), None, "NaN"),
    (torch.tensor([[1.0, float("inf")]]), None, "NaN or infinite"),
    (torch.ones(2, 2), torch.tensor([0.0, 1.0]), "integers"),                # float labels
    (torch.ones(2, 2), torch.tensor([[0, 1]]), "1-D"),                       # 2-D labels
    (torch.ones(2, 2), torch.tensor([0, 3]), r"\[0, 3\)"),                   # out of range
    (torch.ones(2, 2), torch.tensor([-1, 0]), r"\[0, 3\)"),
    (torch.ones(2, 2), torch.tensor([0, 1, 2]), "differ in length"),
])
def test_bad_call_inputs_raise(name, embeddings, labels, match):
    head = HEADS[name](2, 3) if name == "sphereface" else HEADS[name](2, 3, scale=8.0)
    with pytest.raises(ValueError, match=match):
        head(embeddings, labels)


@pytest.mark.parametrize("make, match", [
    (lambda: CosFace(2, 3, scale=8.0, margin=-0.1), "margin=-0.1"),
    (lambda: ArcFace(2, 3, scale=8.0, margin=-0.1), "margin=-0.1"),
    (lambda: ArcFace(2, 3, scale=8.0, margin=28.6), "margin=28.6"),         # degrees by mistake
    (lambda: NormSoftmax(2, 3, scale=0.0), "scale=0.0"),
    (lambda: CosFace(2, 3, scale=-1.0), "scale=-1.0"),
    (lambda: ArcFace(2, 3, scale=float("nan")), "scale=nan"),
    (lambda: SphereFace(2, 3, margin=0), "margin=0"),
    (lambda: SphereFace(2, 3, margin=2.5), "margin=2.5"),
    (lambda: SphereFace(2, 3, margin=True), "margin=True"),
    (lambda: NormSoftmax(0, 3, scale=1.0), "embed_dim=0"),
    (lambda: CosFace(2, 1, scale=1.0), "n_classes=1"),
    (lambda: SphereFace(2.0, 3), "embed_dim=2.0"),
    (lambda: psi(torch.tensor([0.5]), 0), "m=0"),
    (lambda: psi(torch.tensor([-0.1, 1.0]), 4), "theta"),
    (lambda: psi(torch.tensor([4.0]), 4), "theta"),
    (lambda: sphereface_lambda(-1), "step=-1"),
    (lambda: sphereface_lambda(1, base=-5.0), "base=-5.0"),
])
def test_bad_settings_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
