"""The one place input checks live: each names the argument, the bad value and what was expected."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from fewshot.checks import (check_choice, check_embeddings, check_finite, check_images_labels, check_int,
                            check_labels, check_number, check_same_length, check_tensor)


@pytest.mark.parametrize("value, minimum", [(0, 1), (-1, 0), (2.0, 1), ("3", 1), (None, 1), (True, 0)])
def test_check_int_rejects(value, minimum: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"epochs={value!r}") + f".*≥ {minimum}"):
        check_int(value, "epochs", minimum)


def test_check_int_accepts() -> None:
    assert check_int(3, "n") == 3
    assert check_int(0, "n", 0) == 0
    value = check_int(np.int64(5), "n")  # numpy integers are integers
    assert value == 5 and type(value) is int


@pytest.mark.parametrize("value", [0, 0.0, -1e-9, math.nan, math.inf, -math.inf, "0.1", None, True])
def test_check_number_strict_rejects(value) -> None:
    with pytest.raises(ValueError, match=re.escape(f"lr={value!r}") + ".*> 0"):
        check_number(value, "lr", 0.0, strict=True)


def test_check_number() -> None:
    assert check_number(0, "margin", 0.0) == 0.0  # ≥ 0 allows 0
    assert check_number(0.5, "lr", 0.0, strict=True) == 0.5
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match=re.escape(f"margin={bad!r}") + ".*≥ 0"):
            check_number(bad, "margin", 0.0)


def test_check_choice() -> None:
    check_choice("a", "kind", ("a", "b"))
    with pytest.raises(ValueError, match=re.escape("kind='c': expected one of ('a', 'b')")):
        check_choice("c", "kind", ("a", "b"))


def test_check_tensor() -> None:
    t = torch.zeros(2)
    assert check_tensor(t, "x") is t
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        check_tensor([0.0], "x")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_rejects_and_counts(bad: float) -> None:
    t = torch.zeros(2, 3)
    t[1, 2] = bad
    t[0, 0] = bad
    with pytest.raises(ValueError, match=re.escape("scores holds 2 NaN or infinite value(s) (shape (2, 3))")):
        check_finite(t, "scores")


def test_check_finite_passes_finite_and_integer_tensors() -> None:
    t = torch.randn(4)
    assert check_finite(t, "x") is t
    check_finite(torch.tensor([1, 2, 3]), "labels")  # integers cannot be NaN
    check_finite(torch.zeros(0), "empty")


def test_check_labels() -> None:
    check_labels(torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=re.escape("y must be 1-D, got shape (2, 1)")):
        check_labels(torch.zeros(2, 1, dtype=torch.long), "y")
    for dtype in (torch.float32, torch.float64, torch.bool, torch.complex64):
        with pytest.raises(ValueError, match=f"labels must be integers, got dtype {dtype}"):
            check_labels(torch.zeros(2, dtype=dtype))
    with pytest.raises(TypeError, match="list"):
        check_labels([0, 1])


def test_check_embeddings() -> None:
    e = torch.randn(3, 2)
    assert check_embeddings(e) is e
    with pytest.raises(ValueError, match=re.escape("query must be 2-D (B, D), got shape (3,)")):
        check_embeddings(torch.zeros(3), "query")
    with pytest.raises(ValueError, match="query must be floating point, got dtype torch.int64"):
        check_embeddings(torch.zeros(3, 2, dtype=torch.long), "query")
    e[1, 1] = math.nan
    with pytest.raises(ValueError, match="query holds 1 NaN"):
        check_embeddings(e, "query")


def test_check_images_labels() -> None:
    with pytest.raises(ValueError, match="3 images, 2 labels"):
        check_images_labels(torch.zeros(3, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="float64"):
        check_images_labels(torch.zeros(2, 1, 28, 28), torch.tensor([0.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="bool"):
        check_images_labels(torch.zeros(2, 1, 28, 28), torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        check_images_labels(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="list"):
        check_images_labels(torch.zeros(2, 1, 28, 28), [0, 1])
    for bad in (math.nan, math.inf):
        x = torch.zeros(2, 1, 28, 28)
        x[1, 0, 3, 3] = bad
        with pytest.raises(ValueError, match="images holds 1 NaN or infinite"):
            check_images_labels(x, torch.tensor([0, 1]))
    check_images_labels(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1], dtype=torch.int32))  # fine


def test_check_same_length() -> None:
    check_same_length(torch.zeros(2), torch.zeros(2, 5), "a", "b")
    with pytest.raises(ValueError, match="a and b differ in length: 2 and 3"):
        check_same_length(torch.zeros(2), torch.zeros(3), "a", "b")
