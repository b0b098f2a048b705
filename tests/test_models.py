"""The embedding CNN and its wrappers: shapes, architecture, shared weights, bad inputs."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from fewshot.models import ClassificationNet, EmbeddingNet, SiameseNet, TripletNet


def images(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [2, 32])
def test_embedding_shapes(dim: int) -> None:
    net = EmbeddingNet(dim)
    assert net(images(3)).shape == (3, dim)
    assert net.embed_dim == dim


def test_architecture() -> None:
    net = EmbeddingNet(7)
    leaves = [m for m in net.modules() if not list(m.children())]
    kinds = [type(m) for m in leaves]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU] * 4 + [nn.Linear]
    convs = [m for m in leaves if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 32), (32, 32), (32, 64), (64, 64)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (2, 2)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [m.num_features for m in leaves if isinstance(m, nn.BatchNorm2d)] == [32, 32, 64, 64]
    assert [m.negative_slope for m in leaves if isinstance(m, nn.LeakyReLU)] == [0.1] * 4
    fc = leaves[-1]
    assert (fc.in_features, fc.out_features) == (3136, 7)


@pytest.mark.parametrize("wrapper", [SiameseNet, TripletNet])
def test_wrappers_share_the_same_parameters(wrapper: type) -> None:
    net = EmbeddingNet(4)
    model = wrapper(net)
    assert [id(p) for p in model.parameters()] == [id(p) for p in net.parameters()]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())


def test_siamese_step_through_one_branch_moves_the_other() -> None:
    model = SiameseNet(EmbeddingNet(3)).eval()
    x1, x2 = images(2, seed=1), images(2, seed=2)
    e1, e2 = model(x1, x2)
    torch.testing.assert_close(e2, model.embedding_net(x2))
    before = e2.detach().clone()
    e1.pow(2).sum().backward()  # gradient through the first branch only
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    _, after = model(x1, x2)
    assert not torch.allclose(before, after.detach())


def test_triplet_step_through_anchor_moves_positive_and_negative() -> None:
    model = TripletNet(EmbeddingNet(3)).eval()
    a, p, n = images(2, seed=1), images(2, seed=2), images(2, seed=3)
    ea, ep, en = model(a, p, n)
    before = (ep.detach().clone(), en.detach().clone())
    ea.pow(2).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    _, ep2, en2 = model(a, p, n)
    assert not torch.allclose(before[0], ep2.detach())
    assert not torch.allclose(before[1], en2.detach())


@pytest.mark.parametrize("make", [
    lambda net: net, SiameseNet, TripletNet, lambda net: ClassificationNet(net, 10)])
def test_get_embedding_matches_embedding_net(make) -> None:
    net = EmbeddingNet(5)
    model = make(net).eval()
    x = images(3)
    torch.testing.assert_close(model.get_embedding(x), net(x), rtol=0, atol=0)


def test_classification_logits_shape() -> None:
    assert ClassificationNet(EmbeddingNet(2))(images(4)).shape == (4, 10)
    assert ClassificationNet(EmbeddingNet(8), n_classes=3)(images(4)).shape == (4, 3)
    with pytest.raises(ValueError, match="n_classes=1"):
        ClassificationNet(EmbeddingNet(2), n_classes=1)


@pytest.mark.parametrize("bad", [0, -3, 2.0, "2", None])
def test_bad_embed_dim(bad) -> None:
    with pytest.raises(ValueError, match=re.escape(f"embed_dim={bad!r}")):
        EmbeddingNet(bad)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28), (2, 784)])
def test_bad_image_shape(shape: tuple) -> None:
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        EmbeddingNet(2)(torch.zeros(shape))
