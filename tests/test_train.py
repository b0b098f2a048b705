"""The training loop and the book's recipes: history, determinism, the model cache, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fewshot.train as train
from fewshot.models import ClassificationNet, EmbeddingNet, SiameseNet
from fewshot.pairs import PairDataset
from fewshot.train import History, embed, fit, precision_validator, train_method


@pytest.fixture(scope="module")
def tiny(small_train: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real digits, 6–7 per class."""
    images, labels = small_train
    return images[:64], labels[:64]


def test_fit_returns_history_with_validation(tiny: tuple) -> None:
    images, labels = tiny
    torch.manual_seed(0)
    model = SiameseNet(EmbeddingNet(2))
    history = fit(model, train.ContrastiveLoss(1.0), PairDataset(images, labels), epochs=2, batch_size=32,
                  lr=1e-3, validate=precision_validator(images, labels), progress=False)
    assert isinstance(history, History)
    assert len(history.loss) == 2 and all(loss > 0 for loss in history.loss)
    assert list(history.metrics) == ["val_precision_at_1"]
    assert len(history.metrics["val_precision_at_1"]) == 2
    assert all(0 <= v <= 1 for v in history.metrics["val_precision_at_1"])
    assert history.seconds > 0 and not model.training
    assert History.from_dict(history.to_dict()) == history


def test_fit_reduces_the_loss(tiny: tuple) -> None:
    images, labels = tiny
    torch.manual_seed(0)
    model = ClassificationNet(EmbeddingNet(8), 10)
    history = fit(model, nn.CrossEntropyLoss(), TensorDataset(images, labels), epochs=3, batch_size=16,
                  lr=3e-3, progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]


def test_fit_zero_epochs_trains_nothing(tiny: tuple) -> None:
    model = ClassificationNet(EmbeddingNet(2), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, nn.CrossEntropyLoss(), TensorDataset(*tiny), epochs=0, progress=False)
    assert history.loss == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fit_learning_rate_never_zero_before_the_last_step(tiny: tuple) -> None:
    """The cosine schedule must span every batch fit() runs, including a short last batch."""
    images, labels = tiny[0][:50], tiny[1][:50]  # batches of 32 + 18
    model = ClassificationNet(EmbeddingNet(2), 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen: list[float] = []

    def step(m: nn.Module, loss_fn: nn.Module, batch: tuple) -> torch.Tensor:
        seen.append(optimizer.param_groups[0]["lr"])
        return train.class_step(m, loss_fn, batch)

    fit(model, nn.CrossEntropyLoss(), TensorDataset(images, labels), epochs=3, batch_size=32,
        optimizer=optimizer, step=step, progress=False)
    assert len(seen) == 6
    assert seen[0] == pytest.approx(1e-3)
    assert all(lr > 0 for lr in seen), seen
    assert seen == sorted(seen, reverse=True)


def test_fit_rejects_bad_epochs(tiny: tuple) -> None:
    with pytest.raises(ValueError, match="epochs=-1"):
        fit(ClassificationNet(EmbeddingNet(2)), nn.CrossEntropyLoss(), TensorDataset(*tiny), epochs=-1)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method, sampling", [("softmax", "batch"), ("siamese", "batch"),
                                              ("triplet", "random")])
def test_train_method_deterministic(method: str, sampling: str, small_train: tuple) -> None:
    images, labels = small_train
    runs = [train_method(method, images, labels, sampling=sampling, epochs=1, seed=s, cache=False,
                         progress=False)[0]
            for s in (5, 5, 6)]
    a, b, c = (_weights(m) for m in runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters
    assert not runs[0].training


@pytest.mark.parametrize("method", ["siamese", "triplet"])
def test_in_batch_training_is_deterministic_with_two_threads(method: str, small_train: tuple) -> None:
    """In-batch pairs/triplets sum gradients through ``emb[indices]``: with several threads that sum
    is only reproducible in torch's deterministic mode (set by ``seed_everything``)."""
    images, labels = small_train
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = (_weights(train_method(method, images, labels, sampling="batch", epochs=1, seed=3,
                                      cache=False, progress=False)[0]) for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_method_cache(small_train: tuple, tmp_path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_CACHE", raising=False)
    images, labels = small_train
    first, history = train_method("siamese", images, labels, epochs=1, cache=True, progress=False)
    saved = list(tmp_path.glob("siamese-*.pt"))
    assert len(saved) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the second call should load the cached model, not train")

    monkeypatch.setattr(train, "fit", no_training)
    capsys.readouterr()
    second, history2 = train_method("siamese", images, labels, epochs=1, cache=True, progress=True)
    assert "loaded from the cache" in capsys.readouterr().out
    assert history2.loss == history.loss and history2.seconds == pytest.approx(history.seconds)
    assert not second.training
    x = images[:20]
    assert torch.equal(embed(first, x), embed(second, x))
    # a different setting is a different cache entry: it must train (and here, hit the stub)
    with pytest.raises(AssertionError, match="should load"):
        train_method("siamese", images, labels, epochs=1, margin=2.0, cache=True, progress=False)


def test_train_method_cache_off(small_train: tuple, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path))
    images, labels = small_train
    train_method("softmax", images[:64], labels[:64], epochs=1, cache=False, progress=False)
    monkeypatch.setenv("FEWSHOT_CACHE", "0")
    train_method("softmax", images[:64], labels[:64], epochs=1, cache=True, progress=False)
    assert not any(tmp_path.iterdir())


def test_train_method_unknown(small_train: tuple) -> None:
    with pytest.raises(ValueError, match="'arcface'"):
        train_method("arcface", *small_train, epochs=1, cache=False)
    with pytest.raises(ValueError, match="'hardest'"):
        train_method("triplet", *small_train, sampling="hardest", epochs=1, cache=False)
