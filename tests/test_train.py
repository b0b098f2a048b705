"""``fit``, the one training loop, and its steps: history, schedule, seeds, checks (a NaN loss names
its epoch; lr=0, batch_size=0, epochs<0, NaN images and a batch of one with BatchNorm raise)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fewshot.losses import ContrastiveLoss, TripletLoss, prototypical_loss
from fewshot.miners import all_pairs, all_triplets
from fewshot.models import ClassificationNet, EmbeddingNet, HeadNet, SiameseNet, TripletNet
from fewshot.recipes import precision_validator
from fewshot.train import History, class_step, episode_step, fit, metric_step


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def test_fit_returns_history_with_validation(tiny: tuple) -> None:
    images, labels = tiny
    torch.manual_seed(0)
    model = SiameseNet(EmbeddingNet(2))
    step = metric_step(ContrastiveLoss(1.0), lambda emb, y: all_pairs(y))
    epochs_seen: list[int] = []
    history = fit(model, step, images, labels, epochs=2, batch_size=32, lr=1e-3,
                  validate=precision_validator(images, labels),
                  on_epoch=lambda epoch, m: epochs_seen.append(epoch), progress=False)
    assert isinstance(history, History)
    assert len(history.loss) == 2 and all(loss > 0 for loss in history.loss)
    assert sorted(history.metrics) == ["active_fraction", "val_precision_at_1"]
    assert len(history.metrics["val_precision_at_1"]) == 2
    assert len(history.metrics["active_fraction"]) == 2  # recorded by metric_step's loss
    assert all(0 < v <= 1 for v in history.metrics["active_fraction"])
    assert all(0 <= v <= 1 for v in history.metrics["val_precision_at_1"])
    assert history.seconds > 0 and not model.training
    assert epochs_seen == [0, 1]
    assert History.from_dict(history.to_dict()) == history


def test_validation_runs_in_eval_mode_without_gradients(tiny: tuple) -> None:
    seen = []

    def validate(model: nn.Module) -> dict:
        seen.append((model.training, torch.is_grad_enabled()))
        return {"x": 0.5}

    history = fit(ClassificationNet(EmbeddingNet(2), 10), class_step, *tiny, epochs=1, batch_size=32,
                  lr=1e-3, validate=validate, progress=False)
    assert seen == [(False, False)] and history.metrics == {"x": [0.5]}


def test_fit_reduces_the_loss(tiny: tuple) -> None:
    images, labels = tiny
    torch.manual_seed(0)
    model = ClassificationNet(EmbeddingNet(8), 10)
    history = fit(model, class_step, images, labels, epochs=6, batch_size=16, lr=3e-3, progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]


def test_fit_zero_epochs_trains_nothing(tiny: tuple) -> None:
    model = ClassificationNet(EmbeddingNet(2), 10)
    before = _weights(model)
    history = fit(model, class_step, *tiny, epochs=0, batch_size=32, lr=1e-3, progress=False)
    assert history.loss == []
    assert all(torch.equal(before[k], v) for k, v in _weights(model).items())


def test_fit_is_seeded(tiny: tuple) -> None:
    def run(seed: int) -> dict:
        torch.manual_seed(0)  # the same initial weights: only the batch order differs
        model = ClassificationNet(EmbeddingNet(2), 10)
        fit(model, class_step, *tiny, epochs=1, batch_size=16, lr=1e-3, seed=seed, progress=False)
        return _weights(model)

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_learning_rate_never_zero_before_the_last_step(tiny: tuple) -> None:
    """The cosine schedule must span every batch fit() runs, including a short last batch."""
    images, labels = tiny[0][:50], tiny[1][:50]  # batches of 32 + 18
    model = ClassificationNet(EmbeddingNet(2), 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen: list[float] = []

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(optimizer.param_groups[0]["lr"])
        return class_step(m, x, y)

    fit(model, step, images, labels, epochs=3, batch_size=32, lr=1e-3, optimizer=optimizer, progress=False)
    assert len(seen) == 6
    assert seen[0] == pytest.approx(1e-3)
    assert all(lr > 0 for lr in seen), seen
    assert seen == sorted(seen, reverse=True)


def test_fit_uses_the_batch_sampler(tiny: tuple) -> None:
    images, labels = tiny
    batches = [[0, 1, 2, 3], [10, 11, 12, 13, 14, 15]]
    seen = []

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return class_step(m, x, y)

    fit(ClassificationNet(EmbeddingNet(2), 10), step, images, labels, epochs=2, batch_size=32, lr=1e-3,
        batch_sampler=batches, progress=False)
    assert [len(x) for x in seen] == [4, 6, 4, 6]
    assert torch.equal(seen[1], images[10:16])


# ---------------------------------------------------------------------------------------------
# bad input and bad numbers

@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": -1}, "epochs=-1"), ({"lr": 0}, "lr=0"), ({"lr": -1e-3}, "lr=-0.001"),
    ({"lr": math.nan}, "lr=nan"), ({"batch_size": 0}, "batch_size=0"), ({"epochs": 1.5}, "epochs=1.5"),
])
def test_fit_rejects_bad_arguments(tiny: tuple, kwargs: dict, match: str) -> None:
    args = {"epochs": 1, "batch_size": 32, "lr": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit(ClassificationNet(EmbeddingNet(2)), class_step, *tiny, progress=False, **args)


def test_fit_batch_of_one_with_batchnorm(tiny: tuple) -> None:
    with pytest.raises(ValueError, match="batch_size=1.*BatchNorm"):
        fit(ClassificationNet(EmbeddingNet(2)), class_step, *tiny, epochs=1, batch_size=1, lr=1e-3,
            progress=False)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_fit_rejects_non_finite_images(tiny: tuple, bad: float) -> None:
    images = tiny[0].clone()
    images[5, 0, 14, 14] = bad
    with pytest.raises(ValueError, match="images holds 1 NaN or infinite"):
        fit(ClassificationNet(EmbeddingNet(2)), class_step, images, tiny[1], epochs=1, batch_size=32,
            lr=1e-3, progress=False)


def test_fit_rejects_mismatched_or_empty_data(tiny: tuple) -> None:
    with pytest.raises(ValueError, match="64 images, 63 labels"):
        fit(ClassificationNet(EmbeddingNet(2)), class_step, tiny[0], tiny[1][:63], epochs=1, batch_size=32,
            lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(ClassificationNet(EmbeddingNet(2)), class_step, tiny[0][:0], tiny[1][:0], epochs=1,
            batch_size=32, lr=1e-3, progress=False)


def test_fit_stops_on_a_non_finite_loss_naming_the_epoch(tiny: tuple) -> None:
    """Two batches per epoch; the loss becomes NaN on the first batch of epoch 2."""
    calls = []

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = class_step(m, x, y)
        return loss * math.nan if len(calls) == 3 else loss

    model = ClassificationNet(EmbeddingNet(2), 10)
    with pytest.raises(ValueError, match="nan in epoch 2"):
        fit(model, step, *tiny, epochs=3, batch_size=32, lr=1e-3, progress=False)
    assert len(calls) == 3  # stopped at once
    assert all(torch.isfinite(v).all() for v in _weights(model).values())  # no NaN step was taken


# ---------------------------------------------------------------------------------------------
# the steps

class CountingNet(nn.Module):
    """An embedding net that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.calls = EmbeddingNet(3), 0

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def test_metric_step_embeds_once_and_feeds_pairs(tiny: tuple) -> None:
    images, labels = tiny[0][:8], tiny[1][:8]
    assert 0 < all_pairs(labels)[2].sum() < 28  # positive and negative pairs
    model = CountingNet()
    got = {}

    def loss(a: torch.Tensor, b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        got.update(a=a, b=b, target=target)
        return ContrastiveLoss(1.0)(a, b, target)

    value = metric_step(loss, lambda emb, y: all_pairs(y))(model, images, labels)
    assert model.calls == 1  # the batch is embedded once, whatever the number of pairs
    first, second, target = all_pairs(labels)
    emb = model.net(images)
    torch.testing.assert_close(got["a"], emb[first])
    torch.testing.assert_close(got["b"], emb[second])
    assert torch.equal(got["target"], target)
    torch.testing.assert_close(value, ContrastiveLoss(1.0)(emb[first], emb[second], target))


def test_metric_step_feeds_triplets(tiny: tuple) -> None:
    idx = torch.nonzero(tiny[1] < 3).flatten()[:8]  # digits 0–2: several of each, so triplets exist
    images, labels = tiny[0][idx], tiny[1][idx]
    assert len(all_triplets(labels)[0]) > 0 and len(labels.unique()) == 3
    model = TripletNet(EmbeddingNet(3)).eval()
    value = metric_step(TripletLoss(1.0), lambda emb, y: all_triplets(y))(model, images, labels)
    a, p, n = all_triplets(labels)
    emb = model.get_embedding(images)
    torch.testing.assert_close(value, TripletLoss(1.0)(emb[a], emb[p], emb[n]))


def test_metric_step_with_nothing_to_mine_is_a_zero_with_a_graph() -> None:
    model = SiameseNet(EmbeddingNet(2))
    images, labels = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2])  # no positive pair, no triplet
    loss = metric_step(TripletLoss(1.0), lambda emb, y: all_triplets(y))(model, images, labels)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_class_step_passes_the_labels_to_a_margin_head_only() -> None:
    seen = {}

    class RecordingHead(nn.Module):
        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            seen["labels"] = labels
            return torch.zeros(len(emb), 3, requires_grad=True)

    y = torch.tensor([0, 2])
    loss = class_step(HeadNet(EmbeddingNet(2), RecordingHead()), torch.zeros(2, 1, 28, 28), y)
    assert seen["labels"] is y
    assert loss.item() == pytest.approx(math.log(3))  # uniform logits over 3 classes
    plain = ClassificationNet(EmbeddingNet(2), 3)  # takes no labels: called with the images alone
    assert torch.isfinite(class_step(plain, torch.zeros(2, 1, 28, 28), y))


def test_episode_step_is_the_prototypical_loss() -> None:
    net = EmbeddingNet(4).eval()
    # 3 classes × (K=2 support + Q=1 query), class by class
    labels = torch.tensor([7, 7, 7, 2, 2, 2, 5, 5, 5])
    images = torch.randn(9, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    loss = episode_step(2)(net, images, labels)
    emb = net(images).view(3, 3, 4)
    torch.testing.assert_close(loss, prototypical_loss(emb[:, :2], emb[:, 2:]))
    with pytest.raises(ValueError, match="k_shot=0"):
        episode_step(0)


def _recording_step(seen: list) -> callable:
    def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append((images.clone(), labels.clone()))
        return images.sum() * 0.0

    return step


def test_shifted_moves_each_image_by_at_most_the_shift() -> None:
    from fewshot.train import shifted

    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 13:15, 13:15] = 1.0  # one bright 2×2 dot in the middle of a dark image
    labels = torch.arange(64)
    seen: list = []
    shifted(_recording_step(seen), 2.0, seed=0)(None, images, labels)
    moved, seen_labels = seen[0]
    assert torch.equal(seen_labels, labels) and moved.shape == images.shape
    grid = torch.arange(28, dtype=torch.float32)
    mass = moved.sum((1, 2, 3))
    centre_y = (moved.sum((1, 3)) * grid).sum(1) / mass
    centre_x = (moved.sum((1, 2)) * grid).sum(1) / mass
    offsets = torch.stack([centre_x - 13.5, centre_y - 13.5], 1)
    assert offsets.abs().max() <= 2.0 + 1e-4  # never farther than the shift
    assert offsets.abs().max() > 1.0  # and they do move, by different amounts
    assert offsets.std(0).min() > 0.5
    assert torch.allclose(mass, torch.full_like(mass, 4.0), atol=1e-4)  # the dot stays whole


def test_shifted_is_seeded_and_new_every_batch() -> None:
    from fewshot.train import shifted

    images, labels = torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    runs = []
    for _ in range(2):
        seen: list = []
        step = shifted(_recording_step(seen), 1.5, seed=3)
        step(None, images, labels)
        step(None, images, labels)
        runs.append(seen)
    assert torch.equal(runs[0][0][0], runs[1][0][0]) and torch.equal(runs[0][1][0], runs[1][1][0])
    assert not torch.equal(runs[0][0][0], runs[0][1][0])  # each batch its own offsets


def test_shifted_zero_is_the_step_itself_and_bad_shifts_raise() -> None:
    from fewshot.train import shifted

    step = _recording_step([])
    assert shifted(step, 0, seed=0) is step
    for bad in (-1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="pixels"):
            shifted(step, bad)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        shifted(step, 1.0)(None, torch.zeros(4, 28, 28), torch.zeros(4, dtype=torch.long))


def test_shifted_keeps_the_metric_steps_active_fraction(tiny: tuple) -> None:
    from fewshot.train import shifted

    images, labels = tiny
    step = shifted(metric_step(ContrastiveLoss(1.0), lambda emb, y: all_pairs(y)), 2.0)
    history = fit(SiameseNet(EmbeddingNet(2)), step, images, labels, epochs=1, batch_size=32,
                  lr=1e-3, progress=False)
    assert len(history.metrics["active_fraction"]) == 1
