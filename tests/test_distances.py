"""Euclidean and cosine distances, once for everything: values by hand, exact zeros, finite gradients."""

from __future__ import annotations

import math
import re

import pytest
import torch

from fewshot.distances import (EPS, check_metric, cosine, euclidean, pairwise, rowwise,
                               squared_euclidean)


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_rowwise_euclidean_by_hand() -> None:
    x1, x2 = t([[0, 0], [1, 1]]), t([[3, 4], [1, 1]])
    torch.testing.assert_close(squared_euclidean(x1, x2), t([25, 0]))
    torch.testing.assert_close(euclidean(x1, x2), t([5, math.sqrt(EPS)]))
    torch.testing.assert_close(rowwise(x1, x2), euclidean(x1, x2), rtol=0, atol=0)
    assert euclidean(x1, x2, eps=0.0)[1].item() == 0.0


def test_rowwise_cosine_by_hand() -> None:
    x1 = t([[1, 0], [1, 0], [1, 0], [2, 2]])
    x2 = t([[5, 0], [0, 3], [-1, 0], [1, 0]])  # same direction, orthogonal, opposite, 45°
    expected = t([0, 1, 2, 1 - math.sqrt(0.5)])
    torch.testing.assert_close(cosine(x1, x2), expected)
    torch.testing.assert_close(rowwise(x1, x2, "cosine"), expected)


def test_euclidean_gradient_finite_at_zero_distance() -> None:
    x1 = t([[0.3, -1.2], [2.0, 0.5]]).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    euclidean(x1, x2).sum().backward()
    for grad in (x1.grad, x2.grad):
        assert grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pairwise_matches_rowwise_for_every_pair(metric: str) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    d = pairwise(x, y, metric)
    assert d.shape == (5, 4)
    for i in range(5):
        expected = rowwise(x[i:i + 1].expand(4, 3), y, metric)
        if metric == "euclidean":  # pairwise has no eps: it ranks and thresholds
            expected = (expected.pow(2) - EPS).clamp_min(0).sqrt()
        torch.testing.assert_close(d[i], expected, atol=1e-5, rtol=1e-5)


def test_pairwise_euclidean_is_exact() -> None:
    """No ‖x‖² − 2x·y + ‖y‖² shortcut: a row is at distance exactly 0 from itself, even far from 0."""
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1)) * 100 + 1000
    d = pairwise(x)
    assert torch.equal(torch.diagonal(d), torch.zeros(50))
    assert (d + torch.eye(50)).min() > 0
    torch.testing.assert_close(pairwise(t([[0, 0]]), t([[3, 4], [0, 0]])), t([[5, 0]]), rtol=0, atol=0)


def test_pairwise_cosine_by_hand() -> None:
    d = pairwise(t([[1, 0], [0, 2]]), t([[3, 0], [-1, 0], [1, 1]]), "cosine")
    expected = t([[0, 2, 1 - math.sqrt(0.5)], [1, 1, 1 - math.sqrt(0.5)]])
    torch.testing.assert_close(d, expected)
    assert torch.allclose(torch.diagonal(pairwise(t([[1, 2], [3, -1]]), metric="cosine")), torch.zeros(2),
                          atol=1e-6)


def test_unknown_metric() -> None:
    check_metric("euclidean")
    check_metric("cosine")
    for call in (lambda: check_metric("manhattan"), lambda: rowwise(t([[0, 0]]), t([[1, 1]]), "manhattan"),
                 lambda: pairwise(t([[0, 0]]), metric="manhattan")):
        with pytest.raises(ValueError, match="metric='manhattan'"):
            call()


def test_mismatched_widths_and_shapes_are_named() -> None:
    a, b = torch.zeros(4, 3), torch.zeros(4, 5)
    for call in (lambda: rowwise(a, b), lambda: rowwise(a, b, "cosine"), lambda: euclidean(a, b),
                 lambda: squared_euclidean(a, b), lambda: pairwise(a, b), lambda: pairwise(a, b, "cosine")):
        with pytest.raises(ValueError, match=re.escape("(4, 3) and (4, 5)") + ".*same dimension D"):
            call()
    # (1, D) against (B, D) would broadcast silently in a row-wise distance
    with pytest.raises(ValueError, match=re.escape("differ in rows: shapes (1, 3) and (4, 3)")):
        rowwise(torch.zeros(1, 3), a)
    with pytest.raises(ValueError, match=re.escape("x1 must be 2-D (rows, D), got shape (3,)")):
        cosine(torch.zeros(3), a)
    with pytest.raises(ValueError, match=re.escape("y must be 2-D (rows, D), got shape (2, 1, 3)")):
        pairwise(a, torch.zeros(2, 1, 3))
    with pytest.raises(TypeError, match="x2 must be a torch.Tensor, got list"):
        euclidean(a, [[0.0, 0.0, 0.0]])
    assert pairwise(torch.zeros(2, 3), a).shape == (2, 4)  # different row counts are fine in a matrix
